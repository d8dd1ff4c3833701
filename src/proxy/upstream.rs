//! The pooled HTTP/1.1 client to the shards and the classification of its failures. One
//! keep-alive pool serves every shard (keyed by address); connections use TCP_NODELAY and the
//! configured connect timeout.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::ProxyError;

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

/// Maps a client error (before the response head) to what went wrong.
pub fn classify(err: &hyper_util::client::legacy::Error) -> ProxyError {
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ProxyError::BodyTooLarge;
        }
        if let Some(ioe) = e.downcast_ref::<io::Error>() {
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
    if err.is_connect() {
        ProxyError::UpstreamConnect
    } else {
        ProxyError::UpstreamClosed
    }
}
