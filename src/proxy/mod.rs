//! The proxy: shared per-process state ([`Proxy`]), the request handler, header rules, the
//! upstream client and the accept loop.

mod body;
mod forward;
mod handler;
pub mod headers;
mod server;
mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, ParkingConfig, Timeouts};
use crate::metrics::Metrics;
use crate::parking::ShardPark;
use crate::routing::{ShardId, Snapshot};

pub use handler::{handle, ClientBody};
pub use server::{bind, serve, ServerLimits};
pub use upstream::{classify, client, UpstreamClient};

/// Request limits applied by the handler.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: u64,
}

/// Everything a request needs, shared by every connection of a worker.
pub struct Proxy {
    /// The routing snapshot, swapped atomically when routing changes.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Shard addresses and names by id, fixed for the life of the process.
    shards: Vec<(String, String)>,
    pub client: UpstreamClient,
    pub metrics: Arc<Metrics>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub parking: ParkingConfig,
    /// Health and parked GETs, by shard id.
    parks: Vec<Arc<ShardPark>>,
}

impl Proxy {
    /// Builds the shared state from a validated configuration.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Proxy {
        let shards = config
            .routing
            .shards()
            .iter()
            .map(|s| (s.name.clone(), s.address.clone()))
            .collect();
        let parks = config
            .routing
            .shards()
            .iter()
            .enumerate()
            .map(|(id, s)| {
                ShardPark::new(
                    &s.name,
                    &s.address,
                    config.parking.clone(),
                    config.timeouts.upstream_connect,
                    metrics.park(id),
                )
            })
            .collect();
        Proxy {
            parking: config.parking.clone(),
            parks,
            snapshot: Arc::new(ArcSwap::from_pointee(config.routing.clone())),
            shards,
            client: client(config.timeouts.upstream_connect),
            metrics,
            timeouts: config.timeouts.clone(),
            limits: Limits {
                max_body_bytes: config.proxy.max_body_bytes,
            },
        }
    }

    /// Starts each shard's release loop; call once, inside the runtime.
    pub fn start_background(&self) {
        for park in &self.parks {
            tokio::spawn(park.clone().release_loop());
        }
    }

    /// A shard's health and parking lot.
    pub fn park(&self, id: ShardId) -> &Arc<ShardPark> {
        &self.parks[id]
    }

    /// The shard for a normalized realm host, if any.
    #[inline]
    pub fn route(&self, realm: &str) -> Option<ShardId> {
        self.snapshot.load().route(realm).map(|d| d.shard)
    }

    pub fn shard_name(&self, id: ShardId) -> &str {
        &self.shards[id].0
    }

    pub fn shard_address(&self, id: ShardId) -> &str {
        &self.shards[id].1
    }
}
