//! The configuration file exactly as written: plain serde structs with every key optional, so
//! that validation (in `validate.rs`) can report every problem at once with its key path.
//! Unknown keys are collected separately by the loader.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub proxy: Option<RawProxy>,
    pub admin: Option<RawAdmin>,
    pub timeouts: Option<RawTimeouts>,
    pub log: Option<RawLog>,
    pub parking: Option<RawParking>,
    pub queues: Option<RawQueues>,
    pub master: Option<RawMaster>,
    pub database: Option<RawDatabase>,
    #[serde(default)]
    pub shards: Vec<RawShard>,
    #[serde(default)]
    pub assignments: BTreeMap<String, String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// `[proxy]`: the client-facing listener and its limits.
#[derive(Debug, Default, Deserialize)]
pub struct RawProxy {
    pub listen: Option<String>,
    pub max_connections: Option<i64>,
    pub threads: Option<i64>,
    pub max_header_bytes: Option<i64>,
    pub max_body_bytes: Option<i64>,
    pub engine: Option<String>,
}

/// `[admin]`: the metrics and health listener.
#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub listen: Option<String>,
}

/// `[timeouts]`: every duration, in seconds (fractions allowed).
#[derive(Debug, Default, Deserialize)]
pub struct RawTimeouts {
    pub upstream_connect_secs: Option<f64>,
    pub client_header_secs: Option<f64>,
    pub upstream_response_secs: Option<f64>,
    pub drain_secs: Option<f64>,
}

/// `[parking]`: holding GETs while their shard restarts.
#[derive(Debug, Default, Deserialize)]
pub struct RawParking {
    pub enabled: Option<bool>,
    pub timeout_secs: Option<f64>,
    pub timeout_answer: Option<String>,
    pub max_per_shard: Option<i64>,
    pub release_rate_per_sec: Option<f64>,
    pub release_burst: Option<i64>,
    pub probe_interval_secs: Option<f64>,
}

/// `[master]`: upgrades.
#[derive(Debug, Default, Deserialize)]
pub struct RawMaster {
    pub upgrade_timeout_secs: Option<f64>,
    pub max_draining: Option<i64>,
}

/// `[queues]`: the queue map and realm moves.
#[derive(Debug, Default, Deserialize)]
pub struct RawQueues {
    pub max_entries: Option<i64>,
    pub idle_timeout_secs: Option<f64>,
    pub move_policy: Option<String>,
    pub drain_window_secs: Option<f64>,
    pub max_drain_windows: Option<i64>,
    pub reload_delay_secs: Option<f64>,
}

/// `[database]`: PostgreSQL as the routing authority.
#[derive(Debug, Default, Deserialize)]
pub struct RawDatabase {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub resync_secs: Option<f64>,
    pub connect_timeout_secs: Option<f64>,
}

/// `[log]`: format and default level.
#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// One `[[shards]]` entry.
#[derive(Debug, Default, Deserialize)]
pub struct RawShard {
    pub name: Option<String>,
    pub address: Option<String>,
    pub port: Option<i64>,
    pub weight: Option<f64>,
}

/// One `[[rules]]` entry.
#[derive(Debug, Default, Deserialize)]
pub struct RawRule {
    pub pattern: Option<String>,
    pub shard: Option<String>,
}
