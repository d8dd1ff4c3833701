//! One worker's serving machinery, apart from the process around it: the shared proxy state,
//! metrics and database follower; restoring from and dumping to the handoff state; and serving
//! the proxy and admin listeners until told to stop, then draining.

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::handoff::{Envelope, State, STATE_FORMAT};
use crate::metrics::Metrics;
use crate::proxy::{self, Proxy, ServerLimits};
use crate::store::follow::Follower;
use crate::store::{DbState, StoreError};

/// A worker's state, ready to serve.
pub struct Daemon {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub proxy: Arc<Proxy>,
    follower: Option<Follower>,
    db_latest: Option<Arc<Mutex<Option<DbState>>>>,
}

impl Daemon {
    /// Builds the proxy state (inside a runtime; nothing is accepted yet).
    pub fn new(config: Config) -> Daemon {
        let metrics = Arc::new(Metrics::new(&config.routing));
        let proxy = Arc::new(Proxy::new(&config, metrics.clone()));
        proxy.start_background();
        let follower = config.database.as_ref().map(|db| {
            Follower::new(
                db.clone(),
                config.routing.clone(),
                proxy.snapshot().clone(),
                metrics.db.clone(),
            )
        });
        let db_latest = follower.as_ref().map(|f| f.latest());
        Daemon {
            config,
            metrics,
            proxy,
            follower,
            db_latest,
        }
    }

    /// A fresh start: read the database once before serving. An unmigrated or too-new schema
    /// is an error; an unreachable database is not.
    pub async fn first_read(&mut self) -> Result<(), StoreError> {
        match &mut self.follower {
            Some(f) => f.initial().await,
            None => Ok(()),
        }
    }

    /// Starts from the previous generation's state. Refuses an envelope it cannot read.
    pub fn restore(&mut self, env: Envelope) -> Result<(), String> {
        if env.format != STATE_FORMAT {
            return Err(format!(
                "state format {} from kansas {} is not {STATE_FORMAT}",
                env.format, env.kansas_version
            ));
        }
        let state = env.state;
        if let (Some(saved), Some(f)) = (&state.database, &mut self.follower) {
            f.seed(saved);
        }
        let snapshot = self.proxy.snapshot().load();
        let saved = state.queues.len();
        let skipped = self
            .proxy
            .queues()
            .restore(state.queues, |name| snapshot.shard_id(name));
        for name in &state.down_shards {
            if let Some(id) = snapshot.shard_id(name) {
                self.proxy
                    .park(id)
                    .mark_down("down in the previous generation");
            }
        }
        tracing::info!(
            queues = saved - skipped,
            skipped,
            down_shards = state.down_shards.len(),
            from_generation = env.generation,
            "state restored"
        );
        Ok(())
    }

    /// The database state shared with the follower, for dumps after `serve` took the daemon.
    pub fn db_view(&self) -> Option<Arc<Mutex<Option<DbState>>>> {
        self.db_latest.clone()
    }

    /// Serves until `stop`, then drains. Returns whether everything finished within the drain
    /// timeout.
    pub async fn serve(
        mut self,
        proxy_listener: StdListener,
        admin_listener: StdListener,
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<bool> {
        admin_listener.set_nonblocking(true)?;
        let admin = tokio::net::TcpListener::from_std(admin_listener)?;
        if let Some(f) = self.follower.take() {
            tokio::spawn(f.run());
        }
        // The admin listener is left to the next generation as soon as this one stops, so a
        // scrape never sees a draining worker's numbers.
        let stopping = tokio_util::sync::CancellationToken::new();
        let admin_stop = stopping.clone();
        let metrics = self.metrics.clone();
        let admin_task = tokio::spawn(async move {
            tokio::select! {
                _ = crate::admin::serve(admin, metrics) => {}
                _ = admin_stop.cancelled() => {}
            }
        });
        let limits = ServerLimits {
            max_connections: crate::limits::effective_max_connections(
                self.config.proxy.max_connections,
            ),
            max_header_bytes: self.config.proxy.max_header_bytes,
            header_read_timeout: self.config.timeouts.client_header,
            drain: self.config.timeouts.drain,
            engine: self.config.proxy.engine,
        };
        let stop = async move {
            stop.await;
            stopping.cancel();
        };
        let drained = proxy::serve(proxy_listener, self.proxy.clone(), limits, stop).await?;
        admin_task.abort();
        Ok(drained)
    }
}

/// A worker's state for the next generation.
pub fn dump(
    proxy: &Proxy,
    db_latest: Option<&Arc<Mutex<Option<DbState>>>>,
    generation: u64,
) -> Envelope {
    let snapshot = proxy.snapshot().load();
    let names: Vec<String> = snapshot.shards().iter().map(|s| s.name.clone()).collect();
    let database = db_latest.and_then(|l| {
        let l = l.lock().unwrap_or_else(|e| e.into_inner());
        l.clone()
    });
    let down_shards = names
        .iter()
        .enumerate()
        .filter(|(id, _)| !proxy.park(*id).is_up())
        .map(|(_, n)| n.clone())
        .collect();
    Envelope {
        format: STATE_FORMAT,
        kansas_version: env!("CARGO_PKG_VERSION").to_string(),
        generation,
        state: State {
            database,
            queues: proxy.queues().save(&names),
            down_shards,
        },
    }
}
