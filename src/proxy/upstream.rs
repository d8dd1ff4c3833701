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

use super::throttle::out_of_fds;
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
