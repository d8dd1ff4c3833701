//! Prometheus metrics. Per-shard handles are created once at start-up, so the request path only
//! touches atomics (no label hashing or locks per request).

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::ProxyError;
use crate::routing::Snapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    shard: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// Status classes counted per shard: 1xx..5xx.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Duration buckets in seconds, from fast answers to held long-polls.
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0,
];

/// Buckets for time spent parked, in seconds.
const PARK_BUCKETS: [f64; 10] = [0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 35.0, 50.0];

/// Pre-resolved parking and health handles for one shard (see `crate::parking`).
#[derive(Clone)]
pub struct ParkMetrics {
    pub parked_now: Gauge<i64, AtomicI64>,
    pub parked: Counter,
    pub replayed: Counter,
    pub timed_out: Counter,
    pub overflowed: Counter,
    pub abandoned: Counter,
    pub up: Gauge<i64, AtomicI64>,
    pub down_transitions: Counter,
    pub down_seconds: Counter<f64, AtomicU64>,
    pub parked_seconds: Histogram,
}

impl ParkMetrics {
    /// Handles registered nowhere (for unit tests).
    pub fn detached() -> ParkMetrics {
        ParkMetrics {
            parked_now: Gauge::default(),
            parked: Counter::default(),
            replayed: Counter::default(),
            timed_out: Counter::default(),
            overflowed: Counter::default(),
            abandoned: Counter::default(),
            up: Gauge::default(),
            down_transitions: Counter::default(),
            down_seconds: Counter::default(),
            parked_seconds: Histogram::new(PARK_BUCKETS.iter().copied()),
        }
    }

    /// Registers the per-shard families and returns the handles for each shard name.
    fn register(registry: &mut Registry, shards: &[String]) -> Vec<ParkMetrics> {
        fn counter(r: &mut Registry, name: &str, help: &str) -> Family<ShardLabel, Counter> {
            let f = Family::<ShardLabel, Counter>::default();
            r.register(name, help, f.clone());
            f
        }
        fn gauge(
            r: &mut Registry,
            name: &str,
            help: &str,
        ) -> Family<ShardLabel, Gauge<i64, AtomicI64>> {
            let f = Family::<ShardLabel, Gauge<i64, AtomicI64>>::default();
            r.register(name, help, f.clone());
            f
        }
        let parked_now = gauge(
            registry,
            "parked_requests",
            "GETs parked now, waiting for their shard",
        );
        let parked = counter(
            registry,
            "parked",
            "GETs parked because their shard was down",
        );
        let replayed = counter(registry, "replayed", "Parked GETs released and replayed");
        let timed_out = counter(
            registry,
            "park_timeouts",
            "Parked GETs answered at the park deadline",
        );
        let overflowed = counter(
            registry,
            "park_overflows",
            "GETs refused (503) because the shard's lot was full",
        );
        let abandoned = counter(
            registry,
            "park_abandoned",
            "Parked GETs whose client went away",
        );
        let up = gauge(
            registry,
            "shard_up",
            "1 while the shard is believed up, 0 while down",
        );
        let down = counter(
            registry,
            "shard_down_transitions",
            "Times the shard was marked down",
        );
        let down_secs = Family::<ShardLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "shard_down_seconds",
            "Seconds the shard spent down",
            down_secs.clone(),
        );
        let parked_secs = Family::<ShardLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(PARK_BUCKETS.iter().copied())
        });
        registry.register(
            "parked_seconds",
            "Time each GET spent parked",
            parked_secs.clone(),
        );
        shards
            .iter()
            .map(|name| {
                let l = ShardLabel {
                    shard: name.clone(),
                };
                ParkMetrics {
                    parked_now: parked_now.get_or_create(&l).clone(),
                    parked: parked.get_or_create(&l).clone(),
                    replayed: replayed.get_or_create(&l).clone(),
                    timed_out: timed_out.get_or_create(&l).clone(),
                    overflowed: overflowed.get_or_create(&l).clone(),
                    abandoned: abandoned.get_or_create(&l).clone(),
                    up: up.get_or_create(&l).clone(),
                    down_transitions: down.get_or_create(&l).clone(),
                    down_seconds: down_secs.get_or_create(&l).clone(),
                    parked_seconds: parked_secs.get_or_create(&l).clone(),
                }
            })
            .collect()
    }
}

/// The database follower's metrics (see `crate::store::follow`).
#[derive(Clone, Default)]
pub struct DbMetrics {
    pub connected: Gauge<i64, AtomicI64>,
    pub seconds_since_sync: Gauge<f64, AtomicU64>,
    pub syncs: Counter,
    pub notifications: Counter,
    pub rows_ignored: Gauge<i64, AtomicI64>,
}

impl DbMetrics {
    fn register(registry: &mut Registry) -> DbMetrics {
        let m = DbMetrics::default();
        registry.register(
            "db_connected",
            "1 while the database connection is up",
            m.connected.clone(),
        );
        registry.register(
            "db_seconds_since_sync",
            "Seconds since routing was last read in full from the database (+Inf: never)",
            m.seconds_since_sync.clone(),
        );
        registry.register(
            "db_syncs",
            "Full reads of the routing data",
            m.syncs.clone(),
        );
        registry.register(
            "db_notifications",
            "Change notifications applied",
            m.notifications.clone(),
        );
        registry.register(
            "db_rows_ignored",
            "Database rows skipped (unknown shard, bad host or pattern)",
            m.rows_ignored.clone(),
        );
        m.seconds_since_sync.set(f64::INFINITY);
        m
    }
}

/// The master's counters, as told to the active worker.
#[derive(Clone, Default)]
pub struct MasterMetrics {
    generation: Gauge<i64, AtomicI64>,
    upgrades: Gauge<i64, AtomicI64>,
    restarts: Gauge<i64, AtomicI64>,
    rollbacks: Family<StepLabel, Gauge<i64, AtomicI64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: String,
}

impl MasterMetrics {
    fn register(registry: &mut Registry) -> MasterMetrics {
        let m = MasterMetrics::default();
        registry.register(
            "generation",
            "This worker's generation",
            m.generation.clone(),
        );
        registry.register(
            "upgrades",
            "Upgrades completed by the master",
            m.upgrades.clone(),
        );
        registry.register(
            "worker_restarts",
            "Workers restarted after dying outside an upgrade",
            m.restarts.clone(),
        );
        registry.register(
            "upgrade_rollbacks",
            "Upgrades rolled back, by the step that failed",
            m.rollbacks.clone(),
        );
        m
    }

    /// Shows the master's latest counters.
    pub fn set(&self, stats: &crate::handoff::MasterStats) {
        self.generation.set(stats.generation as i64);
        self.upgrades.set(stats.upgrades as i64);
        self.restarts.set(stats.restarts as i64);
        for (step, n) in &stats.rollbacks {
            self.rollbacks
                .get_or_create(&StepLabel { step: step.clone() })
                .set(*n as i64);
        }
    }
}

/// Queue map and realm-move counters.
#[derive(Clone)]
pub struct QueueCounters {
    pub map: crate::queues::QueueMetrics,
    pub reload_moves: Counter,
    pub drain_moves: Counter,
    pub redirects: Counter,
}

impl QueueCounters {
    fn register(registry: &mut Registry) -> QueueCounters {
        let map = crate::queues::QueueMetrics::default();
        registry.register("queues", "Queues in the queue map", map.entries.clone());
        registry.register(
            "queues_learned",
            "Queue-map entries learned or changed",
            map.learned.clone(),
        );
        registry.register(
            "queues_expired",
            "Queue-map entries forgotten after the idle timeout",
            map.expired.clone(),
        );
        registry.register(
            "queues_evicted",
            "Queue-map entries evicted past the bound (longest idle first)",
            map.evicted.clone(),
        );
        let moves = Family::<PolicyLabel, Counter>::default();
        registry.register(
            "queue_moves",
            "Requests for a queue whose realm moved, by the policy applied",
            moves.clone(),
        );
        let redirects = Counter::default();
        registry.register(
            "redirects",
            "X-Accel-Redirect answers followed",
            redirects.clone(),
        );
        let policy = |p: &str| {
            moves
                .get_or_create(&PolicyLabel {
                    policy: p.to_string(),
                })
                .clone()
        };
        QueueCounters {
            map,
            reload_moves: policy("reload"),
            drain_moves: policy("drain"),
            redirects,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: String,
}

/// Pre-resolved handles for one shard.
pub struct ShardMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl ShardMetrics {
    /// Counts one finished request.
    #[inline]
    pub fn observe(&self, status: u16, seconds: f64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].inc();
        self.duration.observe(seconds);
    }
}

/// All metrics of one process.
pub struct Metrics {
    registry: Registry,
    shards: Vec<ShardMetrics>,
    /// Requests answered without reaching a shard (bad host, no shard), by status class.
    unrouted: [Counter; 5],
    errors: Family<KindLabel, Counter>,
    in_flight: Gauge<i64, AtomicI64>,
    connections: Gauge<i64, AtomicI64>,
    park: Vec<ParkMetrics>,
    pub db: DbMetrics,
    pub queues: QueueCounters,
    pub master: MasterMetrics,
}

impl Metrics {
    /// Registers every metric, with handles for each configured shard.
    pub fn new(snapshot: &Snapshot) -> Metrics {
        let mut registry = Registry::with_prefix("kansas");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by shard and status class",
            requests.clone(),
        );
        let durations = Family::<ShardLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(BUCKETS.iter().copied())
        });
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head, by shard",
            durations.clone(),
        );
        let errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "errors",
            "Requests kansas answered itself, by kind of failure",
            errors.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests being handled",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "client_connections",
            "Open client connections",
            connections.clone(),
        );
        let class_counters = |shard: &str| {
            CLASSES.map(|class| {
                requests
                    .get_or_create(&RequestLabels {
                        shard: shard.to_string(),
                        class: class.to_string(),
                    })
                    .clone()
            })
        };
        let shards = snapshot
            .shards()
            .iter()
            .map(|s| ShardMetrics {
                by_class: class_counters(&s.name),
                duration: durations
                    .get_or_create(&ShardLabel {
                        shard: s.name.clone(),
                    })
                    .clone(),
            })
            .collect();
        let unrouted = class_counters("");
        let names: Vec<String> = snapshot.shards().iter().map(|s| s.name.clone()).collect();
        let park = ParkMetrics::register(&mut registry, &names);
        let db = DbMetrics::register(&mut registry);
        let queues = QueueCounters::register(&mut registry);
        let master = MasterMetrics::register(&mut registry);
        Metrics {
            master,
            queues,
            db,
            park,
            registry,
            shards,
            unrouted,
            errors,
            in_flight,
            connections,
        }
    }

    /// The handles for a shard.
    #[inline]
    pub fn shard(&self, id: usize) -> &ShardMetrics {
        &self.shards[id]
    }

    /// The parking handles for a shard.
    pub fn park(&self, id: usize) -> ParkMetrics {
        self.park[id].clone()
    }

    /// Counts a request answered before any shard was chosen.
    pub fn unrouted(&self, status: u16) {
        self.unrouted[(status / 100).clamp(1, 5) as usize - 1].inc();
    }

    /// Counts an error kansas answered itself.
    pub fn error(&self, err: ProxyError) {
        self.errors
            .get_or_create(&KindLabel {
                kind: err.kind().to_string(),
            })
            .inc();
    }

    pub fn in_flight(&self) -> &Gauge<i64, AtomicI64> {
        &self.in_flight
    }

    pub fn connections(&self) -> &Gauge<i64, AtomicI64> {
        &self.connections
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::routing::Shard;

    /// The exposition with each metric's sample lines sorted (label sets come out of a hash
    /// map in no fixed order); the `# HELP`/`# TYPE` lines keep their registration order.
    fn normalized(text: &str) -> String {
        let mut out = Vec::new();
        let mut samples: Vec<&str> = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                samples.sort_unstable();
                out.append(&mut samples);
                out.push(line);
            } else {
                samples.push(line);
            }
        }
        samples.sort_unstable();
        out.append(&mut samples);
        out.join("\n") + "\n"
    }

    #[test]
    fn every_name_label_and_help_text_is_unchanged() {
        let shard = |name: &str, port: u16| Shard {
            name: name.into(),
            address: format!("127.0.0.1:{port}"),
            port,
            weight: 1.0,
        };
        let snapshot = Snapshot::new(
            vec![shard("a", 9800), shard("b", 9801)],
            HashMap::new(),
            vec![],
        )
        .unwrap();
        let metrics = Metrics::new(&snapshot);
        metrics.error(ProxyError::ParkTimeout);
        metrics.shard(1).observe(200, 0.02);
        metrics.unrouted(400);
        metrics.park(0).parked.inc();
        metrics.queues.reload_moves.inc();
        let rendered = normalized(&metrics.render());
        if std::env::var_os("KANSAS_WRITE_EXPOSITION").is_some() {
            std::fs::write("src/metrics/exposition.txt", &rendered).unwrap();
        }
        // Dashboards and tests read these names: a change here is a change for operators.
        assert_eq!(rendered, include_str!("metrics/exposition.txt"));
    }
}
