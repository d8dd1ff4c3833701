//! The queue map in the state handed to the next kansas generation ([`SavedQueues`]): how the
//! active worker dumps its map (stripes in parallel, realm names once each) and how the new one
//! loads it (entries naming shards it no longer has, or idle too long, or not Zulip-shaped, are
//! skipped; stripes filled in parallel).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{is_queue_id, parallelism, QueueEntry, QueueMap, STRIPES};
use crate::routing::ShardId;

/// Restored entries bound for one stripe.
type StripeBatch = (usize, Vec<(Box<str>, QueueEntry)>);

/// The queue map in the state handed to the next kansas generation: shard and realm names
/// once each, then one small tuple per queue: `(queue_id, shard, home, realm, idle_secs)` with
/// indexes into those tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedQueues {
    pub shards: Vec<String>,
    pub realms: Vec<String>,
    pub entries: Vec<(String, u16, u16, u32, u32)>,
}

impl SavedQueues {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl QueueMap {
    /// Every entry, for the state handoff; shard ids named through `names`. The stripes are
    /// dumped in parallel, one group per core.
    pub fn save(&self, names: &[String]) -> SavedQueues {
        let now = self.now();
        let groups = parallelism();
        let parts: Vec<SavedQueues> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..groups)
                .map(|g| scope.spawn(move || self.save_stripes(g, groups, now)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("dump thread"))
                .collect()
        });
        // Merge: one realm table, entries re-indexed into it.
        let mut out = SavedQueues {
            shards: names.to_vec(),
            realms: Vec::new(),
            entries: Vec::with_capacity(parts.iter().map(|p| p.entries.len()).sum()),
        };
        let mut index: HashMap<String, u32> = HashMap::new();
        for part in parts {
            let map: Vec<u32> = part
                .realms
                .into_iter()
                .map(|r| {
                    let next = index.len() as u32;
                    *index.entry(r.clone()).or_insert_with(|| {
                        out.realms.push(r);
                        next
                    })
                })
                .collect();
            out.entries.extend(
                part.entries
                    .into_iter()
                    .map(|(q, s, h, r, idle)| (q, s, h, map[r as usize], idle)),
            );
        }
        out
    }

    /// Dumps stripes `g, g + groups, ...` with a realm table of their own.
    fn save_stripes(&self, g: usize, groups: usize, now: u32) -> SavedQueues {
        let mut realms: HashMap<*const u8, u32> = HashMap::new();
        let mut out = SavedQueues::default();
        for stripe in self.stripes.iter().skip(g).step_by(groups) {
            let s = stripe.lock().unwrap_or_else(|e| e.into_inner());
            out.entries.reserve(s.len());
            for (k, e) in s.iter() {
                // Realms are shared `Arc<str>`s where they were restored together; otherwise
                // equal names land in the table more than once and are merged by `save`.
                let realm = *realms.entry(e.realm.as_ptr()).or_insert_with(|| {
                    out.realms.push(e.realm.to_string());
                    out.realms.len() as u32 - 1
                });
                out.entries.push((
                    k.to_string(),
                    e.shard as u16,
                    e.home as u16,
                    realm,
                    now.saturating_sub(e.last_used),
                ));
            }
        }
        out
    }

    /// Loads saved entries; those naming shards this configuration lacks (or idle past the
    /// timeout) are skipped: their clients get the new shard's `BAD_EVENT_QUEUE_ID` and
    /// re-register. Returns how many were skipped. Entries are grouped by stripe and each
    /// stripe filled at once (capacity reserved), the stripes in parallel.
    pub fn restore(&self, saved: SavedQueues, id: impl Fn(&str) -> Option<ShardId>) -> usize {
        let now = self.now();
        let shard_ids: Vec<Option<ShardId>> = saved.shards.iter().map(|n| id(n)).collect();
        let realms: Vec<Arc<str>> = saved.realms.iter().map(|r| Arc::from(r.as_str())).collect();
        let limit = self.idle_timeout.as_secs() as u32;
        let mut skipped = 0;
        let mut by_stripe: Vec<Vec<(Box<str>, QueueEntry)>> =
            (0..STRIPES).map(|_| Vec::new()).collect();
        for (queue_id, shard, home, realm, idle) in saved.entries {
            let resolve = |i: u16| shard_ids.get(i as usize).copied().flatten();
            match (resolve(shard), resolve(home), realms.get(realm as usize)) {
                (Some(shard), Some(home), Some(realm))
                    if idle < limit && is_queue_id(&queue_id) =>
                {
                    let stripe = self.stripe_index(&queue_id);
                    by_stripe[stripe].push((
                        queue_id.into_boxed_str(),
                        QueueEntry {
                            shard,
                            home,
                            realm: realm.clone(),
                            last_used: now.saturating_sub(idle),
                        },
                    ));
                }
                _ => skipped += 1,
            }
        }
        let groups = parallelism();
        let added: usize = std::thread::scope(|scope| {
            let mut buckets: Vec<Vec<StripeBatch>> = (0..groups).map(|_| Vec::new()).collect();
            for (i, b) in by_stripe.into_iter().enumerate() {
                buckets[i % groups].push((i, b));
            }
            let handles: Vec<_> = buckets
                .into_iter()
                .map(|group| {
                    scope.spawn(move || {
                        let mut added = 0;
                        for (i, entries) in group {
                            let mut s = self.stripes[i].lock().unwrap_or_else(|e| e.into_inner());
                            s.reserve(entries.len());
                            for (k, e) in entries {
                                if s.insert(k, e).is_none() {
                                    added += 1;
                                }
                            }
                        }
                        added
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("restore thread"))
                .sum()
        });
        self.len.fetch_add(added, Ordering::Relaxed);
        self.metrics.entries.set(self.len() as i64);
        if self.len() > self.max_entries {
            self.evict_idlest();
        }
        skipped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{QueueMap, QueueMetrics};

    fn map(max: usize, idle_secs: u64) -> QueueMap {
        QueueMap::new(max, Duration::from_secs(idle_secs), QueueMetrics::default())
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
        assert_eq!(
            saved.realms,
            vec!["r.example.com"],
            "realm names are stored once"
        );
        let n = map(100, 600);
        // The new configuration has only "a" (at a new index).
        let skipped = n.restore(saved, |name| (name == "a").then_some(5));
        assert_eq!(skipped, 1);
        assert_eq!(n.get("q1").map(|e| (e.shard, e.home)), Some((5, 5)));
        assert!(n.get("q2").is_none());
        assert_eq!(n.save(&vec!["x".to_string(); 6]).entries[0].4, 30);
    }
}
