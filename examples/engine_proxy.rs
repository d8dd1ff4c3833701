//! A measurement, not a product (issue 13, step 2): the smallest proxy built from the engine's
//! first pieces (`kansas::engine`: buffer pool, head reader, upstream pool) and the framing core
//! (`kansas::h1`), to measure early what a waiting long-poll costs and the CPU per request
//! against nginx, before the engine is wired into kansas (`docs/engine.md`). One upstream, no
//! routing, no parking; bodies by `Content-Length` only (anything else closes); keep-alive on
//! both sides; one current-thread runtime per core, each with its own pools; jemalloc with the
//! project's settings (`.cargo/config.toml`). A waiting long-poll holds its task, its two
//! sockets and the forwarded head it sent: no buffer. Measured (4,000 long-polls, see
//! `docs/engine.md` §6): 1.65 KB each (was 10–11.5 KB: two pool buffers held by a wait that a
//! reused upstream connection's stale readiness woke at once, and the task wrapped twice).
//!
//!   cargo run --release --example engine_proxy -- 127.0.0.1:18082 127.0.0.1:18084 [THREADS]
//!
//! Measured as `benches/proxy.sh` part 3 does (RSS under load minus idle, over the established
//! upstream connections). The first measurement (docs/engine.md) put an nginx in front because
//! kansas-load then sent absolute-form targets whose authority differed from the Host, which
//! `h1` refuses (`host-mismatch`); it now sends origin-form, as nginx does, so it can target
//! this proxy directly. The connection's future size is printed at the first connection.
//! `ENGINE_PROXY_STATS=SECONDS` prints every SECONDS the RSS beside the live heap bytes and
//! their count by size class (a counting wrapper around jemalloc; one relaxed load per
//! allocation when off): what a waiting long-poll holds, seen directly.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::task::{ready, Poll};
use std::time::Duration;

use kansas::engine::head::HeadReader;
use kansas::engine::pool;
use kansas::engine::upstream::{connect, Reuse, Upstream, UpstreamPool};
use kansas::h1::forward::{client_request_id, write_request_head};
use kansas::h1::response::{self, ToClient};
use kansas::h1::{Framing, Limits, Version, MAX_HEADERS};
use nix::sys::socket::{recv, MsgFlags};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[global_allocator]
static ALLOCATOR: mem::Counting = mem::Counting;

const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
const MAX_IDLE: usize = 1024;

thread_local! {
    static UPSTREAMS: RefCell<UpstreamPool> = RefCell::new(UpstreamPool::new(1, MAX_IDLE, IDLE_TIMEOUT));
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || io::Error::other("usage: engine_proxy LISTEN UPSTREAM [THREADS]");
    let listen: SocketAddr = args
        .next()
        .ok_or_else(usage)?
        .parse()
        .map_err(|_| usage())?;
    let upstream: SocketAddr = args
        .next()
        .ok_or_else(usage)?
        .parse()
        .map_err(|_| usage())?;
    let threads = match args.next() {
        Some(n) => n.parse().map_err(|_| usage())?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    if let Some(secs) = std::env::var("ENGINE_PROXY_STATS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        std::thread::spawn(move || mem::report_every(Duration::from_secs_f64(secs)));
    }
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let listener = listener.try_clone()?;
            Ok(std::thread::spawn(move || serve(listener, upstream)))
        })
        .collect::<io::Result<_>>()?;
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("a serving thread panicked"))??;
    }
    Ok(())
}

#[path = "common/alloc_stats.rs"]
mod mem;

/// One serving thread: its runtime, its accept loop, its pool sweep.
fn serve(listener: std::net::TcpListener, upstream: SocketAddr) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        tokio::spawn(async {
            loop {
                tokio::time::sleep(IDLE_TIMEOUT / 2).await;
                UPSTREAMS.with(|p| p.borrow_mut().sweep(Instant::now()));
            }
        });
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let conn = connection(stream, peer.ip(), upstream);
            static SHOWN: std::sync::Once = std::sync::Once::new();
            SHOWN.call_once(|| {
                eprintln!(
                    "a connection's future: {} bytes",
                    std::mem::size_of_val(&conn)
                )
            });
            // Spawned as it is: wrapped in `async move { conn.await }`, the task would hold
            // the future twice (the captured value and the awaited one), +1 KiB per task.
            tokio::spawn(conn);
        }
    })
}

/// What the forwarded request needs after its head was read.
struct Record {
    head: Box<[u8]>,
    body: u64,
    version: Version,
    keep_alive: bool,
    to_head: bool,
    request_id: Box<[u8]>,
}

/// One client connection: requests in order, until it closes.
async fn connection(mut client: TcpStream, peer: IpAddr, upstream: SocketAddr) -> io::Result<()> {
    let limits = Limits::default();
    let mut reader = HeadReader::new();
    loop {
        let record = reader
            .next(&client, &limits, |head| {
                let framing = match head.framing {
                    Framing::Empty => 0,
                    Framing::Length(n) => n,
                    _ => return None,
                };
                let new_id;
                let id = match client_request_id(head.headers) {
                    Some(id) => id,
                    None => {
                        new_id = format!("{:032x}", fastrand::u128(..));
                        new_id.as_bytes()
                    }
                };
                let mut out = Vec::with_capacity(head.head_len + 96);
                write_request_head(head, peer, id, &mut out);
                Some(Record {
                    head: out.into_boxed_slice(),
                    body: framing,
                    version: head.version,
                    keep_alive: head.keep_alive,
                    to_head: head.method == "HEAD",
                    request_id: id.into(),
                })
            })
            .await;
        let Ok(Some(record)) = record else {
            return Ok(());
        };
        let body = reader.take_pending();
        let Some(keep) = exchange(&mut client, &record, body, upstream, &limits).await? else {
            return Ok(());
        };
        if !keep {
            return Ok(());
        }
    }
}

/// Sends the request and relays the answer; `Some(keep_alive)`, or `None` when the client left
/// or the exchange failed (the connection closes).
async fn exchange(
    client: &mut TcpStream,
    record: &Record,
    body: Option<Box<[u8]>>,
    upstream: SocketAddr,
    limits: &Limits,
) -> io::Result<Option<bool>> {
    // A task is as large as its largest state, waiting included: connecting, sending and
    // relaying run boxed, allocated only while they run (584-byte connection future, not 1088).
    let mut up = match UPSTREAMS.with(|p| p.borrow_mut().checkout(0, Instant::now())) {
        Some(up) => up,
        None => Box::pin(connect(upstream, 0, Duration::from_secs(5))).await?,
    };
    let mut sent = Box::pin(send(&mut up, client, record, body.as_deref())).await;
    if sent.is_err() && up.reused && record.body == 0 {
        up = Box::pin(connect(upstream, 0, Duration::from_secs(5))).await?;
        sent = Box::pin(send(&mut up, client, record, None)).await;
    }
    sent?;
    if !wait_answer(&up.stream, client).await? {
        return Ok(None);
    }
    Box::pin(relay(up, client, record, limits)).await
}

/// Waiting: until the shard's answer is readable (`true`) or the client left (`false`), holding
/// no buffer and no waiter of its own (the sockets' `poll_read_ready` slots, not `readable()`
/// futures stored in the task). A client with bytes (a pipelined request) is not watched again.
async fn wait_answer(up: &TcpStream, client: &TcpStream) -> io::Result<bool> {
    let mut client_has_data = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = up.poll_read_ready(cx) {
            return Poll::Ready(r.map(|()| true));
        }
        while !client_has_data {
            if let Err(e) = ready!(client.poll_read_ready(cx)) {
                return Poll::Ready(Err(e));
            }
            // A peek through `try_io`, so "nothing there" clears the readiness (and the next
            // `poll_read_ready` registers the waker).
            let mut b = [0u8; 1];
            let peek = client.try_io(Interest::READABLE, || {
                recv(
                    client.as_raw_fd(),
                    &mut b,
                    MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)
            });
            match peek {
                Ok(0) => return Poll::Ready(Ok(false)),
                Ok(_) => client_has_data = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(Ok(false)),
            }
        }
        Poll::Pending
    })
    .await
}

/// Writes the forwarded head and the body (what was read with the head, then the rest).
async fn send(
    up: &mut Upstream,
    client: &mut TcpStream,
    record: &Record,
    start: Option<&[u8]>,
) -> io::Result<()> {
    up.stream.write_all(&record.head).await?;
    let mut left = record.body;
    if let Some(start) = start {
        let n = start.len().min(left as usize);
        up.stream.write_all(&start[..n]).await?;
        left -= n as u64;
    }
    while left > 0 {
        client.readable().await?;
        let mut buf = pool::take(pool::SMALL);
        let got = client.try_read_buf(&mut buf);
        let n = match got {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => Ok(n.min(left as usize)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        };
        let written = match n {
            Ok(n) => up.stream.write_all(&buf[..n]).await.map(|_| n),
            Err(e) => Err(e),
        };
        pool::give(buf);
        left -= written? as u64;
    }
    Ok(())
}

/// Reads the shard's answer into a borrowed buffer and relays it; returns the connection to the
/// pool when clean. No buffer is held until the answer's first bytes are read: a wake-up with
/// nothing to read (a stale or spurious readiness) gives the buffer back before waiting again.
async fn relay(
    mut up: Upstream,
    client: &mut TcpStream,
    record: &Record,
    limits: &Limits,
) -> io::Result<Option<bool>> {
    let mut buf = loop {
        let mut buf = pool::take(pool::SMALL);
        match up.stream.try_read_buf(&mut buf) {
            Ok(0) => {
                pool::give(buf);
                return Ok(None);
            }
            Ok(_) => break buf,
            Err(e) => {
                pool::give(buf);
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(e);
                }
                up.stream.readable().await?;
            }
        }
    };
    let mut out = pool::take(pool::SMALL);
    let result = relay_in(&mut up, client, record, limits, &mut buf, &mut out).await;
    pool::give(buf);
    pool::give(out);
    let (keep, reuse) = match result {
        Ok(Some((keep, true))) => (Some(keep), Reuse::Clean),
        Ok(Some((keep, false))) => (Some(keep), Reuse::Close),
        Ok(None) => (None, Reuse::Close),
        Err(e) => return Err(e),
    };
    UPSTREAMS.with(|p| p.borrow_mut().checkin(up, reuse, Instant::now()));
    Ok(keep)
}

/// Relays one answer whose first bytes are in `buf`.
async fn relay_in(
    up: &mut Upstream,
    client: &mut TcpStream,
    record: &Record,
    limits: &Limits,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<Option<(bool, bool)>> {
    let to = ToClient {
        request_id: &record.request_id,
        version: record.version,
        keep_alive: record.keep_alive,
    };
    let mut skip = 0;
    let mut unparsed = true;
    let (head_end, length, client_framing, shard_keep) = loop {
        if !unparsed {
            if buf.len() == buf.capacity() {
                return Ok(None);
            }
            match up.stream.try_read_buf(buf) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    up.stream.readable().await?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        unparsed = false;
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match response::parse(&buf[skip..], &mut storage, limits, record.to_head) {
            Ok(response::Parsed::Partial) => continue,
            Ok(response::Parsed::Interim(n)) => skip += n,
            Ok(response::Parsed::Complete(head)) => {
                let length = match head.framing {
                    Framing::Empty => 0,
                    Framing::Length(n) => n,
                    _ => return Ok(None),
                };
                let f = response::write_client_head(&head, &to, out);
                break (skip + head.head_len, length, f, head.shard_keep_alive);
            }
            Err(_) => return Ok(None),
        }
    };
    let have = (buf.len() - head_end) as u64;
    let now = have.min(length) as usize;
    out.extend_from_slice(&buf[head_end..head_end + now]);
    client.write_all(out).await?;
    let mut left = length - now as u64;
    let extra = have > length;
    while left > 0 {
        buf.clear();
        match up.stream.try_read_buf(buf) {
            Ok(0) => return Ok(None),
            Ok(n) if n as u64 > left => return Ok(None),
            Ok(n) => {
                client.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => up.stream.readable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(Some((client_framing.keep_alive, shard_keep && !extra)))
}
