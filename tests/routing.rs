//! Weighted rendezvous hashing: the golden vectors (`tests/data/routing-vectors.json`, the
//! contract with other implementations such as Django) and the distribution properties the
//! design promises, each over 10,000 generated realm hosts.

use std::collections::HashMap;

use kansas::routing::rendezvous::{choose, key_hash, score, Candidate};
use kansas::routing::{Shard, Snapshot};

const REALMS: usize = 10_000;

fn realms() -> Vec<String> {
    (0..REALMS)
        .map(|i| format!("realm{i}-{}.zulipchat.com", i * 7919 % 1000))
        .collect()
}

fn snapshot(weights: &[(&str, f64)]) -> Snapshot {
    let shards = weights
        .iter()
        .enumerate()
        .map(|(i, (name, weight))| Shard {
            name: name.to_string(),
            address: format!("127.0.0.1:{}", 9800 + i),
            port: 9800 + i as u16,
            weight: *weight,
        })
        .collect();
    Snapshot::new(shards, HashMap::new(), vec![]).unwrap()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tornado-{}", 9800 + i)).collect()
}

/// realm → shard name, by hashing only.
fn assign(s: &Snapshot, realms: &[String]) -> Vec<String> {
    realms
        .iter()
        .map(|r| s.shard(s.hash(r).unwrap()).name.clone())
        .collect()
}

fn equal(n: usize) -> Snapshot {
    let names = names(n);
    let w: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 1.0)).collect();
    snapshot(&w)
}

#[test]
fn golden_vectors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/routing-vectors.json"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 1000, "at least 1,000 cases");
    let mut shard_counts = std::collections::BTreeSet::new();
    for (i, case) in cases.iter().enumerate() {
        let realm = case["realm"].as_str().unwrap();
        let realm_hash = key_hash(realm.as_bytes());
        assert_eq!(format!("{realm_hash:016x}"), case["realm_hash"], "case {i}");
        let cands: Vec<Candidate> = case["shards"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(j, s)| {
                Candidate::new(
                    j,
                    s["name"].as_str().unwrap(),
                    s["weight"].as_f64().unwrap(),
                )
            })
            .collect();
        shard_counts.insert(cands.len());
        for (c, s) in cands.iter().zip(case["shards"].as_array().unwrap()) {
            let want = s["score"].as_f64().unwrap();
            assert_eq!(
                score(c.weight, c.hash, realm_hash),
                want,
                "case {i} shard {}",
                c.name
            );
        }
        let winner = choose(&cands, realm_hash).map(|c| c.name.as_str());
        assert_eq!(winner, case["winner"].as_str(), "case {i}: realm {realm}");
    }
    assert!(
        shard_counts.len() >= 10,
        "varied shard-set sizes: {shard_counts:?}"
    );
}

#[test]
fn eight_equal_shards_are_balanced() {
    let s = equal(8);
    let mut load: HashMap<String, usize> = HashMap::new();
    for name in assign(&s, &realms()) {
        *load.entry(name).or_default() += 1;
    }
    assert_eq!(load.len(), 8);
    let max = *load.values().max().unwrap() as f64;
    let mean = REALMS as f64 / 8.0;
    eprintln!(
        "8 equal shards over {REALMS} realms: max/mean = {:.4}",
        max / mean
    );
    assert!(max / mean <= 1.10, "max/mean = {} ({load:?})", max / mean);
}

#[test]
fn adding_a_ninth_shard_moves_one_ninth_all_to_it() {
    let realms = realms();
    let before = assign(&equal(8), &realms);
    let after = assign(&equal(9), &realms);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if a != b {
            moved += 1;
            assert_eq!(
                a, "tornado-9808",
                "a moved realm goes to the new shard only"
            );
        }
    }
    let share = moved as f64 / REALMS as f64;
    eprintln!("adding a 9th shard moved {:.2}% of realms", share * 100.0);
    assert!((share - 1.0 / 9.0).abs() <= 0.015, "moved {share}");
}

#[test]
fn lowering_a_weight_moves_realms_only_away_from_that_shard() {
    let realms = realms();
    let names = names(8);
    let mut w: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 1.0)).collect();
    let before = assign(&snapshot(&w), &realms);
    w[3].1 = 0.8;
    let after = assign(&snapshot(&w), &realms);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if a != b {
            moved += 1;
            assert_eq!(b, "tornado-9803", "only realms of the lowered shard move");
        }
    }
    eprintln!("weight 1.0 -> 0.8 on one of 8 shards moved {moved} realms, all from it");
    assert!(moved > 0, "lowering a weight moves some realms");
    // Raising it back moves exactly those realms back.
    w[3].1 = 1.0;
    assert_eq!(assign(&snapshot(&w), &realms), before);
}

#[test]
fn weight_zero_gets_no_hashed_realm() {
    let realms = realms();
    let names = names(8);
    let mut w: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 1.0)).collect();
    let before = assign(&snapshot(&w), &realms);
    w[5].1 = 0.0;
    let after = assign(&snapshot(&w), &realms);
    assert!(!after.iter().any(|a| a == "tornado-9805"));
    for (b, a) in before.iter().zip(&after) {
        if b != "tornado-9805" {
            assert_eq!(a, b, "realms of other shards stay");
        }
    }
}

#[test]
fn removing_a_shard_moves_only_its_realms() {
    let realms = realms();
    let names = names(8);
    let all: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 1.0)).collect();
    let before = assign(&snapshot(&all), &realms);
    let fewer: Vec<(&str, f64)> = all
        .iter()
        .filter(|(n, _)| *n != "tornado-9802")
        .copied()
        .collect();
    let after = assign(&snapshot(&fewer), &realms);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == "tornado-9802" {
            moved += 1;
        } else {
            assert_eq!(a, b, "realms of remaining shards stay");
        }
    }
    assert!(moved > 1000);
}

#[test]
fn weights_set_shares() {
    // A shard with weight 2 among weight-1 shards gets about twice their share.
    let realms = realms();
    let s = snapshot(&[("a", 1.0), ("b", 1.0), ("c", 2.0)]);
    let got = assign(&s, &realms);
    let c = got.iter().filter(|n| *n == "c").count() as f64 / REALMS as f64;
    assert!((c - 0.5).abs() < 0.02, "share of weight 2 of 4: {c}");
}
