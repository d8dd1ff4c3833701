//! Forwarding a request to its shard: the upstream request head (headers cleaned,
//! `X-Forwarded-For` appended, request id), one attempt with a deadline on the response head;
//! for GETs, parking while the shard is down, replaying when it is back, and following Zulip's
//! `X-Accel-Redirect` (one hop, configured shards only); and teaching the queue map from the
//! answers.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{ClientBody, Watched};
use super::elsewhere::{ask_others, may_be_elsewhere, other_resident_shards, reload_prepared};
use super::headers::{self, X_REQUEST_ID};
use super::throttle::Throttle;
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
/// At most one line per this interval for a failure that can repeat at request rate.
const LOG_EVERY: Duration = Duration::from_secs(10);

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

/// Sends the request; returns the shard that answered (after a redirect, the redirect's; after
/// an unknown queue was found on another resident shard, that one's; on a failure, the one
/// that failed) and the answer, headers cleaned, body streaming.
pub async fn forward(
    proxy: &std::sync::Arc<Proxy>,
    parts: http::request::Parts,
    payload: Payload,
    peer: SocketAddr,
    route: Route<'_>,
    request_id: &HeaderValue,
) -> (ShardId, Result<Response<ClientBody>, ProxyError>) {
    let mut shard = route.target;
    let answer = forward_to(proxy, parts, payload, peer, route, request_id, &mut shard).await;
    (shard, answer)
}

/// [`forward`], with the shard it is using kept up to date in `final_shard` as it goes.
async fn forward_to(
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
        let others = other_resident_shards(proxy, &route, &resp);
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
    send(proxy, parts, payload, &route, path_and_query, final_shard).await
}

/// Anything but a bodiless GET: sent once (a DELETE for a queue the shard does not know is
/// asked of the realm's other resident shards), never parked or redirected.
async fn send(
    proxy: &Proxy,
    parts: http::request::Parts,
    payload: Payload,
    route: &Route<'_>,
    path_and_query: PathAndQuery,
    final_shard: &mut ShardId,
) -> Result<Response<ClientBody>, ProxyError> {
    let limit = proxy.limits.max_body_bytes;
    let method = parts.method.clone();
    let (body, retry): (UpstreamBody, Option<Bytes>) = match payload {
        Payload::Stream(b) if b.is_end_stream() => (upstream::empty(), Some(Bytes::new())),
        Payload::Stream(b) => (Either::Left(Limited::new(b, limit as usize)), None),
        Payload::Buffered(b) => (upstream::full(b.clone()), Some(b)),
    };
    // Kept only for a DELETE that may have to be sent to another resident shard.
    let retry = retry.filter(|_| method == Method::DELETE && may_be_elsewhere(route));
    let headers = retry.as_ref().map(|_| parts.headers.clone());
    let mut resp = attempt(proxy, route.target, Request::from_parts(parts, body)).await?;
    let others = other_resident_shards(proxy, route, &resp);
    if let (Some(bytes), Some(headers), false) = (retry, headers, others.is_empty()) {
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

/// Reads a small answer body whole (bounded in size, and in time like any answer head).
pub(super) async fn read_small(proxy: &Proxy, body: ClientBody) -> Result<Bytes, ProxyError> {
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
pub(super) fn upstream_uri(proxy: &Proxy, shard: ShardId, path_and_query: PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(proxy.shard_authority(shard).clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).expect("scheme, authority and path make a valid URI")
}

/// One try: the request to the shard, with the response-head deadline.
pub(super) async fn attempt(
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
            log_failure(proxy, shard, kind, &e);
            return Err(kind);
        }
        Ok(Ok(resp)) => resp,
    };
    let (mut parts, body) = resp.into_parts();
    if parts.headers.contains_key(header::TRANSFER_ENCODING)
        && parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        // Which one frames the body is ambiguous (a smuggling pattern): relaying the de-chunked
        // body under the shard's Content-Length would truncate it or run into the next answer.
        // The unread body is dropped, so the connection is closed, never reused.
        let e = "both Content-Length and Transfer-Encoding";
        log_failure(proxy, shard, ProxyError::BadShardResponse, &e);
        return Err(ProxyError::BadShardResponse);
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    let body = Watched::new(body, proxy.metrics.clone());
    Ok(Response::from_parts(parts, Either::Left(body)))
}

/// Logs a failed try: kansas's own shortage of descriptors and malformed shard answers at most
/// once per [`LOG_EVERY`] each (they can come thousands of times a second), the rest at debug.
fn log_failure(proxy: &Proxy, shard: ShardId, kind: ProxyError, e: &dyn std::fmt::Display) {
    static OUT_OF_FDS: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(LOG_EVERY));
    static BAD_ANSWER: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(LOG_EVERY));
    let name = proxy.shard_name(shard);
    match kind {
        ProxyError::OutOfFds => {
            if let Some(unlogged) = OUT_OF_FDS.tick() {
                tracing::error!(shard = name, error = %e, unlogged, "kansas is out of file descriptors: cannot connect to the shard, answering 503 (the shard is not marked down); raise the open-file limit or lower proxy.max_connections");
            }
        }
        ProxyError::BadShardResponse => {
            if let Some(unlogged) = BAD_ANSWER.tick() {
                tracing::warn!(shard = name, error = %e, unlogged, "shard sent a malformed response: answering 502 (the shard is not marked down)");
            }
        }
        _ => {
            tracing::debug!(shard = name, error = %e, kind = kind.kind(), "upstream request failed")
        }
    }
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
