//! The routing decision: which shard serves a realm. A pure function of an immutable
//! [`Snapshot`], swapped atomically when the configuration (or, later, the database) changes.
//!
//! Order: explicit assignment (host → shard) → first matching regex rule (case-insensitive,
//! anchored at the start like Python's `re.match`) → weighted rendezvous hashing over the shards
//! with weight > 0. Queue-level routing (a known `queue_id`) will sit in front of this.

pub mod host;
pub mod rendezvous;
pub mod residency;
pub mod state;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use regex::Regex;

pub use host::{normalize_host, HostError};
use rendezvous::{Candidate, Table};
pub use residency::{Resident, Window};

/// Index of a shard in [`Snapshot::shards`].
pub type ShardId = usize;

/// A realm's shards: one, or several for a Zulip realm split by user (user `u` lives on
/// `targets[u % len]`).
pub type Targets = Arc<[ShardId]>;

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
    /// The first of `targets`.
    pub shard: ShardId,
    pub targets: Targets,
}

impl Rule {
    /// Compiles `pattern` with Zulip's semantics (`re.match(pattern, host, re.IGNORECASE)`).
    pub fn new(pattern: &str, shard: ShardId) -> Result<Rule, regex::Error> {
        Rule::split(pattern, Arc::from([shard]))
    }

    /// A rule sending matching realms to several shards, split by user. `targets` is not empty.
    pub fn split(pattern: &str, targets: Targets) -> Result<Rule, regex::Error> {
        let regex = Regex::new(&format!("(?i)^(?:{pattern})"))?;
        Ok(Rule {
            pattern: pattern.to_string(),
            regex,
            shard: targets[0],
            targets,
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
///
/// `shards` are the shards kansas can reach (ids `0..n` from the configuration file, stable
/// for the life of the process), then any "ghost" shards: shards the database registers that
/// the configuration file does not have. Ghosts take part in hashing, so every process agrees
/// on every realm's shard, but kansas cannot forward to them ([`Snapshot::reachable`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    shards: Vec<Shard>,
    /// How many of `shards` kansas can reach (the rest are ghosts).
    reachable: usize,
    by_name: HashMap<String, ShardId>,
    assignments: HashMap<String, Targets>,
    rules: Vec<Rule>,
    candidates: Vec<Candidate>,
    table: Table,
    origin: Origin,
    by_port: HashMap<u16, ShardId>,
    /// `[i]` is a one-shard target list for shard `i`, so a hashed route is a slice too.
    singles: Vec<ShardId>,
    /// Open and closed drain windows, newest first (see [`residency`]).
    windows: Arc<[Window]>,
}

impl Snapshot {
    /// Builds a snapshot. Assignment keys must already be normalized hosts and every `ShardId`
    /// must index `shards` (the config validator guarantees both).
    pub fn new(
        shards: Vec<Shard>,
        assignments: HashMap<String, ShardId>,
        rules: Vec<Rule>,
    ) -> Result<Snapshot, SnapshotError> {
        let assignments = assignments
            .into_iter()
            .map(|(realm, id)| (realm, Targets::from([id])))
            .collect();
        let reachable = shards.len();
        Snapshot::build(shards, reachable, assignments, rules)
    }

    /// Builds a snapshot whose assignments may split realms over several shards, and whose
    /// shards past `reachable` are ghosts.
    pub fn build(
        shards: Vec<Shard>,
        reachable: usize,
        assignments: HashMap<String, Targets>,
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
        let by_port = shards[..reachable.min(shards.len())]
            .iter()
            .enumerate()
            .map(|(i, s)| (s.port, i))
            .collect();
        Ok(Snapshot {
            by_port,
            origin: Origin::Config,
            table,
            singles: (0..shards.len()).collect(),
            reachable: reachable.min(shards.len()),
            shards,
            by_name,
            assignments,
            rules,
            candidates,
            windows: Arc::from([]),
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

    /// Sets the drain windows (any order; kept newest first).
    pub fn with_windows(mut self, mut windows: Vec<Window>) -> Snapshot {
        windows.sort_by(|a, b| {
            b.opened_at
                .total_cmp(&a.opened_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        self.windows = windows.into();
        self
    }

    /// The drain windows, newest first (closed ones included: check `until`).
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// The shard answering to a Tornado port (for `X-Accel-Redirect`); reachable shards only.
    pub fn shard_by_port(&self, port: u16) -> Option<ShardId> {
        self.by_port.get(&port).copied()
    }

    /// Every shard, the reachable ones first, then ghosts.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// How many shards kansas can reach (ids `0..n`; the rest are ghosts).
    pub fn reachable_count(&self) -> usize {
        self.reachable
    }

    /// Whether kansas can forward to this shard (it is in the configuration file).
    #[inline]
    pub fn reachable(&self, id: ShardId) -> bool {
        id < self.reachable
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

    pub fn assignments(&self) -> &HashMap<String, Targets> {
        &self.assignments
    }

    /// Routes a normalized realm host. `None` only when nothing is assigned or matched and
    /// every shard has weight 0. For a realm split by user, the first of its shards.
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
        self.route_targets(realm).map(|(d, _)| d)
    }

    /// Routes a realm to all of its shards (several for a realm split by user).
    #[inline]
    pub fn route_targets(&self, realm: &str) -> Option<(Decision, &[ShardId])> {
        if let Some(targets) = self.assignments.get(realm) {
            let d = Decision {
                shard: targets[0],
                source: Source::Assignment,
            };
            return Some((d, targets));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.regex.is_match(realm) {
                let d = Decision {
                    shard: rule.shard,
                    source: Source::Rule(i),
                };
                return Some((d, &rule.targets));
            }
        }
        self.hash(realm).map(|shard| {
            let d = Decision {
                shard,
                source: Source::Hash,
            };
            (d, &self.singles[shard..shard + 1])
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
