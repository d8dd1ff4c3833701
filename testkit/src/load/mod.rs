//! kansas-load: many simulated Zulip clients long-polling through any HTTP target (kansas,
//! nginx or a shard), a publisher injecting events into fake-tornado shards (to every shard, or,
//! following a kansas routing config, where Django would), a Django stand-in registering queues
//! as Zulip does, and a report that counts every lost, duplicated or reordered event and every
//! error by kind.
//!
//! A run: clients start (spread over a ramp), register and long-poll; the publisher injects
//! events at the given rate for the duration; then publishing stops, every shard receives what
//! is still queued for it, clients get until `settle` to catch up to each realm's last sequence
//! number, and everything still missing then is lost; last, every client deletes its queue.

pub mod args;
mod client;
mod conn;
mod django;
mod lane;
mod publisher;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::fake_tornado::routing::Routing;
pub use client::backoff;
use client::{ClientSpec, Live};
use django::Routed;
use publisher::Publisher;
use report::{Report, Stats};

/// How clients register their queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterVia {
    /// A GET without `queue_id` through the target (`dont_block=true`).
    Target,
    /// As Zulip: Django (the stand-in) calls the user's current shard directly.
    Django,
}

/// A load run's parameters.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where clients send their requests (kansas, nginx or a shard).
    pub target: SocketAddr,
    pub realms: usize,
    pub clients: usize,
    pub duration: Duration,
    /// Events per second over all realms.
    pub publish_rate: f64,
    /// fake-tornado shards the publisher injects every batch into (without `routing_config`).
    pub shards: Vec<SocketAddr>,
    /// A kansas config file (database included) to publish and register by, as Django does.
    pub routing_config: Option<PathBuf>,
    pub register_via: RegisterVia,
    /// Publish to each user's current shard only (loses events while a realm drains).
    pub publish_current_only: bool,
    /// `lifespan_secs` asked at registration (0: Zulip's default).
    pub lifespan_secs: u64,
    /// Leave the queues at the end instead of deleting them (to inspect where they are).
    pub keep_queues: bool,
    /// Realm hosts are `r<i>.<run_id>.<realm_domain>`.
    pub realm_domain: String,
    pub run_id: String,
    /// Source addresses to spread client connections over (empty: the system's choice).
    pub sources: Vec<IpAddr>,
    pub request_timeout: Duration,
    /// Client starts are spread evenly over this.
    pub ramp: Duration,
    /// How long clients get, after publishing stops, to receive every event.
    pub settle: Duration,
    /// Multiplies the web app's retry delays.
    pub backoff_scale: f64,
    /// Errors allowed per kind (`any` bounds the total) before the run fails.
    pub allow: BTreeMap<String, u64>,
    /// Show live progress on standard error.
    pub progress: bool,
}

impl Options {
    /// The host of realm `i`.
    pub fn realm_host(&self, i: usize) -> String {
        format!("r{i}.{}.{}", self.run_id, self.realm_domain)
    }
}

/// The longest a client's final `DELETE` may take.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh random run id (6 hex digits), so realm names never collide with an earlier run's.
pub fn new_run_id() -> String {
    format!("{:06x}", fastrand::u32(..0x100_0000))
}

/// Runs the load test and returns its report; `Err` when the routing config cannot be used.
pub async fn run(opts: Options) -> Result<Report, String> {
    let started = Instant::now();
    let realms: Vec<Arc<str>> = (0..opts.realms.max(1))
        .map(|i| Arc::from(opts.realm_host(i)))
        .collect();
    let stop_clients = CancellationToken::new();
    let stop_publisher = CancellationToken::new();
    let routed = routed(&opts, &realms).await?;
    let publisher = Arc::new(Publisher::new(
        opts.shards.clone(),
        routed,
        stop_publisher.clone(),
    ));
    let live = Arc::new(Live::default());
    let (handles, last_seqs) = start_clients(&opts, &realms, &publisher, &live, &stop_clients);
    let progress = opts
        .progress
        .then(|| spawn_progress(live.clone(), opts.clients));
    publish_for(&publisher, &realms, opts.publish_rate, opts.duration).await;
    let final_seq = publisher.seqs();
    let published: u64 = final_seq.values().sum();

    // Let every shard take what is queued for it, then let the clients catch up.
    let settle_deadline = Instant::now() + opts.settle;
    tokio::select! {
        _ = publisher.drained() => {}
        _ = tokio::time::sleep_until(settle_deadline.into()) => stop_publisher.cancel(),
    }
    while Instant::now() < settle_deadline && behind(&last_seqs, &final_seq) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Clients stop (deleting their queues), then the lanes.
    stop_clients.cancel();
    let mut total = Stats::default();
    for h in handles {
        let Ok(r) = h.await else { continue };
        let mut stats = r.stats;
        match &r.open {
            Some(open) => open.close(
                Some(final_seq.get(&r.realm).copied().unwrap_or(0)),
                &mut stats,
            ),
            None => total.error("never_registered"),
        }
        total.merge(&stats);
    }
    stop_publisher.cancel();
    if let Some(p) = progress {
        p.abort();
    }
    let pub_stats = &publisher.stats;
    tracing::debug!(
        posts = pub_stats.posts.load(Ordering::Relaxed),
        retries = pub_stats.retries.load(Ordering::Relaxed),
        undeliverable = pub_stats.undeliverable.load(Ordering::Relaxed),
        "publisher done"
    );
    Ok(Report::new(
        opts.target.to_string(),
        opts.clients,
        realms.len(),
        started.elapsed().as_secs_f64(),
        published,
        &total,
        &opts.allow,
    ))
}

/// Following a routing config as Django does, when one is given.
async fn routed(opts: &Options, realms: &[Arc<str>]) -> Result<Option<Routed>, String> {
    let Some(path) = &opts.routing_config else {
        if opts.register_via == RegisterVia::Django || opts.publish_current_only {
            return Err(
                "registering via Django and --publish-current-only need --routing-config".into(),
            );
        }
        return Ok(None);
    };
    let mut users: HashMap<Arc<str>, Vec<u64>> = HashMap::new();
    for id in 0..opts.clients {
        let realm = realms[id % realms.len()].clone();
        users.entry(realm).or_default().push(id as u64);
    }
    let routing = Routing::follow(path).await?;
    Ok(Some(Routed::new(routing, users, opts.publish_current_only)))
}

/// Each client's task, and its realm with its highest received sequence number.
type Started = (
    Vec<tokio::task::JoinHandle<client::ClientResult>>,
    Vec<(Arc<str>, Arc<AtomicU64>)>,
);

/// Starts every client (their start spread over the ramp).
fn start_clients(
    opts: &Options,
    realms: &[Arc<str>],
    publisher: &Arc<Publisher>,
    live: &Arc<Live>,
    stop: &CancellationToken,
) -> Started {
    let django = (opts.register_via == RegisterVia::Django).then(|| publisher.clone());
    let mut last_seqs = Vec::with_capacity(opts.clients);
    let mut handles = Vec::with_capacity(opts.clients);
    let steady_after_us = publisher::now_us() + opts.ramp.as_micros() as u64;
    for id in 0..opts.clients {
        let last_seq = Arc::new(AtomicU64::new(u64::MAX));
        last_seqs.push((realms[id % realms.len()].clone(), last_seq.clone()));
        let spec = ClientSpec {
            id,
            target: opts.target,
            source: (!opts.sources.is_empty()).then(|| opts.sources[id % opts.sources.len()]),
            realm: realms[id % realms.len()].clone(),
            path: if id % 2 == 0 {
                "/json/events"
            } else {
                "/api/v1/events"
            },
            request_timeout: opts.request_timeout,
            backoff_scale: opts.backoff_scale,
            start_delay: opts.ramp.mul_f64(id as f64 / opts.clients.max(1) as f64),
            steady_after_us,
            live: live.clone(),
            last_seq,
            django: django.clone(),
            lifespan_secs: opts.lifespan_secs,
            delete_timeout: (!opts.keep_queues).then(|| opts.request_timeout.min(DELETE_TIMEOUT)),
        };
        handles.push(tokio::spawn(client::run(spec, stop.clone())));
    }
    (handles, last_seqs)
}

/// Whether any client is unregistered or has not yet received its realm's last event.
fn behind(last_seqs: &[(Arc<str>, Arc<AtomicU64>)], final_seq: &HashMap<Arc<str>, u64>) -> bool {
    last_seqs.iter().any(|(realm, seq)| {
        let want = final_seq.get(realm).copied().unwrap_or(0);
        let have = seq.load(Ordering::Relaxed);
        have == u64::MAX || have < want
    })
}

/// Publishes at `rate` events/s for `duration`, to random realms.
async fn publish_for(publisher: &Publisher, realms: &[Arc<str>], rate: f64, duration: Duration) {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        let mut batch: HashMap<Arc<str>, u64> = HashMap::new();
        while sent < due {
            let realm = realms[fastrand::usize(..realms.len())].clone();
            *batch.entry(realm).or_default() += 1;
            sent += 1;
        }
        let at = publisher::now_us();
        for (realm, count) in batch {
            publisher.publish(&realm, count, at);
        }
    }
}

/// Live progress on standard error: a bar on a terminal, a line every 10 s otherwise.
fn spawn_progress(live: Arc<Live>, clients: usize) -> tokio::task::JoinHandle<()> {
    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new_spinner();
    if !tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    tokio::spawn(async move {
        let mut last_line = Instant::now();
        loop {
            let msg = format!(
                "{:>5.0}s  clients registered {}/{}  requests {}  events {}  errors {}",
                started.elapsed().as_secs_f64(),
                live.registered.load(Ordering::Relaxed),
                clients,
                live.requests.load(Ordering::Relaxed),
                live.events.load(Ordering::Relaxed),
                live.errors.load(Ordering::Relaxed),
            );
            if tty {
                bar.set_message(msg);
                bar.tick();
            } else if last_line.elapsed() >= Duration::from_secs(10) {
                eprintln!("kansas-load: {msg}");
                last_line = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
