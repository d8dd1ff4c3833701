//! The event-path engine (issue 13, `docs/engine.md`): kansas's own HTTP/1 connection handling
//! on top of the I/O-free framing core [`crate::h1`], built so that a connection that waits holds
//! no buffer. Chosen with `proxy.engine = "kansas"` (the hyper path in [`crate::proxy`] serves
//! otherwise); both make the same decisions through the same shared state ([`Proxy`]).
//!
//! The pieces: the per-thread buffer pool ([`pool`]); reading one request head without holding
//! a buffer while idle ([`head`]); the record a request keeps ([`record`]); the client's body
//! ([`body`]) and what is left of a body by its framing ([`framed`]); the per-thread pool of idle shard connections ([`upstream`]) and one try at a
//! shard ([`shard`]); relaying an answer ([`relay`]); a request's route and forwarding
//! ([`forward`], [`get`]); a client connection's loop ([`conn`]). Each serving thread owns its
//! pools (no locks); values are moved in and out between awaits, so futures stay `Send`.

pub mod body;
pub mod conn;
pub mod forward;
pub mod framed;
pub mod get;
pub mod head;
pub mod pool;
pub mod record;
pub mod relay;
pub mod shard;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::h1::Limits;
use crate::proxy::Proxy;

pub use shard::Stop;

/// Waits until `stream` is readable. Polled through `poll_read_ready`, so a waiting
/// connection stores no waiter (tokio's `readable()` future is 152 bytes); each socket has one
/// task, so the one waker it keeps is enough.
pub async fn readable(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await
}

/// Reads into `buf`'s spare capacity. A read that returns fewer bytes than it asked for has
/// emptied the socket (epoll(7)), so tokio's cached read readiness is cleared then, without a
/// syscall: the next wait sleeps until new bytes come (each arrival is a new edge) instead of
/// waking at once for a read that would block. That read is the one syscall it saves per
/// request and side; a read that fills the buffer leaves the readiness set.
pub fn read_some(stream: &tokio::net::TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let asked = buf.capacity() - buf.len();
    let n = stream.try_read_buf(buf)?;
    if n > 0 && n < asked {
        let _ = stream.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(std::io::Error::from(std::io::ErrorKind::WouldBlock))
        });
    }
    Ok(n)
}

/// One non-blocking `MSG_PEEK` of a byte: 1 when bytes wait, 0 at EOF, `WouldBlock` when
/// nothing is there yet. Through `try_io` when the caller wants tokio's readiness cleared on
/// `WouldBlock`.
pub fn peek(stream: &tokio::net::TcpStream) -> std::io::Result<usize> {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    recv(
        stream.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)
}

/// Waits until `stream` is writable (see [`readable`]).
pub async fn writable(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    std::future::poll_fn(|cx| stream.poll_write_ready(cx)).await
}

/// What every connection of the engine shares: the proxy's state, the framing limits, and each
/// shard's address (resolved once at start when it can be).
pub struct Engine {
    pub proxy: Arc<Proxy>,
    pub limits: Limits,
    addrs: Vec<Option<SocketAddr>>,
}

impl Engine {
    /// The engine for `proxy`, with request heads up to `max_header_bytes`.
    pub fn new(proxy: Arc<Proxy>, max_header_bytes: usize) -> Arc<Engine> {
        use std::net::ToSocketAddrs;
        let addrs = (0..proxy.shard_count())
            .map(|id| {
                let address = proxy.shard_authority(id).as_str();
                address.to_socket_addrs().ok().and_then(|mut a| a.next())
            })
            .collect();
        let limits = Limits {
            max_head_bytes: max_header_bytes,
            max_body_bytes: proxy.max_body_bytes(),
            ..Limits::default()
        };
        Arc::new(Engine {
            proxy,
            limits,
            addrs,
        })
    }

    /// Where shard `id` is connected: its address resolved at start, or again now.
    pub async fn addr(&self, id: usize) -> std::io::Result<SocketAddr> {
        if let Some(a) = self.addrs[id] {
            return Ok(a);
        }
        let name = self.proxy.shard_authority(id).as_str();
        tokio::net::lookup_host(name)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{name}: no address")))
    }

    /// Prepares the calling serving thread: its buffer pool's head size and its shard pool.
    pub fn init_thread(&self) {
        pool::set_large_size(self.limits.max_head_bytes);
        shard::init_thread(self.proxy.shard_count());
    }
}
