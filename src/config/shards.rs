//! Validation of the routing sections: `[[shards]]` (names, addresses, Tornado ports,
//! weights), `[assignments]` and `[[rules]]`, whose shard names must be among the shards.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use super::checks::Problems;
use super::defaults;
use super::raw::{RawRule, RawShard};
use crate::routing::{normalize_host, Rule, Shard, ShardId};

/// Shard names: what the database and operators use to refer to a shard.
fn valid_shard_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `host:port` with a DNS name or IP address and a port 1–65535 (and so a valid URI authority).
fn parse_upstream(address: &str) -> Option<u16> {
    http::uri::Authority::try_from(address).ok()?;
    if let Ok(sa) = address.parse::<SocketAddr>() {
        return (sa.port() != 0).then_some(sa.port());
    }
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    normalize_host(host).ok().filter(|h| h == host)?;
    Some(port)
}

/// The shard's name, checked: required, well-formed, not a duplicate.
fn name(s: &RawShard, key: &str, names: &mut HashSet<String>, p: &mut Problems) -> String {
    let name = s.name.clone().unwrap_or_default();
    if s.name.is_none() {
        p.add(key, "required");
    } else if !valid_shard_name(&name) {
        p.add(
            key,
            format!("{name:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"),
        );
    } else if !names.insert(name.clone()) {
        p.add(key, format!("duplicate shard name {name:?}"));
    }
    name
}

/// The shard's Tornado port: `port`, else the address's port.
fn port(s: &RawShard, key: impl Fn(&str) -> String, p: &mut Problems) -> Option<u16> {
    let address_port = match &s.address {
        None => {
            p.add(key("address"), "required");
            None
        }
        Some(a) => {
            let port = parse_upstream(a);
            if port.is_none() {
                p.add(key("address"), format!("{a:?} is not host:port"));
            }
            port
        }
    };
    match s.port {
        Some(v) if !(1..=65535).contains(&v) => {
            p.add(
                key("port"),
                format!("must be between 1 and 65535 (got {v})"),
            );
            None
        }
        Some(v) => Some(v as u16),
        None => address_port,
    }
}

pub(super) fn shards(raw: &[RawShard], p: &mut Problems) -> Vec<Shard> {
    if raw.is_empty() {
        p.add("shards", "at least one [[shards]] entry is required");
    }
    let mut names = HashSet::new();
    let mut ports = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let key = |field: &str| format!("shards[{i}].{field}");
        let name = name(s, &key("name"), &mut names, p);
        let port = port(s, key, p);
        if let Some(port) = port {
            if let Some(other) = ports.insert(port, i) {
                p.add(
                    key("port"),
                    format!("Tornado port {port} is also used by shards[{other}]"),
                );
            }
        }
        let weight = s.weight.unwrap_or(defaults::shards::WEIGHT);
        let weight_ok = weight.is_finite() && weight >= 0.0;
        if !weight_ok {
            p.add(
                key("weight"),
                format!("must be a finite number >= 0 (got {weight})"),
            );
        }
        out.push(Shard {
            name,
            address: s.address.clone().unwrap_or_default(),
            port: port.unwrap_or(0),
            weight: if weight_ok { weight } else { 0.0 },
        });
    }
    out
}

/// Shard names to ids, reporting unknown names.
pub(super) struct Lookup<'a>(HashMap<&'a str, ShardId>);

impl<'a> Lookup<'a> {
    pub fn new(shards: &'a [Shard]) -> Lookup<'a> {
        Lookup(
            shards
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.as_str(), i))
                .collect(),
        )
    }

    fn id(&self, key: String, name: &str, p: &mut Problems) -> Option<ShardId> {
        let id = self.0.get(name).copied();
        if id.is_none() {
            p.add(key, format!("unknown shard {name:?}"));
        }
        id
    }
}

pub(super) fn assignments(
    raw: &std::collections::BTreeMap<String, String>,
    shards: &Lookup<'_>,
    p: &mut Problems,
) -> HashMap<String, ShardId> {
    let mut assignments = HashMap::new();
    for (host, shard) in raw {
        let key = format!("assignments.{host:?}");
        let id = shards.id(key.clone(), shard, p);
        match normalize_host(host) {
            Ok(norm) => {
                if let Some(id) = id {
                    if assignments.insert(norm.clone(), id).is_some() {
                        p.add(key, format!("{norm:?} is assigned twice"));
                    }
                }
            }
            Err(_) => p.add(key, "is not a valid realm host"),
        }
    }
    assignments
}

pub(super) fn rules(raw: &[RawRule], shards: &Lookup<'_>, p: &mut Problems) -> Vec<Rule> {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("rules[{i}].{field}");
        let id = match &r.shard {
            Some(name) => shards.id(key("shard"), name, p),
            None => {
                p.add(key("shard"), "required");
                None
            }
        };
        let Some(pattern) = &r.pattern else {
            p.add(key("pattern"), "required");
            continue;
        };
        match Rule::new(pattern, id.unwrap_or(0)) {
            Ok(rule) if id.is_some() => rules.push(rule),
            Ok(_) => {}
            Err(_) => p.add(
                key("pattern"),
                format!(
                    "invalid regular expression {pattern:?}: {}",
                    regex_error(pattern)
                ),
            ),
        }
    }
    rules
}

/// The error against the pattern as written, not the anchored wrapper: its last line.
fn regex_error(pattern: &str) -> String {
    let detail = regex::Regex::new(pattern)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "cannot be anchored".into());
    detail
        .lines()
        .last()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}
