//! Hiding Tornado restarts. Each shard has a health flag and a bounded FIFO "lot" of parked GETs.
//! A GET that fails before the response head (refused, reset, closed: Tornado cuts open
//! long-polls when it stops), or arrives while its shard is known down, parks; a TCP-connect
//! probe watches the down shard; once it answers, a releaser hands the parked requests back to
//! their handlers in arrival order through a token bucket, and each handler replays its request.
//! A request still parked at its deadline gets an empty events answer (or 503, by config).
//!
//! The parked request lives in its own handler future, which holds everything needed to replay
//! it; the lot only holds a wake-up sender. A client that disconnects drops that future, whose
//! [`Ticket`] removes itself from the lot at once.

mod bucket;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

pub use bucket::TokenBucket;

use crate::config::ParkingConfig;
use crate::metrics::ParkMetrics;

/// The lot is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// How a parked request's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The shard is back and it is this request's turn: replay it.
    Go,
    /// The park timeout passed first.
    Deadline,
}

struct Entry {
    seq: u64,
    go: oneshot::Sender<()>,
}

struct Inner {
    down_since: Option<Instant>,
    probing: bool,
    next_seq: u64,
    /// Parked requests, ordered by arrival (`seq`).
    lot: VecDeque<Entry>,
}

/// One shard's health and parking lot.
pub struct ShardPark {
    name: String,
    address: String,
    config: ParkingConfig,
    connect_timeout: Duration,
    up: AtomicBool,
    inner: Mutex<Inner>,
    wake_releaser: Notify,
    metrics: ParkMetrics,
}

impl ShardPark {
    pub fn new(
        name: &str,
        address: &str,
        config: ParkingConfig,
        connect_timeout: Duration,
        metrics: ParkMetrics,
    ) -> Arc<ShardPark> {
        metrics.up.set(1);
        Arc::new(ShardPark {
            name: name.to_string(),
            address: address.to_string(),
            config,
            connect_timeout,
            up: AtomicBool::new(true),
            inner: Mutex::new(Inner {
                down_since: None,
                probing: false,
                next_seq: 0,
                lot: VecDeque::new(),
            }),
            wake_releaser: Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the shard is believed up.
    #[inline]
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Requests parked now.
    pub fn parked(&self) -> usize {
        self.lock().lot.len()
    }

    /// Records a failure: the shard is down until a probe connects.
    pub fn mark_down(self: &Arc<Self>, reason: &str) {
        let mut inner = self.lock();
        if self.up.swap(false, Ordering::AcqRel) {
            inner.down_since = Some(Instant::now());
            self.metrics.up.set(0);
            self.metrics.down_transitions.inc();
            tracing::warn!(shard = %self.name, reason, "shard down: parking its GETs");
        }
        if !inner.probing {
            inner.probing = true;
            tokio::spawn(self.clone().probe());
        }
    }

    fn mark_up(&self) {
        let mut inner = self.lock();
        inner.probing = false;
        if !self.up.swap(true, Ordering::AcqRel) {
            let down_for = inner
                .down_since
                .take()
                .map_or(0.0, |t| t.elapsed().as_secs_f64());
            self.metrics.up.set(1);
            self.metrics.down_seconds.inc_by(down_for);
            tracing::info!(
                shard = %self.name,
                down_secs = down_for,
                parked = inner.lot.len(),
                "shard up: replaying parked requests"
            );
        }
        drop(inner);
        self.wake_releaser.notify_one();
    }

    /// Probes the shard with TCP connects until one succeeds.
    async fn probe(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.config.probe_interval).await;
            let connect = tokio::net::TcpStream::connect(self.address.as_str());
            if let Ok(Ok(_)) = tokio::time::timeout(self.connect_timeout, connect).await {
                self.mark_up();
                return;
            }
        }
    }

    /// Parks a request. `seq` is `None` the first time; a replay that failed again passes its
    /// ticket's `seq` to keep its place (arrival order) in the lot.
    pub fn park(self: &Arc<Self>, seq: Option<u64>) -> Result<Ticket, Overflow> {
        let mut inner = self.lock();
        if inner.lot.len() >= self.config.max_per_shard {
            self.metrics.overflowed.inc();
            return Err(Overflow);
        }
        let seq = seq.unwrap_or_else(|| {
            inner.next_seq += 1;
            self.metrics.parked.inc();
            inner.next_seq
        });
        let (go, rx) = oneshot::channel();
        let at = inner.lot.partition_point(|e| e.seq < seq);
        inner.lot.insert(at, Entry { seq, go });
        self.metrics.parked_now.inc();
        drop(inner);
        self.wake_releaser.notify_one();
        Ok(Ticket {
            park: self.clone(),
            seq,
            rx,
            parked_at: Instant::now(),
            finished: false,
        })
    }

    /// Removes a ticket's entry if it is still parked; true if it was.
    fn remove(&self, seq: u64) -> bool {
        let mut inner = self.lock();
        match inner.lot.iter().position(|e| e.seq == seq) {
            Some(i) => {
                inner.lot.remove(i);
                self.metrics.parked_now.dec();
                true
            }
            None => false,
        }
    }

    /// Releases parked requests in arrival order, at the configured rate, while the shard is up.
    /// Runs for the life of the process.
    pub async fn release_loop(self: Arc<Self>) {
        let mut bucket = TokenBucket::new(self.config.release_rate, self.config.release_burst);
        loop {
            let ready = {
                let inner = self.lock();
                self.is_up() && !inner.lot.is_empty()
            };
            if !ready {
                self.wake_releaser.notified().await;
                continue;
            }
            bucket.take().await;
            let mut inner = self.lock();
            if !self.is_up() {
                continue;
            }
            // Skip entries whose handler is gone; they cost no token.
            while let Some(e) = inner.lot.pop_front() {
                self.metrics.parked_now.dec();
                if e.go.send(()).is_ok() {
                    self.metrics.replayed.inc();
                    break;
                }
            }
        }
    }
}

/// A parked request's place in the lot. Dropping it unfinished (the client went away) frees the
/// slot at once and counts as abandoned.
pub struct Ticket {
    park: Arc<ShardPark>,
    seq: u64,
    rx: oneshot::Receiver<()>,
    parked_at: Instant,
    finished: bool,
}

impl Ticket {
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits for the release or the deadline.
    pub async fn wait(mut self, deadline: Instant) -> Released {
        let outcome = tokio::select! {
            r = &mut self.rx => {
                // A dropped sender means the entry left the lot without a release: the process
                // is stopping; replaying is the right answer then too.
                let _ = r;
                Released::Go
            }
            _ = tokio::time::sleep_until(deadline) => {
                if self.park.remove(self.seq) {
                    self.park.metrics.timed_out.inc();
                    Released::Deadline
                } else {
                    // Released at the same instant: take the release.
                    Released::Go
                }
            }
        };
        self.finished = true;
        outcome
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.park
            .metrics
            .parked_seconds
            .observe(self.parked_at.elapsed().as_secs_f64());
        if !self.finished && self.park.remove(self.seq) {
            self.park.metrics.abandoned.inc();
        }
    }
}

#[cfg(test)]
mod tests;
