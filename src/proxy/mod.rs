//! The proxy: shared per-process state ([`Proxy`]), the request handler, header rules, the
//! upstream client, the accept loop, and every answer kansas makes itself (`answers`: the
//! error table and the synthetic answers).

pub mod answers;
mod body;
pub mod decide;
mod elsewhere;
mod forward;
mod handler;
pub mod headers;
mod server;
mod upstream;

use std::cell::Cell;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, ParkingConfig, Timeouts};
use crate::metrics::Metrics;
use crate::parking::ShardPark;
use crate::queues::QueueMap;
use crate::routing::MovePolicy;
use crate::routing::{ShardId, Snapshot};

pub use body::ClientBody;
pub(crate) use elsewhere::others_for;
pub(crate) use forward::redirect_to;
pub use forward::Route;
pub use handler::handle;
pub(crate) use handler::no_shard;
pub use server::{bind, serve, ServerLimits};
pub(crate) use upstream::log_failure;
pub use upstream::{classify, client, UpstreamClient};

thread_local! {
    /// Which serving thread this is (0 on any other thread).
    static SERVING_THREAD: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as serving thread `index`.
fn set_serving_thread(index: usize) {
    SERVING_THREAD.with(|t| t.set(index));
}

/// Request limits applied by the handler.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: u64,
}

/// Everything a request needs, shared by every connection of a worker.
pub struct Proxy {
    /// The routing snapshot, swapped atomically when routing changes.
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Shard names and URI authorities by id, fixed for the life of the process.
    shards: Vec<(String, http::uri::Authority)>,
    /// One upstream client (connection pool) per serving thread, so a thread's shard
    /// connections live on its own event loop; see [`Proxy::client`].
    clients: Vec<UpstreamClient>,
    metrics: Arc<Metrics>,
    timeouts: Timeouts,
    limits: Limits,
    parking: ParkingConfig,
    /// Health and parked GETs, by shard id.
    parks: Vec<Arc<ShardPark>>,
    /// Which shard each known queue lives on.
    queues: Arc<QueueMap>,
    /// Move policy for realms whose assignment sets none.
    default_move_policy: MovePolicy,
    /// How long a reload answer is held (`queues.reload_delay_secs`).
    reload_delay: std::time::Duration,
    /// Set while this process drains: every answer says `Connection: close`, so clients move
    /// to the next generation without a reset.
    draining: std::sync::atomic::AtomicBool,
}

impl Proxy {
    /// Builds the shared state from a validated configuration.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Proxy {
        let threads = match config.proxy.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let shards = config
            .routing
            .shards()
            .iter()
            .map(|s| {
                let authority = http::uri::Authority::try_from(s.address.as_str())
                    .expect("validated shard addresses are URI authorities");
                (s.name.clone(), authority)
            })
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
        let queues = Arc::new(QueueMap::new(
            config.queues.max_entries,
            config.queues.idle_timeout,
            metrics.queues.map.clone(),
        ));
        Proxy {
            draining: std::sync::atomic::AtomicBool::new(false),
            queues,
            default_move_policy: config.queues.move_policy,
            reload_delay: config.queues.reload_delay,
            parking: config.parking.clone(),
            parks,
            snapshot: Arc::new(ArcSwap::from_pointee(config.routing.clone())),
            shards,
            clients: (0..threads)
                .map(|_| client(config.timeouts.upstream_connect))
                .collect(),
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
        let queues = self.queues.clone();
        let every = (self.timeouts_queue_sweep()).max(std::time::Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                queues.expire();
            }
        });
    }

    /// How often idle queues are swept: a tenth of the idle timeout, at most a minute.
    fn timeouts_queue_sweep(&self) -> std::time::Duration {
        (self.queues.idle_timeout() / 10).min(std::time::Duration::from_secs(60))
    }

    /// How many serving threads accept and serve client connections.
    pub fn threads(&self) -> usize {
        self.clients.len()
    }

    /// The calling serving thread's upstream client (the first one's elsewhere).
    pub fn client(&self) -> &UpstreamClient {
        &self.clients[SERVING_THREAD.with(Cell::get) % self.clients.len()]
    }

    /// The routing snapshot, swapped atomically when routing changes.
    pub fn snapshot(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.snapshot
    }

    /// Which shard each known queue lives on.
    pub fn queues(&self) -> &Arc<QueueMap> {
        &self.queues
    }

    /// A shard's health and parking lot.
    pub fn park(&self, id: ShardId) -> &Arc<ShardPark> {
        &self.parks[id]
    }

    /// How many shards the config file names.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn shard_name(&self, id: ShardId) -> &str {
        &self.shards[id].0
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub(crate) fn max_body_bytes(&self) -> u64 {
        self.limits.max_body_bytes
    }

    pub(crate) fn parking(&self) -> &ParkingConfig {
        &self.parking
    }

    pub(crate) fn default_move_policy(&self) -> MovePolicy {
        self.default_move_policy
    }

    pub(crate) fn reload_delay(&self) -> std::time::Duration {
        self.reload_delay
    }

    /// Whether this process drains (every answer closes its connection).
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The shard's `host:port`, ready for an upstream URI.
    pub fn shard_authority(&self, id: ShardId) -> &http::uri::Authority {
        &self.shards[id].1
    }
}
