//! The queue map: which shard each event queue lives on, learned from traffic. Sharding is
//! configured per realm but happens per queue, so when a realm moves, its existing queues are
//! still on the old shard; this map is how kansas finds them and applies the move policy.
//!
//! Each entry records the shard the queue lives on, the realm's *home* shard when the queue was
//! learned (they differ for Zulip realms split over several ports, where Tornado redirects), the
//! realm, and when it was last used. A realm has moved for a queue when its current route is no
//! longer that home. Entries unused for the idle timeout (Tornado's 600 s) are forgotten; past
//! the bound, the longest-idle go first. The map is split in stripes so lookups rarely contend.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::routing::ShardId;

const STRIPES: usize = 16;

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

/// A serializable entry, for the state handed to the next kansas generation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedQueue {
    pub queue_id: String,
    pub shard: String,
    pub home: String,
    pub realm: String,
    pub idle_secs: u32,
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
    stripes: Vec<Mutex<HashMap<Box<str>, QueueEntry>>>,
    hasher: std::collections::hash_map::RandomState,
    len: AtomicUsize,
    max_entries: usize,
    idle_timeout: Duration,
    epoch: Instant,
    metrics: QueueMetrics,
}

impl QueueMap {
    pub fn new(max_entries: usize, idle_timeout: Duration, metrics: QueueMetrics) -> QueueMap {
        QueueMap {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            len: AtomicUsize::new(0),
            max_entries,
            idle_timeout,
            epoch: Instant::now(),
            metrics,
        }
    }

    fn stripe(&self, queue_id: &str) -> MutexGuard<'_, HashMap<Box<str>, QueueEntry>> {
        self.stripes[(self.hasher.hash_one(queue_id) as usize) % STRIPES]
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

    /// Records that `queue_id` lives on `shard` (realm home `home`) and was just used.
    pub fn learn(&self, queue_id: &str, shard: ShardId, home: ShardId, realm: &str) {
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

    /// Every entry, for the state handoff; shard ids named through `names`.
    pub fn save(&self, names: &[String]) -> Vec<SavedQueue> {
        let now = self.now();
        let mut out = Vec::with_capacity(self.len());
        for stripe in &self.stripes {
            let s = stripe.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(s.iter().map(|(k, e)| SavedQueue {
                queue_id: k.to_string(),
                shard: names[e.shard].clone(),
                home: names[e.home].clone(),
                realm: e.realm.to_string(),
                idle_secs: now.saturating_sub(e.last_used),
            }));
        }
        out
    }

    /// Loads saved entries; those naming shards this configuration lacks are skipped (their
    /// clients get the new shard's `BAD_EVENT_QUEUE_ID` and re-register). Returns how many
    /// were skipped.
    pub fn restore(&self, saved: Vec<SavedQueue>, id: impl Fn(&str) -> Option<ShardId>) -> usize {
        let now = self.now();
        let mut skipped = 0;
        for q in saved {
            match (id(&q.shard), id(&q.home)) {
                (Some(shard), Some(home)) if q.idle_secs < self.idle_timeout.as_secs() as u32 => {
                    self.learn(&q.queue_id, shard, home, &q.realm);
                    let mut stripe = self.stripe(&q.queue_id);
                    if let Some(e) = stripe.get_mut(q.queue_id.as_str()) {
                        e.last_used = now.saturating_sub(q.idle_secs);
                    }
                }
                _ => skipped += 1,
            }
        }
        skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(max: usize, idle_secs: u64) -> QueueMap {
        QueueMap::new(max, Duration::from_secs(idle_secs), QueueMetrics::default())
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

    #[tokio::test(start_paused = true)]
    async fn saves_and_restores_by_shard_name() {
        let m = map(100, 600);
        m.learn("q1", 0, 0, "r.example.com");
        m.learn("q2", 1, 0, "r.example.com");
        tokio::time::sleep(Duration::from_secs(30)).await;
        let names = vec!["a".to_string(), "b".to_string()];
        let saved = m.save(&names);
        assert_eq!(saved.len(), 2);
        let n = map(100, 600);
        // The new configuration has only "a" (at a new index).
        let skipped = n.restore(saved, |name| (name == "a").then_some(5));
        assert_eq!(skipped, 1);
        assert_eq!(n.get("q1").map(|e| (e.shard, e.home)), Some((5, 5)));
        assert!(n.get("q2").is_none());
        assert_eq!(n.save(&vec!["x".to_string(); 6])[0].idle_secs, 30);
    }
}
