//! A queue that is not where a request was sent. A queue the map does not know, of a realm
//! that drains, may be on any of the realm's resident shards: when the first answers
//! `BAD_EVENT_QUEUE_ID`, the others are asked in order. A known queue whose shard no longer
//! serves the realm gets the `reload` answer: Zulip's `BAD_EVENT_QUEUE_ID`, once, and a DELETE
//! of the queue on that shard.

use std::net::SocketAddr;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};

use super::answers;
use super::body::ClientBody;
use super::forward::{read_small, FromShard, Route};
use super::headers;
use super::upstream;
use super::upstream::{attempt, upstream_uri};
use super::Proxy;
use crate::error::ProxyError;
use crate::routing::ShardId;

/// Whether the request names a queue the map does not know: it may live on another of the
/// realm's resident shards.
pub(super) fn may_be_elsewhere(route: &Route<'_>) -> bool {
    !route.known && route.queue_id.is_some()
}

/// The realm's other resident shards kansas can reach, in order, when the request names a
/// queue the map does not know, the shard answered 400 and the realm drains; else none (the
/// usual case, decided without looking at the routing).
pub(super) fn other_resident_shards(
    proxy: &Proxy,
    route: &Route<'_>,
    resp: &Response<ClientBody>,
) -> Vec<ShardId> {
    others_for(proxy, route, resp.status().as_u16())
}

/// [`other_resident_shards`] for both engines, the first shard having answered `status`.
pub(crate) fn others_for(proxy: &Proxy, route: &Route<'_>, status: u16) -> Vec<ShardId> {
    if !may_be_elsewhere(route) || status != 400 {
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
/// the request there and says which shard answered); the first that has the queue answers, and
/// its shard is returned with its answer. When none has it (or none answers), the first shard's
/// answer stands.
///
/// Boxed where it is called: a forward future lives as long as its long-poll and is as large
/// as its largest await, and this one (another shard's whole exchange) is rarely needed.
pub(super) async fn ask_others<F>(
    proxy: &Proxy,
    answered: (ShardId, Response<ClientBody>),
    others: Vec<ShardId>,
    mut ask: impl FnMut(ShardId) -> F,
) -> FromShard
where
    F: std::future::Future<Output = FromShard>,
{
    let (mut shard, mut resp) = answered;
    for other in others {
        let bad = match bad_queue(proxy, resp).await {
            Ok(Ok(bad)) => bad,
            Ok(Err(answer)) => return (shard, Ok(answer)),
            Err(e) => return (shard, Err(e)),
        };
        resp = match ask(other).await {
            (from, Ok(r)) if r.status() != StatusCode::BAD_REQUEST => {
                shard = from;
                r
            }
            _ => bad.response(),
        };
    }
    (shard, Ok(resp))
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
pub(super) async fn reload_prepared(
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
    if !proxy.reload_delay.is_zero() {
        tokio::time::sleep(proxy.reload_delay).await;
    }
    answers::bad_event_queue(queue_id).into_response()
}
