//! One proxied request, start to finish: route by realm, rewrite headers, forward with a
//! deadline on the response head, stream the answer back, then log and count it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Request, Response, Uri};
use http_body::Body as _;
use http_body_util::{Either, Empty, Full, Limited};
use hyper::body::Incoming;

use super::headers::{self, X_REQUEST_ID};
use super::upstream::{classify, UpstreamBody};
use super::Proxy;
use crate::error::ProxyError;
use crate::routing::{normalize_host, HostError, ShardId};

/// What the client receives: the shard's streamed answer or kansas's own.
pub type ClientBody = Either<Incoming, Full<Bytes>>;

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
        Err(e) => (None, Err(*e)),
        Ok(realm) => match proxy.route(realm) {
            None => (None, Err(ProxyError::NoShard)),
            Some(shard) => (
                Some(shard),
                forward(&proxy, req, peer, shard, &request_id).await,
            ),
        },
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
    tracing::info!(
        target: "kansas::access",
        method = %method,
        path = %path,
        realm = realm.as_deref().unwrap_or("-"),
        shard = shard_name,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = request_id.to_str().unwrap_or("-"),
    );
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

/// Sends the request to `shard` and returns its answer, headers cleaned, body streaming.
async fn forward(
    proxy: &Proxy,
    req: Request<Incoming>,
    peer: SocketAddr,
    shard: ShardId,
    request_id: &http::HeaderValue,
) -> Result<Response<ClientBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let limit = proxy.limits.max_body_bytes;
    if let Some(len) = body.size_hint().exact() {
        if len > limit {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    let body: UpstreamBody = if body.is_end_stream() {
        Either::Right(Empty::new())
    } else {
        Either::Left(Limited::new(body, limit as usize))
    };

    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
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

    let upstream = Request::from_parts(parts, body);
    let resp = match tokio::time::timeout(
        proxy.timeouts.upstream_response,
        proxy.client.request(upstream),
    )
    .await
    {
        Err(_elapsed) => return Err(ProxyError::UpstreamTimeout),
        Ok(Err(e)) => {
            let kind = classify(&e);
            tracing::warn!(
                shard = proxy.shard_name(shard),
                error = %e,
                kind = kind.kind(),
                "upstream request failed"
            );
            return Err(kind);
        }
        Ok(Ok(resp)) => resp,
    };
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Either::Left(body)))
}
