//! The routing decision: which shard serves a realm. A pure function of an immutable
//! [`Snapshot`], swapped atomically when the configuration (or, later, the database) changes.
//!
//! Order: explicit assignment (host → shard) → first matching regex rule (case-insensitive,
//! anchored at the start like Python's `re.match`) → weighted rendezvous hashing over the shards
//! with weight > 0. Queue-level routing (a known `queue_id`) will sit in front of this.

pub mod host;
pub mod rendezvous;

use std::collections::HashMap;
use std::fmt;

use regex::Regex;

pub use host::{normalize_host, HostError};
use rendezvous::{Candidate, Table};

/// Index of a shard in [`Snapshot::shards`].
pub type ShardId = usize;

/// A Tornado shard as routing and proxying see it.
#[derive(Debug, Clone)]
pub struct Shard {
    pub name: String,
    /// `host:port` the proxy connects to.
    pub address: String,
    /// The Tornado port number this shard answers to (used by Zulip's `X-Accel-Redirect`).
    pub port: u16,
    pub weight: f64,
}

/// A realm-host regex rule, anchored at the start and case-insensitive.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The pattern as written in the configuration.
    pub pattern: String,
    pub regex: Regex,
    pub shard: ShardId,
}

impl Rule {
    /// Compiles `pattern` with Zulip's semantics (`re.match(pattern, host, re.IGNORECASE)`).
    pub fn new(pattern: &str, shard: ShardId) -> Result<Rule, regex::Error> {
        let regex = Regex::new(&format!("(?i)^(?:{pattern})"))?;
        Ok(Rule {
            pattern: pattern.to_string(),
            regex,
            shard,
        })
    }
}

/// Where a snapshot's assignments, rules and weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file.
    Config,
    /// The database (shard addresses still come from the configuration file).
    Database,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Config => "config file",
            Origin::Database => "database",
        })
    }
}

/// Why a shard was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An explicit realm assignment.
    Assignment,
    /// The regex rule at this index.
    Rule(usize),
    /// Weighted rendezvous hashing.
    Hash,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Assignment => f.write_str("assignment"),
            Source::Rule(i) => write!(f, "rule[{i}]"),
            Source::Hash => f.write_str("hash"),
        }
    }
}

/// The outcome of routing one realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub shard: ShardId,
    pub source: Source,
}

/// Why a snapshot could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("no shards")]
    NoShards,
    #[error("duplicate shard name {0:?}")]
    DuplicateShard(String),
}

/// Everything routing needs, immutable once built.
#[derive(Debug, Clone)]
pub struct Snapshot {
    shards: Vec<Shard>,
    by_name: HashMap<String, ShardId>,
    assignments: HashMap<String, ShardId>,
    rules: Vec<Rule>,
    candidates: Vec<Candidate>,
    table: Table,
    origin: Origin,
}

impl Snapshot {
    /// Builds a snapshot. Assignment keys must already be normalized hosts and every `ShardId`
    /// must index `shards` (the config validator guarantees both).
    pub fn new(
        shards: Vec<Shard>,
        assignments: HashMap<String, ShardId>,
        rules: Vec<Rule>,
    ) -> Result<Snapshot, SnapshotError> {
        if shards.is_empty() {
            return Err(SnapshotError::NoShards);
        }
        let mut by_name = HashMap::with_capacity(shards.len());
        for (i, s) in shards.iter().enumerate() {
            if by_name.insert(s.name.clone(), i).is_some() {
                return Err(SnapshotError::DuplicateShard(s.name.clone()));
            }
        }
        let candidates: Vec<Candidate> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| Candidate::new(i, &s.name, s.weight))
            .collect();
        let table = Table::new(&candidates);
        Ok(Snapshot {
            origin: Origin::Config,
            table,
            shards,
            by_name,
            assignments,
            rules,
            candidates,
        })
    }

    /// Marks where this snapshot's routing data came from.
    pub fn with_origin(mut self, origin: Origin) -> Snapshot {
        self.origin = origin;
        self
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    pub fn shard(&self, id: ShardId) -> &Shard {
        &self.shards[id]
    }

    pub fn shard_id(&self, name: &str) -> Option<ShardId> {
        self.by_name.get(name).copied()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn assignments(&self) -> &HashMap<String, ShardId> {
        &self.assignments
    }

    /// Routes a normalized realm host. `None` only when nothing is assigned or matched and
    /// every shard has weight 0.
    ///
    /// ```
    /// use kansas::routing::{Rule, Shard, Snapshot, Source};
    /// let shard = |name: &str, port: u16| Shard {
    ///     name: name.into(), address: format!("127.0.0.1:{port}"), port, weight: 1.0,
    /// };
    /// let assignments = [("big.example.com".to_string(), 1)].into_iter().collect();
    /// let rules = vec![Rule::new(r".*\.eu\.example\.com", 0).unwrap()];
    /// let s = Snapshot::new(vec![shard("a", 9800), shard("b", 9801)], assignments, rules).unwrap();
    /// assert_eq!(s.route("big.example.com").unwrap().source, Source::Assignment);
    /// assert_eq!(s.route("chat.eu.example.com").unwrap().shard, 0);
    /// assert_eq!(s.route("other.example.org").unwrap().source, Source::Hash);
    /// ```
    #[inline]
    pub fn route(&self, realm: &str) -> Option<Decision> {
        if let Some(&shard) = self.assignments.get(realm) {
            return Some(Decision {
                shard,
                source: Source::Assignment,
            });
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.regex.is_match(realm) {
                return Some(Decision {
                    shard: rule.shard,
                    source: Source::Rule(i),
                });
            }
        }
        self.hash(realm).map(|shard| Decision {
            shard,
            source: Source::Hash,
        })
    }

    /// The rendezvous-hashing answer alone, ignoring assignments and rules.
    #[inline]
    pub fn hash(&self, realm: &str) -> Option<ShardId> {
        self.table.choose(rendezvous::key_hash(realm.as_bytes()))
    }

    /// Every shard's rendezvous score for a realm, in configuration order.
    pub fn scores(&self, realm: &str) -> Vec<(ShardId, f64)> {
        let realm_hash = rendezvous::key_hash(realm.as_bytes());
        self.candidates
            .iter()
            .map(|c| (c.index, rendezvous::score(c.weight, c.hash, realm_hash)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
