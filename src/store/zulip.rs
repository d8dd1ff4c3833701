//! Zulip's own sharding formats, for `kansas import-zulip` and `kansas export-zulip`:
//! `/etc/zulip/sharding.json` (`{"shard_map": {host: port | [ports]}, "shard_regexes":
//! [[regex, port | [ports]]]}`) and the `[tornado_sharding]` section of `/etc/zulip/zulip.conf`
//! (keys `9801`, `9802_9803`, optionally `_regex`; values: space-separated hosts, a bare name
//! meaning `<name>.<EXTERNAL_HOST>`, or one regex).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::routing::{normalize_host, Rule, Snapshot};

/// Zulip's sharding, read from either format.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sharding {
    /// Realm host → Tornado ports (several: split by user).
    pub hosts: BTreeMap<String, Vec<u16>>,
    /// Regexes in order → Tornado ports.
    pub regexes: Vec<(String, Vec<u16>)>,
}

fn ports(v: &Value, what: &str) -> Result<Vec<u16>, String> {
    let one = |v: &Value| {
        v.as_u64()
            .filter(|p| (1..=65535).contains(p))
            .map(|p| p as u16)
            .ok_or_else(|| format!("{what}: {v} is not a port"))
    };
    match v {
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Array(_) => Err(format!("{what}: empty port list")),
        v => Ok(vec![one(v)?]),
    }
}

/// Parses `sharding.json` as Zulip reads it: `{"shard_map": ..., "shard_regexes": ...}`, `{}`
/// (one Tornado port), or an old install's bare top-level host → port map.
pub fn parse_sharding_json(text: &str) -> Result<Sharding, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let mut out = Sharding::default();
    let modern = obj.contains_key("shard_map") || obj.contains_key("shard_regexes");
    // Zulip: `data.get("shard_map", data)`.
    let map = if modern {
        obj.get("shard_map")
    } else {
        Some(&v)
    };
    if let Some(map) = map {
        let map = map.as_object().ok_or("shard_map is not an object")?;
        for (host, p) in map {
            out.add_host(host, ports(p, &format!("shard_map[{host:?}]"))?)?;
        }
    }
    if let Some(list) = obj.get("shard_regexes") {
        let list = list.as_array().ok_or("shard_regexes is not a list")?;
        for (i, item) in list.iter().enumerate() {
            let pair = item.as_array().filter(|a| a.len() == 2);
            let (Some(re), Some(p)) = (pair.and_then(|a| a[0].as_str()), pair.map(|a| &a[1]))
            else {
                return Err(format!("shard_regexes[{i}] is not [regex, port]"));
            };
            out.regexes
                .push((re.to_string(), ports(p, &format!("shard_regexes[{i}]"))?));
        }
    }
    Ok(out)
}

impl Sharding {
    /// Adds a host; a host listed twice is an error (Zulip would silently keep one).
    pub fn add_host(&mut self, host: &str, ports: Vec<u16>) -> Result<(), String> {
        let key = normalize_host(host).unwrap_or_else(|_| host.to_string());
        if self.hosts.contains_key(&key) {
            return Err(format!("realm {host:?} is listed twice"));
        }
        self.hosts.insert(key, ports);
        Ok(())
    }

    /// Adds everything of `other`; a host in both is an error.
    pub fn merge(&mut self, other: Sharding) -> Result<(), String> {
        for (host, ports) in other.hosts {
            self.add_host(&host, ports)?;
        }
        self.regexes.extend(other.regexes);
        Ok(())
    }
}

/// Parses the `[tornado_sharding]` section of `zulip.conf`.
pub fn parse_zulip_conf(text: &str, external_host: Option<&str>) -> Result<Sharding, String> {
    let mut out = Sharding::default();
    let mut in_section = false;
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            in_section = trimmed == "[tornado_sharding]";
            continue;
        }
        if !in_section || trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation line of the previous value.
            if let Some(last) = entries.last_mut() {
                last.1.push(' ');
                last.1.push_str(trimmed);
            }
            continue;
        }
        let (k, v) = trimmed
            .split_once(['=', ':'])
            .ok_or_else(|| format!("[tornado_sharding]: {trimmed:?} is not key = value"))?;
        entries.push((k.trim().to_string(), v.trim().to_string()));
    }
    for (key, value) in entries {
        let (port_part, regex) = match key.strip_suffix("_regex") {
            Some(p) => (p, true),
            None => (key.as_str(), false),
        };
        let ports: Vec<u16> = port_part
            .split('_')
            .map(|p| {
                p.parse()
                    .map_err(|_| format!("[tornado_sharding] key {key:?}: {p:?} is not a port"))
            })
            .collect::<Result<_, _>>()?;
        if regex {
            out.regexes.push((value, ports));
            continue;
        }
        for name in value.split_whitespace() {
            let host = if name.contains('.') {
                name.to_string()
            } else {
                let ext = external_host.ok_or_else(|| {
                    format!("[tornado_sharding] {key}: bare name {name:?} needs --external-host")
                })?;
                format!("{name}.{ext}")
            };
            out.add_host(&host, ports.clone())
                .map_err(|e| format!("[tornado_sharding]: {e}"))?;
        }
    }
    Ok(out)
}

/// What an import writes: `(realm, shards, note)` assignments and `(pattern, shards)` rules,
/// in order (the last, unless hashing is asked for, sends every other realm to the shard of
/// Zulip's first Tornado port, as Zulip does).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub assignments: Vec<(String, Vec<String>, String)>,
    pub rules: Vec<(String, Vec<String>)>,
}

/// The pattern of the catch-all rule (matches every realm).
pub const CATCH_ALL: &str = ".*";

/// Maps Zulip's ports to configured shards (by each shard's `port`); a realm split over several
/// ports gets all of their shards, in Zulip's order. `default_port` is where Zulip sends realms
/// it does not list (`None`: leave them to hashing). Every problem is reported; nothing is
/// planned when there is one.
pub fn plan(
    snapshot: &Snapshot,
    sharding: &Sharding,
    default_port: Option<u16>,
) -> Result<Plan, Vec<String>> {
    let mut ports = Ports {
        by_port: snapshot
            .shards()
            .iter()
            .map(|s| (s.port, s.name.as_str()))
            .collect(),
        problems: Vec::new(),
    };
    let mut out = Plan::default();
    for (host, list) in &sharding.hosts {
        let Ok(realm) = normalize_host(host) else {
            ports
                .problems
                .push(format!("{host:?} is not a valid realm host"));
            continue;
        };
        if let Some(shards) = ports.shards(host, list) {
            out.assignments.push((realm, shards, import_note(list)));
        }
    }
    for (pattern, list) in &sharding.regexes {
        if Rule::new(pattern, 0).is_err() {
            ports.problems.push(format!(
                "regex {pattern:?} is not valid here (Rust regex syntax)"
            ));
            continue;
        }
        if let Some(shards) = ports.shards(pattern, list) {
            out.rules.push((pattern.clone(), shards));
        }
    }
    if let Some(port) = default_port {
        if let Some(shards) = ports.shards("the default Tornado port", &[port]) {
            out.rules.push((CATCH_ALL.to_string(), shards));
        }
    }
    if ports.problems.is_empty() {
        Ok(out)
    } else {
        Err(ports.problems)
    }
}

/// The note an imported assignment gets.
fn import_note(ports: &[u16]) -> String {
    if ports.len() > 1 {
        let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        format!(
            "imported from Zulip; split by user over ports {}",
            list.join(", ")
        )
    } else {
        "imported from Zulip".to_string()
    }
}

/// Zulip's Tornado ports → the configured shards, collecting what does not map.
struct Ports<'a> {
    by_port: BTreeMap<u16, &'a str>,
    problems: Vec<String>,
}

impl Ports<'_> {
    /// The shards of `ports` (for `what`), when each is configured and none is listed twice.
    fn shards(&mut self, what: &str, ports: &[u16]) -> Option<Vec<String>> {
        let missing: Vec<String> = ports
            .iter()
            .filter(|p| !self.by_port.contains_key(p))
            .map(|p| p.to_string())
            .collect();
        if !missing.is_empty() {
            self.problems.push(format!(
                "{what}: no configured shard has Tornado port {}",
                missing.join(", ")
            ));
            return None;
        }
        let mut seen = Vec::new();
        for p in ports {
            if seen.contains(p) {
                self.problems
                    .push(format!("{what}: port {p} is listed twice"));
                return None;
            }
            seen.push(*p);
        }
        Some(ports.iter().map(|p| self.by_port[p].to_string()).collect())
    }
}

/// A port, or a list for a split realm, as `sharding.json` writes it.
fn port_value(snapshot: &Snapshot, targets: &[usize]) -> Value {
    match targets {
        [one] => Value::from(snapshot.shard(*one).port),
        many => many.iter().map(|&i| snapshot.shard(i).port).collect(),
    }
}

/// A `sharding.json` for Django without kansas_zulip: every assignment and rule (split port
/// lists included), and each of `realms` as routed now (hashed realms must be listed: Zulip
/// sends unlisted realms to its first Tornado port).
pub fn export(snapshot: &Snapshot, realms: &[String]) -> Result<String, Vec<String>> {
    let mut map = serde_json::Map::new();
    let mut problems = Vec::new();
    for (realm, targets) in snapshot.assignments() {
        map.insert(realm.clone(), port_value(snapshot, targets));
    }
    for host in realms {
        match normalize_host(host) {
            Err(_) => problems.push(format!("{host:?} is not a valid realm host")),
            Ok(realm) => match snapshot.route_targets(&realm) {
                Some((_, targets)) => {
                    map.insert(realm, port_value(snapshot, targets));
                }
                None => problems.push(format!("{realm}: no shard (every weight is 0)")),
            },
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let regexes: Vec<Value> = snapshot
        .rules()
        .iter()
        .map(|r| serde_json::json!([r.pattern, port_value(snapshot, &r.targets)]))
        .collect();
    let sorted: BTreeMap<String, Value> = map.into_iter().collect();
    let doc = serde_json::json!({"shard_map": sorted, "shard_regexes": regexes});
    Ok(serde_json::to_string_pretty(&doc).expect("JSON") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats_alike() {
        let json = r#"{"shard_map": {"a.example.com": 9801, "big.example.com": [9802, 9803]},
                       "shard_regexes": [["^eu\\.", 9801]]}"#;
        let conf = "[machine]\ndeploy_type = production\n\n[tornado_sharding]\n\
                    9801 = a.example.com\n9802_9803 = big\n9801_regex = ^eu\\.\n\n[other]\nx = 1\n";
        let from_json = parse_sharding_json(json).unwrap();
        let from_conf = parse_zulip_conf(conf, Some("example.com")).unwrap();
        assert_eq!(from_json, from_conf);
        assert_eq!(from_json.hosts["big.example.com"], vec![9802, 9803]);
        assert!(parse_zulip_conf(conf, None)
            .unwrap_err()
            .contains("--external-host"));
        assert_eq!(parse_sharding_json("{}").unwrap(), Sharding::default());
        assert!(parse_sharding_json(r#"{"shard_map": {"a": "x"}}"#).is_err());
        // An old install's bare map.
        let legacy =
            parse_sharding_json(r#"{"a.example.com": 9801, "b.example.com": [9802, 9803]}"#)
                .unwrap();
        assert_eq!(legacy.hosts["b.example.com"], vec![9802, 9803]);
        // A host listed twice is refused.
        let twice = "[tornado_sharding]\n9801 = a.example.com\n9802 = a.example.com\n";
        assert!(parse_zulip_conf(twice, None).unwrap_err().contains("twice"));
        let mut both = from_json.clone();
        assert!(both.merge(from_conf.clone()).unwrap_err().contains("twice"));
    }
}
