//! A client connection on the engine (`docs/engine.md` §2): requests read and answered in
//! order until the client closes, asks to close, or the stream can no longer be trusted. Idle,
//! it holds the socket and a few flags: no buffer. A head must come whole within
//! `timeouts.client_header_secs` (also the idle keep-alive timeout, as on the hyper path); a
//! refused head gets its status (`h1::Refusal`) and the connection closes. Each request is
//! routed and forwarded ([`super::forward`]), then counted and logged as on the hyper path
//! (metrics, access line); kansas's own answers are written as bytes from the same table.
//! While the process drains, every answer closes its connection, and idle connections close
//! when `idle_close` fires.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::body::Streamed;
use super::forward::{self, Outcome};
use super::head::{HeadReader, ReadError};
use super::pool;
use super::record::Record;
use super::relay::{write_all, Relayed};
use super::Engine;
use crate::error::ProxyError;
use crate::h1::response::ToClient;
use crate::h1::{Framing, Refusal, RequestError, Version};
use crate::proxy::answers::Own;

thread_local! {
    /// Where the forwarded head is written before it is copied into its record.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight<'a>(&'a Engine);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.proxy.metrics().in_flight().dec();
    }
}

/// Serves one client connection until it ends; `open` (the connection's accounting) is
/// dropped with it.
pub async fn serve<T: Send>(
    engine: Arc<Engine>,
    client: TcpStream,
    peer: SocketAddr,
    idle_close: CancellationToken,
    open: T,
) {
    let _open = open;
    let mut reader = HeadReader::new();
    let header_timeout = engine.proxy.timeouts().client_header;
    loop {
        // Draining: an idle connection closes, one whose next request has begun to arrive is
        // served first (its answer closes it).
        if idle_close.is_cancelled() && !request_begun(&client, &reader) {
            return;
        }
        let next = reader.next(&client, &engine.limits, |head| {
            SCRATCH.with(|s| Record::new(head, peer.ip(), &mut s.borrow_mut()))
        });
        let read = tokio::select! {
            r = tokio::time::timeout(header_timeout, next) => r,
            () = idle_close.cancelled(), if !idle_close.is_cancelled() => continue,
        };
        let rec = match read {
            Ok(Ok(rec)) => rec,
            Ok(Err(ReadError::Refused(refusal))) => {
                // Boxed, like every rare step here: the task is as large as its largest state.
                Box::pin(refuse(&engine, &client, refusal)).await;
                return Box::pin(linger(client)).await;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "client connection closed");
                return;
            }
            Err(_elapsed) => {
                tracing::debug!(%peer, "client connection timed out reading the request head");
                return;
            }
        };
        match one(&engine, &client, &mut reader, rec).await {
            Next::Keep => {}
            Next::Close => return,
            Next::Linger => return Box::pin(linger(client)).await,
        }
    }
}

/// Whether the client has begun to send a request: bytes kept by the reader, or waiting in the
/// socket (one non-blocking peek).
fn request_begun(client: &TcpStream, reader: &HeadReader) -> bool {
    reader.pending() > 0 || matches!(super::peek(client), Ok(n) if n > 0)
}

/// What follows a request on its connection.
enum Next {
    /// The next request.
    Keep,
    /// Close now.
    Close,
    /// Close after reading what the client still sends (see [`linger`]).
    Linger,
}

/// How long, and how much, a connection closed with unread request bytes is read before the
/// close (nginx's lingering close): closing with unread bytes resets the connection, and a
/// reset can destroy the answer just written before the client reads it.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Ends the connection after an answer that left request bytes unread: the sending side is
/// shut, then what the client still sends is read and dropped, up to [`LINGER_BYTES`] within
/// [`LINGER_TIME`].
async fn linger(client: TcpStream) {
    use std::os::fd::AsRawFd;
    // On the descriptor: the socket stays registered with the reactor (`into_std` and back
    // would deregister and register it again).
    let _ = nix::sys::socket::shutdown(client.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while read < LINGER_BYTES {
            if super::readable(&client).await.is_err() {
                return;
            }
            match drop_some(&client) {
                Ok(0) => return,
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// Reads and drops what the client has sent (a stack buffer: nothing is held across a wait).
fn drop_some(client: &TcpStream) -> std::io::Result<usize> {
    let mut sink = [0u8; 4096];
    client.try_read(&mut sink)
}

/// Answers a refused head (its status, `Connection: close`); the connection then closes.
async fn refuse(engine: &Engine, client: &TcpStream, refusal: Refusal) {
    let as_proxy_error = match refusal.error {
        RequestError::MissingHost => Some(ProxyError::MissingHost),
        RequestError::DuplicateHost | RequestError::HostMismatch => Some(ProxyError::InvalidHost),
        RequestError::MethodNotAllowed => Some(ProxyError::MethodNotAllowed),
        RequestError::BodyTooLarge => Some(ProxyError::BodyTooLarge),
        _ => None,
    };
    let own = match as_proxy_error {
        Some(e) => {
            engine.proxy.metrics().error(e);
            e.own()
        }
        None => {
            let status = http::StatusCode::from_u16(refusal.status())
                .unwrap_or(http::StatusCode::BAD_REQUEST);
            let body = serde_json::json!({
                "result": "error", "msg": refusal.error.to_string(), "code": "BAD_REQUEST",
            });
            Own::json(status, &body)
        }
    };
    engine.proxy.metrics().unrouted(own.status.as_u16());
    let id = crate::proxy::headers::new_request_id_bytes();
    crate::logging::access::log(&crate::logging::access::Access {
        method: "-",
        path: "-",
        realm: "-",
        shard: "",
        status: own.status.as_u16(),
        duration_ms: 0.0,
        request_id: std::str::from_utf8(&id).unwrap_or("-"),
    });
    let mut out = pool::take(pool::SMALL);
    own.write(&id, true, &mut out);
    let _ = write_all(client, &out).await;
    pool::give(out);
}

/// One request, start to finish; whether the connection can carry another.
async fn one(
    engine: &Arc<Engine>,
    client: &TcpStream,
    reader: &mut HeadReader,
    rec: Record,
) -> Next {
    let proxy = &engine.proxy;
    proxy.metrics().in_flight().inc();
    let _in_flight = InFlight(engine);
    // What the client allows; whether the process drains is read when the answer is written.
    let to = ToClient {
        request_id: &rec.request_id,
        version: rec.version,
        keep_alive: rec.keep_alive,
    };
    let mut body = (rec.framing != Framing::Empty).then(|| {
        Streamed::new(
            client,
            reader,
            rec.framing,
            proxy.max_body_bytes(),
            rec.expect_continue,
        )
    });
    let outcome = match &rec.realm {
        Err(e) => Outcome::Failed {
            shard: None,
            error: *e,
        },
        Ok(realm) => {
            // Boxed: only a request being forwarded needs this space, not an idle connection.
            let forwarding = Box::pin(forward::forward(
                engine,
                client,
                &rec,
                realm,
                body.as_mut(),
                &to,
            ));
            forwarding.await
        }
    };
    let body_done = body.as_ref().is_none_or(Streamed::is_done);
    let answered = match outcome {
        Outcome::Relayed {
            shard,
            status,
            relayed,
        } => Some((
            Some(shard),
            status,
            relayed == (Relayed::Done { keep: true }),
        )),
        // Boxed: a relayed answer, the common case, needs none of this space.
        outcome => Box::pin(finish(engine, client, &rec, outcome, &to, body_done)).await,
    };
    let Some((shard, status, keep)) = answered else {
        return Next::Close;
    };
    account(engine, &rec, shard, status);
    match (keep, body_done) {
        (true, true) => Next::Keep,
        (_, false) => Next::Linger,
        (false, true) => Next::Close,
    }
}

/// Answers what kansas answers itself; returns the shard, the status and whether the
/// connection may carry another request (none when the client left unanswered).
async fn finish(
    engine: &Engine,
    client: &TcpStream,
    rec: &Record,
    outcome: Outcome,
    to: &ToClient<'_>,
    body_done: bool,
) -> Option<(Option<crate::routing::ShardId>, u16, bool)> {
    // Draining is read now, not when the request came: a long-poll answered after the drain
    // began closes its connection.
    let may_keep =
        to.keep_alive && !engine.proxy.is_draining() && body_done && rec.version == Version::Http11;
    let (shard, own, keep) = match outcome {
        Outcome::ClientLeft { .. } => return None,
        Outcome::Relayed {
            shard,
            status,
            relayed,
        } => {
            let keep = relayed == (Relayed::Done { keep: true });
            return Some((Some(shard), status, keep));
        }
        Outcome::Own { shard, own } => (shard, own, may_keep),
        Outcome::Failed { shard, error } => {
            engine.proxy.metrics().error(error);
            // The client's own body failed: what follows it cannot be framed.
            let trusted = !matches!(
                error,
                ProxyError::BadRequestBody | ProxyError::BodyTooLarge | ProxyError::ClientClosed
            );
            (shard, error.own(), may_keep && trusted)
        }
    };
    let sent = answer(client, rec, &own, keep).await;
    Some((shard, own.status.as_u16(), sent && keep))
}

/// Writes kansas's own answer; false when the client is gone.
async fn answer(client: &TcpStream, rec: &Record, own: &Own, keep: bool) -> bool {
    let mut out = pool::take(pool::SMALL);
    own.write(&rec.request_id, !keep, &mut out);
    let sent = write_all(client, &out).await.is_ok();
    pool::give(out);
    sent
}

/// Counts the request and writes its access line (as the hyper path's handler does).
fn account(engine: &Engine, rec: &Record, shard: Option<crate::routing::ShardId>, status: u16) {
    let proxy = &engine.proxy;
    let elapsed = rec.started.elapsed();
    let shard_name = match shard {
        Some(id) => {
            proxy
                .metrics()
                .shard(id)
                .observe(status, elapsed.as_secs_f64());
            proxy.shard_name(id)
        }
        None => {
            proxy.metrics().unrouted(status);
            ""
        }
    };
    crate::logging::access::log(&crate::logging::access::Access {
        method: rec.method(),
        path: rec.path(),
        realm: rec.realm.as_deref().unwrap_or("-"),
        shard: shard_name,
        status,
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        request_id: rec.request_id_str(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a waiting long-poll's connection costs beyond its sockets: the connection task's
    /// future and the forwarding future boxed while a request is in flight.
    #[tokio::test]
    async fn the_futures_a_waiting_long_poll_holds_are_small() {
        let config =
            crate::config::parse("[[shards]]\nname = \"a\"\naddress = \"127.0.0.1:9\"\n").unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new(&config.routing));
        let proxy = Arc::new(crate::proxy::Proxy::new(&config, metrics));
        let engine = Engine::new(proxy, 16_384);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let conn = serve(engine.clone(), client, addr, CancellationToken::new(), ());
        let conn_size = std::mem::size_of_val(&conn);
        let raw = b"GET /json/events?queue_id=q HTTP/1.1\r\nHost: r\r\n\r\n";
        let mut storage = [httparse::EMPTY_HEADER; crate::h1::MAX_HEADERS];
        let Ok(crate::h1::request::Parsed::Complete(head)) =
            crate::h1::request::parse(raw, &mut storage, &engine.limits)
        else {
            panic!("a head")
        };
        let rec = Record::new(&head, addr.ip(), &mut Vec::new());
        let stream = TcpStream::connect(addr).await.unwrap();
        let to = ToClient {
            request_id: b"x",
            version: Version::Http11,
            keep_alive: true,
        };
        let fwd = forward::forward(&engine, &stream, &rec, "r", None, &to);
        let fwd_size = std::mem::size_of_val(&fwd);
        eprintln!("connection future {conn_size} B, forwarding future {fwd_size} B");
        // What they were when this was written (docs/engine.md §6): 760 and 1,248 B. A larger
        // one is memory every waiting long-poll pays: box the new state, or shrink it.
        assert!(conn_size <= 768, "connection future {conn_size} B");
        assert!(fwd_size <= 1_280, "forwarding future {fwd_size} B");
    }
}
