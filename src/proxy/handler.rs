//! One proxied request, start to finish: route by realm, forward (see `forward`), then log and
//! count it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::body::Watched;
use super::decide::{self, Decision};
use super::forward::{self, Route};
use super::headers::{self, X_REQUEST_ID};
use super::Proxy;
use crate::error::ProxyError;
use crate::routing::{normalize_host, HostError};

/// What the client receives: the shard's streamed answer or kansas's own.
pub type ClientBody = Either<Watched, Full<Bytes>>;

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
    let mut shard = None;
    let result = match &realm {
        Err(e) => Err(*e),
        Ok(realm) => {
            let queue_id = decide::queue_id(req.uri().query());
            let decision = decide::decide(
                &proxy.snapshot.load(),
                &proxy.queues,
                realm,
                queue_id.as_deref(),
                req.method() == Method::GET,
                proxy.default_move_policy,
            );
            match (decision, queue_id.as_deref()) {
                (Decision::NoShard, _) => Err(ProxyError::NoShard),
                (Decision::Reload { old }, Some(q)) => {
                    shard = Some(old);
                    Ok(forward::reload(&proxy, req, peer, old, q))
                }
                (Decision::Reload { .. }, None) => unreachable!("reload needs a known queue"),
                (
                    Decision::Forward {
                        target,
                        home,
                        known,
                        moved,
                    },
                    q,
                ) => {
                    if moved {
                        proxy.metrics.queues.drain_moves.inc();
                    }
                    let route = Route {
                        target,
                        home,
                        known,
                        realm,
                        queue_id: q,
                    };
                    let mut final_shard = target;
                    // Boxed: hyper moves the handler's future into place for every request and
                    // keeps that space for the connection's life; forwarding state (3.7 KB) is
                    // only needed while a request is in flight.
                    let r = Box::pin(forward::forward(
                        &proxy,
                        req,
                        peer,
                        route,
                        &request_id,
                        &mut final_shard,
                    ))
                    .await;
                    shard = Some(final_shard);
                    r
                }
            }
        }
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            proxy.metrics.error(e);
            e.response().map(Either::Right)
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
        realm: realm.as_deref().unwrap_or("-"),
        shard: shard_name,
        status,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        request_id: request_id.to_str().unwrap_or("-"),
    });
    Ok(resp)
}

/// The realm: the `Host` header (or the request target's authority), normalized.
fn realm_of(req: &Request<Incoming>) -> Result<String, ProxyError> {
    let raw = match req.headers().get(header::HOST) {
        Some(v) => v.to_str().map_err(|_| ProxyError::InvalidHost)?,
        None => match req.uri().authority() {
            Some(a) => a.as_str(),
            None => return Err(ProxyError::MissingHost),
        },
    };
    normalize_host(raw).map_err(|e| match e {
        HostError::Missing => ProxyError::MissingHost,
        HostError::Invalid => ProxyError::InvalidHost,
    })
}
