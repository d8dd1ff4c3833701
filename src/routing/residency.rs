//! Realm residency (`docs/residency.md` §3): the shards a realm's queues may live on at a given
//! time. A realm is resident on its current shard(s), and on the shard(s) it had before each
//! routing change that moved it, until that change's drain window closes. Django publishes to
//! every resident shard, Tornado serves a user on any of them, and kansas sends a known queue
//! to its shard only while that shard is resident.

use super::{ShardId, Snapshot};

/// One routing change that drains: the routing before and after it, and when it stops
/// counting. Times are seconds since the Unix epoch.
#[derive(Debug, Clone)]
pub struct Window {
    pub id: i64,
    pub opened_at: f64,
    pub until: f64,
    /// What changed, in words (`assign r.example.com s1 -> s2`).
    pub change: String,
    pub changed_by: String,
    pub before: Snapshot,
    pub after: Snapshot,
}

impl Window {
    pub fn is_open(&self, now: f64) -> bool {
        self.until > now
    }
}

/// One resident shard of a realm.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    pub name: String,
    /// The shard's id in the snapshot that was asked (`None`: it no longer has that shard).
    pub shard: Option<ShardId>,
    /// Its Tornado port, as the routing state it comes from says.
    pub port: u16,
    /// `None` for a current shard; else when the window that keeps it closes.
    pub until: Option<f64>,
}

/// Seconds since the Unix epoch, now.
pub fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A routed realm's shards as `(name, port)` pairs of the snapshot that routed it.
fn named(s: &Snapshot, realm: &str) -> Option<Vec<(String, u16)>> {
    s.route_targets(realm).map(|(_, ids)| {
        ids.iter()
            .map(|&id| (s.shard(id).name.clone(), s.shard(id).port))
            .collect()
    })
}

fn same_names(a: &Option<Vec<(String, u16)>>, b: &Option<Vec<(String, u16)>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0),
        _ => false,
    }
}

/// Adds a shard an open window keeps; one already there stays in its place, and a shard kept
/// by several windows stays resident until the last of them closes.
fn keep(out: &mut Vec<Resident>, entry: impl FnOnce() -> Resident) {
    let new = entry();
    match out.iter_mut().find(|r| r.name == new.name) {
        None => out.push(new),
        Some(r) => {
            if let (Some(old), Some(until)) = (r.until, new.until) {
                r.until = Some(old.max(until));
            }
        }
    }
}

impl Snapshot {
    /// Whether any drain window is open at `now`.
    #[inline]
    pub fn draining(&self, now: f64) -> bool {
        self.windows().iter().any(|w| w.is_open(now))
    }

    fn resident_entry(&self, name: &str, port: u16, until: Option<f64>) -> Resident {
        Resident {
            name: name.to_string(),
            shard: self.shard_id(name),
            port,
            until,
        }
    }

    /// The realm's resident shards at `now`: its current shard(s), then the shards open windows
    /// keep it on, newest window first, each once.
    pub fn resident(&self, realm: &str, now: f64) -> Vec<Resident> {
        let mut out: Vec<Resident> = Vec::new();
        if let Some(cur) = named(self, realm) {
            for (name, port) in cur {
                if !out.iter().any(|r| r.name == name) {
                    out.push(self.resident_entry(&name, port, None));
                }
            }
        }
        for w in self.windows().iter().filter(|w| w.is_open(now)) {
            let before = named(&w.before, realm);
            if same_names(&before, &named(&w.after, realm)) {
                continue;
            }
            for (name, port) in before.into_iter().flatten() {
                keep(&mut out, || self.resident_entry(&name, port, Some(w.until)));
            }
        }
        out
    }

    /// One user's resident shards at `now`: the user's current shard (`targets[user % len]`),
    /// then the user's shard before each open window that moved the user, newest first.
    pub fn user_resident(&self, realm: &str, user_id: u64, now: f64) -> Vec<Resident> {
        let pick = |list: &Option<Vec<(String, u16)>>| {
            list.as_ref()
                .map(|l| l[(user_id % l.len() as u64) as usize].clone())
        };
        let mut out: Vec<Resident> = Vec::new();
        if let Some((name, port)) = pick(&named(self, realm)) {
            out.push(self.resident_entry(&name, port, None));
        }
        for w in self.windows().iter().filter(|w| w.is_open(now)) {
            let Some((name, port)) = pick(&named(&w.before, realm)) else {
                continue;
            };
            let after = pick(&named(&w.after, realm));
            if after.is_some_and(|(a, _)| a == name) {
                continue;
            }
            keep(&mut out, || self.resident_entry(&name, port, Some(w.until)));
        }
        out
    }

    /// Whether `shard` is one of the realm's resident shards at `now`. Cheap when nothing
    /// drains.
    pub fn is_resident(&self, realm: &str, shard: ShardId, now: f64) -> bool {
        if self
            .route_targets(realm)
            .is_some_and(|(_, ids)| ids.contains(&shard))
        {
            return true;
        }
        self.draining(now)
            && self
                .resident(realm, now)
                .iter()
                .any(|r| r.shard == Some(shard))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::routing::{Shard, Targets};

    fn snap(assign: &[(&str, &[usize])], weights: [f64; 3]) -> Snapshot {
        let shards = (0..3)
            .map(|i| Shard {
                name: format!("s{i}"),
                address: format!("127.0.0.1:{}", 9800 + i),
                port: 9800 + i as u16,
                weight: weights[i],
            })
            .collect();
        let assignments: HashMap<String, Targets> = assign
            .iter()
            .map(|(r, t)| (r.to_string(), Targets::from(*t)))
            .collect();
        Snapshot::build(shards, 3, assignments, vec![]).unwrap()
    }

    fn window(id: i64, until: f64, before: Snapshot, after: Snapshot) -> Window {
        Window {
            id,
            opened_at: id as f64,
            until,
            change: format!("change {id}"),
            changed_by: "test".into(),
            before,
            after,
        }
    }

    fn names(r: &[Resident]) -> Vec<&str> {
        r.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn resident_sets() {
        let a0 = snap(&[("r", &[0])], [1.0; 3]);
        let a1 = snap(&[("r", &[1])], [1.0; 3]);
        let a2 = snap(&[("r", &[2])], [1.0; 3]);
        // r moved 0 -> 1 (window 1, open until 100), then 1 -> 2 (window 2, open until 50).
        let now = snap(&[("r", &[2])], [1.0; 3]).with_windows(vec![
            window(1, 100.0, a0.clone(), a1.clone()),
            window(2, 50.0, a1.clone(), a2.clone()),
        ]);
        let r = now.resident("r", 10.0);
        assert_eq!(names(&r), ["s2", "s1", "s0"]);
        assert_eq!(r[0].until, None);
        assert_eq!(r[1].until, Some(50.0));
        assert_eq!(r[2].until, Some(100.0));
        assert_eq!(r[2].port, 9800);
        // Window 2 closed: s1 is no longer resident; window 1 still keeps s0.
        assert_eq!(names(&now.resident("r", 60.0)), ["s2", "s0"]);
        assert_eq!(names(&now.resident("r", 100.0)), ["s2"]);
        assert!(now.is_resident("r", 0, 99.0));
        assert!(!now.is_resident("r", 1, 60.0));
        // A shard kept by two windows is resident until the later one closes.
        let twice = snap(&[("r", &[2])], [1.0; 3]).with_windows(vec![
            window(1, 100.0, a0.clone(), a1.clone()),
            window(2, 50.0, a0.clone(), a2.clone()),
        ]);
        let r = twice.resident("r", 10.0);
        assert_eq!(names(&r), ["s2", "s0"]);
        assert_eq!(r[1].until, Some(100.0));
        // A window that did not move a realm gives it nothing.
        assert_eq!(names(&now.resident("other.example.com", 10.0)).len(), 1);
    }

    #[test]
    fn user_split_residency() {
        let split = snap(&[("r", &[0, 1])], [1.0; 3]);
        let moved = snap(&[("r", &[0, 2])], [1.0; 3]);
        let now = moved
            .clone()
            .with_windows(vec![window(1, 100.0, split, moved)]);
        // Realm level: both lists differ, so s0 and s1 are kept.
        assert_eq!(names(&now.resident("r", 0.0)), ["s0", "s2", "s1"]);
        // Even users stay on s0: nothing moved them. Odd users moved s1 -> s2.
        assert_eq!(names(&now.user_resident("r", 4, 0.0)), ["s0"]);
        assert_eq!(names(&now.user_resident("r", 5, 0.0)), ["s2", "s1"]);
    }

    #[test]
    fn weight_change_moves_only_hashed_realms() {
        let before = snap(&[("pinned", &[0])], [1.0, 1.0, 1.0]);
        let after = snap(&[("pinned", &[0])], [1.0, 1.0, 0.0]);
        let now = after
            .clone()
            .with_windows(vec![window(1, 100.0, before.clone(), after.clone())]);
        assert_eq!(names(&now.resident("pinned", 0.0)), ["s0"]);
        let moved = (0..200)
            .map(|i| format!("h{i}.example.com"))
            .find(|r| before.hash(r) == Some(2))
            .unwrap();
        let r = now.resident(&moved, 0.0);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].name, "s2");
        assert_eq!(r[1].shard, Some(2));
    }
}
