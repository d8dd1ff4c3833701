//! Where a request goes. A queue kansas knows goes to the shard it lives on, unless its realm
//! has moved since (its route is no longer the queue's home) and the move policy is `reload`,
//! in which case the GET is answered `BAD_EVENT_QUEUE_ID`. Anything else follows the realm's
//! route: assignment, rule, hashing.

use crate::queues::QueueMap;
use crate::routing::{MovePolicy, ShardId, Snapshot};

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it to `target`; a queue learned from the answer gets `home` as its realm's home.
    /// `known` is set when the queue map placed the request (and counted it as a use of the
    /// queue); `moved` when a known queue's realm has moved and the queue is drained.
    Forward {
        target: ShardId,
        home: ShardId,
        known: bool,
        moved: bool,
    },
    /// Answer `400 BAD_EVENT_QUEUE_ID`; tell `old` to drop the queue.
    Reload { old: ShardId },
    /// Nothing can serve the realm.
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

/// Decides where a request for `realm` (and `queue_id`) goes.
#[inline]
pub fn decide(
    snapshot: &Snapshot,
    queues: &QueueMap,
    realm: &str,
    queue_id: Option<&str>,
    is_get: bool,
    default_policy: MovePolicy,
) -> Decision {
    let current = snapshot.route(realm).map(|d| d.shard);
    if let Some(entry) = queue_id.and_then(|q| queues.lookup(q)) {
        if Some(entry.home) == current {
            return Decision::Forward {
                target: entry.shard,
                home: entry.home,
                known: true,
                moved: false,
            };
        }
        let policy = snapshot.move_policy(realm).unwrap_or(default_policy);
        if is_get && policy == MovePolicy::Reload {
            return Decision::Reload { old: entry.shard };
        }
        // Drain (or a non-GET, such as the client's own DELETE): the queue stays where it is.
        return Decision::Forward {
            target: entry.shard,
            home: entry.home,
            known: true,
            moved: true,
        };
    }
    match current {
        Some(s) => Decision::Forward {
            target: s,
            home: s,
            known: false,
            moved: false,
        },
        None => Decision::NoShard,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::queues::QueueMetrics;
    use crate::routing::Shard;

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
                Decision::Reload { old: 0 },
            ),
            (
                &moved,
                Some("split"),
                true,
                Reload,
                Decision::Reload { old: 2 },
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
                decide(snap, &q, "r.example.com", qid, get, policy),
                want,
                "case {i}"
            );
        }
        // A per-assignment policy overrides the default.
        let moved_reload = snapshot(Some(1))
            .with_move_policies(HashMap::from([("r.example.com".to_string(), Reload)]));
        assert_eq!(
            decide(
                &moved_reload,
                &q,
                "r.example.com",
                Some("known"),
                true,
                Drain
            ),
            Decision::Reload { old: 0 }
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
