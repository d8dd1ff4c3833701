//! The pooled HTTP/1.1 client to the shards, one try of a request with it ([`attempt`]), and the
//! classification of its failures. One keep-alive pool serves every shard (keyed by address);
//! connections use TCP_NODELAY and the configured connect timeout.

use std::error::Error as StdError;
use std::io;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, Request, Response, Uri};
use http_body_util::{Either, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::{ClientBody, Watched};
use super::headers;
use super::Proxy;
use crate::error::ProxyError;
use crate::limits::out_of_fds;
use crate::logging::throttle::Throttle;
use crate::routing::ShardId;

/// What a request sends upstream: the client's body (bounded, streamed), nothing, or a body
/// kansas has read already (a `DELETE`'s form, to find its `queue_id`).
pub type UpstreamBody = Either<Limited<Incoming>, Either<Empty<Bytes>, Full<Bytes>>>;

/// No body.
pub fn empty() -> UpstreamBody {
    Either::Right(Either::Left(Empty::new()))
}

/// A body already read.
pub fn full(bytes: Bytes) -> UpstreamBody {
    Either::Right(Either::Right(Full::new(bytes)))
}

/// The shared upstream client.
pub type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// At most one line per this interval for a failure that can repeat at request rate.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How long an idle pooled connection to a shard is kept.
const POOL_IDLE: Duration = Duration::from_secs(50);

/// Builds the upstream client.
pub fn client(connect_timeout: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(usize::MAX)
        .build(connector)
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
pub(crate) fn log_failure(
    proxy: &Proxy,
    shard: ShardId,
    kind: ProxyError,
    e: &dyn std::fmt::Display,
) {
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

/// Maps a client error (before the response head) to what went wrong, and whose fault it is:
/// the shard's (down, or answering badly), the client's (its body failed on the way), or
/// kansas's own (out of descriptors).
pub fn classify(err: &hyper_util::client::legacy::Error) -> ProxyError {
    // Below a "user body" error lies the client's own request body failing.
    let mut client_body = false;
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ProxyError::BodyTooLarge;
        }
        if let Some(he) = e.downcast_ref::<hyper::Error>() {
            if he.is_user() {
                client_body = true;
            } else if client_body && he.is_incomplete_message() {
                return ProxyError::ClientClosed;
            } else if he.is_parse() && !client_body {
                // Two Content-Lengths, garbage, too many headers, a head too large: the shard
                // is up and answered, badly.
                return ProxyError::BadShardResponse;
            }
        }
        if let Some(ioe) = e.downcast_ref::<io::Error>() {
            if client_body {
                return client_body_error(ioe);
            }
            if out_of_fds(ioe) {
                return ProxyError::OutOfFds;
            }
            if err.is_connect() {
                return match ioe.kind() {
                    io::ErrorKind::ConnectionRefused => ProxyError::UpstreamRefused,
                    io::ErrorKind::TimedOut => ProxyError::UpstreamConnectTimeout,
                    _ => ProxyError::UpstreamConnect,
                };
            }
        }
        source = e.source();
    }
    if client_body {
        ProxyError::BadRequestBody
    } else if err.is_connect() {
        ProxyError::UpstreamConnect
    } else {
        ProxyError::UpstreamClosed
    }
}

/// The client's request body failed while it streamed to the shard: the client went away, or
/// sent a body that is not valid HTTP (a bad chunk size).
fn client_body_error(e: &io::Error) -> ProxyError {
    use io::ErrorKind::*;
    match e.kind() {
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => {
            ProxyError::ClientClosed
        }
        _ => ProxyError::BadRequestBody,
    }
}
