//! Generates `tests/data/routing-vectors.json`, the golden vectors for weighted rendezvous
//! hashing (see `docs/routing.md`). Deterministic: the same seed always writes the same file.
//!
//! `cargo run --example routing_vectors > tests/data/routing-vectors.json`

use kansas::routing::rendezvous::{choose, key_hash, score, Candidate};

const CASES: usize = 1200;
const WEIGHTS: [f64; 9] = [0.0, 0.1, 0.25, 0.5, 0.8, 1.0, 1.5, 3.25, 10.0];

fn name(rng: &mut fastrand::Rng, i: usize) -> String {
    match rng.u8(0..4) {
        0 => format!("tornado-{}", 9800 + i),
        1 => format!("shard{i}"),
        2 => format!("{}-{i}", ["eu", "us", "asia", "big"][rng.usize(0..4)]),
        _ => {
            (0..rng.usize(1..12))
                .map(|_| rng.alphanumeric().to_ascii_lowercase())
                .collect::<String>()
                + &i.to_string()
        }
    }
}

fn realm(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..4) {
        0 => format!("realm{}.zulipchat.com", rng.u32(0..1_000_000)),
        1 => format!("chat.{}.org", rng.u32(0..100_000)),
        2 => "x".repeat(rng.usize(1..60)) + ".example.com",
        _ => (0..rng.usize(1..30))
            .map(|_| rng.alphanumeric().to_ascii_lowercase())
            .collect(),
    }
}

fn main() {
    let mut rng = fastrand::Rng::with_seed(0x6b61_6e73_6173);
    let mut cases = Vec::with_capacity(CASES);
    for case in 0..CASES {
        let n = match case {
            0..=99 => 1 + case % 4,
            _ => rng.usize(1..=24),
        };
        let all_equal = case % 3 == 0;
        let cands: Vec<Candidate> = (0..n)
            .map(|i| {
                let w = if all_equal {
                    1.0
                } else {
                    WEIGHTS[rng.usize(0..WEIGHTS.len())]
                };
                Candidate::new(i, &name(&mut rng, i), w)
            })
            .collect();
        let host = realm(&mut rng);
        let realm_hash = key_hash(host.as_bytes());
        let winner = choose(&cands, realm_hash).map(|c| c.name.clone());
        let shards: Vec<_> = cands
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "weight": c.weight,
                    "score": score(c.weight, c.hash, realm_hash),
                })
            })
            .collect();
        cases.push(serde_json::json!({
            "realm": host,
            "realm_hash": format!("{realm_hash:016x}"),
            "shards": shards,
            "winner": winner,
        }));
    }
    // One case per line: small diffs, easy to read with grep.
    println!("{{");
    println!(
        "\"description\": \"Golden vectors for kansas weighted rendezvous hashing; see docs/routing.md\","
    );
    println!("\"hash\": \"XXH64 (xxHash 0.8 specification), seed 0\",");
    println!("\"cases\": [");
    for (i, case) in cases.iter().enumerate() {
        let sep = if i + 1 < cases.len() { "," } else { "" };
        println!("{case}{sep}");
    }
    println!("]}}");
}
