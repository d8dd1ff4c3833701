//! `kansas run`: binds the listeners, serves until SIGTERM or SIGINT, then drains. A second
//! signal during the drain stops at once.

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::{self, Proxy, ServerLimits};
use crate::store::follow::Follower;

/// Runs the daemon until a stop signal; returns once in-flight requests finished or the drain
/// timeout passed.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let fd_limit = crate::limits::raise_fd_limit();
    let metrics = Arc::new(Metrics::new(&config.routing));
    let proxy = Arc::new(Proxy::new(&config, metrics.clone()));
    proxy.start_background();
    if let Some(db) = &config.database {
        let mut follower = Follower::new(
            db.clone(),
            config.routing.clone(),
            proxy.snapshot.clone(),
            metrics.db.clone(),
        );
        // Refuses an unmigrated or too-new schema; an unreachable database is not an error.
        follower.initial().await?;
        tokio::spawn(follower.run());
    }
    let listener = proxy::bind(config.proxy.listen)
        .with_context(|| format!("cannot listen on proxy.listen {}", config.proxy.listen))?;
    let admin = proxy::bind(config.admin_listen)
        .with_context(|| format!("cannot listen on admin.listen {}", config.admin_listen))?;
    let proxy_addr = listener.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let admin_task = tokio::spawn(crate::admin::serve(admin, metrics));
    tracing::info!(
        proxy = %proxy_addr,
        admin = %admin_addr,
        shards = config.routing.shards().len(),
        fd_limit,
        "kansas listening"
    );

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
        tracing::info!(signal = name, "stopping: finishing in-flight requests");
        let _ = stop_tx.send(true);
        let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
        tracing::warn!(signal = name, "second stop signal: exiting now");
        std::process::exit(1);
    });
    let shutdown = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let limits = ServerLimits {
        max_connections: config.proxy.max_connections,
        max_header_bytes: config.proxy.max_header_bytes,
        header_read_timeout: config.timeouts.client_header,
        drain: config.timeouts.drain,
    };
    let drained = proxy::serve(listener, proxy, limits, shutdown).await;
    admin_task.abort();
    tracing::info!(drained, "kansas stopped");
    Ok(())
}
