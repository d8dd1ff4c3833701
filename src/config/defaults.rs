//! Every key's default and bounds, one table per config section. Validation reads its limits
//! here, the `Default` impls are built from here, and the README's configuration table is
//! checked against [`documented`]; a default is changed in this file and nowhere else.

use std::time::Duration;

/// A whole-number key: its default and the inclusive range it must be in.
#[derive(Debug, Clone, Copy)]
pub struct Count {
    pub key: &'static str,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

/// A duration key, in seconds (fractions allowed): more than 0 (or exactly 0, which turns it
/// off, where `zero_off`) and at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Secs {
    pub key: &'static str,
    pub default: f64,
    pub max: f64,
    pub zero_off: bool,
}

impl Secs {
    const fn new(key: &'static str, default: f64, max: f64) -> Secs {
        Secs {
            key,
            default,
            max,
            zero_off: false,
        }
    }

    pub fn default_duration(&self) -> Duration {
        Duration::from_secs_f64(self.default)
    }
}

/// A real-number key: more than 0 and at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Real {
    pub key: &'static str,
    pub default: f64,
    pub max: f64,
}

const fn count(key: &'static str, default: i64, min: i64, max: i64) -> Count {
    Count {
        key,
        default,
        min,
        max,
    }
}

/// `[proxy]`.
pub mod proxy {
    use super::{count, Count};
    /// The client-facing listener.
    pub const LISTEN: &str = "127.0.0.1:9799";
    pub const MAX_CONNECTIONS: Count = count("proxy.max_connections", 100_000, 1, 10_000_000);
    pub const THREADS: Count = count("proxy.threads", 0, 0, 1024);
    pub const MAX_HEADER_BYTES: Count = count("proxy.max_header_bytes", 16_384, 8_192, 1 << 20);
    pub const MAX_BODY_BYTES: Count = count("proxy.max_body_bytes", 1 << 20, 0, 1 << 30);
    /// Which HTTP/1 engine serves the event path (`docs/engine.md`).
    pub const ENGINE: crate::config::Engine = crate::config::Engine::Kansas;
}

/// `[admin]`.
pub mod admin {
    /// The metrics and health listener (loopback only).
    pub const LISTEN: &str = "127.0.0.1:9798";
}

/// `[timeouts]`.
pub mod timeouts {
    use super::Secs;
    pub const UPSTREAM_CONNECT: Secs = Secs::new("timeouts.upstream_connect_secs", 2.0, 60.0);
    pub const CLIENT_HEADER: Secs = Secs::new("timeouts.client_header_secs", 75.0, 600.0);
    pub const UPSTREAM_RESPONSE: Secs = Secs::new("timeouts.upstream_response_secs", 120.0, 3600.0);
    pub const DRAIN: Secs = Secs::new("timeouts.drain_secs", 90.0, 3600.0);
}

/// `[log]`.
pub mod log {
    /// `text` or `json`.
    pub const FORMAT: &str = "text";
    pub const LEVEL: &str = "info";
}

/// `[parking]`.
pub mod parking {
    use super::{count, Count, Real, Secs};
    use crate::config::TimeoutAnswer;
    pub const ENABLED: bool = true;
    pub const TIMEOUT: Secs = Secs::new("parking.timeout_secs", 50.0, 3600.0);
    pub const TIMEOUT_ANSWER: TimeoutAnswer = TimeoutAnswer::EmptyEvents;
    pub const MAX_PER_SHARD: Count = count("parking.max_per_shard", 10_000, 0, 10_000_000);
    pub const RELEASE_RATE: Real = Real {
        key: "parking.release_rate_per_sec",
        default: 200.0,
        max: 1e6,
    };
    pub const RELEASE_BURST: Count = count("parking.release_burst", 50, 1, 1_000_000);
    pub const PROBE_INTERVAL: Secs = Secs::new("parking.probe_interval_secs", 0.25, 60.0);
}

/// `[queues]`.
pub mod queues {
    use super::{count, Count, Secs};
    use crate::routing::MovePolicy;
    pub const MAX_ENTRIES: Count = count("queues.max_entries", 1_000_000, 1, 100_000_000);
    pub const IDLE_TIMEOUT: Secs = Secs::new("queues.idle_timeout_secs", 600.0, 86_400.0);
    pub const MOVE_POLICY: MovePolicy = MovePolicy::Drain;
    pub const DRAIN_WINDOW: Secs = Secs::new("queues.drain_window_secs", 3600.0, 7.0 * 86_400.0);
    pub const MAX_DRAIN_WINDOWS: Count = count("queues.max_drain_windows", 16, 1, 64);
    pub const RELOAD_DELAY: Secs = Secs {
        zero_off: true,
        ..Secs::new("queues.reload_delay_secs", 1.0, 60.0)
    };
}

/// `[master]`.
pub mod master {
    use super::{count, Count, Secs};
    pub const UPGRADE_TIMEOUT: Secs = Secs::new("master.upgrade_timeout_secs", 10.0, 600.0);
    pub const MAX_DRAINING: Count = count("master.max_draining", 4, 1, 64);
}

/// `[database]`.
pub mod database {
    use super::Secs;
    pub const RESYNC: Secs = Secs::new("database.resync_secs", 60.0, 86_400.0);
    pub const CONNECT_TIMEOUT: Secs = Secs::new("database.connect_timeout_secs", 5.0, 300.0);
}

/// `[[shards]]`.
pub mod shards {
    /// A shard's weight for hashed realms.
    pub const WEIGHT: f64 = 1.0;
}

/// Every key with a default, and the default as the README writes it.
pub fn documented() -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("proxy.listen", proxy::LISTEN.to_string()),
        ("proxy.engine", proxy::ENGINE.as_str().to_string()),
        ("admin.listen", admin::LISTEN.to_string()),
        ("log.format", log::FORMAT.to_string()),
        ("log.level", log::LEVEL.to_string()),
        ("parking.enabled", parking::ENABLED.to_string()),
        (
            "parking.timeout_answer",
            parking::TIMEOUT_ANSWER.as_str().into(),
        ),
        ("queues.move_policy", queues::MOVE_POLICY.as_str().into()),
        ("weight", format!("{:?}", shards::WEIGHT)),
        (
            parking::RELEASE_RATE.key,
            parking::RELEASE_RATE.default.to_string(),
        ),
    ];
    let counts = [
        proxy::MAX_CONNECTIONS,
        proxy::THREADS,
        proxy::MAX_HEADER_BYTES,
        proxy::MAX_BODY_BYTES,
        parking::MAX_PER_SHARD,
        parking::RELEASE_BURST,
        queues::MAX_ENTRIES,
        queues::MAX_DRAIN_WINDOWS,
        master::MAX_DRAINING,
    ];
    out.extend(counts.iter().map(|c| (c.key, c.default.to_string())));
    let secs = [
        timeouts::UPSTREAM_CONNECT,
        timeouts::CLIENT_HEADER,
        timeouts::UPSTREAM_RESPONSE,
        timeouts::DRAIN,
        parking::TIMEOUT,
        parking::PROBE_INTERVAL,
        queues::IDLE_TIMEOUT,
        queues::DRAIN_WINDOW,
        queues::RELOAD_DELAY,
        master::UPGRADE_TIMEOUT,
        database::RESYNC,
        database::CONNECT_TIMEOUT,
    ];
    out.extend(secs.iter().map(|s| (s.key, s.default.to_string())));
    out
}

#[cfg(test)]
mod tests {
    /// The README's configuration table states these defaults: each key's row holds its
    /// default (in backquotes).
    #[test]
    fn the_readme_states_every_default() {
        let readme = include_str!("../../README.md");
        let table = &readme[readme.find("| key | default | meaning |").unwrap()..];
        for (key, default) in super::documented() {
            let row = table
                .lines()
                .find(|l| l.contains(&format!("`{key}`")))
                .unwrap_or_else(|| panic!("no README row for {key}"));
            assert!(
                row.contains(&format!("`{default}`")),
                "{key}: {default} in {row}"
            );
        }
    }
}
