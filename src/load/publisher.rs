//! The event publisher, standing in for Django publishing through RabbitMQ: it assigns each
//! realm's sequence numbers, sends every batch to every shard (each delivers only to the queues
//! it holds), and, like a durable queue, retries a shard that is down until it takes the batch,
//! strictly in order, so a restarted shard misses nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::conn::Conn;

/// Events for one realm with consecutive sequence numbers.
#[derive(Debug, Clone)]
pub struct Batch {
    pub realm: Arc<str>,
    pub first_seq: u64,
    pub count: u64,
    pub published_at_us: u64,
}

/// Publisher counters.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub posts: AtomicU64,
    pub retries: AtomicU64,
    /// Batches queued but not yet accepted by every shard.
    pub pending: AtomicU64,
}

/// One ordered delivery lane per shard.
pub struct Publisher {
    lanes: Vec<mpsc::UnboundedSender<Batch>>,
    tasks: Vec<JoinHandle<()>>,
    pub stats: Arc<PublishStats>,
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Publisher {
    /// Starts one lane per shard address; `stop` abandons undelivered batches.
    pub fn start(shards: &[SocketAddr], stop: CancellationToken) -> Publisher {
        let stats = Arc::new(PublishStats::default());
        let mut lanes = Vec::new();
        let mut tasks = Vec::new();
        for &addr in shards {
            let (tx, rx) = mpsc::unbounded_channel();
            lanes.push(tx);
            tasks.push(tokio::spawn(lane(addr, rx, stats.clone(), stop.clone())));
        }
        Publisher {
            lanes,
            tasks,
            stats,
        }
    }

    /// Queues a batch for every shard.
    pub fn publish(&self, batch: Batch) {
        for lane in &self.lanes {
            self.stats.pending.fetch_add(1, Ordering::Relaxed);
            let _ = lane.send(batch.clone());
        }
    }

    /// Stops taking batches and waits until every lane delivered what it has (or was stopped).
    pub async fn finish(self) {
        drop(self.lanes);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn lane(
    addr: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    stats: Arc<PublishStats>,
    stop: CancellationToken,
) {
    let mut conn = Conn::new(addr, None);
    while let Some(b) = rx.recv().await {
        loop {
            let uri = format!(
                "http://{addr}/fake/publish?realm={}&seq={}&count={}&published_at_us={}",
                b.realm, b.first_seq, b.count, b.published_at_us
            );
            let req = Request::post(uri)
                .header(http::header::HOST, addr.to_string())
                .body(Empty::<Bytes>::new())
                .expect("valid request");
            stats.posts.fetch_add(1, Ordering::Relaxed);
            let ok = tokio::select! {
                _ = stop.cancelled() => return,
                r = conn.send(req, Duration::from_secs(10)) => matches!(r, Ok(a) if a.status == 200),
            };
            if ok {
                stats.pending.fetch_sub(1, Ordering::Relaxed);
                break;
            }
            stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
}
