//! The per-thread pool of idle keep-alive connections to the shards. Owned by one serving
//! thread (no locks, no boxed futures: [`UpstreamPool::checkout`] is a synchronous pop, and
//! connecting is the caller's own `async fn`, [`connect`]). Bounded: at most
//! `max_idle_per_shard` idle connections per shard (one returned to a full shard is closed;
//! hyper-util's pool kept every one, see `benches/RESULTS.md`), none kept past `idle_timeout`
//! (skipped at checkout, closed by [`UpstreamPool::sweep`]). A connection goes back only when
//! the caller says its exchange ended cleanly ([`Reuse::Clean`]: a complete, persistent answer
//! with nothing after it) **and** the socket has no unread byte and no EOF pending; the same
//! check runs at checkout, so a connection the shard closed while idle is never used, and it
//! clears tokio's stale read readiness, so a lent connection's `readable()` waits for new bytes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::routing::ShardId;

/// A connection to a shard, lent to one exchange.
#[derive(Debug)]
pub struct Upstream {
    pub stream: TcpStream,
    pub shard: ShardId,
    /// It came from the pool (it carried an exchange before): if it fails before any byte of
    /// the answer, a GET may be sent again on a fresh connection.
    pub reused: bool,
}

/// How an exchange on a connection ended, as the caller knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// The request went whole, the answer came whole and persistent, nothing after it.
    Clean,
    /// Anything else: cut, close-delimited, `Connection: close`, refused, abandoned.
    Close,
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// One thread's idle connections, by shard.
#[derive(Debug)]
pub struct UpstreamPool {
    idle: Vec<Vec<Idle>>,
    max_idle_per_shard: usize,
    idle_timeout: Duration,
}

impl UpstreamPool {
    pub fn new(shards: usize, max_idle_per_shard: usize, idle_timeout: Duration) -> UpstreamPool {
        UpstreamPool {
            idle: (0..shards).map(|_| Vec::new()).collect(),
            max_idle_per_shard,
            idle_timeout,
        }
    }

    /// The most recently returned idle connection to `shard` that is still fresh and clean;
    /// stale or unclean ones met on the way are closed. `None`: connect a new one.
    pub fn checkout(&mut self, shard: ShardId, now: Instant) -> Option<Upstream> {
        let timeout = self.idle_timeout;
        let stack = self.idle.get_mut(shard)?;
        while let Some(idle) = stack.pop() {
            if now.saturating_duration_since(idle.since) < timeout && is_clean(&idle.stream) {
                return Some(Upstream {
                    stream: idle.stream,
                    shard,
                    reused: true,
                });
            }
        }
        None
    }

    /// Returns a connection after its exchange; whether it was kept (else it is closed).
    pub fn checkin(&mut self, conn: Upstream, reuse: Reuse, now: Instant) -> bool {
        let max = self.max_idle_per_shard;
        let Some(stack) = self.idle.get_mut(conn.shard) else {
            return false;
        };
        if reuse != Reuse::Clean || stack.len() >= max {
            return false;
        }
        stack.push(Idle {
            stream: conn.stream,
            since: now,
        });
        true
    }

    /// Closes every connection idle for `idle_timeout` or longer; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let timeout = self.idle_timeout;
        let mut closed = 0;
        for stack in &mut self.idle {
            let before = stack.len();
            // Oldest at the bottom: the stale ones are a prefix.
            let stale =
                stack.partition_point(|i| now.saturating_duration_since(i.since) >= timeout);
            stack.drain(..stale);
            closed += before - stack.len();
        }
        closed
    }

    /// Idle connections kept for `shard`.
    pub fn idle(&self, shard: ShardId) -> usize {
        self.idle.get(shard).map_or(0, Vec::len)
    }
}

/// Whether an idle connection has nothing to read and no EOF or error pending. The engine's
/// last read of an answer cleared tokio's cached readiness when it emptied the socket
/// (`engine::read_some`), so bytes or a FIN that came after set it again once the reactor saw
/// them: only then is a non-blocking `MSG_PEEK` made (through `try_io`, which also clears a
/// stale readiness when the peek would block), so a clean reuse costs no syscall. A FIN the reactor has not seen yet is the rare case the
/// caller's one retry on a new connection covers (as hyper-util's pool, which never peeks).
fn is_clean(stream: &TcpStream) -> bool {
    let peeked = stream.try_io(Interest::READABLE, || super::peek(stream));
    matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Connects to a shard (TCP_NODELAY) within `timeout`; a timeout is `io::ErrorKind::TimedOut`.
pub async fn connect(addr: SocketAddr, shard: ShardId, timeout: Duration) -> io::Result<Upstream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, "connecting to the shard timed out")
        })??;
    stream.set_nodelay(true)?;
    Ok(Upstream {
        stream,
        shard,
        reused: false,
    })
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
