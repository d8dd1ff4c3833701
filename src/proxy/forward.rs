//! Forwarding a request to its shard: the upstream request head (headers cleaned,
//! `X-Forwarded-For` appended, request id), one attempt with a deadline on the response head;
//! for GETs, parking while the shard is down, replaying when it is back, and following Zulip's
//! `X-Accel-Redirect` (one hop, configured shards only); and teaching the queue map from the
//! answers.

use std::net::SocketAddr;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::Watched;
use super::handler::ClientBody;
use super::headers::{self, X_REQUEST_ID};
use super::upstream::{self, classify, UpstreamBody};
use super::Proxy;
use crate::config::TimeoutAnswer;
use crate::error::{json_response, ProxyError};
use crate::parking::Released;
use crate::routing::ShardId;

/// The header Tornado uses to send a user-split realm's request to another port.
const X_ACCEL_REDIRECT: &str = "x-accel-redirect";
/// Largest queue-registration answer read to learn its `queue_id`.
const MAX_REGISTRATION_BODY: usize = 64 * 1024;

/// Where a request goes and what the queue map should learn from it.
pub struct Route<'a> {
    pub target: ShardId,
    /// The realm's home shard for queues learned from this request.
    pub home: ShardId,
    /// The queue map placed this request on `target` (so an answer from there teaches it
    /// nothing new).
    pub known: bool,
    pub realm: &'a str,
    pub queue_id: Option<&'a str>,
}

/// A request's body as kansas has it: still streaming from the client, or already read.
pub enum Payload {
    Stream(Incoming),
    Buffered(Bytes),
}

impl Payload {
    fn is_empty(&self) -> bool {
        match self {
            Payload::Stream(b) => b.is_end_stream(),
            Payload::Buffered(b) => b.is_empty(),
        }
    }
}

/// Sends the request and returns the answer, headers cleaned, body streaming. `final_shard`
/// is set to the shard that answered (after a redirect, the redirect's; after an unknown
/// queue was found on another resident shard, that one's).
pub async fn forward(
    proxy: &std::sync::Arc<Proxy>,
    mut parts: http::request::Parts,
    payload: Payload,
    peer: SocketAddr,
    route: Route<'_>,
    request_id: &HeaderValue,
    final_shard: &mut ShardId,
) -> Result<Response<ClientBody>, ProxyError> {
    let limit = proxy.limits.max_body_bytes;
    if let Payload::Stream(body) = &payload {
        if body.size_hint().exact().is_some_and(|len| len > limit) {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = upstream_uri(proxy, route.target, path_and_query.clone());
    parts.version = http::Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_forwarded_for(&mut parts.headers, peer.ip());
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    // An unknown queue of a realm that drains may be on any of its resident shards.
    let others = other_resident_shards(proxy, &route);

    // Only a bodiless GET is safe to hold, send again, or redirect.
    if parts.method == Method::GET && payload.is_empty() {
        let registration = route.queue_id.is_none() && is_registration(&parts.uri);
        // A known queue lives on its shard: a redirect from there means the shard no longer
        // serves the user (its realm stopped being resident there an instant after kansas
        // decided), so the queue gets no more events and the client must re-register.
        let follow = !route.known;
        // The head's headers live in `get` (which may send them again) while the poll waits,
        // and come back for the rare exchange after it: one copy per waiting long-poll.
        let headers = std::mem::take(&mut parts.headers);
        let (mut resp, headers) =
            get(proxy, route.target, parts.uri, headers, final_shard, follow).await?;
        parts.headers = headers;
        if let (false, Some(q)) = (follow, route.queue_id) {
            if resp.headers().contains_key(X_ACCEL_REDIRECT) {
                parts.uri = Uri::from(path_and_query);
                let reloading = Box::pin(reload_prepared(proxy, parts, route.target, q));
                return Ok(reloading.await);
            }
        }
        if !others.is_empty() {
            let headers = &parts.headers;
            let asking = Box::pin(ask_others(proxy, resp, others, final_shard, |other| {
                let uri = upstream_uri(proxy, other, path_and_query.clone());
                let headers = headers.clone();
                async move {
                    let mut shard = other;
                    let (r, _) = get(proxy, other, uri, headers, &mut shard, true).await?;
                    Ok((r, shard))
                }
            }));
            resp = asking.await?;
        }
        return learn_from_get(proxy, &route, registration, *final_shard, resp).await;
    }
    let method = parts.method.clone();
    let (body, retry): (UpstreamBody, Option<Bytes>) = match payload {
        Payload::Stream(b) if b.is_end_stream() => (upstream::empty(), Some(Bytes::new())),
        Payload::Stream(b) => (Either::Left(Limited::new(b, limit as usize)), None),
        Payload::Buffered(b) => (upstream::full(b.clone()), Some(b)),
    };
    let headers = parts.headers.clone();
    let mut resp = attempt(proxy, route.target, Request::from_parts(parts, body)).await?;
    if let Some(bytes) = retry.filter(|_| method == Method::DELETE && !others.is_empty()) {
        let asking = Box::pin(ask_others(proxy, resp, others, final_shard, |other| {
            let mut req = Request::new(upstream::full(bytes.clone()));
            *req.method_mut() = Method::DELETE;
            *req.uri_mut() = upstream_uri(proxy, other, path_and_query.clone());
            *req.headers_mut() = headers.clone();
            async move { Ok((attempt(proxy, other, req).await?, other)) }
        }));
        resp = asking.await?;
    }
    if resp.headers().contains_key(X_ACCEL_REDIRECT) {
        tracing::error!(method = %method, shard = proxy.shard_name(route.target), "X-Accel-Redirect on a request that is not a GET");
        return Err(ProxyError::BadRedirect);
    }
    if let Some(q) = route.queue_id {
        let status = resp.status();
        if (method == Method::DELETE && status.is_success()) || status == StatusCode::BAD_REQUEST {
            proxy.queues.forget(q);
        }
    }
    Ok(resp)
}

/// The realm's other resident shards kansas can reach, in order, when the request names a
/// queue the map does not know and the realm drains; else none (the usual case, at no cost).
fn other_resident_shards(proxy: &Proxy, route: &Route<'_>) -> Vec<ShardId> {
    if route.known || route.queue_id.is_none() {
        return Vec::new();
    }
    let snapshot = proxy.snapshot.load();
    let now = crate::routing::residency::now_epoch();
    if !snapshot.draining(now) {
        return Vec::new();
    }
    snapshot
        .resident(route.realm, now)
        .into_iter()
        .filter_map(|r| r.shard)
        .filter(|&id| id != route.target && snapshot.reachable(id))
        .collect()
}

/// While the answer so far is `BAD_EVENT_QUEUE_ID`, asks each of `others` in turn (`ask` sends
/// the request there and says which shard answered); the first that has the queue answers and
/// becomes `final_shard`. When none has it (or none answers), the first shard's answer stands.
///
/// Boxed where it is called: a forward future lives as long as its long-poll and is as large
/// as its largest await, and this one (another shard's whole exchange) is rarely needed.
async fn ask_others<F>(
    proxy: &Proxy,
    mut resp: Response<ClientBody>,
    others: Vec<ShardId>,
    final_shard: &mut ShardId,
    mut ask: impl FnMut(ShardId) -> F,
) -> Result<Response<ClientBody>, ProxyError>
where
    F: std::future::Future<Output = Result<(Response<ClientBody>, ShardId), ProxyError>>,
{
    for other in others {
        let bad = match bad_queue(proxy, resp).await? {
            Ok(bad) => bad,
            Err(answer) => return Ok(answer),
        };
        resp = match ask(other).await {
            Ok((r, shard)) if r.status() != StatusCode::BAD_REQUEST => {
                *final_shard = shard;
                r
            }
            _ => bad.response(),
        };
    }
    Ok(resp)
}

/// A shard's `BAD_EVENT_QUEUE_ID` answer, read whole (it is small and immediate) so it can be
/// given to the client if no other shard has the queue.
struct BadQueue {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl BadQueue {
    fn response(&self) -> Response<ClientBody> {
        let mut resp = Response::new(Either::Right(Full::new(self.body.clone())));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers.clone();
        resp
    }
}

/// Sorts an answer: `Err` with the answer (a 400 read whole) when it is anything but
/// `BAD_EVENT_QUEUE_ID`, `Ok` with the read answer when it is.
async fn bad_queue(
    proxy: &Proxy,
    resp: Response<ClientBody>,
) -> Result<Result<BadQueue, Response<ClientBody>>, ProxyError> {
    if resp.status() != StatusCode::BAD_REQUEST {
        return Ok(Err(resp));
    }
    let (parts, body) = resp.into_parts();
    let bytes = read_small(proxy, body).await?;
    let bad = BadQueue {
        status: parts.status,
        headers: parts.headers,
        body: bytes,
    };
    let is_bad_queue = serde_json::from_slice::<serde_json::Value>(&bad.body)
        .is_ok_and(|v| v["code"] == "BAD_EVENT_QUEUE_ID");
    Ok(if is_bad_queue {
        Ok(bad)
    } else {
        Err(bad.response())
    })
}

/// Reads a small answer body whole (bounded in size, and in time like any answer head).
async fn read_small(proxy: &Proxy, body: ClientBody) -> Result<Bytes, ProxyError> {
    let collect = Limited::new(body, MAX_REGISTRATION_BODY).collect();
    Ok(
        tokio::time::timeout(proxy.timeouts.upstream_response, collect)
            .await
            .map_err(|_| ProxyError::UpstreamTimeout)?
            .map_err(|_| ProxyError::UpstreamBodyFailed)?
            .to_bytes(),
    )
}

/// A queue-creating GET: an events path, no `queue_id`, `dont_block=true`. Its answer is small
/// and immediate, so kansas reads it to learn the new queue; every other answer streams.
fn is_registration(uri: &Uri) -> bool {
    matches!(uri.path(), "/json/events" | "/api/v1/events")
        && form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .any(|(k, v)| k == "dont_block" && v == "true")
}

/// The shard's URI for a request target: built from parts, nothing parsed again.
fn upstream_uri(proxy: &Proxy, shard: ShardId, path_and_query: PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(proxy.shard_authority(shard).clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).expect("scheme, authority and path make a valid URI")
}

/// One try: the request to the shard, with the response-head deadline.
async fn attempt(
    proxy: &Proxy,
    shard: ShardId,
    upstream: Request<UpstreamBody>,
) -> Result<Response<ClientBody>, ProxyError> {
    let sent = tokio::time::timeout(
        proxy.timeouts.upstream_response,
        proxy.client().request(upstream),
    );
    let resp = match sent.await {
        Err(_elapsed) => return Err(ProxyError::UpstreamTimeout),
        Ok(Err(e)) => {
            let kind = classify(&e);
            tracing::debug!(shard = proxy.shard_name(shard), error = %e, kind = kind.kind(), "upstream request failed");
            return Err(kind);
        }
        Ok(Ok(resp)) => resp,
    };
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    let body = Watched::new(body, proxy.metrics.clone());
    Ok(Response::from_parts(parts, Either::Left(body)))
}

/// A GET: tried while the shard is up; parked while it is down; replayed when released; answered
/// at the park deadline if the shard does not come back. An `X-Accel-Redirect` to a configured
/// shard is followed once (with the same parking there) when `follow`, else returned. The
/// answer comes with the request's headers, given back.
async fn get(
    proxy: &Proxy,
    mut shard: ShardId,
    mut uri: Uri,
    headers: HeaderMap,
    final_shard: &mut ShardId,
    follow: bool,
) -> Result<(Response<ClientBody>, HeaderMap), ProxyError> {
    let deadline = Instant::now() + proxy.parking.timeout;
    let mut seq = None;
    let mut redirected = false;
    loop {
        *final_shard = shard;
        let park = proxy.park(shard);
        if park.is_up() || !proxy.parking.enabled {
            let mut req = Request::new(upstream::empty());
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
            match attempt(proxy, shard, req).await {
                Ok(resp) => match resp.headers().get(X_ACCEL_REDIRECT) {
                    None => return Ok((resp, headers)),
                    Some(_) if !follow => return Ok((resp, headers)),
                    Some(_) if redirected => {
                        tracing::error!(
                            shard = proxy.shard_name(shard),
                            "second X-Accel-Redirect in a row: not followed"
                        );
                        return Err(ProxyError::BadRedirect);
                    }
                    Some(to) => {
                        (shard, uri) = redirect_target(proxy, shard, to)?;
                        redirected = true;
                        seq = None;
                        proxy.metrics.queues.redirects.inc();
                        continue;
                    }
                },
                Err(e) if e.shard_down() && proxy.parking.enabled => park.mark_down(e.kind()),
                Err(e) => return Err(e),
            }
        }
        let ticket = park.park(seq).map_err(|_| ProxyError::ParkOverflow)?;
        seq = Some(ticket.seq());
        if ticket.wait(deadline).await == Released::Deadline {
            return deadline_answer(proxy.parking.timeout_answer, &uri).map(|r| (r, headers));
        }
    }
}

/// Resolves `/internal/tornado/<port><path>?<query>` to a configured shard and its URI.
fn redirect_target(
    proxy: &Proxy,
    from: ShardId,
    to: &HeaderValue,
) -> Result<(ShardId, Uri), ProxyError> {
    let bad = |why: &str| {
        tracing::error!(shard = proxy.shard_name(from), location = ?to, why, "X-Accel-Redirect not followed");
        ProxyError::BadRedirect
    };
    let to = to.to_str().map_err(|_| bad("not text"))?;
    let rest = to
        .strip_prefix("/internal/tornado/")
        .ok_or_else(|| bad("not /internal/tornado/"))?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let port: u16 = rest[..digits].parse().map_err(|_| bad("no port"))?;
    let path = &rest[digits..];
    if !path.starts_with('/') {
        return Err(bad("no path after the port"));
    }
    let Some(target) = proxy.snapshot.load().shard_by_port(port) else {
        tracing::error!(
            shard = proxy.shard_name(from),
            port,
            "X-Accel-Redirect to a Tornado port that is not a configured shard"
        );
        return Err(ProxyError::RedirectUnknownPort);
    };
    let path = PathAndQuery::try_from(path).map_err(|_| bad("not a valid path"))?;
    Ok((target, upstream_uri(proxy, target, path)))
}

/// Teaches the queue map from a GET's answer: a success for a queue (or a registration's new
/// queue, read from its body) is where that queue lives; a 400 for a queue forgets it.
async fn learn_from_get(
    proxy: &Proxy,
    route: &Route<'_>,
    registration: bool,
    shard: ShardId,
    resp: Response<ClientBody>,
) -> Result<Response<ClientBody>, ProxyError> {
    let status = resp.status();
    if resp.extensions().get::<OwnAnswer>().is_some() {
        // kansas's own empty answer at the parking deadline: no shard said the queue exists.
        return Ok(resp);
    }
    match (route.queue_id, status) {
        (Some(q), StatusCode::OK) => {
            if !(route.known && shard == route.target) {
                proxy.queues.learn(q, shard, route.home, route.realm);
            }
            Ok(resp)
        }
        (Some(q), StatusCode::BAD_REQUEST) => {
            proxy.queues.forget(q);
            Ok(resp)
        }
        (None, StatusCode::OK) if registration => {
            // Small and immediate: read it to learn the new queue's id (bounded in size and
            // time, like any answer head).
            let (parts, body) = resp.into_parts();
            let bytes = read_small(proxy, body).await?;
            if let Some(q) = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["queue_id"].as_str().map(str::to_string))
            {
                proxy.queues.learn(&q, shard, route.home, route.realm);
            }
            Ok(Response::from_parts(parts, Either::Right(Full::new(bytes))))
        }
        _ => Ok(resp),
    }
}

/// The `reload` move: Zulip's exact `BAD_EVENT_QUEUE_ID` answer (the client reloads and
/// re-registers on the realm's new shard), the queue forgotten, and a DELETE sent to the old
/// shard in the background, with the client's own credentials, so Tornado frees it. The answer
/// is held for `queues.reload_delay_secs`: kansas may learn of a routing change a moment before
/// Django does, and a client re-registering in that moment would be registered on the old shard
/// and have to reload a second time.
pub async fn reload(
    proxy: &std::sync::Arc<Proxy>,
    mut parts: http::request::Parts,
    peer: SocketAddr,
    old: ShardId,
    queue_id: &str,
) -> Response<ClientBody> {
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_forwarded_for(&mut parts.headers, peer.ip());
    reload_prepared(proxy, parts, old, queue_id).await
}

/// [`reload`] for a request head already made ready for a shard.
async fn reload_prepared(
    proxy: &std::sync::Arc<Proxy>,
    mut parts: http::request::Parts,
    old: ShardId,
    queue_id: &str,
) -> Response<ClientBody> {
    proxy.queues.forget(queue_id);
    proxy.metrics.queues.reload_moves.inc();
    // Sent as clients send it: `queue_id` in a form-encoded body.
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("queue_id", queue_id)
        .finish();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if let Ok(path) = PathAndQuery::try_from(parts.uri.path()) {
        let uri = upstream_uri(proxy, old, path);
        let mut delete = Request::new(upstream::full(Bytes::from(form)));
        *delete.method_mut() = Method::DELETE;
        *delete.uri_mut() = uri;
        *delete.headers_mut() = parts.headers;
        let (proxy, queue_id) = (proxy.clone(), queue_id.to_string());
        tokio::spawn(async move {
            let shard = proxy.shard_name(old).to_string();
            match attempt(&proxy, old, delete).await {
                Ok(r) => tracing::info!(
                    shard,
                    queue_id,
                    status = r.status().as_u16(),
                    "realm moved: old queue deleted"
                ),
                Err(e) => {
                    tracing::warn!(shard, queue_id, error = %e, "realm moved: could not delete the old queue")
                }
            }
        });
    }
    let body = serde_json::json!({
        "result": "error",
        "msg": format!("Bad event queue ID: {queue_id}"),
        "code": "BAD_EVENT_QUEUE_ID",
        "queue_id": queue_id,
    });
    if !proxy.reload_delay.is_zero() {
        tokio::time::sleep(proxy.reload_delay).await;
    }
    json_response(StatusCode::BAD_REQUEST, &body.to_string()).map(Either::Right)
}

/// Marks an answer kansas made itself (not a shard's), so the queue map never learns from it.
#[derive(Debug, Clone, Copy)]
struct OwnAnswer;

/// What a GET still parked at its deadline gets: Zulip's normal empty events result for its
/// queue (clients simply poll again), or `503` when so configured or when it names no queue.
fn deadline_answer(answer: TimeoutAnswer, uri: &Uri) -> Result<Response<ClientBody>, ProxyError> {
    match (answer, super::decide::queue_id(uri.query())) {
        (TimeoutAnswer::EmptyEvents, Some(queue_id)) => {
            let body = serde_json::json!({
                "result": "success", "msg": "", "events": [], "queue_id": queue_id,
            });
            let mut resp: Response<Full<Bytes>> = json_response(StatusCode::OK, &body.to_string());
            resp.extensions_mut().insert(OwnAnswer);
            Ok(resp.map(Either::Right))
        }
        _ => Err(ProxyError::ParkTimeout),
    }
}
