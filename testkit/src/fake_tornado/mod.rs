//! fake-tornado: a faithful stand-in for one Zulip Tornado shard, used by kansas's tests and by
//! operators load-testing their setup. It keeps event queues with Zulip's long-poll semantics
//! (see `../shared/reference/zulip-facts.md`), heartbeats idle long-polls, expires each queue
//! after its own lifespan without a client, survives restarts through a state file exactly as
//! Tornado does (dump on SIGTERM, then cut open long-polls mid-request; on start reload and add a
//! `restart` event to every queue), and knows which users it serves the way Tornado does with
//! kansas_zulip's patches: by following a kansas routing config (`--routing-config`, database
//! included) or by a fixed user split (`--user-split`); users it does not serve get
//! `X-Accel-Redirect` (GET), a refused registration (500) or a forwarded cleanup (DELETE).
//! Events are injected through `POST /fake/publish`, standing in for Django publishing through
//! RabbitMQ.

mod http;
mod manage;
pub mod routing;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use http::USER_ID_HEADER;
use routing::{Placement, Routing};
use state::State;

/// How a fake shard behaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Where queues are dumped on stop and loaded from on start.
    pub state_file: Option<PathBuf>,
    /// An idle long-poll gets a heartbeat after `heartbeat + random(0..heartbeat_jitter)`.
    pub heartbeat: Duration,
    pub heartbeat_jitter: Duration,
    /// The lifespan of a queue registered without `lifespan_secs` (or with 0): deleted after
    /// this long with no connected client (Zulip: 600 s).
    pub queue_timeout: Duration,
    /// Tornado ports a user-split realm is spread over (`user_id % n`); empty: no split.
    /// Ignored with `routing_config`.
    pub user_split: Vec<u16>,
    /// A kansas config file whose routing (database included) says which users this process
    /// serves.
    pub routing_config: Option<PathBuf>,
    /// The Tornado port this process answers to (default: the port it listens on).
    pub tornado_port: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: "127.0.0.1:9800".parse().unwrap(),
            state_file: None,
            heartbeat: Duration::from_secs(45),
            heartbeat_jitter: Duration::from_secs(10),
            queue_timeout: Duration::from_secs(600),
            user_split: Vec::new(),
            routing_config: None,
            tornado_port: None,
        }
    }
}

/// State shared by every connection of one fake shard.
pub struct Shared {
    state: Mutex<State>,
    options: Options,
    /// The Tornado port this shard answers to (redirects, and which users it serves).
    port: u16,
    /// The routing followed with `--routing-config`.
    routing: Option<Routing>,
    /// Wakes the expiry loop when a queue with a shorter lifespan than any before is created.
    expiry_wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a queue unless the shard is stopping. `lifespan_secs` as asked at registration.
    fn create(
        &self,
        realm: &str,
        user_id: u64,
        lifespan_secs: Option<u64>,
    ) -> Option<(String, u64)> {
        let lifespan = state::lifespan(lifespan_secs, self.options.queue_timeout);
        let mut state = self.lock();
        if state.stopping {
            return None;
        }
        let shorter = state.shortest_lifespan.is_none_or(|s| lifespan < s);
        let created = state.create(realm, user_id, lifespan);
        drop(state);
        if shorter {
            self.expiry_wake.notify_one();
        }
        Some(created)
    }

    /// Whether this process serves `user_id` of `realm` (the Host header, as sent).
    fn placement(&self, realm: &str, user_id: u64) -> Placement {
        routing::placement(
            self.routing.as_ref(),
            &self.options.user_split,
            self.port,
            realm,
            user_id,
        )
    }
}

/// A running fake shard.
pub struct FakeTornado {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop_accepting: CancellationToken,
    close_connections: CancellationToken,
    tasks: TaskTracker,
}

/// Why a fake shard could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("state file {path}: {reason}")]
    StateFile { path: PathBuf, reason: String },
    #[error("{0}")]
    Routing(String),
}

impl FakeTornado {
    /// Loads the state file (if any) and the routing config (if any), binds and starts serving.
    pub async fn start(options: Options) -> Result<FakeTornado, FakeError> {
        let routing = match &options.routing_config {
            Some(path) => Some(Routing::follow(path).await.map_err(FakeError::Routing)?),
            None => None,
        };
        let state = match &options.state_file {
            Some(path) if path.exists() => {
                let mut state = load_state(path, options.queue_timeout)?;
                // Like Tornado's `send_restart_events`: every restored queue learns of the restart.
                let generation = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                state.restart_events(generation);
                state
            }
            _ => State::default(),
        };
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| FakeError::Listen {
                    addr: options.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| FakeError::Listen {
            addr: options.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            port: options.tornado_port.unwrap_or(addr.port()),
            options,
            routing,
            expiry_wake: Notify::new(),
        });
        let stop_accepting = CancellationToken::new();
        let close_connections = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(accept_loop(
            listener,
            shared.clone(),
            stop_accepting.clone(),
            close_connections.clone(),
            tasks.clone(),
        ));
        tasks.spawn(expiry_loop(shared.clone(), stop_accepting.clone()));
        Ok(FakeTornado {
            addr,
            shared,
            stop_accepting,
            close_connections,
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of queues held now.
    pub fn queue_count(&self) -> usize {
        self.shared.lock().queues.len()
    }

    /// What Tornado does on SIGTERM: stop accepting, dump every queue to the state file, then
    /// close open long-polls mid-request, and return when every connection is gone.
    pub async fn stop(self) -> Result<(), FakeError> {
        self.stop_accepting.cancel();
        let dump = {
            let mut state = self.shared.lock();
            state.stopping = true;
            state.dump()
        };
        let saved = match &self.shared.options.state_file {
            Some(path) => save_state(path, &dump),
            None => Ok(()),
        };
        self.close_connections.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        saved
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    close: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "fake-tornado accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let close = close.clone();
        tasks.spawn(async move {
            let svc = service_fn(move |req| http::handle(shared.clone(), req));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                // Dropping the connection closes the socket mid-request, as Tornado does.
                _ = close.cancelled() => {}
            }
        });
    }
}

/// Deletes expired queues: one pass over the queues every quarter of the shortest lifespan held
/// (at least every 100 ms, at most every minute, Zulip's own period), so a queue is deleted at
/// most a quarter of its lifespan late and the common case (every queue 600 s) costs one pass a
/// minute. A new queue with a shorter lifespan wakes the loop to shorten its period.
async fn expiry_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let shortest = shared.lock().shortest_lifespan;
        let every = shortest
            .map_or(Duration::from_secs(60), |s| s / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.expiry_wake.notified() => continue,
            _ = tokio::time::sleep(every) => {}
        }
        let n = shared.lock().expire(Instant::now());
        if n > 0 {
            tracing::info!(expired = n, "deleted idle event queues");
        }
    }
}

fn load_state(path: &PathBuf, default_lifespan: Duration) -> Result<State, FakeError> {
    let err = |reason: String| FakeError::StateFile {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let state = State::load(value, default_lifespan).map_err(err)?;
    // Like Tornado: the dump is consumed by the start that loads it.
    std::fs::remove_file(path).map_err(|e| err(e.to_string()))?;
    tracing::info!(queues = state.queues.len(), path = %path.display(), "loaded event queues");
    Ok(state)
}

fn save_state(path: &PathBuf, dump: &serde_json::Value) -> Result<(), FakeError> {
    let err = |reason: String| FakeError::StateFile {
        path: path.clone(),
        reason,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, dump.to_string()).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
    tracing::info!(path = %path.display(), "dumped event queues");
    Ok(())
}
