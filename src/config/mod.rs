//! Configuration: a TOML file read into raw serde structs (`raw`), then validated into the typed
//! [`Config`] the daemon runs with (`validate`). Loading reports every problem at once, each with
//! its key path, so `kansas check-config` can print them all.

mod checks;
pub mod defaults;
mod raw;
mod sections;
mod shards;
mod units;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::routing::Snapshot;

pub use units::{duration, BadDuration};
pub use validate::validate;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub admin_listen: SocketAddr,
    pub timeouts: Timeouts,
    pub log: LogConfig,
    pub parking: ParkingConfig,
    pub queues: QueuesConfig,
    pub master: MasterConfig,
    /// `[database]`, when PostgreSQL is the authority for routing.
    pub database: Option<DatabaseConfig>,
    /// The routing table built from `[[shards]]`, `[assignments]` and `[[rules]]`.
    pub routing: Snapshot,
}

/// Client-facing listener and limits.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Serving threads, each with its own event loop and shard connections (0: one per CPU).
    pub threads: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    /// Which HTTP/1 engine serves the event path.
    pub engine: Engine,
}

/// The HTTP/1 connection handling of the event path (`proxy.engine`, `docs/engine.md`): hyper's
/// server and client, or kansas's own engine on `httparse` (`src/engine`), which holds no
/// buffer while a long-poll waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Hyper,
    Kansas,
}

impl Engine {
    /// The name the configuration file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Hyper => "hyper",
            Engine::Kansas => "kansas",
        }
    }

    /// The engine the test suite asks for, whatever the configuration names
    /// (`KANSAS_TEST_ENGINE`): only in builds with the `test-faults` feature, which the tests
    /// turn on; the daemon as built for operators has no such switch.
    #[cfg(feature = "test-faults")]
    pub fn for_tests() -> Option<Engine> {
        std::env::var("KANSAS_TEST_ENGINE")
            .ok()
            .and_then(|name| Engine::parse(&name))
    }

    /// Without the `test-faults` feature: none.
    #[cfg(not(feature = "test-faults"))]
    pub fn for_tests() -> Option<Engine> {
        None
    }

    /// The engine a name in the configuration file stands for.
    pub fn parse(name: &str) -> Option<Engine> {
        [Engine::Hyper, Engine::Kansas]
            .into_iter()
            .find(|e| e.as_str() == name)
    }
}

/// Every timeout the daemon applies.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// TCP connect to a shard.
    pub upstream_connect: Duration,
    /// A client must finish sending its request head within this.
    pub client_header: Duration,
    /// Ceiling for a shard's response head (long-polls included).
    pub upstream_response: Duration,
    /// How long a graceful stop waits for in-flight requests.
    pub drain: Duration,
}

/// The supervisor-parent master (`[master]`).
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// How long a new worker may take to become active before the upgrade is rolled back.
    pub upgrade_timeout: Duration,
    /// Previous generations still draining; past it the oldest is stopped at once.
    pub max_draining: usize,
}

/// The queue map (`[queues]`).
#[derive(Debug, Clone)]
pub struct QueuesConfig {
    pub max_entries: usize,
    /// A queue unused this long is forgotten (Tornado deletes it after 600 s).
    pub idle_timeout: Duration,
    /// What a moved realm's known queues do when a command does not say (`--move`).
    pub move_policy: crate::routing::MovePolicy,
    /// How long a `drain` move keeps the realm resident on its old shard, unless a command
    /// says otherwise (`--drain-for`).
    pub drain_window: Duration,
    /// At most this many drain windows open at once.
    pub max_drain_windows: usize,
    /// How long kansas holds a `BAD_EVENT_QUEUE_ID` reload answer, so that Django, whose
    /// routing may trail kansas's by this much, already agrees when the client re-registers.
    pub reload_delay: Duration,
}

/// Where the routing authority lives (`[database]`).
#[derive(Clone)]
pub struct DatabaseConfig {
    /// A libpq-style URL or key=value string; may hold a password, so it is never printed.
    pub url: Option<String>,
    /// The name of an environment variable holding the URL.
    pub url_env: Option<String>,
    /// Full re-read interval, healing any missed notification.
    pub resync: Duration,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|_| "(hidden)"))
            .field("url_env", &self.url_env)
            .field("resync", &self.resync)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Parking of GETs while their shard is down (`[parking]`).
#[derive(Debug, Clone)]
pub struct ParkingConfig {
    pub enabled: bool,
    /// How long a GET may stay parked before it is answered.
    pub timeout: Duration,
    /// What a GET still parked at the deadline gets.
    pub timeout_answer: TimeoutAnswer,
    pub max_per_shard: usize,
    /// Parked requests released per second once the shard is back, after a burst.
    pub release_rate: f64,
    pub release_burst: u32,
    /// How often a down shard is probed with a TCP connect.
    pub probe_interval: Duration,
}

/// The answer for a GET still parked at its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAnswer {
    /// `200` with an empty events result: Zulip clients simply poll again.
    EmptyEvents,
    /// `503` with `Retry-After`.
    ServiceUnavailable,
}

impl TimeoutAnswer {
    /// `empty` or `503`, as in the config file.
    pub fn parse(s: &str) -> Option<TimeoutAnswer> {
        match s {
            "empty" => Some(TimeoutAnswer::EmptyEvents),
            "503" => Some(TimeoutAnswer::ServiceUnavailable),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutAnswer::EmptyEvents => "empty",
            TimeoutAnswer::ServiceUnavailable => "503",
        }
    }
}

/// The `[parking]` defaults ([`defaults::parking`]), as a file without the section gets.
impl Default for ParkingConfig {
    fn default() -> Self {
        use defaults::parking as d;
        ParkingConfig {
            enabled: d::ENABLED,
            timeout: d::TIMEOUT.default_duration(),
            timeout_answer: d::TIMEOUT_ANSWER,
            max_per_shard: d::MAX_PER_SHARD.default as usize,
            release_rate: d::RELEASE_RATE.default,
            release_burst: d::RELEASE_BURST.default as u32,
            probe_interval: d::PROBE_INTERVAL.default_duration(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// Text for people, JSON for log pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a key path (`shards[1].weight`), or empty for the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

impl ConfigError {
    /// Every problem, one per line's worth.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { .. } => vec![Problem {
                key: String::new(),
                message: self.to_string(),
            }],
            ConfigError::Invalid { problems } => problems.clone(),
        }
    }
}

/// The one way configuration problems are shown to an operator, by `kansas run`, its workers,
/// `kansas check-config` and every other command: a header naming the file and how many
/// problems it has, then each problem (with its key path) on an indented line of its own.
/// Callers put their program name in front (`kansas: `, `kansas worker: `).
pub fn report(path: &Path, error: &ConfigError) -> String {
    let problems = error.problems();
    let mut out = format!(
        "invalid configuration {}: {} problem(s)",
        path.display(),
        problems.len()
    );
    for p in &problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

/// Rewrites serde_ignored's path (`proxy.?.x`, `shards.0.x`) as a key path (`proxy.x`,
/// `shards[0].x`).
fn key_path(raw: &str) -> String {
    let mut out = String::new();
    for seg in raw.split('.').filter(|s| *s != "?") {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_text(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

/// Reads a text file an operator names (configuration, `sharding.json`), at most
/// 16 MiB: `kansas check-config /dev/zero` must not read until memory runs out.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
        &mut text,
    )?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_CONFIG_BYTES >> 20),
        ));
    }
    Ok(text)
}

/// The largest configuration file read (10,000 realm assignments take about 0.5 MiB).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Parses and validates configuration text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let deserializer = toml::Deserializer::new(text);
    let raw: raw::RawConfig = match serde_ignored::deserialize(deserializer, |path| {
        problems.push(Problem {
            key: key_path(&path.to_string()),
            message: "unknown key".to_string(),
        })
    }) {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(Problem {
                key: String::new(),
                message: e.to_string().trim_end().to_string(),
            });
            return Err(ConfigError::Invalid { problems });
        }
    };
    match validate(raw) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError::Invalid { problems }),
        Err(mut more) => {
            problems.append(&mut more);
            Err(ConfigError::Invalid { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parking_defaults_are_what_a_file_without_the_section_gets() {
        let c = parse("[[shards]]\nname = \"a\"\naddress = \"127.0.0.1:9800\"\n").unwrap();
        assert_eq!(
            format!("{:?}", c.parking),
            format!("{:?}", ParkingConfig::default())
        );
    }

    #[test]
    fn a_report_names_the_file_counts_and_indents_every_problem() {
        let e = parse("colour = 1\n[[shards]]\nname = \"a\"\n").unwrap_err();
        assert_eq!(
            report(Path::new("/etc/k.toml"), &e),
            "invalid configuration /etc/k.toml: 2 problem(s)\n  colour: unknown key\n  \
             shards[0].address: required"
        );
        let missing = load(Path::new("/nonexistent/k.toml")).unwrap_err();
        assert!(report(Path::new("/nonexistent/k.toml"), &missing)
            .starts_with("invalid configuration /nonexistent/k.toml: 1 problem(s)\n  cannot read"));
    }
}
