//! Following the database: load everything, LISTEN for changes and apply each one to the
//! routing snapshot (within a second of the commit), re-read everything periodically, and on any
//! failure keep routing from the last snapshot while reconnecting with backoff (then re-read in
//! full). The proxy never waits on any of this.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use super::{compose, connect, load, schema, DbState, Ignored, StoreError};
use crate::config::DatabaseConfig;
use crate::metrics::DbMetrics;
use crate::routing::Snapshot;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Keeps `target` in step with the database, for the life of the process.
pub struct Follower {
    db: DatabaseConfig,
    /// The config file's routing: shards and addresses, and the fallback until the first read.
    base: Snapshot,
    target: Arc<ArcSwap<Snapshot>>,
    metrics: DbMetrics,
    /// When routing was last installed from the database (ms since the epoch; 0: never).
    synced_at: Arc<AtomicU64>,
    /// The last state installed, for the handoff to the next generation.
    latest: Arc<std::sync::Mutex<Option<DbState>>>,
    logged: BTreeSet<Ignored>,
}

impl Follower {
    pub fn new(
        db: DatabaseConfig,
        base: Snapshot,
        target: Arc<ArcSwap<Snapshot>>,
        metrics: DbMetrics,
    ) -> Follower {
        Follower {
            db,
            base,
            target,
            metrics,
            synced_at: Arc::new(AtomicU64::new(0)),
            latest: Arc::default(),
            logged: BTreeSet::new(),
        }
    }

    /// The last state installed (shared, for the handoff).
    pub fn latest(&self) -> Arc<std::sync::Mutex<Option<DbState>>> {
        self.latest.clone()
    }

    /// Starts from a state handed over by the previous generation.
    pub fn seed(&mut self, state: &DbState) {
        self.install(state);
    }

    /// Connects and loads once, before serving, so the first requests route by the database.
    /// An unmigrated or too-new schema is an error; an unreachable database is not (kansas then
    /// starts from the config file and catches up).
    pub async fn initial(&mut self) -> Result<(), StoreError> {
        match connect(&self.db).await {
            Ok((mut client, _rx)) => {
                schema::check(&client).await?;
                let state = load(&mut client).await?;
                self.install(&state);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "database unreachable at start: routing from the config file until it is back");
                Ok(())
            }
        }
    }

    /// Runs forever: sessions, with backoff between them.
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        tokio::spawn(tick_age(self.metrics.clone(), self.synced_at.clone()));
        loop {
            let started = Instant::now();
            let err = self.session().await;
            self.metrics.connected.set(0);
            tracing::warn!(error = %err, "database follower: keeping the last routing snapshot and reconnecting");
            if started.elapsed() > BACKOFF_MAX {
                backoff = BACKOFF_MIN;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: load, then apply notifications and periodic re-reads until an
    /// error ends it.
    async fn session(&mut self) -> StoreError {
        let (mut client, mut notifications) = match connect(&self.db).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        if let Err(e) = client.batch_execute("LISTEN kansas_routing").await {
            return e.into();
        }
        if let Err(e) = schema::check(&client).await {
            return e;
        }
        let mut state = match load(&mut client).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        self.install(&state);
        self.metrics.connected.set(1);
        tracing::info!(
            assignments = state.assignments.len(),
            rules = state.rules.len(),
            shards = state.shards.len(),
            windows = state.windows.len(),
            "database connected: routing follows it"
        );
        let mut resync = tokio::time::interval_at(Instant::now() + self.db.resync, self.db.resync);
        loop {
            tokio::select! {
                payload = notifications.recv() => {
                    let Some(payload) = payload else { return StoreError::Closed };
                    let mut complete = state.apply(&payload);
                    self.metrics.notifications.inc();
                    // Apply everything already queued before rebuilding once.
                    while let Ok(more) = notifications.try_recv() {
                        complete &= state.apply(&more);
                        self.metrics.notifications.inc();
                    }
                    if !complete {
                        state = match load(&mut client).await {
                            Ok(s) => s,
                            Err(e) => return e,
                        };
                    }
                    self.install(&state);
                }
                _ = resync.tick() => {
                    state = match load(&mut client).await {
                        Ok(s) => s,
                        Err(e) => return e,
                    };
                    self.install(&state);
                }
            }
        }
    }

    /// Builds and swaps in the snapshot for `state`; logs each newly ignored row once.
    fn install(&mut self, state: &DbState) {
        let (snapshot, ignored) = compose(&self.base, state);
        for row in &ignored {
            if self.logged.insert(row.clone()) {
                tracing::error!(row = %row.what, reason = %row.why, "ignoring database row");
            }
        }
        self.logged.retain(|r| ignored.contains(r));
        self.metrics.rows_ignored.set(ignored.len() as i64);
        self.target.store(Arc::new(snapshot));
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(state.clone());
        self.metrics.syncs.inc();
        self.metrics.seconds_since_sync.set(0.0);
        self.synced_at.store(epoch_ms(), Ordering::Relaxed);
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Keeps `db_seconds_since_sync` current.
async fn tick_age(metrics: DbMetrics, synced_at: Arc<AtomicU64>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let at = synced_at.load(Ordering::Relaxed);
        if at > 0 {
            metrics
                .seconds_since_sync
                .set(epoch_ms().saturating_sub(at) as f64 / 1000.0);
        }
    }
}
