//! Queue map and realm-move metrics: entries, learned, expired and evicted queues (the handles
//! live in `crate::queues::QueueMetrics`), moves by policy, and followed redirects.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Queue map and realm-move counters.
#[derive(Clone)]
pub struct QueueCounters {
    pub map: crate::queues::QueueMetrics,
    pub reload_moves: Counter,
    pub drain_moves: Counter,
    pub redirects: Counter,
}

impl QueueCounters {
    pub(super) fn register(registry: &mut Registry) -> QueueCounters {
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
