//! One try of a request at a shard (`docs/engine.md` §2, the Forwarding and Waiting states):
//! a connection from the thread's pool or a new one, the finished request written in one
//! `write`, the client's body streamed after it when it has one, then the wait for the
//! response head holding **no buffer**: the shard's readiness, the client's (a client that
//! leaves ends the wait) and the response deadline. The head is read into a borrowed buffer,
//! validated by [`crate::h1::response`] (1xx dropped), and the client's head written at once
//! ([`Got`]). A pooled connection that fails before any byte of an answer is tried once more
//! on a new connection when the request can be sent again (the shard closed it as it was
//! taken); every failure is classified into the error table's kinds.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::task::{Context, Poll};

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::Streamed;
use super::pool;
use super::upstream::{connect, Reuse, Upstream, UpstreamPool};
use super::Engine;
use crate::error::ProxyError;
use crate::h1::framing::is;
use crate::h1::response::{self, ClientFraming, ToClient};
use crate::h1::{Framing, MAX_HEADERS};
use crate::limits::out_of_fds;
use crate::routing::ShardId;

/// How many idle connections each serving thread keeps per shard.
pub const MAX_IDLE_PER_SHARD: usize = 64;
/// How long an idle connection to a shard is kept (hyper-util's pool kept them as long).
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(50);

thread_local! {
    /// The calling serving thread's idle shard connections.
    static UPSTREAMS: RefCell<UpstreamPool> =
        RefCell::new(UpstreamPool::new(0, MAX_IDLE_PER_SHARD, IDLE_TIMEOUT));
}

/// Sizes the calling thread's upstream pool for `shards` shards.
pub fn init_thread(shards: usize) {
    UPSTREAMS
        .with(|p| *p.borrow_mut() = UpstreamPool::new(shards, MAX_IDLE_PER_SHARD, IDLE_TIMEOUT));
}

/// Closes the calling thread's connections idle past the timeout.
pub fn sweep_thread() -> usize {
    UPSTREAMS.with(|p| p.borrow_mut().sweep(Instant::now()))
}

/// Gives a connection back to the thread's pool (kept only when `reuse` is clean).
pub fn checkin(up: Upstream, reuse: Reuse) {
    UPSTREAMS.with(|p| p.borrow_mut().checkin(up, reuse, Instant::now()));
}

/// Why an exchange ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A failure with its place in the error table.
    Failed(ProxyError),
    /// The client went away: nothing to answer.
    ClientLeft,
}

impl From<ProxyError> for Stop {
    fn from(e: ProxyError) -> Stop {
        Stop::Failed(e)
    }
}

/// What the shard's response head said, besides the client's head written from it.
#[derive(Debug, Clone)]
pub struct Info {
    pub status: u16,
    /// How the shard frames the body.
    pub framing: Framing,
    /// Whether the shard keeps the connection open after this answer.
    pub shard_keep_alive: bool,
    /// Where the `X-Accel-Redirect` value is within [`Got::buf`], if the answer has one.
    pub redirect: Option<Range<usize>>,
}

/// A response head from a shard: the connection, the bytes read so far (the head, then the
/// body's start from `body_start`), and the client's head already written into `out`.
#[derive(Debug)]
pub struct Got {
    pub shard: ShardId,
    pub up: Upstream,
    pub buf: Vec<u8>,
    pub body_start: usize,
    pub info: Info,
    pub out: Vec<u8>,
    pub client: ClientFraming,
}

impl Got {
    /// The `X-Accel-Redirect` value, if any.
    pub fn redirect(&self) -> Option<&[u8]> {
        self.info.redirect.clone().map(|r| &self.buf[r])
    }

    /// Drops the answer unread: the connection is closed, the buffers go back.
    pub fn discard(self) {
        pool::give(self.buf);
        pool::give(self.out);
    }
}

/// A response head read from a shard (see [`Got`]).
struct Head {
    buf: Vec<u8>,
    body_start: usize,
    info: Info,
    out: Vec<u8>,
    client: ClientFraming,
}

/// A request ready to send: what writes the finished head (and a body read whole) into a
/// borrowed buffer, given back before the wait (so a waiting request holds none; a retry
/// writes it again), and the client's body to stream after it, if any.
pub struct Request<'r, 'c> {
    pub write: &'r (dyn Fn(&mut Vec<u8>) + Sync),
    pub body: Option<&'r mut Streamed<'c>>,
    /// A HEAD request: the answer has no body whatever its fields say.
    pub to_head: bool,
}

/// Sends `req` to `shard` and waits for the response head; `watch` is the client whose leaving
/// ends the wait (none for kansas's own requests).
pub async fn exchange(
    ctx: &Engine,
    shard: ShardId,
    mut req: Request<'_, '_>,
    watch: Option<&TcpStream>,
    to: &ToClient<'_>,
) -> Result<Got, Stop> {
    let mut pooled = UPSTREAMS.with(|p| p.borrow_mut().checkout(shard, Instant::now()));
    loop {
        let fresh = pooled.is_none();
        let mut up = match pooled.take() {
            Some(up) => up,
            // Boxed: connecting is rarer than reusing, and its future is large.
            None => Box::pin(open(ctx, shard)).await?,
        };
        match attempt(ctx, &mut up, &mut req, watch, to).await {
            Ok(h) => {
                return Ok(Got {
                    shard: up.shard,
                    up,
                    buf: h.buf,
                    body_start: h.body_start,
                    info: h.info,
                    out: h.out,
                    client: h.client,
                })
            }
            Err(Retry::Once(e)) if fresh || req.body.as_ref().is_some_and(|b| b.started()) => {
                return Err(e)
            }
            // The shard closed a pooled connection as it was taken: once more, on a new one.
            Err(Retry::Once(_)) => {}
            Err(Retry::Never(e)) => return Err(e),
        }
    }
}

/// A failed try, and whether a new connection may be tried.
enum Retry {
    /// Nothing came back on this connection: a pooled one may have been closed by the shard.
    Once(Stop),
    Never(Stop),
}

/// A new connection to `shard`, failures classified (and logged as the hyper path does).
async fn open(ctx: &Engine, shard: ShardId) -> Result<Upstream, ProxyError> {
    let timeout = ctx.proxy.timeouts().upstream_connect;
    let connected = match ctx.addr(shard).await {
        Ok(addr) => connect(addr, shard, timeout).await,
        Err(e) => Err(e),
    };
    connected.map_err(|e| {
        let kind = connect_error(&e);
        crate::proxy::log_failure(&ctx.proxy, shard, kind, &e);
        kind
    })
}

fn connect_error(e: &io::Error) -> ProxyError {
    if out_of_fds(e) {
        return ProxyError::OutOfFds;
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ProxyError::UpstreamRefused,
        io::ErrorKind::TimedOut => ProxyError::UpstreamConnectTimeout,
        _ => ProxyError::UpstreamConnect,
    }
}

/// One try on `up`.
async fn attempt(
    ctx: &Engine,
    up: &mut Upstream,
    req: &mut Request<'_, '_>,
    watch: Option<&TcpStream>,
    to: &ToClient<'_>,
) -> Result<Head, Retry> {
    let mut bytes = pool::take(pool::SMALL);
    (req.write)(&mut bytes);
    let written = up.stream.write_all(&bytes).await;
    pool::give(bytes);
    if written.is_err() {
        return Err(Retry::Once(ProxyError::UpstreamClosed.into()));
    }
    if let Some(body) = req.body.as_deref_mut() {
        // Boxed: a long-poll has no body, and a waiting one should not carry this space.
        Box::pin(body.send(ctx, &mut up.stream))
            .await
            .map_err(Retry::Never)?;
    }
    wait_head(ctx, up, watch, to, req.to_head).await
}

/// The Waiting state: no buffer until the shard's answer is readable.
async fn wait_head(
    ctx: &Engine,
    up: &Upstream,
    watch: Option<&TcpStream>,
    to: &ToClient<'_>,
    to_head: bool,
) -> Result<Head, Retry> {
    let deadline = Instant::now() + ctx.proxy.timeouts().upstream_response;
    let mut buf: Vec<u8> = Vec::new();
    let mut skip = 0;
    loop {
        // Nothing held while waiting, unless a head came in pieces (rare): then the buffer is
        // kept until it is whole.
        let first = buf.capacity() == 0;
        match wait_answer(&up.stream, watch, deadline).await {
            Waited::Readable => {}
            Waited::Failed if first => {
                return Err(Retry::Once(ProxyError::UpstreamClosed.into()));
            }
            Waited::Failed => {
                pool::give(buf);
                return Err(Retry::Never(ProxyError::UpstreamClosed.into()));
            }
            Waited::ClientLeft => {
                pool::give(buf);
                return Err(Retry::Never(Stop::ClientLeft));
            }
            Waited::Timeout => {
                pool::give(buf);
                return Err(Retry::Never(ProxyError::UpstreamTimeout.into()));
            }
        }
        if first {
            buf = pool::take(pool::SMALL);
        }
        if buf.len() == buf.capacity() {
            let mut larger = pool::take(ctx.limits.max_response_head_bytes + 1);
            larger.extend_from_slice(&buf);
            pool::give(std::mem::replace(&mut buf, larger));
        }
        match read_head_bytes(up, &mut buf) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => return Err(e),
        }
        match parse_head(ctx, &buf, &mut skip, to, to_head) {
            Ok(None) => continue,
            Ok(Some((info, body_start, out, client))) => {
                return Ok(Head {
                    buf,
                    body_start,
                    info,
                    out,
                    client,
                })
            }
            Err(e) => {
                pool::give(buf);
                crate::proxy::log_failure(&ctx.proxy, up.shard, ProxyError::BadShardResponse, &e);
                return Err(Retry::Never(ProxyError::BadShardResponse.into()));
            }
        }
    }
}

/// One read of a response head's bytes into `buf` (given back when the shard failed):
/// `Ok(false)` when nothing was there (the buffer given back if it held nothing yet).
fn read_head_bytes(up: &Upstream, buf: &mut Vec<u8>) -> Result<bool, Retry> {
    let failed = |buf: &mut Vec<u8>| {
        let first = buf.is_empty();
        pool::give(std::mem::take(buf));
        let e = Stop::Failed(ProxyError::UpstreamClosed);
        Err(if first {
            Retry::Once(e)
        } else {
            Retry::Never(e)
        })
    };
    match super::read_some(&up.stream, buf) {
        Ok(0) => failed(buf),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if buf.is_empty() {
                pool::give(std::mem::take(buf));
            }
            Ok(false)
        }
        Err(_) => failed(buf),
    }
}

type Parsed = (Info, usize, Vec<u8>, ClientFraming);

/// Parses the response head in `buf[*skip..]` (moving `skip` past 1xx answers); a complete one
/// gives its facts, where its body starts, and the client's head written.
fn parse_head(
    ctx: &Engine,
    buf: &[u8],
    skip: &mut usize,
    to: &ToClient<'_>,
    to_head: bool,
) -> Result<Option<Parsed>, crate::h1::ResponseError> {
    loop {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match response::parse(&buf[*skip..], &mut storage, &ctx.limits, to_head)? {
            response::Parsed::Partial => return Ok(None),
            response::Parsed::Interim(n) => *skip += n,
            response::Parsed::Complete(head) => {
                let redirect = head
                    .headers
                    .iter()
                    .find(|h| is(h, "x-accel-redirect"))
                    .map(|h| {
                        let start = h.value.as_ptr() as usize - buf.as_ptr() as usize;
                        start..start + h.value.len()
                    });
                let info = Info {
                    status: head.status,
                    framing: head.framing,
                    shard_keep_alive: head.shard_keep_alive,
                    redirect,
                };
                let mut out = pool::take(pool::SMALL);
                // Draining is read when the answer comes, not when the request came: a
                // long-poll answered after the drain began closes its connection (as hyper's
                // graceful shutdown does), so its client moves to the next generation.
                let to = ToClient {
                    keep_alive: to.keep_alive && !ctx.proxy.is_draining(),
                    ..*to
                };
                let client = response::write_client_head(&head, &to, &mut out);
                return Ok(Some((info, *skip + head.head_len, out, client)));
            }
        }
    }
}

/// Resolves only when the client has gone (EOF or an error); a client that sends more (a
/// pipelined request) is left alone: its bytes stay in the socket. Never resolves without one.
pub async fn client_left(client: Option<&TcpStream>) {
    let mut watch = client;
    std::future::poll_fn(|cx| match poll_client(&mut watch, cx) {
        true => Poll::Ready(()),
        false => Poll::Pending,
    })
    .await
}

/// Whether the watched client has gone; `watch` is cleared when it sent more (a pipelined
/// request: no longer watched). Registers for the client's next readiness otherwise. Polled,
/// not awaited, so a waiting request stores no future for it.
fn poll_client(watch: &mut Option<&TcpStream>, cx: &mut Context<'_>) -> bool {
    let Some(client) = *watch else {
        return false;
    };
    loop {
        match client.poll_read_ready(cx) {
            Poll::Pending => return false,
            Poll::Ready(Err(_)) => return true,
            Poll::Ready(Ok(())) => {}
        }
        // Through `try_io`, so "nothing there" clears the readiness (a raw peek would leave it
        // set, and the wait would spin).
        let peeked = client.try_io(Interest::READABLE, || super::peek(client));
        match peeked {
            Ok(0) => return true,
            Ok(_) => {
                *watch = None;
                return false;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return true,
        }
    }
}

/// How the wait for a shard's answer ended.
enum Waited {
    Readable,
    Failed,
    ClientLeft,
    Timeout,
}

/// Waits until `up` is readable, the watched client has left, or the deadline; stores only the
/// deadline's timer.
async fn wait_answer(up: &TcpStream, client: Option<&TcpStream>, deadline: Instant) -> Waited {
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    let mut watch = client;
    std::future::poll_fn(|cx| {
        match up.poll_read_ready(cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(Waited::Readable),
            Poll::Ready(Err(_)) => return Poll::Ready(Waited::Failed),
            Poll::Pending => {}
        }
        if poll_client(&mut watch, cx) {
            return Poll::Ready(Waited::ClientLeft);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Waited::Timeout),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
