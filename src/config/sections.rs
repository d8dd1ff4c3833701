//! Validation of the sections that are plain settings (`[proxy]`, `[admin]`, `[timeouts]`,
//! `[log]`, `[parking]`, `[queues]`, `[master]`, `[database]`), each against its defaults
//! table. The routing sections are [`super::shards`].

use std::net::SocketAddr;

use super::checks::Problems;
use super::defaults;
use super::raw::{
    RawAdmin, RawDatabase, RawLog, RawMaster, RawParking, RawProxy, RawQueues, RawTimeouts,
};
use super::{
    DatabaseConfig, Engine, LogConfig, LogFormat, MasterConfig, ParkingConfig, ProxyConfig,
    QueuesConfig, TimeoutAnswer, Timeouts,
};
use crate::routing::MovePolicy;

pub(super) fn proxy(raw: Option<RawProxy>, p: &mut Problems) -> ProxyConfig {
    use defaults::proxy as d;
    let raw = raw.unwrap_or_default();
    ProxyConfig {
        listen: p.addr("proxy.listen", raw.listen.as_deref(), d::LISTEN),
        max_connections: p.count(d::MAX_CONNECTIONS, raw.max_connections) as usize,
        threads: p.count(d::THREADS, raw.threads) as usize,
        max_header_bytes: p.count(d::MAX_HEADER_BYTES, raw.max_header_bytes) as usize,
        max_body_bytes: p.count(d::MAX_BODY_BYTES, raw.max_body_bytes) as u64,
        engine: engine(raw.engine.as_deref(), p),
    }
}

/// `proxy.engine`: a known name or the default; the test suite's choice over both.
fn engine(name: Option<&str>, p: &mut Problems) -> Engine {
    let configured = match name {
        None => defaults::proxy::ENGINE,
        Some(name) => Engine::parse(name).unwrap_or_else(|| {
            p.add(
                "proxy.engine",
                format!("must be \"hyper\" or \"kansas\" (got {name:?})"),
            );
            defaults::proxy::ENGINE
        }),
    };
    Engine::for_tests().unwrap_or(configured)
}

pub(super) fn admin_listen(raw: Option<RawAdmin>, p: &mut Problems) -> SocketAddr {
    let raw = raw.unwrap_or_default();
    p.addr(
        "admin.listen",
        raw.listen.as_deref(),
        defaults::admin::LISTEN,
    )
}

pub(super) fn timeouts(raw: Option<RawTimeouts>, p: &mut Problems) -> Timeouts {
    use defaults::timeouts as d;
    let t = raw.unwrap_or_default();
    Timeouts {
        upstream_connect: p.secs(d::UPSTREAM_CONNECT, t.upstream_connect_secs),
        client_header: p.secs(d::CLIENT_HEADER, t.client_header_secs),
        upstream_response: p.secs(d::UPSTREAM_RESPONSE, t.upstream_response_secs),
        drain: p.secs(d::DRAIN, t.drain_secs),
    }
}

pub(super) fn log(raw: Option<RawLog>, p: &mut Problems) -> LogConfig {
    use defaults::log as d;
    let raw = raw.unwrap_or_default();
    let format = match raw.format.as_deref().unwrap_or(d::FORMAT) {
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
    let level = raw.level.unwrap_or_else(|| d::LEVEL.to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        p.add(
            "log.level",
            format!("{level:?} is not a log filter (try \"info\")"),
        );
    }
    LogConfig { format, level }
}

pub(super) fn parking(raw: Option<RawParking>, p: &mut Problems) -> ParkingConfig {
    use defaults::parking as d;
    let raw = raw.unwrap_or_default();
    let timeout_answer = match raw.timeout_answer.as_deref() {
        None => d::TIMEOUT_ANSWER,
        Some(s) => TimeoutAnswer::parse(s).unwrap_or_else(|| {
            p.add(
                "parking.timeout_answer",
                format!("must be \"empty\" or \"503\" (got {s:?})"),
            );
            d::TIMEOUT_ANSWER
        }),
    };
    ParkingConfig {
        enabled: raw.enabled.unwrap_or(d::ENABLED),
        timeout: p.secs(d::TIMEOUT, raw.timeout_secs),
        timeout_answer,
        max_per_shard: p.count(d::MAX_PER_SHARD, raw.max_per_shard) as usize,
        release_rate: p.real(d::RELEASE_RATE, raw.release_rate_per_sec),
        release_burst: p.count(d::RELEASE_BURST, raw.release_burst) as u32,
        probe_interval: p.secs(d::PROBE_INTERVAL, raw.probe_interval_secs),
    }
}

pub(super) fn queues(raw: Option<RawQueues>, p: &mut Problems) -> QueuesConfig {
    use defaults::queues as d;
    let raw = raw.unwrap_or_default();
    let move_policy = match raw.move_policy.as_deref() {
        None => d::MOVE_POLICY,
        Some(s) => MovePolicy::parse(s).unwrap_or_else(|| {
            p.add(
                "queues.move_policy",
                format!("must be \"reload\" or \"drain\" (got {s:?})"),
            );
            d::MOVE_POLICY
        }),
    };
    QueuesConfig {
        max_entries: p.count(d::MAX_ENTRIES, raw.max_entries) as usize,
        idle_timeout: p.secs(d::IDLE_TIMEOUT, raw.idle_timeout_secs),
        move_policy,
        drain_window: p.secs(d::DRAIN_WINDOW, raw.drain_window_secs),
        max_drain_windows: p.count(d::MAX_DRAIN_WINDOWS, raw.max_drain_windows) as usize,
        reload_delay: p.secs(d::RELOAD_DELAY, raw.reload_delay_secs),
    }
}

pub(super) fn master(raw: Option<RawMaster>, p: &mut Problems) -> MasterConfig {
    use defaults::master as d;
    let raw = raw.unwrap_or_default();
    MasterConfig {
        upgrade_timeout: p.secs(d::UPGRADE_TIMEOUT, raw.upgrade_timeout_secs),
        max_draining: p.count(d::MAX_DRAINING, raw.max_draining) as usize,
    }
}

pub(super) fn database(raw: RawDatabase, p: &mut Problems) -> DatabaseConfig {
    use defaults::database as d;
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
        resync: p.secs(d::RESYNC, raw.resync_secs),
        connect_timeout: p.secs(d::CONNECT_TIMEOUT, raw.connect_timeout_secs),
    }
}
