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

/// What happens to a realm's known queues when the realm moves to another shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MovePolicy {
    /// The next request for such a queue gets `400 BAD_EVENT_QUEUE_ID` from kansas (the client
    /// reloads and re-registers on the new shard); the old shard is told to drop the queue.
    Reload,
    /// Such queues stay on the old shard until they expire; new queues go to the new shard.
    Drain,
}

impl MovePolicy {
    pub fn parse(s: &str) -> Option<MovePolicy> {
        match s {
            "reload" => Some(MovePolicy::Reload),
            "drain" => Some(MovePolicy::Drain),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MovePolicy::Reload => "reload",
            MovePolicy::Drain => "drain",
        }
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
    /// Per-realm move policies (from database assignments); others use the default.
    move_policies: HashMap<String, MovePolicy>,
    by_port: HashMap<u16, ShardId>,
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
        let by_port = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.port, i))
            .collect();
        Ok(Snapshot {
            move_policies: HashMap::new(),
            by_port,
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

    /// Sets per-realm move policies.
    pub fn with_move_policies(mut self, policies: HashMap<String, MovePolicy>) -> Snapshot {
        self.move_policies = policies;
        self
    }

    /// The realm's own move policy, if its assignment has one.
    #[inline]
    pub fn move_policy(&self, realm: &str) -> Option<MovePolicy> {
        if self.move_policies.is_empty() {
            return None;
        }
        self.move_policies.get(realm).copied()
    }

    /// The shard answering to a Tornado port (for `X-Accel-Redirect`).
    pub fn shard_by_port(&self, port: u16) -> Option<ShardId> {
        self.by_port.get(&port).copied()
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
