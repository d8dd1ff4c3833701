//! The database follower's metrics (see `crate::store::follow`): the connection, the last full
//! read, notifications applied and rows skipped.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
    pub(super) fn register(registry: &mut Registry) -> DbMetrics {
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
