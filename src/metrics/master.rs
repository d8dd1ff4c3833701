//! The master's counters (generation, upgrades, restarts, rollbacks by step), as the master
//! tells them to the active worker, which shows them.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
    pub(super) fn register(registry: &mut Registry) -> MasterMetrics {
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
