//! Forwarding a request to its shard: the upstream request head (headers cleaned,
//! `X-Forwarded-For` appended, request id), sent (one try: `upstream::attempt`); for GETs, parking while the shard is down, replaying when it is back, and following Zulip's
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

use super::answers;
use super::body::ClientBody;
use super::elsewhere::{ask_others, may_be_elsewhere, other_resident_shards, reload_prepared};
use super::headers::{self, X_REQUEST_ID};
use super::upstream::{self, attempt, upstream_uri, UpstreamBody};
use super::Proxy;
use crate::config::TimeoutAnswer;
use crate::error::ProxyError;
use crate::parking::Released;
use crate::routing::ShardId;

/// The header Tornado uses to send a user-split realm's request to another port.
const X_ACCEL_REDIRECT: &str = "x-accel-redirect";
/// Largest queue-registration answer read to learn its `queue_id`.
const MAX_REGISTRATION_BODY: usize = 64 * 1024;

/// Where a request goes and what the queue map should learn from it (both engines).
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

/// An answer, or why there is none, and the shard it came from: the one that answered (after a
/// redirect, the redirect's; after an unknown queue was found on another resident shard, that
/// one's) or, on a failure, the one that failed.
pub type FromShard<T = Response<ClientBody>> = (ShardId, Result<T, ProxyError>);

/// Sends the request; returns the answer, headers cleaned, body streaming, and the shard it
/// came from.
pub async fn forward(
    proxy: &std::sync::Arc<Proxy>,
    mut parts: http::request::Parts,
    payload: Payload,
    peer: SocketAddr,
    route: Route<'_>,
    request_id: &HeaderValue,
) -> FromShard {
    let limit = proxy.limits.max_body_bytes;
    if let Payload::Stream(body) = &payload {
        if body.size_hint().exact().is_some_and(|len| len > limit) {
            return (route.target, Err(ProxyError::BodyTooLarge));
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
        return forward_get(proxy, parts, route, path_and_query).await;
    }
    send(proxy, parts, payload, &route, path_and_query).await
}

/// A bodiless GET, its head ready for the shard: [`get`], then the reload answer for a known
/// queue the shard redirected away, or the realm's other resident shards asked for an unknown
/// queue, and the queue map taught from the answer.
async fn forward_get(
    proxy: &std::sync::Arc<Proxy>,
    mut parts: http::request::Parts,
    route: Route<'_>,
    path_and_query: PathAndQuery,
) -> FromShard {
    let registration = route.queue_id.is_none() && is_registration(&parts.uri);
    // A known queue lives on its shard: a redirect from there means the shard no longer
    // serves the user (its realm stopped being resident there an instant after kansas
    // decided), so the queue gets no more events and the client must re-register.
    let follow = !route.known;
    // The head's headers live in `get` (which may send them again) while the poll waits,
    // and come back for the rare exchange after it: one copy per waiting long-poll.
    let headers = std::mem::take(&mut parts.headers);
    let (shard, got) = get(proxy, route.target, parts.uri, headers, follow).await;
    let (resp, headers) = match got {
        Ok(got) => got,
        Err(e) => return (shard, Err(e)),
    };
    parts.headers = headers;
    if let (false, Some(q)) = (follow, route.queue_id) {
        if resp.headers().contains_key(X_ACCEL_REDIRECT) {
            parts.uri = Uri::from(path_and_query);
            let reloading = Box::pin(reload_prepared(proxy, parts, route.target, q));
            return (shard, Ok(reloading.await));
        }
    }
    let others = other_resident_shards(proxy, &route, &resp);
    let (shard, resp) = if others.is_empty() {
        (shard, resp)
    } else {
        let headers = &parts.headers;
        let asking = Box::pin(ask_others(proxy, (shard, resp), others, |other| {
            let uri = upstream_uri(proxy, other, path_and_query.clone());
            let headers = headers.clone();
            async move {
                let (shard, got) = get(proxy, other, uri, headers, true).await;
                (shard, got.map(|(r, _)| r))
            }
        }));
        match asking.await {
            (shard, Ok(resp)) => (shard, resp),
            failed => return failed,
        }
    };
    (
        shard,
        learn_from_get(proxy, &route, registration, shard, resp).await,
    )
}

/// Anything but a bodiless GET: sent once (a DELETE for a queue the shard does not know is
/// asked of the realm's other resident shards), never parked or redirected.
async fn send(
    proxy: &Proxy,
    parts: http::request::Parts,
    payload: Payload,
    route: &Route<'_>,
    path_and_query: PathAndQuery,
) -> FromShard {
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
    let resp = match attempt(proxy, route.target, Request::from_parts(parts, body)).await {
        Ok(resp) => resp,
        Err(e) => return (route.target, Err(e)),
    };
    let others = other_resident_shards(proxy, route, &resp);
    let (shard, resp) = match (retry, headers, others.is_empty()) {
        (Some(bytes), Some(headers), false) => {
            let asking = Box::pin(ask_others(proxy, (route.target, resp), others, |other| {
                let mut req = Request::new(upstream::full(bytes.clone()));
                *req.method_mut() = Method::DELETE;
                *req.uri_mut() = upstream_uri(proxy, other, path_and_query.clone());
                *req.headers_mut() = headers.clone();
                async move { (other, attempt(proxy, other, req).await) }
            }));
            match asking.await {
                (shard, Ok(resp)) => (shard, resp),
                failed => return failed,
            }
        }
        _ => (route.target, resp),
    };
    (shard, learn_from_send(proxy, &method, route, resp))
}

/// Refuses an `X-Accel-Redirect` on anything but a GET, and forgets a queue that a DELETE
/// removed or a shard did not know.
fn learn_from_send(
    proxy: &Proxy,
    method: &Method,
    route: &Route<'_>,
    resp: Response<ClientBody>,
) -> Result<Response<ClientBody>, ProxyError> {
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

/// A GET: tried while the shard is up; parked while it is down; replayed when released; answered
/// at the park deadline if the shard does not come back. An `X-Accel-Redirect` to a configured
/// shard is followed once (with the same parking there) when `follow`, else returned. The
/// answer comes with the request's headers, given back, and the shard it came from.
async fn get(
    proxy: &Proxy,
    mut shard: ShardId,
    mut uri: Uri,
    headers: HeaderMap,
    follow: bool,
) -> FromShard<(Response<ClientBody>, HeaderMap)> {
    let deadline = Instant::now() + proxy.parking.timeout;
    let mut seq = None;
    let mut redirected = false;
    loop {
        let park = proxy.park(shard);
        if park.is_up() || !proxy.parking.enabled {
            let mut req = Request::new(upstream::empty());
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
            match attempt(proxy, shard, req).await {
                Ok(resp) => match resp.headers().get(X_ACCEL_REDIRECT) {
                    None => return (shard, Ok((resp, headers))),
                    Some(_) if !follow => return (shard, Ok((resp, headers))),
                    Some(_) if redirected => {
                        tracing::error!(
                            shard = proxy.shard_name(shard),
                            "second X-Accel-Redirect in a row: not followed"
                        );
                        return (shard, Err(ProxyError::BadRedirect));
                    }
                    Some(to) => match redirect_target(proxy, shard, to) {
                        Ok(next) => {
                            (shard, uri) = next;
                            redirected = true;
                            seq = None;
                            proxy.metrics.queues.redirects.inc();
                            continue;
                        }
                        Err(e) => return (shard, Err(e)),
                    },
                },
                Err(e) if e.shard_down() && proxy.parking.enabled => park.mark_down(e.kind()),
                Err(e) => return (shard, Err(e)),
            }
        }
        let Ok(ticket) = park.park(seq) else {
            return (shard, Err(ProxyError::ParkOverflow));
        };
        seq = Some(ticket.seq());
        if ticket.wait(deadline).await == Released::Deadline {
            let answer = deadline_answer(proxy.parking.timeout_answer, &uri);
            return (shard, answer.map(|r| (r, headers)));
        }
    }
}

/// Resolves `/internal/tornado/<port><path>?<query>` to a configured shard and its URI.
fn redirect_target(
    proxy: &Proxy,
    from: ShardId,
    to: &HeaderValue,
) -> Result<(ShardId, Uri), ProxyError> {
    let (target, path) = redirect_to(proxy, from, to.as_bytes())?;
    let path = PathAndQuery::try_from(path).map_err(|_| {
        tracing::error!(shard = proxy.shard_name(from), location = ?to, why = "not a valid path", "X-Accel-Redirect not followed");
        ProxyError::BadRedirect
    })?;
    Ok((target, upstream_uri(proxy, target, path)))
}

/// Where an `X-Accel-Redirect` value sends a request (both engines): a configured shard, by the
/// Tornado port in `/internal/tornado/<port>`, and the path and query after it (visible ASCII,
/// starting with `/`).
pub(crate) fn redirect_to<'v>(
    proxy: &Proxy,
    from: ShardId,
    to: &'v [u8],
) -> Result<(ShardId, &'v str), ProxyError> {
    let bad = |why: &str| {
        tracing::error!(shard = proxy.shard_name(from), location = %String::from_utf8_lossy(to), why, "X-Accel-Redirect not followed");
        ProxyError::BadRedirect
    };
    let to = std::str::from_utf8(to).map_err(|_| bad("not text"))?;
    let rest = to
        .strip_prefix("/internal/tornado/")
        .ok_or_else(|| bad("not /internal/tornado/"))?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let port: u16 = rest[..digits].parse().map_err(|_| bad("no port"))?;
    let path = &rest[digits..];
    if !path.starts_with('/') {
        return Err(bad("no path after the port"));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("not a valid path"));
    }
    let Some(target) = proxy.snapshot.load().shard_by_port(port) else {
        tracing::error!(
            shard = proxy.shard_name(from),
            port,
            "X-Accel-Redirect to a Tornado port that is not a configured shard"
        );
        return Err(ProxyError::RedirectUnknownPort);
    };
    Ok((target, path))
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
    if answers::is_own(&resp) {
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

/// What a GET still parked at its deadline gets: Zulip's normal empty events result for its
/// queue (clients simply poll again), or `503` when so configured or when it names no queue.
fn deadline_answer(answer: TimeoutAnswer, uri: &Uri) -> Result<Response<ClientBody>, ProxyError> {
    match (answer, super::decide::queue_id(uri.query())) {
        (TimeoutAnswer::EmptyEvents, Some(queue_id)) => {
            Ok(answers::empty_events(&queue_id).into_response())
        }
        _ => Err(ProxyError::ParkTimeout),
    }
}
