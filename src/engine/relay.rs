//! The Relaying state (`docs/engine.md` §2): the shard's answer body to the client, as it
//! comes. The client's head (written when the response head was parsed) goes out with the body
//! bytes that came with it, in one `write` for a small answer. The body is framed by the
//! shard's length, its chunks (decoded and re-chunked, trailers dropped) or its close; the
//! client gets a length, chunks, or (HTTP/1.0) the connection's close. Between reads no buffer
//! is held. The shard connection goes back to the thread's pool only when the answer was whole,
//! persistent and followed by nothing. A shard that fails after the head has gone out can only
//! be answered by closing the client connection (as hyper and nginx do).

use std::io;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::framed::Left;
use super::pool;
use super::shard::{checkin, Got};
use super::upstream::Reuse;
use super::Engine;
use crate::error::ProxyError;
use crate::h1::chunked::{encode_chunk, LAST_CHUNK};
use crate::h1::Framing;

/// Most trailer bytes read (and dropped) after a shard's chunked body.
const MAX_TRAILER: usize = 65_536;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// The whole answer was sent; `keep`: the client connection may carry another request.
    Done { keep: bool },
    /// The shard failed after the head went out: the client connection must close.
    Cut,
    /// The client went away.
    ClientGone,
}

/// Relays `got`'s body (and head) to `client`.
pub async fn relay(engine: &Engine, client: &TcpStream, got: Got) -> Relayed {
    let Got {
        up,
        buf,
        body_start,
        info,
        mut out,
        client: framing,
        ..
    } = got;
    let encode = framing.framing == Framing::Chunked;
    let mut left = Left::new(info.framing, u64::MAX, MAX_TRAILER);
    let first = left.take(&buf[body_start..], &mut out, encode);
    let mut extra = matches!(first, Ok(used) if used < buf.len() - body_start);
    pool::give(buf);
    let mut failed = first.is_err();
    let timeout = engine.proxy.timeouts().upstream_response;
    while !failed && !left.is_done() {
        if !out.is_empty() {
            if write_all(client, &out).await.is_err() {
                pool::give(out);
                return Relayed::ClientGone;
            }
            out.clear();
        }
        // Nothing held while the shard's next bytes are on their way.
        pool::give(std::mem::take(&mut out));
        let ready =
            tokio::time::timeout_at(Instant::now() + timeout, super::readable(&up.stream)).await;
        out = pool::take(pool::SMALL);
        if !matches!(ready, Ok(Ok(()))) {
            failed = true;
            break;
        }
        let mut buf = pool::take(pool::SMALL);
        match super::read_some(&up.stream, &mut buf) {
            Ok(0) if matches!(left, Left::UntilClose) => left = Left::Done,
            Ok(0) => failed = true,
            Ok(n) => match left.take(&buf[..n], &mut out, encode) {
                Ok(used) => extra |= used < n,
                Err(_) => failed = true,
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => failed = true,
        }
        pool::give(buf);
    }
    if failed {
        pool::give(out);
        engine.proxy.metrics().error(ProxyError::UpstreamBodyFailed);
        tracing::warn!(
            shard = engine.proxy.shard_name(up.shard),
            "shard failed after its response head: closing the client connection"
        );
        return Relayed::Cut;
    }
    if encode {
        out.extend_from_slice(LAST_CHUNK);
    }
    let sent = write_all(client, &out).await;
    pool::give(out);
    let reuse = if info.shard_keep_alive && !extra {
        Reuse::Clean
    } else {
        Reuse::Close
    };
    checkin(up, reuse);
    match sent {
        Ok(()) => Relayed::Done {
            keep: framing.keep_alive,
        },
        Err(_) => Relayed::ClientGone,
    }
}

/// Reads a short answer's body whole (at most `max` bytes, within the response timeout): a
/// registration's, or a `400` that may name a queue another shard has. The connection goes
/// back to the pool when the answer was clean; `None` when the body failed or was too large.
pub async fn read_whole(engine: &Engine, got: Got, max: usize) -> Option<(Got, Vec<u8>)> {
    if matches!(got.info.framing, Framing::Length(n) if n > max as u64) {
        return None;
    }
    let mut left = Left::new(got.info.framing, max as u64, MAX_TRAILER);
    let mut body = Vec::new();
    let start = &got.buf[got.body_start..];
    let mut extra = left.take(start, &mut body, false).ok()? < start.len();
    let deadline = Instant::now() + engine.proxy.timeouts().upstream_response;
    while !left.is_done() {
        let ready = tokio::time::timeout_at(deadline, super::readable(&got.up.stream)).await;
        if !matches!(ready, Ok(Ok(()))) {
            return None;
        }
        let mut chunk = [0u8; 4096];
        match got.up.stream.try_read(&mut chunk) {
            Ok(0) if matches!(left, Left::UntilClose) => left = Left::Done,
            Ok(0) => return None,
            Ok(n) => extra |= left.take(&chunk[..n], &mut body, false).ok()? < n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
        if body.len() > max {
            return None;
        }
    }
    let reusable = got.info.shard_keep_alive && !extra;
    Some((got_with_reuse(got, reusable), body))
}

/// Marks a fully read answer's connection (kept in [`Got`] until its answer is written).
fn got_with_reuse(mut got: Got, reusable: bool) -> Got {
    got.info.shard_keep_alive = reusable;
    got.body_start = got.buf.len();
    got.info.framing = Framing::Empty;
    got
}

/// Writes an answer read whole: the client's head (as written from the shard's), then the body
/// in the client's framing; the shard connection goes back when it was clean.
pub async fn write_whole(client: &TcpStream, got: Got, body: &[u8]) -> Relayed {
    let Got {
        up,
        buf,
        info,
        mut out,
        client: framing,
        ..
    } = got;
    pool::give(buf);
    checkin(
        up,
        if info.shard_keep_alive {
            Reuse::Clean
        } else {
            Reuse::Close
        },
    );
    match framing.framing {
        Framing::Chunked => {
            encode_chunk(body, &mut out);
            out.extend_from_slice(LAST_CHUNK);
        }
        Framing::Empty => {}
        _ => out.extend_from_slice(body),
    }
    let sent = write_all(client, &out).await;
    pool::give(out);
    match sent {
        Ok(()) => Relayed::Done {
            keep: framing.keep_alive,
        },
        Err(_) => Relayed::ClientGone,
    }
}

/// Writes all of `bytes` to a socket shared by reference.
pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => super::writable(stream).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
