//! A routing state as the database holds it and as drain windows record it
//! (`docs/residency.md` §2): the registered shards (name, Tornado port, weight), assignments and
//! rules naming shards by name, a realm's shards being a list (several: split by user). Turned
//! into a [`Snapshot`] against the configuration file's shards, which give kansas the addresses
//! and fix the shard ids for the life of the process.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{normalize_host, Origin, Rule, Shard, Snapshot, Targets};

/// One registered shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateShard {
    pub name: String,
    pub port: u16,
    pub weight: f64,
}

/// One regex rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRule {
    pub priority: i32,
    pub pattern: String,
    pub shards: Vec<String>,
}

/// A whole routing state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingState {
    pub shards: Vec<StateShard>,
    /// Realm → its shards.
    pub assignments: BTreeMap<String, Vec<String>>,
    /// In priority order.
    pub rules: Vec<StateRule>,
}

/// A row that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ignored {
    pub what: String,
    pub why: String,
}

impl RoutingState {
    /// The snapshot this state routes by. `config` gives the shards kansas can reach, in their
    /// fixed order: a registered one takes the state's port and weight; one the state does not
    /// register keeps its address but gets weight 0 and no assignments or rules. Registered
    /// shards the configuration lacks are appended as ghosts. Rows naming an unregistered shard,
    /// an invalid host or a pattern that does not compile are skipped and returned.
    pub fn snapshot(&self, config: &Snapshot) -> (Snapshot, Vec<Ignored>) {
        let mut ignored = Vec::new();
        let registered: HashMap<&str, &StateShard> =
            self.shards.iter().map(|s| (s.name.as_str(), s)).collect();
        let reachable: Vec<Shard> = config.shards()[..config.reachable_count()].to_vec();
        let mut shards: Vec<Shard> = reachable
            .iter()
            .map(|s| match registered.get(s.name.as_str()) {
                Some(r) => Shard {
                    port: r.port,
                    weight: r.weight,
                    ..s.clone()
                },
                None => Shard {
                    weight: 0.0,
                    ..s.clone()
                },
            })
            .collect();
        for s in &self.shards {
            if !reachable.iter().any(|c| c.name == s.name) {
                shards.push(Shard {
                    name: s.name.clone(),
                    address: String::new(),
                    port: s.port,
                    weight: s.weight,
                });
            }
        }
        let id_of: HashMap<&str, usize> = shards
            .iter()
            .enumerate()
            .filter(|(_, s)| registered.contains_key(s.name.as_str()))
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let targets = |names: &[String], what: &str, ignored: &mut Vec<Ignored>| {
            let ids: Option<Vec<usize>> = names
                .iter()
                .map(|n| id_of.get(n.as_str()).copied())
                .collect();
            match ids {
                Some(ids) if !ids.is_empty() => Some(Targets::from(ids)),
                _ => {
                    ignored.push(Ignored {
                        what: what.to_string(),
                        why: format!(
                            "names a shard that is not registered ({})",
                            names.join(", ")
                        ),
                    });
                    None
                }
            }
        };
        let mut assignments = HashMap::with_capacity(self.assignments.len());
        for (realm, names) in &self.assignments {
            let what = format!("assignment {realm} -> {}", names.join(","));
            if normalize_host(realm).ok().as_deref() != Some(realm.as_str()) {
                ignored.push(Ignored {
                    what,
                    why: "not a valid realm host".into(),
                });
                continue;
            }
            if let Some(t) = targets(names, &what, &mut ignored) {
                assignments.insert(realm.clone(), t);
            }
        }
        let mut rules = Vec::with_capacity(self.rules.len());
        for r in &self.rules {
            let what = format!(
                "rule {} {:?} -> {}",
                r.priority,
                r.pattern,
                r.shards.join(",")
            );
            let Some(t) = targets(&r.shards, &what, &mut ignored) else {
                continue;
            };
            match Rule::split(&r.pattern, t) {
                Ok(rule) => rules.push(rule),
                Err(_) => ignored.push(Ignored {
                    what,
                    why: "invalid regular expression".into(),
                }),
            }
        }
        let count = reachable.len();
        let snapshot = Snapshot::build(shards, count, assignments, rules)
            .expect("the config's shard list is valid and registered names are unique")
            .with_origin(Origin::Database);
        ignored.sort();
        (snapshot, ignored)
    }
}
