//! Turns the raw file into a [`Config`]: parses addresses and durations, checks every value, and
//! builds the routing snapshot. Every problem is collected with its key path; nothing stops at
//! the first one.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::raw::{RawConfig, RawDatabase, RawParking, RawQueues, RawShard};
use super::{
    Config, DatabaseConfig, LogConfig, LogFormat, MasterConfig, ParkingConfig, Problem,
    ProxyConfig, QueuesConfig, TimeoutAnswer, Timeouts, DEFAULT_ADMIN_LISTEN, DEFAULT_PROXY_LISTEN,
};
use crate::routing::{normalize_host, MovePolicy, Rule, Shard, ShardId, Snapshot};

/// Collects problems while values are checked.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn addr(&mut self, key: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let text = value.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.add(key, format!("{text:?} is not an IP address and port"));
            default.parse().expect("default address parses")
        })
    }

    fn count(&mut self, key: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> i64 {
        let v = value.unwrap_or(default);
        if v < min || v > max {
            self.add(key, format!("must be between {min} and {max} (got {v})"));
            return default;
        }
        v
    }

    fn secs(&mut self, key: &str, value: Option<f64>, default: f64, max: f64) -> Duration {
        let v = value.unwrap_or(default);
        if !v.is_finite() || v <= 0.0 || v > max {
            self.add(
                key,
                format!("must be a number of seconds > 0 and <= {max} (got {v})"),
            );
            return Duration::from_secs_f64(default);
        }
        Duration::from_secs_f64(v)
    }

    /// Like [`Problems::secs`], but 0 is allowed (it turns the delay off).
    fn secs_or_zero(&mut self, key: &str, value: Option<f64>, default: f64, max: f64) -> Duration {
        match value {
            Some(0.0) => Duration::ZERO,
            _ => self.secs(key, value, default, max),
        }
    }
}

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

fn shards(raw: &[RawShard], p: &mut Problems) -> Vec<Shard> {
    if raw.is_empty() {
        p.add("shards", "at least one [[shards]] entry is required");
    }
    let mut names = HashSet::new();
    let mut ports = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let key = |field: &str| format!("shards[{i}].{field}");
        let name = s.name.clone().unwrap_or_default();
        if s.name.is_none() {
            p.add(key("name"), "required");
        } else if !valid_shard_name(&name) {
            p.add(
                key("name"),
                format!("{name:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"),
            );
        } else if !names.insert(name.clone()) {
            p.add(key("name"), format!("duplicate shard name {name:?}"));
        }
        let address = s.address.clone().unwrap_or_default();
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
        let port = match s.port {
            Some(v) if !(1..=65535).contains(&v) => {
                p.add(
                    key("port"),
                    format!("must be between 1 and 65535 (got {v})"),
                );
                None
            }
            Some(v) => Some(v as u16),
            None => address_port,
        };
        if let Some(port) = port {
            if let Some(other) = ports.insert(port, i) {
                p.add(
                    key("port"),
                    format!("Tornado port {port} is also used by shards[{other}]"),
                );
            }
        }
        let weight = s.weight.unwrap_or(1.0);
        if !weight.is_finite() || weight < 0.0 {
            p.add(
                key("weight"),
                format!("must be a finite number >= 0 (got {weight})"),
            );
        }
        out.push(Shard {
            name,
            address,
            port: port.unwrap_or(0),
            weight: if weight.is_finite() && weight >= 0.0 {
                weight
            } else {
                0.0
            },
        });
    }
    out
}

fn queues(raw: Option<RawQueues>, p: &mut Problems) -> QueuesConfig {
    let raw = raw.unwrap_or_default();
    let move_policy = match raw.move_policy.as_deref() {
        None => MovePolicy::Drain,
        Some(s) => MovePolicy::parse(s).unwrap_or_else(|| {
            p.add(
                "queues.move_policy",
                format!("must be \"reload\" or \"drain\" (got {s:?})"),
            );
            MovePolicy::Drain
        }),
    };
    QueuesConfig {
        max_entries: p.count(
            "queues.max_entries",
            raw.max_entries,
            1_000_000,
            1,
            100_000_000,
        ) as usize,
        idle_timeout: p.secs(
            "queues.idle_timeout_secs",
            raw.idle_timeout_secs,
            600.0,
            86_400.0,
        ),
        move_policy,
        drain_window: p.secs(
            "queues.drain_window_secs",
            raw.drain_window_secs,
            3600.0,
            7.0 * 86_400.0,
        ),
        max_drain_windows: p.count("queues.max_drain_windows", raw.max_drain_windows, 16, 1, 64)
            as usize,
        reload_delay: p.secs_or_zero("queues.reload_delay_secs", raw.reload_delay_secs, 1.0, 60.0),
    }
}

fn database(raw: RawDatabase, p: &mut Problems) -> DatabaseConfig {
    match (&raw.url, &raw.url_env) {
        (Some(_), Some(_)) => p.add("database", "give url or url_env, not both"),
        (None, None) => p.add("database", "needs url or url_env"),
        (Some(url), None) => {
            if url.parse::<tokio_postgres::Config>().is_err() {
                // Never echo the URL: it may hold a password.
                p.add(
                    "database.url",
                    "is not a valid PostgreSQL connection string",
                );
            }
        }
        (None, Some(var)) => {
            if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                p.add(
                    "database.url_env",
                    format!("{var:?} is not an environment variable name"),
                );
            }
        }
    }
    DatabaseConfig {
        url: raw.url,
        url_env: raw.url_env,
        resync: p.secs("database.resync_secs", raw.resync_secs, 60.0, 86_400.0),
        connect_timeout: p.secs(
            "database.connect_timeout_secs",
            raw.connect_timeout_secs,
            5.0,
            300.0,
        ),
    }
}

fn parking(raw: Option<RawParking>, p: &mut Problems) -> ParkingConfig {
    let d = ParkingConfig::default();
    let raw = raw.unwrap_or_default();
    let timeout_answer = match raw.timeout_answer.as_deref() {
        None | Some("empty") => TimeoutAnswer::EmptyEvents,
        Some("503") => TimeoutAnswer::ServiceUnavailable,
        Some(other) => {
            p.add(
                "parking.timeout_answer",
                format!("must be \"empty\" or \"503\" (got {other:?})"),
            );
            d.timeout_answer
        }
    };
    let release_rate = raw.release_rate_per_sec.unwrap_or(d.release_rate);
    if !release_rate.is_finite() || release_rate <= 0.0 || release_rate > 1e6 {
        p.add(
            "parking.release_rate_per_sec",
            format!("must be a number > 0 and <= 1000000 (got {release_rate})"),
        );
    }
    ParkingConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        timeout: p.secs("parking.timeout_secs", raw.timeout_secs, 50.0, 3600.0),
        timeout_answer,
        max_per_shard: p.count(
            "parking.max_per_shard",
            raw.max_per_shard,
            10_000,
            0,
            10_000_000,
        ) as usize,
        release_rate: if release_rate.is_finite() && release_rate > 0.0 {
            release_rate
        } else {
            d.release_rate
        },
        release_burst: p.count("parking.release_burst", raw.release_burst, 50, 1, 1_000_000) as u32,
        probe_interval: p.secs(
            "parking.probe_interval_secs",
            raw.probe_interval_secs,
            0.25,
            60.0,
        ),
    }
}

/// Validates a raw configuration, returning every problem found.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let proxy_raw = raw.proxy.unwrap_or_default();
    let proxy = ProxyConfig {
        listen: p.addr(
            "proxy.listen",
            proxy_raw.listen.as_deref(),
            DEFAULT_PROXY_LISTEN,
        ),
        max_connections: p.count(
            "proxy.max_connections",
            proxy_raw.max_connections,
            100_000,
            1,
            10_000_000,
        ) as usize,
        threads: p.count("proxy.threads", proxy_raw.threads, 0, 0, 1024) as usize,
        max_header_bytes: p.count(
            "proxy.max_header_bytes",
            proxy_raw.max_header_bytes,
            16_384,
            8_192,
            1_048_576,
        ) as usize,
        max_body_bytes: p.count(
            "proxy.max_body_bytes",
            proxy_raw.max_body_bytes,
            1_048_576,
            0,
            1 << 30,
        ) as u64,
    };
    let admin_raw = raw.admin.unwrap_or_default();
    let admin_listen = p.addr(
        "admin.listen",
        admin_raw.listen.as_deref(),
        DEFAULT_ADMIN_LISTEN,
    );
    if admin_listen == proxy.listen && admin_listen.port() != 0 {
        p.add("admin.listen", "must differ from proxy.listen");
    }
    let t = raw.timeouts.unwrap_or_default();
    let timeouts = Timeouts {
        upstream_connect: p.secs(
            "timeouts.upstream_connect_secs",
            t.upstream_connect_secs,
            2.0,
            60.0,
        ),
        client_header: p.secs(
            "timeouts.client_header_secs",
            t.client_header_secs,
            75.0,
            600.0,
        ),
        upstream_response: p.secs(
            "timeouts.upstream_response_secs",
            t.upstream_response_secs,
            120.0,
            3600.0,
        ),
        drain: p.secs("timeouts.drain_secs", t.drain_secs, 90.0, 3600.0),
    };
    let log_raw = raw.log.unwrap_or_default();
    let format = match log_raw.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            p.add(
                "log.format",
                format!("must be \"text\" or \"json\" (got {other:?})"),
            );
            LogFormat::Text
        }
    };
    let level = log_raw.level.unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        p.add(
            "log.level",
            format!("{level:?} is not a log filter (try \"info\")"),
        );
    }

    let parking = parking(raw.parking, &mut p);
    let database = raw.database.map(|d| database(d, &mut p));
    let queues = queues(raw.queues, &mut p);
    let master_raw = raw.master.unwrap_or_default();
    let master = MasterConfig {
        upgrade_timeout: p.secs(
            "master.upgrade_timeout_secs",
            master_raw.upgrade_timeout_secs,
            10.0,
            600.0,
        ),
        max_draining: p.count("master.max_draining", master_raw.max_draining, 4, 1, 64) as usize,
    };
    if parking.enabled && parking.timeout >= timeouts.drain {
        p.add(
            "parking.timeout_secs",
            "must be shorter than timeouts.drain_secs, so a graceful stop can answer parked requests",
        );
    }
    let shard_list = shards(&raw.shards, &mut p);
    let ids: HashMap<&str, ShardId> = shard_list
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let lookup = |key: String, name: &str, p: &mut Problems| -> Option<ShardId> {
        let id = ids.get(name).copied();
        if id.is_none() {
            p.add(key, format!("unknown shard {name:?}"));
        }
        id
    };

    let mut assignments = HashMap::new();
    for (host, shard) in &raw.assignments {
        let key = format!("assignments.{host:?}");
        let id = lookup(key.clone(), shard, &mut p);
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

    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.iter().enumerate() {
        let key = |field: &str| format!("rules[{i}].{field}");
        let id = match &r.shard {
            Some(name) => lookup(key("shard"), name, &mut p),
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
            Err(_) => {
                // Report the error against the pattern as written, not the anchored wrapper.
                let detail = regex::Regex::new(pattern)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "cannot be anchored".into());
                let last = detail
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                p.add(
                    key("pattern"),
                    format!("invalid regular expression {pattern:?}: {last}"),
                );
            }
        }
    }

    if !p.0.is_empty() {
        return Err(p.0);
    }
    let routing = Snapshot::new(shard_list, assignments, rules).map_err(|e| {
        vec![Problem {
            key: "shards".into(),
            message: e.to_string(),
        }]
    })?;
    Ok(Config {
        proxy,
        admin_listen,
        timeouts,
        log: LogConfig { format, level },
        parking,
        queues,
        master,
        database,
        routing,
    })
}
