//! Per-shard parking and health metrics (see `crate::parking`): how many GETs wait for their
//! shard, what became of them, and when the shard was up or down.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::ShardLabel;

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

type Counters = Family<ShardLabel, Counter>;
type Gauges = Family<ShardLabel, Gauge<i64, AtomicI64>>;

/// The per-shard families, registered once.
struct Families {
    parked_now: Gauges,
    parked: Counters,
    replayed: Counters,
    timed_out: Counters,
    overflowed: Counters,
    abandoned: Counters,
    up: Gauges,
    down: Counters,
    down_secs: Family<ShardLabel, Counter<f64, AtomicU64>>,
    parked_secs: Family<ShardLabel, Histogram>,
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
    pub(super) fn register(registry: &mut Registry, shards: &[String]) -> Vec<ParkMetrics> {
        let f = Families::register(registry);
        shards
            .iter()
            .map(|name| {
                let l = ShardLabel {
                    shard: name.clone(),
                };
                ParkMetrics {
                    parked_now: f.parked_now.get_or_create(&l).clone(),
                    parked: f.parked.get_or_create(&l).clone(),
                    replayed: f.replayed.get_or_create(&l).clone(),
                    timed_out: f.timed_out.get_or_create(&l).clone(),
                    overflowed: f.overflowed.get_or_create(&l).clone(),
                    abandoned: f.abandoned.get_or_create(&l).clone(),
                    up: f.up.get_or_create(&l).clone(),
                    down_transitions: f.down.get_or_create(&l).clone(),
                    down_seconds: f.down_secs.get_or_create(&l).clone(),
                    parked_seconds: f.parked_secs.get_or_create(&l).clone(),
                }
            })
            .collect()
    }
}

impl Families {
    fn register(registry: &mut Registry) -> Families {
        fn counter(r: &mut Registry, name: &str, help: &str) -> Counters {
            let f = Counters::default();
            r.register(name, help, f.clone());
            f
        }
        fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauges {
            let f = Gauges::default();
            r.register(name, help, f.clone());
            f
        }
        let r = registry;
        let parked_now = gauge(
            r,
            "parked_requests",
            "GETs parked now, waiting for their shard",
        );
        let parked = counter(r, "parked", "GETs parked because their shard was down");
        let replayed = counter(r, "replayed", "Parked GETs released and replayed");
        let timed_out = counter(
            r,
            "park_timeouts",
            "Parked GETs answered at the park deadline",
        );
        let overflowed = counter(
            r,
            "park_overflows",
            "GETs refused (503) because the shard's lot was full",
        );
        let abandoned = counter(r, "park_abandoned", "Parked GETs whose client went away");
        let up = gauge(
            r,
            "shard_up",
            "1 while the shard is believed up, 0 while down",
        );
        let down = counter(
            r,
            "shard_down_transitions",
            "Times the shard was marked down",
        );
        let down_secs = Family::<ShardLabel, Counter<f64, AtomicU64>>::default();
        r.register(
            "shard_down_seconds",
            "Seconds the shard spent down",
            down_secs.clone(),
        );
        let parked_secs = Family::<ShardLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(PARK_BUCKETS.iter().copied())
        });
        r.register(
            "parked_seconds",
            "Time each GET spent parked",
            parked_secs.clone(),
        );
        Families {
            parked_now,
            parked,
            replayed,
            timed_out,
            overflowed,
            abandoned,
            up,
            down,
            down_secs,
            parked_secs,
        }
    }
}
