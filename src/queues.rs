//! The queue map: which shard each event queue lives on, learned from traffic. Sharding is
//! configured per realm but happens per queue, so when a realm moves, its existing queues are
//! still on the old shard; this map is how kansas finds them and applies the move policy.
//!
//! Each entry records the shard the queue lives on, the realm's *home* shard when the queue was
//! learned (they differ for Zulip realms split over several ports, where Tornado redirects), the
//! realm, and when it was last used. A realm has moved for a queue when its current route is no
//! longer that home. Entries unused for the idle timeout (Tornado's 600 s) are forgotten; past
//! the bound, the longest-idle go first. The map is split in stripes so lookups rarely contend.
//! Saving the map for the next generation and restoring it there is `saved`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::routing::ShardId;

mod saved;

pub use saved::SavedQueues;

const STRIPES: usize = 16;

type Stripe = HashMap<Box<str>, QueueEntry, foldhash::fast::RandomState>;

/// The map's clock starts this far along, so an entry restored from a previous generation can be
/// older than this map without underflow (idle timeouts are far shorter).
const CLOCK_BIAS_SECS: u64 = 1 << 20;

/// What kansas knows about one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Where the queue lives.
    pub shard: ShardId,
    /// The realm's route when the queue was learned.
    pub home: ShardId,
    pub realm: Arc<str>,
    /// Seconds since the map's epoch.
    last_used: u32,
}

/// Where a known queue is: what routing needs from an entry (cheap to copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLoc {
    pub shard: ShardId,
    pub home: ShardId,
}

/// Queue-map counters.
#[derive(Clone, Default)]
pub struct QueueMetrics {
    pub entries: Gauge,
    pub learned: Counter,
    pub expired: Counter,
    pub evicted: Counter,
}

/// The queue map.
pub struct QueueMap {
    stripes: Vec<Mutex<Stripe>>,
    /// One seeded hash for choosing the stripe and inside it. Queue ids only enter the map from
    /// a shard's successful answer (Tornado's own UUIDs), so clients cannot flood a stripe.
    hasher: foldhash::fast::RandomState,
    len: AtomicUsize,
    max_entries: usize,
    idle_timeout: Duration,
    epoch: Instant,
    metrics: QueueMetrics,
}

/// The longest queue id kansas learns. Zulip's are UUID4 strings (36 characters); older
/// versions used `<generation>:<counter>`.
pub const MAX_QUEUE_ID_LEN: usize = 64;

/// Whether `id` looks like a Zulip queue id: 1 to [`MAX_QUEUE_ID_LEN`] characters of
/// `[A-Za-z0-9:_-]`. Anything else a client sends is passed on to the shard but never learned.
pub fn is_queue_id(id: &str) -> bool {
    (1..=MAX_QUEUE_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}
impl QueueMap {
    pub fn new(max_entries: usize, idle_timeout: Duration, metrics: QueueMetrics) -> QueueMap {
        let hasher = foldhash::fast::RandomState::default();
        QueueMap {
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(HashMap::with_hasher(hasher.clone())))
                .collect(),
            hasher,
            len: AtomicUsize::new(0),
            max_entries,
            idle_timeout,
            epoch: Instant::now(),
            metrics,
        }
    }

    fn stripe_index(&self, queue_id: &str) -> usize {
        // Middle bits: the map inside uses the low ones for buckets and the top ones for tags.
        ((self.hasher.hash_one(queue_id) >> 32) as usize) % STRIPES
    }

    fn stripe(&self, queue_id: &str) -> MutexGuard<'_, Stripe> {
        self.stripes[self.stripe_index(queue_id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u32 {
        (self.epoch.elapsed().as_secs() + CLOCK_BIAS_SECS).min(u32::MAX as u64) as u32
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where a queue is, if known and not idle past the timeout.
    #[inline]
    pub fn get(&self, queue_id: &str) -> Option<QueueLoc> {
        let now = self.now();
        let stripe = self.stripe(queue_id);
        let e = stripe.get(queue_id)?;
        (now.saturating_sub(e.last_used) < self.idle_timeout.as_secs() as u32).then_some(QueueLoc {
            shard: e.shard,
            home: e.home,
        })
    }

    /// Where a queue is, as [`QueueMap::get`], for a request about to use it: a hit counts as
    /// a use (so a request routed by the map need not [`QueueMap::learn`] the same place again).
    #[inline]
    pub fn lookup(&self, queue_id: &str) -> Option<QueueLoc> {
        let now = self.now();
        let mut stripe = self.stripe(queue_id);
        let e = stripe.get_mut(queue_id)?;
        if now.saturating_sub(e.last_used) >= self.idle_timeout.as_secs() as u32 {
            return None;
        }
        e.last_used = now;
        Some(QueueLoc {
            shard: e.shard,
            home: e.home,
        })
    }

    /// Records that `queue_id` lives on `shard` (realm home `home`) and was just used. An id
    /// that is not Zulip-shaped ([`is_queue_id`]) is never recorded: with realms (valid hosts,
    /// at most 253 bytes) and ids both bounded, `max_entries` bounds the map in bytes too.
    pub fn learn(&self, queue_id: &str, shard: ShardId, home: ShardId, realm: &str) {
        if !is_queue_id(queue_id) {
            return;
        }
        let now = self.now();
        let added = {
            let mut stripe = self.stripe(queue_id);
            match stripe.get_mut(queue_id) {
                Some(e) if e.shard == shard && e.home == home => {
                    e.last_used = now;
                    false
                }
                _ => {
                    let fresh = stripe
                        .insert(
                            queue_id.into(),
                            QueueEntry {
                                shard,
                                home,
                                realm: realm.into(),
                                last_used: now,
                            },
                        )
                        .is_none();
                    self.metrics.learned.inc();
                    fresh
                }
            }
        };
        if added && self.len.fetch_add(1, Ordering::Relaxed) + 1 > self.max_entries {
            self.evict_idlest();
        }
        self.metrics.entries.set(self.len() as i64);
    }

    /// Forgets a queue; true if it was known.
    pub fn forget(&self, queue_id: &str) -> bool {
        let removed = self.stripe(queue_id).remove(queue_id).is_some();
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
            self.metrics.entries.set(self.len() as i64);
        }
        removed
    }

    /// Removes entries idle past the timeout; returns how many.
    pub fn expire(&self) -> usize {
        let now = self.now();
        let limit = self.idle_timeout.as_secs() as u32;
        let mut n = 0;
        for stripe in &self.stripes {
            let mut s = stripe.lock().unwrap_or_else(|e| e.into_inner());
            let before = s.len();
            s.retain(|_, e| now.saturating_sub(e.last_used) < limit);
            n += before - s.len();
        }
        if n > 0 {
            self.len.fetch_sub(n, Ordering::Relaxed);
            self.metrics.expired.inc_by(n as u64);
            self.metrics.entries.set(self.len() as i64);
        }
        n
    }

    /// Over the bound: removes the longest-idle entries, 1% of the bound at a time so the scan
    /// is paid rarely.
    fn evict_idlest(&self) {
        let excess = self.len().saturating_sub(self.max_entries);
        if excess == 0 {
            return;
        }
        let batch = excess.max(self.max_entries / 100).max(1);
        let mut ages: Vec<(u32, usize, Box<str>)> = Vec::new();
        for (i, stripe) in self.stripes.iter().enumerate() {
            let s = stripe.lock().unwrap_or_else(|e| e.into_inner());
            ages.extend(s.iter().map(|(k, e)| (e.last_used, i, k.clone())));
        }
        let batch = batch.min(ages.len());
        if batch == 0 {
            return;
        }
        ages.select_nth_unstable_by_key(batch - 1, |a| a.0);
        let mut n = 0;
        for (_, i, k) in ages.into_iter().take(batch) {
            if self.stripes[i]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&k)
                .is_some()
            {
                n += 1;
            }
        }
        self.len.fetch_sub(n, Ordering::Relaxed);
        self.metrics.evicted.inc_by(n as u64);
    }
}

/// Threads for bulk work on the map: the machine's cores, at most the stripe count.
fn parallelism() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, STRIPES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(max: usize, idle_secs: u64) -> QueueMap {
        QueueMap::new(max, Duration::from_secs(idle_secs), QueueMetrics::default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_is_a_use_and_get_is_not() {
        let m = map(100, 600);
        m.learn("looked-up", 1, 1, "r.example.com");
        m.learn("peeked", 1, 1, "r.example.com");
        tokio::time::sleep(Duration::from_secs(400)).await;
        assert_eq!(m.lookup("looked-up").map(|e| e.shard), Some(1));
        assert!(m.get("peeked").is_some());
        assert!(m.lookup("unknown").is_none());
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(m.get("looked-up").is_some(), "used 300 s ago");
        assert!(m.lookup("peeked").is_none(), "idle 700 s");
        assert_eq!(m.expire(), 1);
    }

    #[test]
    fn only_zulip_shaped_queue_ids_are_learned() {
        assert!(is_queue_id("1f0e8a3c-5b1e-4b9e-9c3a-2f6d7e8a9b0c"));
        assert!(is_queue_id("1375801870:2942"));
        for bad in ["", "a b", "q\u{e9}", "x/y", &"x".repeat(65)] {
            assert!(!is_queue_id(bad), "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn learns_touches_forgets_and_expires() {
        let m = map(100, 600);
        m.learn("q1", 2, 2, "r.example.com");
        m.learn("q2", 1, 0, "s.example.com");
        assert_eq!(m.get("q1").unwrap().shard, 2);
        assert_eq!(m.get("q2").map(|e| (e.shard, e.home)), Some((1, 0)));
        tokio::time::sleep(Duration::from_secs(400)).await;
        m.learn("q1", 2, 2, "r.example.com"); // used again
        tokio::time::sleep(Duration::from_secs(300)).await;
        // q2 is 700 s idle: gone for lookups at once, and from the map at the next sweep.
        assert!(m.get("q2").is_none());
        assert!(m.get("q1").is_some());
        assert_eq!(m.expire(), 1);
        assert_eq!(m.len(), 1);
        assert!(m.forget("q1"));
        assert!(!m.forget("q1"));
        assert!(m.is_empty());
        assert_eq!(m.metrics.expired.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_bound_the_longest_idle_go_first() {
        let m = map(200, 10_000);
        for i in 0..200 {
            m.learn(&format!("q{i}"), 0, 0, "r");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Use the oldest ten again: now q10..q12 are the longest idle.
        for i in 0..10 {
            m.learn(&format!("q{i}"), 0, 0, "r");
        }
        m.learn("new", 0, 0, "r");
        assert!(m.len() <= 200);
        assert_eq!(
            m.metrics.evicted.get(),
            2,
            "1% of the bound, at least the excess"
        );
        for i in 0..10 {
            assert!(m.get(&format!("q{i}")).is_some(), "recently used q{i} kept");
        }
        assert!(
            m.get("q10").is_none() && m.get("q11").is_none(),
            "longest idle evicted"
        );
        assert!(m.get("q12").is_some() && m.get("new").is_some());
    }
}
