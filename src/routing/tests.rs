//! Table tests for the routing decision: assignment, rule and hash precedence.

use super::*;

fn shard(name: &str, port: u16, weight: f64) -> Shard {
    Shard {
        name: name.into(),
        address: format!("127.0.0.1:{port}"),
        port,
        weight,
    }
}

fn snapshot() -> Snapshot {
    let shards = vec![
        shard("a", 9800, 1.0),
        shard("b", 9801, 1.0),
        shard("c", 9802, 0.0),
    ];
    let mut assignments = HashMap::new();
    assignments.insert("pinned.example.com".to_string(), 2);
    assignments.insert("eu.example.com".to_string(), 0);
    let rules = vec![
        Rule::new(r"[a-z]+\.eu\.example\.com", 1).unwrap(),
        Rule::new(r"eu", 2).unwrap(),
    ];
    Snapshot::new(shards, assignments, rules).unwrap()
}

#[test]
fn decision_table() {
    let s = snapshot();
    let cases: &[(&str, ShardId, Source)] = &[
        // An assignment wins over everything, even a weight-0 shard.
        ("pinned.example.com", 2, Source::Assignment),
        // An assignment wins over a matching rule.
        ("eu.example.com", 0, Source::Assignment),
        // First matching rule wins; anchored at the start, not the end.
        ("chat.eu.example.com", 1, Source::Rule(0)),
        ("chat.eu.example.com.evil.org", 1, Source::Rule(0)),
        // Case-insensitive rule match (hosts are normalized, patterns may not be).
        ("europe.example.com", 2, Source::Rule(1)),
        // Not anchored at an inner position: "xeu..." does not match "eu".
        (
            "xeu.example.com",
            s.hash("xeu.example.com").unwrap(),
            Source::Hash,
        ),
    ];
    for &(realm, want_shard, want_source) in cases {
        let d = s.route(realm).unwrap();
        assert_eq!((d.shard, d.source), (want_shard, want_source), "{realm}");
    }
}

#[test]
fn rule_is_case_insensitive() {
    let r = Rule::new("CHAT\\.", 0).unwrap();
    assert!(r.regex.is_match("chat.example.com"));
    assert!(!r.regex.is_match("xchat.example.com"));
}

#[test]
fn hashing_never_picks_weight_zero() {
    let s = snapshot();
    for i in 0..2000 {
        let d = s.route(&format!("r{i}.example.org")).unwrap();
        if d.source == Source::Hash {
            assert_ne!(d.shard, 2);
        }
    }
}

#[test]
fn no_candidate_means_no_decision() {
    let s = Snapshot::new(vec![shard("a", 9800, 0.0)], HashMap::new(), vec![]).unwrap();
    assert!(s.route("x.example.com").is_none());
}

#[test]
fn snapshot_refuses_bad_shard_sets() {
    assert_eq!(
        Snapshot::new(vec![], HashMap::new(), vec![]).unwrap_err(),
        SnapshotError::NoShards
    );
    let dup = vec![shard("a", 9800, 1.0), shard("a", 9801, 1.0)];
    assert_eq!(
        Snapshot::new(dup, HashMap::new(), vec![]).unwrap_err(),
        SnapshotError::DuplicateShard("a".into())
    );
}
