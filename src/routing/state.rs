//! A routing state as the database holds it and as drain windows record it
//! (`docs/residency.md` §2): the registered shards (name, Tornado port, weight), assignments and
//! rules naming shards by name, a realm's shards being a list (several: split by user). Turned
//! into a [`Snapshot`] against the configuration file's shards, which give kansas the addresses
//! and fix the shard ids for the life of the process.

use std::collections::{BTreeMap, HashMap, HashSet};

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
        let reachable = &config.shards()[..config.reachable_count()];
        let shards = self.merged_shards(reachable);
        let registered: HashSet<&str> = self.shards.iter().map(|s| s.name.as_str()).collect();
        let mut rows = Rows {
            id_of: shards
                .iter()
                .enumerate()
                .filter(|(_, s)| registered.contains(s.name.as_str()))
                .map(|(i, s)| (s.name.clone(), i))
                .collect(),
            ignored: Vec::new(),
        };
        let assignments = rows.assignments(&self.assignments);
        let rules = rows.rules(&self.rules);
        let snapshot = Snapshot::build(shards, reachable.len(), assignments, rules)
            .expect("the config's shard list is valid and registered names are unique")
            .with_origin(Origin::Database);
        rows.ignored.sort();
        (snapshot, rows.ignored)
    }

    /// The configuration's reachable shards with the state's ports and weights (weight 0 when
    /// the state does not register them), then the registered shards the configuration lacks.
    fn merged_shards(&self, reachable: &[Shard]) -> Vec<Shard> {
        let registered: HashMap<&str, &StateShard> =
            self.shards.iter().map(|s| (s.name.as_str(), s)).collect();
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
        shards
    }
}

/// Turning the state's rows into routing entries, keeping the rows that cannot be used.
struct Rows {
    /// Registered shards by name: their index in the snapshot.
    id_of: HashMap<String, usize>,
    ignored: Vec<Ignored>,
}

impl Rows {
    fn ignore(&mut self, what: String, why: String) {
        self.ignored.push(Ignored { what, why });
    }

    /// The shards a row names, when every one is registered.
    fn targets(&mut self, names: &[String], what: &str) -> Option<Targets> {
        let ids: Option<Vec<usize>> = names.iter().map(|n| self.id_of.get(n).copied()).collect();
        match ids {
            Some(ids) if !ids.is_empty() => Some(Targets::from(ids)),
            _ => {
                let why = format!(
                    "names a shard that is not registered ({})",
                    names.join(", ")
                );
                self.ignore(what.to_string(), why);
                None
            }
        }
    }

    fn assignments(&mut self, rows: &BTreeMap<String, Vec<String>>) -> HashMap<String, Targets> {
        let mut assignments = HashMap::with_capacity(rows.len());
        for (realm, names) in rows {
            let what = format!("assignment {realm} -> {}", names.join(","));
            if normalize_host(realm).ok().as_deref() != Some(realm.as_str()) {
                self.ignore(what, "not a valid realm host".into());
                continue;
            }
            if let Some(t) = self.targets(names, &what) {
                assignments.insert(realm.clone(), t);
            }
        }
        assignments
    }

    fn rules(&mut self, rows: &[StateRule]) -> Vec<Rule> {
        let mut rules = Vec::with_capacity(rows.len());
        for r in rows {
            let what = format!(
                "rule {} {:?} -> {}",
                r.priority,
                r.pattern,
                r.shards.join(",")
            );
            let Some(t) = self.targets(&r.shards, &what) else {
                continue;
            };
            match Rule::split(&r.pattern, t) {
                Ok(rule) => rules.push(rule),
                Err(_) => self.ignore(what, "invalid regular expression".into()),
            }
        }
        rules
    }
}
