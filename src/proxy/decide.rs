//! Where a request goes. A queue kansas knows goes to the shard it lives on while that shard
//! is one of the realm's shards: with a database, while it is *resident* (the realm's current
//! shard, or one it still drains from, `docs/residency.md`); without one, while the realm has
//! not moved since the queue was learned, or after a move when the configured policy is
//! `drain`. Otherwise a GET is answered `BAD_EVENT_QUEUE_ID` (the client re-registers on the
//! realm's shard). Anything else follows the realm's route: assignment, rule, hashing.

use crate::queues::QueueMap;
use crate::routing::{MovePolicy, Origin, ShardId, Snapshot};

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'q> {
    /// Send it to `target`; a queue learned from the answer gets `home` as its realm's home.
    /// `known` is set when the queue map placed the request (and counted it as a use of the
    /// queue); `moved` when a known queue's realm has moved and the queue is drained.
    Forward {
        target: ShardId,
        home: ShardId,
        known: bool,
        moved: bool,
    },
    /// Answer `400 BAD_EVENT_QUEUE_ID` for `queue_id`; tell `old` to drop the queue.
    Reload { old: ShardId, queue_id: &'q str },
    /// Nothing can serve the realm (every weight 0, or its shard is not in the config file).
    NoShard,
}

/// The `queue_id` query parameter (the first one; empty counts as none).
pub fn queue_id(query: Option<&str>) -> Option<String> {
    let query = query?;
    if !query.contains("queue_id=") {
        return None;
    }
    if !query.contains(['%', '+']) {
        // Nothing encoded (Zulip's clients send UUIDs): the same answer as decoding, without
        // decoding every parameter.
        return query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| *k == "queue_id")
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty());
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "queue_id")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// Decides where a request for `realm` (and `queue_id`) goes. `now` is seconds since the
/// epoch (drain windows close by the clock).
#[inline]
pub fn decide<'q>(
    snapshot: &Snapshot,
    queues: &QueueMap,
    realm: &str,
    queue_id: Option<&'q str>,
    is_get: bool,
    default_policy: MovePolicy,
    now: f64,
) -> Decision<'q> {
    let route = snapshot.route_targets(realm);
    let current = route.map(|(d, _)| d.shard);
    if let Some((queue_id, entry)) = queue_id.and_then(|q| Some((q, queues.lookup(q)?))) {
        let forward = |moved| Decision::Forward {
            target: entry.shard,
            home: entry.home,
            known: true,
            moved,
        };
        if route.is_some_and(|(_, targets)| targets.contains(&entry.shard)) {
            return forward(false);
        }
        let stays = match snapshot.origin() {
            Origin::Database => snapshot.is_resident(realm, entry.shard, now),
            Origin::Config if Some(entry.home) == current => return forward(false),
            Origin::Config => default_policy == MovePolicy::Drain,
        };
        // A non-GET (the client's own DELETE) goes to the queue wherever it is.
        if stays || !is_get {
            return forward(true);
        }
        return Decision::Reload {
            old: entry.shard,
            queue_id,
        };
    }
    match current {
        Some(s) if snapshot.reachable(s) => Decision::Forward {
            target: s,
            home: s,
            known: false,
            moved: false,
        },
        _ => Decision::NoShard,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::queues::QueueMetrics;
    use crate::routing::{Origin, Shard};

    fn snapshot(assign_to: Option<ShardId>) -> Snapshot {
        let shards = (0..3)
            .map(|i| Shard {
                name: format!("s{i}"),
                address: format!("127.0.0.1:{}", 9800 + i),
                port: 9800 + i as u16,
                weight: 1.0,
            })
            .collect();
        let assignments = assign_to
            .map(|s| HashMap::from([("r.example.com".to_string(), s)]))
            .unwrap_or_default();
        Snapshot::new(shards, assignments, vec![]).unwrap()
    }

    #[tokio::test]
    async fn decision_table() {
        let q = QueueMap::new(100, Duration::from_secs(600), QueueMetrics::default());
        q.learn("known", 0, 0, "r.example.com");
        q.learn("split", 2, 0, "r.example.com"); // lives on 2 via X-Accel-Redirect
        let home = snapshot(Some(0));
        let moved = snapshot(Some(1));
        let fwd = |target, home, known, moved| Decision::Forward {
            target,
            home,
            known,
            moved,
        };
        use MovePolicy::*;
        let cases = [
            (&home, Some("known"), true, Drain, fwd(0, 0, true, false)),
            (&home, Some("split"), true, Reload, fwd(2, 0, true, false)),
            (
                &home,
                Some("unknown"),
                true,
                Reload,
                fwd(0, 0, false, false),
            ),
            (&home, None, true, Reload, fwd(0, 0, false, false)),
            (&moved, Some("known"), true, Drain, fwd(0, 0, true, true)),
            (
                &moved,
                Some("known"),
                true,
                Reload,
                Decision::Reload {
                    old: 0,
                    queue_id: "known",
                },
            ),
            (
                &moved,
                Some("split"),
                true,
                Reload,
                Decision::Reload {
                    old: 2,
                    queue_id: "split",
                },
            ),
            (&moved, Some("known"), false, Reload, fwd(0, 0, true, true)),
            (
                &moved,
                Some("unknown"),
                true,
                Reload,
                fwd(1, 1, false, false),
            ),
        ];
        for (i, (snap, qid, get, policy, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                decide(snap, &q, "r.example.com", qid, get, policy, 0.0),
                want,
                "case {i}"
            );
        }
        // With a database, a moved realm's queue stays on its shard while the shard is
        // resident (a drain window is open), then gets the reload answer, whatever the policy.
        let db = |s: Snapshot| s.with_origin(Origin::Database);
        let window = |until| crate::routing::Window {
            id: 1,
            opened_at: 0.0,
            until,
            change: "assign r.example.com s0 -> s1".into(),
            changed_by: "test".into(),
            before: snapshot(Some(0)),
            after: snapshot(Some(1)),
        };
        let draining = db(snapshot(Some(1))).with_windows(vec![window(100.0)]);
        let known =
            |s: &Snapshot, now| decide(s, &q, "r.example.com", Some("known"), true, Reload, now);
        assert_eq!(known(&draining, 10.0), fwd(0, 0, true, true));
        assert_eq!(
            known(&draining, 100.0),
            Decision::Reload {
                old: 0,
                queue_id: "known",
            }
        );
        assert_eq!(
            known(&db(snapshot(Some(1))), 10.0),
            Decision::Reload {
                old: 0,
                queue_id: "known",
            }
        );
        // Drain as the default policy does not keep a queue without a window.
        assert_eq!(
            decide(
                &db(snapshot(Some(1))),
                &q,
                "r.example.com",
                Some("known"),
                true,
                Drain,
                0.0
            ),
            Decision::Reload {
                old: 0,
                queue_id: "known",
            }
        );
    }

    #[test]
    fn finds_the_queue_id() {
        assert_eq!(
            queue_id(Some("queue_id=abc&last_event_id=3")).as_deref(),
            Some("abc")
        );
        assert_eq!(
            queue_id(Some("dont_block=true&queue_id=a%3Ab")).as_deref(),
            Some("a:b")
        );
        assert_eq!(queue_id(Some("dont_block=true")), None);
        assert_eq!(queue_id(Some("queue_id=")), None);
        assert_eq!(queue_id(None), None);
    }

    #[test]
    fn unencoded_fast_path_agrees_with_decoding() {
        let decoded = |q: &str| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "queue_id")
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
        };
        for q in [
            "queue_id=a&queue_id=b",
            "x=1&queue_id",
            "&&queue_id=q&",
            "queue_idx=1&queue_id=2",
            "aqueue_id=1&queue_id=3",
            "queue_id=&queue_id=4",
            "queue_id==5",
            "last_event_id=-1&queue_id=1517975029:0&dont_block=false",
            "queue_id=a%20b",
            "queue_id=a+b",
            "queue%5Fid=c&queue_id=d",
        ] {
            assert_eq!(queue_id(Some(q)), decoded(q), "{q}");
        }
    }
}
