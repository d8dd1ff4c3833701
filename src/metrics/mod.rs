//! Prometheus metrics. Per-shard handles are created once at start-up, so the request path only
//! touches atomics (no label hashing or locks per request). This module has the requests,
//! durations, errors and connections, and [`Metrics`], which registers everything; each other
//! concept has its own module: parking and shard health ([`park`]), the database follower
//! ([`db`]), the master's counters ([`master`]) and the queue map ([`queues`]).

mod db;
mod master;
mod park;
mod queues;
#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::ProxyError;
use crate::routing::Snapshot;

pub use db::DbMetrics;
pub use master::MasterMetrics;
pub use park::ParkMetrics;
pub use queues::QueueCounters;

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

/// Pre-resolved handles for one shard.
pub struct ShardMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl ShardMetrics {
    /// Registers the request counters and durations; returns the handles for each shard name,
    /// and the counters of requests answered before any shard was chosen.
    fn register(registry: &mut Registry, names: &[String]) -> (Vec<ShardMetrics>, [Counter; 5]) {
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
        let shards = names
            .iter()
            .map(|name| ShardMetrics {
                by_class: class_counters(name),
                duration: durations
                    .get_or_create(&ShardLabel {
                        shard: name.clone(),
                    })
                    .clone(),
            })
            .collect();
        (shards, class_counters(""))
    }

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
        let names: Vec<String> = snapshot.shards().iter().map(|s| s.name.clone()).collect();
        let (shards, unrouted) = ShardMetrics::register(&mut registry, &names);
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
