//! Forwarding a request to its shard: the upstream request head (headers cleaned,
//! `X-Forwarded-For` appended, request id), one attempt with a deadline on the response head,
//! and, for GETs, parking while the shard is down and replaying when it is back.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{Either, Empty, Full, Limited};
use hyper::body::Incoming;
use std::net::SocketAddr;
use tokio::time::Instant;

use super::body::Watched;
use super::handler::ClientBody;
use super::headers::{self, X_REQUEST_ID};
use super::upstream::{classify, UpstreamBody};
use super::Proxy;
use crate::config::TimeoutAnswer;
use crate::error::{json_response, ProxyError};
use crate::parking::Released;
use crate::routing::ShardId;

/// Sends the request to `shard` and returns its answer, headers cleaned, body streaming.
pub async fn forward(
    proxy: &Proxy,
    req: Request<Incoming>,
    peer: SocketAddr,
    shard: ShardId,
    request_id: &HeaderValue,
) -> Result<Response<ClientBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let limit = proxy.limits.max_body_bytes;
    if body.size_hint().exact().is_some_and(|len| len > limit) {
        return Err(ProxyError::BodyTooLarge);
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = Uri::try_from(format!(
        "http://{}{}",
        proxy.shard_address(shard),
        path_and_query
    ))
    .map_err(|_| ProxyError::BadRequest)?;
    parts.version = http::Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_forwarded_for(&mut parts.headers, peer.ip());
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), request_id.clone());

    // Only a bodiless GET is safe to hold and send again.
    let replayable = parts.method == Method::GET && body.is_end_stream() && proxy.parking.enabled;
    if replayable {
        return park_and_replay(proxy, shard, parts.uri, parts.headers).await;
    }
    let body: UpstreamBody = if body.is_end_stream() {
        Either::Right(Empty::new())
    } else {
        Either::Left(Limited::new(body, limit as usize))
    };
    attempt(proxy, shard, Request::from_parts(parts, body)).await
}

/// One try: the request to the shard, with the response-head deadline.
async fn attempt(
    proxy: &Proxy,
    shard: ShardId,
    upstream: Request<UpstreamBody>,
) -> Result<Response<ClientBody>, ProxyError> {
    let sent = tokio::time::timeout(
        proxy.timeouts.upstream_response,
        proxy.client.request(upstream),
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
/// at the park deadline if the shard does not come back.
async fn park_and_replay(
    proxy: &Proxy,
    shard: ShardId,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response<ClientBody>, ProxyError> {
    let park = proxy.park(shard);
    let deadline = Instant::now() + proxy.parking.timeout;
    let mut seq = None;
    loop {
        if park.is_up() {
            let mut req = Request::new(Either::Right(Empty::new()));
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
            match attempt(proxy, shard, req).await {
                Err(e) if e.shard_down() => park.mark_down(e.kind()),
                other => return other,
            }
        }
        let ticket = park.park(seq).map_err(|_| ProxyError::ParkOverflow)?;
        seq = Some(ticket.seq());
        if ticket.wait(deadline).await == Released::Deadline {
            return deadline_answer(proxy.parking.timeout_answer, &uri);
        }
    }
}

/// What a GET still parked at its deadline gets: Zulip's normal empty events result for its
/// queue (clients simply poll again), or `503` when so configured or when it names no queue.
fn deadline_answer(answer: TimeoutAnswer, uri: &Uri) -> Result<Response<ClientBody>, ProxyError> {
    let queue_id = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "queue_id")
        .map(|(_, v)| v.into_owned());
    match (answer, queue_id) {
        (TimeoutAnswer::EmptyEvents, Some(queue_id)) => {
            let body = serde_json::json!({
                "result": "success", "msg": "", "events": [], "queue_id": queue_id,
            });
            let resp: Response<Full<Bytes>> = json_response(StatusCode::OK, &body.to_string());
            Ok(resp.map(Either::Right))
        }
        _ => Err(ProxyError::ParkTimeout),
    }
}
