//! One proxied request, start to finish: route by realm, forward (see `forward`), then log and
//! count it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::ClientBody;
use super::decide::{self, Decision};
use super::elsewhere;
use super::forward::{self, Payload, Route};
use super::headers::{self, X_REQUEST_ID};
use super::Proxy;
use crate::error::ProxyError;
use crate::routing::{normalize_host, HostError, ShardId};

/// Decrements the in-flight gauge however the request ends (including client disconnects).
struct InFlight<'a>(&'a Proxy);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.in_flight().dec();
    }
}

/// Serves one request. Never fails: every error becomes an answer from the error table.
pub async fn handle(
    proxy: Arc<Proxy>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<ClientBody>, Infallible> {
    let start = Instant::now();
    proxy.metrics.in_flight().inc();
    let _in_flight = InFlight(&proxy);
    let request_id = headers::request_id(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_string();

    let realm = realm_of(&req);
    let (shard, result) = match &realm {
        // A tunnel, or a request a shard would echo back: never forwarded.
        _ if method == Method::CONNECT || method == Method::TRACE => {
            (None, Err(ProxyError::MethodNotAllowed))
        }
        Err(e) => (None, Err(*e)),
        Ok((realm, host)) => route(&proxy, req, peer, realm, host, &request_id).await,
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            proxy.metrics.error(e);
            e.response()
        }
    };
    resp.headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    if proxy.draining.load(std::sync::atomic::Ordering::Relaxed) {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }

    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let shard_name = match shard {
        Some(id) => {
            proxy
                .metrics
                .shard(id)
                .observe(status, elapsed.as_secs_f64());
            proxy.shard_name(id)
        }
        None => {
            proxy.metrics.unrouted(status);
            ""
        }
    };
    crate::logging::access::log(&crate::logging::access::Access {
        method: method.as_str(),
        path: &path,
        realm: realm.as_ref().map_or("-", |(r, _)| r.as_str()),
        shard: shard_name,
        status,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        request_id: request_id.to_str().unwrap_or("-"),
    });
    Ok(resp)
}

/// Routes and forwards a request for a valid realm; returns the answer and the shard it came
/// from (none when the request was refused before a shard was chosen).
async fn route(
    proxy: &Arc<Proxy>,
    req: Request<Incoming>,
    peer: SocketAddr,
    realm: &str,
    host: &HeaderValue,
    request_id: &HeaderValue,
) -> (Option<ShardId>, Result<Response<ClientBody>, ProxyError>) {
    let (mut parts, body) = req.into_parts();
    parts.headers.insert(header::HOST, host.clone());
    let mut queue_id = decide::queue_id(parts.uri.query());
    let payload = if parts.method == Method::DELETE && queue_id.is_none() {
        // Zulip's clients send a DELETE's queue_id in a form-encoded body.
        // Boxed, like every rare wait here: the handler's future is kept for the connection's
        // life, at the size of its largest await.
        let reading = Box::pin(read_body(proxy, body));
        let bytes = match reading.await {
            Ok(bytes) => bytes,
            Err(e) => return (None, Err(e)),
        };
        queue_id = decide::queue_id(std::str::from_utf8(&bytes).ok());
        Payload::Buffered(bytes)
    } else {
        Payload::Stream(body)
    };
    let snapshot = proxy.snapshot.load();
    let decision = decide::decide(
        &snapshot,
        &proxy.queues,
        realm,
        queue_id.as_deref(),
        parts.method == Method::GET,
        proxy.default_move_policy,
        crate::routing::residency::now_epoch(),
    );
    match decision {
        Decision::NoShard => (None, Err(no_shard(&snapshot, realm))),
        Decision::Reload { old, queue_id } => {
            // Boxed: it may wait (`queues.reload_delay_secs`), and only a rare request needs
            // that space.
            let reloading = Box::pin(elsewhere::reload(proxy, parts, peer, old, queue_id));
            (Some(old), Ok(reloading.await))
        }
        Decision::Forward {
            target,
            home,
            known,
            moved,
        } => {
            drop(snapshot);
            if moved {
                proxy.metrics.queues.drain_moves.inc();
            }
            let route = Route {
                target,
                home,
                known,
                realm,
                queue_id: queue_id.as_deref(),
            };
            // Boxed: hyper moves the handler's future into place for every request and
            // keeps that space for the connection's life; forwarding state (2.2 KB) is
            // only needed while a request is in flight. Boxed in its own statement: a
            // temporary in an `.await` statement is kept in the future across the await
            // (the handler's future was 3.7 KB with the forward future inside, 1.4 KB now).
            let forwarding = Box::pin(forward::forward(
                proxy, parts, payload, peer, route, request_id,
            ));
            let (used, answer) = forwarding.await;
            (Some(used), answer)
        }
    }
}

/// No shard serves the realm: logged when its route names a shard the config file lacks.
pub(crate) fn no_shard(snapshot: &crate::routing::Snapshot, realm: &str) -> ProxyError {
    if let Some(d) = snapshot
        .route(realm)
        .filter(|d| !snapshot.reachable(d.shard))
    {
        tracing::error!(
            realm,
            shard = snapshot.shard(d.shard).name,
            "the realm routes to a shard the config file does not have"
        );
    }
    ProxyError::NoShard
}

/// Reads a request body whole (a `DELETE`'s small form), within the body limit and the
/// client timeout.
async fn read_body(proxy: &Proxy, body: Incoming) -> Result<Bytes, ProxyError> {
    let limit = proxy.limits.max_body_bytes;
    if body.size_hint().exact().is_some_and(|len| len > limit) {
        return Err(ProxyError::BodyTooLarge);
    }
    let collect = http_body_util::Limited::new(body, limit as usize).collect();
    match tokio::time::timeout(proxy.timeouts.client_header, collect).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ProxyError::BodyTooLarge),
        _ => Err(ProxyError::BadRequest),
    }
}

/// The realm: the `Host` header (or the request target's authority), normalized.
/// Also the Host the shard gets: exactly the one routed on (two Host headers are refused, so
/// kansas and the shard can never read different ones; an absolute-form target's authority
/// becomes the Host).
fn realm_of(req: &Request<Incoming>) -> Result<(String, HeaderValue), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (raw, value) = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(ProxyError::InvalidHost),
        (Some(v), None) => (v.to_str().map_err(|_| ProxyError::InvalidHost)?, v.clone()),
        (None, _) => match req.uri().authority() {
            Some(a) => (
                a.as_str(),
                HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::InvalidHost)?,
            ),
            None => return Err(ProxyError::MissingHost),
        },
    };
    let realm = normalize_host(raw).map_err(|e| match e {
        HostError::Missing => ProxyError::MissingHost,
        HostError::Invalid => ProxyError::InvalidHost,
    })?;
    Ok((realm, value))
}
