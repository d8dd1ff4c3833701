//! The event publisher, standing in for Django publishing through RabbitMQ: it assigns each
//! realm's sequence numbers and queues every batch into the lane of each shard that must get it
//! (`lane.rs`: strictly in order, a shard that is down retried until it takes the batch). Without
//! a routing config, every batch goes to every `--shards` address (each shard delivers only to
//! the queues it holds); with one, where Django's `send_event` sends it (`django.rs`). Lanes are
//! created on first use, one per shard address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::django::Routed;
use super::lane::{self, Batch, Op, PublishStats};

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Assigns sequence numbers and feeds the lanes.
pub struct Publisher {
    state: Mutex<State>,
    /// Where batches go: `None`, every address of `shards`.
    pub(super) routed: Option<Routed>,
    shards: Vec<SocketAddr>,
    pub stats: Arc<PublishStats>,
    stop: CancellationToken,
}

/// What the publisher's one lock guards: taking a sequence number and queueing what follows
/// from it happen together (a registration queued after a batch is behind it in its lane).
pub(super) struct State {
    /// Each realm's last assigned sequence number.
    pub seq: HashMap<Arc<str>, u64>,
    lanes: HashMap<SocketAddr, mpsc::UnboundedSender<Op>>,
}

impl Publisher {
    /// A publisher to every address of `shards` (`routed` = `None`), or by Django's rules;
    /// `stop` ends every lane, abandoning what it still holds.
    pub fn new(
        shards: Vec<SocketAddr>,
        routed: Option<Routed>,
        stop: CancellationToken,
    ) -> Publisher {
        Publisher {
            state: Mutex::new(State {
                seq: HashMap::new(),
                lanes: HashMap::new(),
            }),
            routed,
            shards,
            stats: Arc::new(PublishStats::default()),
            stop,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `op` into the lane to `addr` (started on first use).
    pub(super) fn send(&self, state: &mut State, addr: SocketAddr, op: Op) {
        if matches!(op, Op::Publish { .. }) {
            self.stats.pending.fetch_add(1, Ordering::Relaxed);
        }
        let lane = state.lanes.entry(addr).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(lane::run(addr, rx, self.stats.clone(), self.stop.clone()));
            tx
        });
        let _ = lane.send(op);
    }

    /// Publishes `count` events for `realm`, published at `published_at_us`: takes the next
    /// sequence numbers and queues the batch for every shard that must get it.
    pub fn publish(&self, realm: &Arc<str>, count: u64, published_at_us: u64) {
        let mut state = self.lock();
        let seq = state.seq.entry(realm.clone()).or_default();
        let batch = Batch {
            realm: realm.clone(),
            first_seq: *seq + 1,
            count,
            published_at_us,
        };
        *seq += count;
        match &self.routed {
            None => {
                for &addr in &self.shards {
                    let batch = batch.clone();
                    self.send(&mut state, addr, Op::Publish { batch, users: None });
                }
            }
            Some(routed) => {
                for (addr, users) in routed.destinations(realm, &self.stats) {
                    let batch = batch.clone();
                    self.send(&mut state, addr, Op::Publish { batch, users });
                }
            }
        }
    }

    /// Each realm's last sequence number.
    pub fn seqs(&self) -> HashMap<Arc<str>, u64> {
        self.lock().seq.clone()
    }

    /// Waits until every batch queued so far was taken by its shard.
    pub async fn drained(&self) {
        while self.stats.pending.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
