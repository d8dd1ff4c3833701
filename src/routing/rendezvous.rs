//! Weighted rendezvous (highest random weight) hashing, specified exactly in `docs/routing.md`
//! so another implementation (Django) computes the same answer:
//!
//! - `h_realm = XXH64(realm host bytes, seed 0)`, `h_shard = XXH64(shard name bytes, seed 0)`;
//! - `x = XXH64(le64(h_shard) ‖ le64(h_realm), seed 0)` (16 bytes);
//! - `u = ((x >> 11) + 0.5) / 2^53`, so `u ∈ (0, 1)`;
//! - `score = weight / −ln(u)`; the highest score wins, equal scores go to the shard whose name
//!   sorts first (byte order); shards with weight 0 never win.
//!
//! XXH64 is a frozen specification (xxHash 0.8), so the answer never changes between releases.

use xxhash_rust::xxh64::xxh64;

/// `2^53` as a float: the number of distinct `u` values.
const TWO_POW_53: f64 = 9_007_199_254_740_992.0;

/// XXH64 with seed 0 of a shard name or realm host.
#[inline]
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxh64(bytes, 0)
}

/// The uniform value `u ∈ (0, 1)` for one (shard, realm) pair, from their key hashes.
#[inline]
pub fn unit(shard_hash: u64, realm_hash: u64) -> f64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&shard_hash.to_le_bytes());
    buf[8..].copy_from_slice(&realm_hash.to_le_bytes());
    let x = xxh64(&buf, 0);
    ((x >> 11) as f64 + 0.5) / TWO_POW_53
}

/// The score of one shard for one realm; 0 for weight 0 (never chosen).
#[inline]
pub fn score(weight: f64, shard_hash: u64, realm_hash: u64) -> f64 {
    if weight <= 0.0 {
        return 0.0;
    }
    weight / -unit(shard_hash, realm_hash).ln()
}

/// One hashing candidate: a shard's index, weight, name and precomputed name hash.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub index: usize,
    pub weight: f64,
    pub name: String,
    pub hash: u64,
}

impl Candidate {
    pub fn new(index: usize, name: &str, weight: f64) -> Self {
        Candidate {
            index,
            weight,
            name: name.to_string(),
            hash: key_hash(name.as_bytes()),
        }
    }
}

/// Picks the winning candidate for a realm hash: highest score, ties to the smaller name.
/// Candidates with weight 0 are never chosen; `None` when no candidate has weight > 0.
#[inline]
pub fn choose(candidates: &[Candidate], realm_hash: u64) -> Option<&Candidate> {
    let mut best: Option<(&Candidate, f64)> = None;
    for c in candidates {
        if c.weight <= 0.0 {
            continue;
        }
        let s = score(c.weight, c.hash, realm_hash);
        best = match best {
            Some((b, bs)) if bs > s || (bs == s && b.name.as_bytes() <= c.name.as_bytes()) => {
                Some((b, bs))
            }
            _ => Some((c, s)),
        };
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_reference_values() {
        // Reference values from the xxHash specification's test suite.
        assert_eq!(key_hash(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(key_hash(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(key_hash(b"abc"), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn unit_is_open_interval() {
        for i in 0..10_000u64 {
            let u = unit(i, i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert!(u > 0.0 && u < 1.0);
        }
    }

    #[test]
    fn zero_weight_never_wins_and_ties_go_to_smaller_name() {
        let cands = vec![Candidate::new(0, "b", 1.0), Candidate::new(1, "a", 0.0)];
        for i in 0..1000u64 {
            assert_eq!(choose(&cands, i).unwrap().name, "b");
        }
        assert!(choose(&[Candidate::new(0, "x", 0.0)], 7).is_none());
        // Two candidates with the same name hash give equal scores: the smaller name wins
        // whatever their order.
        let mut same = vec![Candidate::new(0, "z", 1.0), Candidate::new(1, "z", 1.0)];
        same[1].name = "y".into();
        assert_eq!(choose(&same, 42).unwrap().name, "y");
        same.reverse();
        assert_eq!(choose(&same, 42).unwrap().name, "y");
    }
}
