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
//!
//! [`choose`] is the definition, written plainly. [`Table`] computes the same answer faster for
//! the request path: among shards of equal weight the score grows with `x >> 11`, so it compares
//! integers and takes one logarithm per weight group, falling back to exact scores whenever two
//! shards of a group come within [`NEAR`] of each other (where rounding could make scores tie).

use xxhash_rust::xxh64::xxh64;

/// `2^53` as a float: the number of distinct `u` values.
const TWO_POW_53: f64 = 9_007_199_254_740_992.0;

/// XXH64 with seed 0 of a shard name or realm host.
#[inline]
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxh64(bytes, 0)
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// XXH64 (seed 0) of the 16 bytes `le64(a) ‖ le64(b)`, written out for exactly that input
/// (the specification's short-input path); equal to `xxh64(&bytes, 0)`, checked by a test.
#[inline]
pub fn xxh64_pair(a: u64, b: u64) -> u64 {
    #[inline(always)]
    fn round(input: u64) -> u64 {
        input.wrapping_mul(P2).rotate_left(31).wrapping_mul(P1)
    }
    let mut h = P5.wrapping_add(16);
    h ^= round(a);
    h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
    h ^= round(b);
    h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// The 53-bit integer behind `u` for one (shard, realm) pair.
#[inline]
fn mantissa(shard_hash: u64, realm_hash: u64) -> u64 {
    xxh64_pair(shard_hash, realm_hash) >> 11
}

#[inline]
fn unit_of(m: u64) -> f64 {
    (m as f64 + 0.5) / TWO_POW_53
}

/// The uniform value `u ∈ (0, 1)` for one (shard, realm) pair, from their key hashes.
#[inline]
pub fn unit(shard_hash: u64, realm_hash: u64) -> f64 {
    unit_of(mantissa(shard_hash, realm_hash))
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

/// Two shards of one weight group whose `x >> 11` differ by at most this are scored exactly:
/// farther apart, their logarithms differ by dozens of ulps and cannot tie or swap.
pub const NEAR: u64 = 64;

/// One member of a weight group.
#[derive(Debug, Clone)]
struct Member {
    index: usize,
    hash: u64,
}

/// Shards of equal weight, in configuration order.
#[derive(Debug, Clone)]
struct Group {
    weight: f64,
    members: Vec<Member>,
}

/// The request-path form of a candidate list: shards with weight > 0 grouped by weight.
/// [`Table::choose`] gives exactly what [`choose`] gives for the same candidates.
#[derive(Debug, Clone)]
pub struct Table {
    groups: Vec<Group>,
    names: Vec<String>,
}

impl Table {
    /// Builds the table; `candidates[i].index` must be `i`.
    pub fn new(candidates: &[Candidate]) -> Table {
        let mut groups: Vec<Group> = Vec::new();
        for c in candidates.iter().filter(|c| c.weight > 0.0) {
            let member = Member {
                index: c.index,
                hash: c.hash,
            };
            match groups.iter_mut().find(|g| g.weight == c.weight) {
                Some(g) => g.members.push(member),
                None => groups.push(Group {
                    weight: c.weight,
                    members: vec![member],
                }),
            }
        }
        Table {
            groups,
            names: candidates.iter().map(|c| c.name.clone()).collect(),
        }
    }

    /// The winning shard index for a realm hash (same rule as [`choose`]).
    #[inline]
    pub fn choose(&self, realm_hash: u64) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for g in &self.groups {
            let (mut top, mut top_m, mut second_m) = (0, 0u64, None::<u64>);
            for (i, m) in g.members.iter().enumerate() {
                let x = mantissa(m.hash, realm_hash);
                if i == 0 || x > top_m {
                    if i > 0 {
                        second_m = Some(top_m);
                    }
                    top = i;
                    top_m = x;
                } else if second_m.is_none_or(|s| x > s) {
                    second_m = Some(x);
                }
            }
            if second_m.is_some_and(|s| top_m - s <= NEAR) {
                // Rare: a near tie inside the group. Score every member exactly.
                for m in &g.members {
                    let s = score(g.weight, m.hash, realm_hash);
                    best = self.better(best, m.index, s);
                }
            } else {
                let s = g.weight / -unit_of(top_m).ln();
                best = self.better(best, g.members[top].index, s);
            }
        }
        best.map(|(i, _)| i)
    }

    /// The definition's comparison: higher score, then the smaller name.
    #[inline]
    fn better(&self, best: Option<(usize, f64)>, index: usize, s: f64) -> Option<(usize, f64)> {
        match best {
            Some((b, bs))
                if bs > s
                    || (bs == s && self.names[b].as_bytes() <= self.names[index].as_bytes()) =>
            {
                best
            }
            _ => Some((index, s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_hash_is_xxh64_of_the_16_bytes() {
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..100_000 {
            let (a, b) = (rng.u64(..), rng.u64(..));
            let mut buf = [0u8; 16];
            buf[..8].copy_from_slice(&a.to_le_bytes());
            buf[8..].copy_from_slice(&b.to_le_bytes());
            assert_eq!(xxh64_pair(a, b), xxh64(&buf, 0));
        }
    }

    #[test]
    fn table_agrees_with_the_definition() {
        let mut rng = fastrand::Rng::with_seed(2);
        let weights = [0.0, 0.5, 1.0, 1.0, 1.0, 2.0, 3.25];
        for case in 0..20_000 {
            let n = rng.usize(1..40);
            let cands: Vec<Candidate> = (0..n)
                .map(|i| {
                    let w = if case % 2 == 0 {
                        1.0
                    } else {
                        weights[rng.usize(0..weights.len())]
                    };
                    Candidate::new(i, &format!("s{}-{i}", rng.u32(..)), w)
                })
                .collect();
            let table = Table::new(&cands);
            let realm = rng.u64(..);
            assert_eq!(table.choose(realm), choose(&cands, realm).map(|c| c.index));
        }
    }

    #[test]
    fn table_handles_exact_ties_like_the_definition() {
        // Same name hash (forced) → equal scores → the smaller name wins, in any order.
        let mut cands = vec![Candidate::new(0, "z", 1.0), Candidate::new(1, "z", 1.0)];
        cands[1].name = "y".into();
        assert_eq!(Table::new(&cands).choose(42), Some(1));
        let mut rev = vec![cands[1].clone(), cands[0].clone()];
        rev[0].index = 0;
        rev[1].index = 1;
        assert_eq!(Table::new(&rev).choose(42), Some(0));
        assert_eq!(Table::new(&[Candidate::new(0, "x", 0.0)]).choose(1), None);
    }

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
