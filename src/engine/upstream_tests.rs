//! Tests of the upstream pool on real sockets (127.0.0.1:0): a listener stands in for the
//! shard, and its accepted ends show whether kansas's end was kept or closed. Instants are
//! passed in, so the idle timeout is tested without waiting.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(50);

/// A shard: its address, and its ends of the connections kansas opens, in order.
struct Shard {
    listener: TcpListener,
}

impl Shard {
    async fn start() -> Shard {
        Shard {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// Connects one upstream connection for shard 0; returns it and the shard's end.
    async fn conn(&self) -> (Upstream, TcpStream) {
        let up = connect(self.addr(), 0, Duration::from_secs(5))
            .await
            .unwrap();
        let (end, _) = self.listener.accept().await.unwrap();
        (up, end)
    }
}

/// Whether kansas closed its end (the shard reads EOF), bounded so a kept one fails the test
/// instead of hanging.
async fn closed_by_kansas(end: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(30), end.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_clean_connection_is_reused_most_recent_first() {
    let shard = Shard::start().await;
    let mut pool = UpstreamPool::new(1, 4, TIMEOUT);
    let now = Instant::now();
    assert!(pool.checkout(0, now).is_none());
    let (a, _a_end) = shard.conn().await;
    let (b, _b_end) = shard.conn().await;
    let b_port = b.stream.local_addr().unwrap().port();
    assert!(!a.reused);
    assert!(pool.checkin(a, Reuse::Clean, now));
    assert!(pool.checkin(b, Reuse::Clean, now));
    assert_eq!(pool.idle(0), 2);
    let got = pool.checkout(0, now).unwrap();
    assert!(got.reused);
    assert_eq!(got.stream.local_addr().unwrap().port(), b_port);
    assert_eq!(pool.idle(0), 1);
}

#[tokio::test]
async fn idle_connections_are_bounded_per_shard() {
    let shard = Shard::start().await;
    let mut pool = UpstreamPool::new(1, 2, TIMEOUT);
    let now = Instant::now();
    let mut ends = Vec::new();
    for _ in 0..3 {
        let (up, end) = shard.conn().await;
        ends.push((pool.checkin(up, Reuse::Clean, now), end));
    }
    let kept: Vec<bool> = ends.iter().map(|(k, _)| *k).collect();
    assert_eq!(kept, [true, true, false]);
    assert_eq!(pool.idle(0), 2);
    assert!(
        closed_by_kansas(&mut ends[2].1).await,
        "the third one is closed"
    );
}

#[tokio::test]
async fn an_exchange_that_did_not_end_cleanly_is_never_returned() {
    let shard = Shard::start().await;
    let mut pool = UpstreamPool::new(1, 4, TIMEOUT);
    let (up, mut end) = shard.conn().await;
    assert!(!pool.checkin(up, Reuse::Close, Instant::now()));
    assert!(closed_by_kansas(&mut end).await);
    assert_eq!(pool.idle(0), 0);
}

/// The check costs one syscall per reuse, so it runs once, at checkout (checkin trusts the
/// caller's `Reuse::Clean`, and bytes can come while a connection is idle anyway).
#[tokio::test]
async fn a_connection_with_unread_bytes_or_a_pending_close_is_never_reused() {
    let shard = Shard::start().await;
    let mut pool = UpstreamPool::new(1, 4, TIMEOUT);
    // Bytes after the answer (the caller thought the exchange clean).
    let (up, mut end) = shard.conn().await;
    end.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    up.stream.readable().await.unwrap();
    pool.checkin(up, Reuse::Clean, Instant::now());
    assert!(pool.checkout(0, Instant::now()).is_none());
    assert!(closed_by_kansas(&mut end).await);
    // The shard closed its end.
    let (up, end) = shard.conn().await;
    drop(end);
    up.stream.readable().await.unwrap();
    pool.checkin(up, Reuse::Clean, Instant::now());
    assert!(pool.checkout(0, Instant::now()).is_none());
    assert_eq!(pool.idle(0), 0);
}

#[tokio::test]
async fn a_connection_the_shard_closed_while_idle_is_not_checked_out() {
    let shard = Shard::start().await;
    let mut pool = UpstreamPool::new(1, 4, TIMEOUT);
    let now = Instant::now();
    let (old, old_end) = shard.conn().await;
    let (new, new_end) = shard.conn().await;
    let old_port = old.stream.local_addr().unwrap().port();
    assert!(pool.checkin(old, Reuse::Clean, now));
    assert!(pool.checkin(new, Reuse::Clean, now));
    drop(new_end);
    // Wait (in steps, not time) until the kernel has the shard's FIN on kansas's end.
    for _ in 0..10_000 {
        let top = pool.idle[0].last().unwrap();
        if !is_clean(&top.stream) {
            break;
        }
        tokio::task::yield_now().await;
    }
    let got = pool.checkout(0, now).expect("the older clean one is taken");
    assert_eq!(got.stream.local_addr().unwrap().port(), old_port);
    assert_eq!(pool.idle(0), 0, "the closed one was dropped on the way");
    drop(old_end);
}

#[tokio::test]
async fn the_idle_timeout_skips_at_checkout_and_the_sweep_closes() {
    let shard = Shard::start().await;
    let mut pool = UpstreamPool::new(1, 4, TIMEOUT);
    let t0 = Instant::now();
    let (a, mut a_end) = shard.conn().await;
    let (b, _b_end) = shard.conn().await;
    assert!(pool.checkin(a, Reuse::Clean, t0));
    assert!(pool.checkin(b, Reuse::Clean, t0 + Duration::from_secs(10)));
    assert_eq!(pool.sweep(t0 + TIMEOUT - Duration::from_secs(1)), 0);
    assert_eq!(
        pool.sweep(t0 + TIMEOUT),
        1,
        "only the older one has been idle that long"
    );
    assert!(closed_by_kansas(&mut a_end).await);
    assert_eq!(pool.idle(0), 1);
    assert!(
        pool.checkout(0, t0 + TIMEOUT + Duration::from_secs(10))
            .is_none(),
        "stale at checkout: closed, not lent"
    );
    assert_eq!(pool.idle(0), 0);
}

#[tokio::test]
async fn connect_failures_keep_their_kind() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = connect(port, 0, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    let mut pool = UpstreamPool::new(1, 4, TIMEOUT);
    assert!(
        pool.checkout(7, Instant::now()).is_none(),
        "an unknown shard has none"
    );
}

/// A connection whose last answer was read to its end without a read that would block keeps
/// tokio's readiness set; lent like that, the caller's `readable()` returns at once and the
/// caller borrows buffers to read nothing, then holds them for the whole long-poll
/// (`examples/engine_proxy.rs` measured 8 KiB per waiting long-poll from this). Checked out,
/// it must wait for the shard's next bytes.
#[tokio::test]
async fn a_checked_out_connection_waits_for_new_bytes() {
    use futures_util::FutureExt;
    let shard = Shard::start().await;
    let mut pool = UpstreamPool::new(1, 4, TIMEOUT);
    let (up, mut end) = shard.conn().await;
    end.write_all(b"answer").await.unwrap();
    up.stream.readable().await.unwrap();
    let mut answer = [0u8; 6];
    assert_eq!(up.stream.try_read(&mut answer).unwrap(), 6);
    assert!(
        up.stream.readable().now_or_never().is_some(),
        "the stale readiness this test is about"
    );
    assert!(pool.checkin(up, Reuse::Clean, Instant::now()));
    let got = pool.checkout(0, Instant::now()).unwrap();
    assert!(
        got.stream.readable().now_or_never().is_none(),
        "readable() with nothing to read"
    );
    end.write_all(b"next").await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), got.stream.readable())
        .await
        .expect("woken by the next bytes")
        .unwrap();
}
