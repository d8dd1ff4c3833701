//! `kansas run`: the supervisor-parent master. It binds the proxy and admin listeners once and
//! keeps them for its whole life, never accepting on them; it runs one worker at a time (plus
//! previous generations while they drain), handing each the listeners over a `socketpair`.
//!
//! SIGUSR1 (or SIGHUP) upgrades: spawn the binary on disk now, wait until it is ready, ask the
//! active worker for its state, hand the state over, and once the new worker is active tell the
//! old one to drain. If the new worker exits, refuses the state or is not active within
//! `master.upgrade_timeout_secs`, it is killed and the old one keeps serving (it keeps accepting
//! whatever fails: a state it cannot send is reported with `DumpFailed`, and the upgrade rolled
//! back at once; an unreadable frame from a worker is logged and skipped). A worker that dies
//! outside an upgrade is restarted at once. SIGTERM/SIGINT/SIGQUIT: every worker drains, then the
//! master exits 0; a second one stops everything at once. Every other signal has its meaning in
//! the table in `signals` (most: logged and ignored).

mod child;
mod signals;
use std::collections::VecDeque;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::child::{retry_delay, ChildPid};
use self::signals::{Meaning, SignalName};
use crate::config::Config;
use crate::handoff::{fd, read_frame, write_frame, MasterStats, ToMaster, ToWorker};

/// What the master hears about its workers.
enum Event {
    Message(u64, ToMaster),
    /// A frame from the worker that could not be read (skipped; the stream is still in step).
    Unreadable(u64, String),
    Exited(u64, std::process::ExitStatus),
    /// A signal, and how many of it arrived since the last one passed on.
    Signal(i32, u64),
}

/// A running worker.
struct Worker {
    generation: u64,
    pid: ChildPid,
    tx: OwnedWriteHalf,
    spawned: Instant,
}

impl Worker {
    async fn send(&mut self, msg: &ToWorker) {
        if let Err(e) = write_frame(&mut self.tx, msg).await {
            tracing::warn!(generation = self.generation, error = %e, "cannot reach worker");
        }
    }

    fn kill(&self) {
        self.pid.kill();
    }
}

/// Where an upgrade (or a fresh start) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Waiting for the new worker's `Ready`.
    Init,
    /// Waiting for the active worker's state.
    Dump,
    /// Waiting for the new worker's `Active`.
    Start,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Init => "init",
            Step::Dump => "dump",
            Step::Start => "start",
        }
    }
}

struct Pending {
    worker: Worker,
    step: Step,
    deadline: Instant,
    /// An upgrade (false: a start with no previous worker).
    upgrade: bool,
}

struct Master {
    exe: PathBuf,
    config_path: PathBuf,
    config: Config,
    proxy: StdListener,
    admin: StdListener,
    events: mpsc::UnboundedSender<Event>,
    next_generation: u64,
    active: Option<Worker>,
    pending: Option<Pending>,
    draining: VecDeque<Worker>,
    stats: MasterStats,
    booted: bool,
    /// When to try again to start a worker, while none is active or starting.
    retry_at: Option<Instant>,
    /// Failed starts in a row (the retry backoff).
    failed_starts: u32,
}

/// Runs the master until it is stopped; returns the process exit code.
pub fn main(config_path: &Path) -> ExitCode {
    let config = match crate::config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kansas: invalid configuration {}:", config_path.display());
            for p in e.problems() {
                eprintln!("  {p}");
            }
            return ExitCode::from(2);
        }
    };
    crate::logging::init(config.log.format, &config.log.level);
    // The master's own work is small; one thread, which is also the long-lived thread that
    // spawns every worker (their parent-death signal is tied to it).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kansas: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config_path, config)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "kansas failed");
            eprintln!("kansas: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<StdListener> {
    let listener =
        crate::proxy::bind(addr).with_context(|| format!("cannot listen on {what} {addr}"))?;
    Ok(listener.into_std()?)
}

async fn run(config_path: &Path, config: Config) -> anyhow::Result<ExitCode> {
    let fd_limit = crate::limits::raise_fd_limit();
    let exe = std::env::current_exe().context("cannot find the kansas binary")?;
    let config_path =
        std::fs::canonicalize(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let proxy = bind(config.proxy.listen, "proxy.listen")?;
    let admin = bind(config.admin_listen, "admin.listen")?;
    tracing::info!(
        proxy = %proxy.local_addr()?,
        admin = %admin.local_addr()?,
        shards = config.routing.shards().len(),
        fd_limit,
        pid = std::process::id(),
        "kansas listening"
    );
    crate::limits::warn_if_short(fd_limit, config.proxy.max_connections);
    let (events, mut rx) = mpsc::unbounded_channel();
    let mut m = Master {
        exe,
        config_path,
        config,
        proxy,
        admin,
        events,
        next_generation: 1,
        active: None,
        pending: None,
        draining: VecDeque::new(),
        stats: MasterStats::default(),
        booted: false,
        retry_at: None,
        failed_starts: 0,
    };
    signals::listen(m.events.clone(), Event::Signal)?;
    m.spawn(false)?;
    loop {
        let deadline = m.pending.as_ref().map(|p| p.deadline);
        tokio::select! {
            _ = sleep_until(m.retry_at) => m.start_again(),
            _ = sleep_until(deadline) => m.timed_out().await,
            Some(event) = rx.recv() => {
                if let Event::Signal(signo, _) = event {
                    if signals::meaning(signo) == Meaning::Stop {
                        return Ok(m.stop(SignalName(signo), &mut rx).await);
                    }
                }
                if let Some(code) = m.handle(event).await {
                    return Ok(code);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Master {
    /// Starts generation N: socketpair, exec, listeners, reader and reaper tasks.
    fn spawn(&mut self, upgrade: bool) -> anyhow::Result<()> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let (ours, theirs) = fd::control_pair()?;
        let child = tokio::process::Command::new(&self.exe)
            .arg("worker")
            .arg("--config")
            .arg(&self.config_path)
            .args([
                "--control-fd",
                &std::os::fd::AsRawFd::as_raw_fd(&theirs).to_string(),
            ])
            .args(["--generation", &generation.to_string()])
            .args(["--master-pid", &std::process::id().to_string()])
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        drop(theirs);
        // `None` only once the child has been reaped: it exited at once.
        let pid = child
            .id()
            .and_then(ChildPid::new)
            .context("the new worker exited as soon as it started")?;
        fd::send_listeners(&ours, &self.proxy, &self.admin).context("sending the listeners")?;
        ours.set_nonblocking(true)?;
        let (mut reader, tx) = tokio::net::UnixStream::from_std(ours)?.into_split();
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                let event = match read_frame::<_, ToMaster>(&mut reader).await {
                    Ok(Some(msg)) => Event::Message(generation, msg),
                    Ok(None) => return,
                    Err(e) if e.in_step() => Event::Unreadable(generation, e.to_string()),
                    Err(e) => {
                        tracing::warn!(generation, error = %e, "control socket of the worker failed");
                        return;
                    }
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        });
        let events = self.events.clone();
        let mut child = child;
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = events.send(Event::Exited(generation, status));
            }
        });
        tracing::info!(generation, pid = pid.raw(), upgrade, "worker started");
        self.pending = Some(Pending {
            worker: Worker {
                generation,
                pid,
                tx,
                spawned: Instant::now(),
            },
            step: Step::Init,
            deadline: Instant::now() + self.config.master.upgrade_timeout,
            upgrade,
        });
        Ok(())
    }

    /// An upgrade asked for by `signal` (SIGUSR1 or SIGHUP).
    async fn upgrade(&mut self, signal: SignalName) {
        if self.pending.is_some() || self.active.is_none() {
            tracing::warn!(signal = %signal, "{signal} refused: an upgrade or start is already under way");
            return;
        }
        tracing::info!(
            from_generation = self.active.as_ref().map(|w| w.generation),
            "{signal}: upgrading"
        );
        notify(&[sd_notify::NotifyState::Reloading]);
        if let Err(e) = self.spawn(true) {
            self.rollback("spawn", &format!("{e:#}")).await;
        }
    }

    async fn timed_out(&mut self) {
        let step = self.pending.as_ref().map_or("?", |p| p.step.name());
        self.rollback(step, "timed out").await;
    }

    /// Kills the pending worker; the active one keeps serving.
    async fn rollback(&mut self, step: &str, why: &str) {
        if let Some(p) = self.pending.take() {
            p.worker.kill();
            if p.upgrade {
                let serving = self.active.as_ref().map(|w| w.generation);
                tracing::error!(
                    step,
                    why,
                    generation = p.worker.generation,
                    serving,
                    "upgrade rolled back: generation {} failed at {step} ({why}) and was stopped; generation {} serves on",
                    p.worker.generation,
                    serving.map_or("none".to_string(), |g| g.to_string()),
                );
            } else {
                tracing::error!(
                    step,
                    why,
                    generation = p.worker.generation,
                    "worker failed to start; retrying"
                );
            }
        }
        match self.stats.rollbacks.iter_mut().find(|(s, _)| s == step) {
            Some((_, n)) => *n += 1,
            None => self.stats.rollbacks.push((step.to_string(), 1)),
        }
        notify(&[sd_notify::NotifyState::Ready]);
        self.push_stats().await;
        if self.active.is_none() {
            // A fresh start failed: nobody serves; try again after a pause.
            self.retry_later();
        }
    }

    /// Starts a worker now, there being none active or starting; when that fails (the binary
    /// being replaced: ETXTBSY, ENOENT), tries again later, with backoff, until one starts.
    fn start_again(&mut self) {
        self.retry_at = None;
        if self.active.is_some() || self.pending.is_some() {
            return;
        }
        if let Err(e) = self.spawn(false) {
            self.failed_starts += 1;
            let delay = retry_delay(self.failed_starts);
            tracing::error!(
                error = format!("{e:#}"),
                attempt = self.failed_starts,
                retry_in_ms = delay.as_millis() as u64,
                "cannot start a worker: no worker serves; retrying"
            );
            self.retry_at = Some(Instant::now() + delay);
        }
    }

    /// Schedules [`Master::start_again`] after the backoff for the failures so far.
    fn retry_later(&mut self) {
        self.failed_starts += 1;
        self.retry_at = Some(Instant::now() + retry_delay(self.failed_starts));
    }

    /// Tells the active worker the master's counters (a whole frame: a partial one would
    /// corrupt the control stream).
    async fn push_stats(&mut self) {
        let msg = ToWorker::Stats(self.stats.clone());
        if let Some(a) = &mut self.active {
            a.send(&msg).await;
        }
    }

    /// Whether an upgrade waits for the state of worker `generation` (the active one).
    fn awaiting_dump_from(&self, generation: u64) -> bool {
        self.active
            .as_ref()
            .is_some_and(|w| w.generation == generation)
            && self.pending.as_ref().is_some_and(|p| p.step == Step::Dump)
    }

    /// One event; `Some(code)` when the master must exit.
    async fn handle(&mut self, event: Event) -> Option<ExitCode> {
        match event {
            Event::Message(generation, msg) => self.message(generation, msg).await,
            Event::Unreadable(generation, why) => {
                tracing::error!(generation, why, "unreadable message from a worker: skipped");
                if self.awaiting_dump_from(generation) {
                    self.rollback("dump", &format!("unreadable state: {why}"))
                        .await;
                }
                None
            }
            Event::Exited(generation, status) => self.exited(generation, status).await,
            Event::Signal(signo, arrived) => {
                match signals::meaning(signo) {
                    Meaning::Upgrade => self.upgrade(SignalName(signo)).await,
                    Meaning::Stop | Meaning::Ignore => {
                        ignored(signo, arrived, "it has no meaning for kansas")
                    }
                }
                None
            }
        }
    }

    async fn message(&mut self, generation: u64, msg: ToMaster) -> Option<ExitCode> {
        let pending_gen = self.pending.as_ref().map(|p| p.worker.generation);
        let active_gen = self.active.as_ref().map(|w| w.generation);
        match msg {
            ToMaster::Ready if pending_gen == Some(generation) => {
                let p = self.pending.as_mut().expect("pending");
                match &mut self.active {
                    Some(active) if p.upgrade => {
                        p.step = Step::Dump;
                        active.send(&ToWorker::Dump).await;
                    }
                    _ => {
                        p.step = Step::Start;
                        let stats = MasterStats {
                            generation,
                            ..self.stats.clone()
                        };
                        p.worker.send(&ToWorker::Start { state: None, stats }).await;
                    }
                }
            }
            ToMaster::State { state } if active_gen == Some(generation) => {
                if let Some(p) = self.pending.as_mut().filter(|p| p.step == Step::Dump) {
                    p.step = Step::Start;
                    let stats = MasterStats {
                        generation: p.worker.generation,
                        ..self.stats.clone()
                    };
                    let queues = state.state.queues.len();
                    p.worker
                        .send(&ToWorker::Start {
                            state: Some(state),
                            stats,
                        })
                        .await;
                    tracing::info!(queues, "state handed to the new worker");
                }
            }
            ToMaster::Active if pending_gen == Some(generation) => {
                let p = self.pending.take().expect("pending");
                let took_ms = p.worker.spawned.elapsed().as_secs_f64() * 1e3;
                if let Some(mut old) = self.active.take() {
                    old.send(&ToWorker::Stop).await;
                    tracing::info!(old = old.generation, "old worker draining");
                    self.draining.push_back(old);
                    while self.draining.len() > self.config.master.max_draining {
                        let oldest = self.draining.pop_front().expect("non-empty");
                        tracing::warn!(
                            generation = oldest.generation,
                            "too many generations draining: stopping the oldest now"
                        );
                        oldest.kill();
                    }
                }
                if p.upgrade {
                    self.stats.upgrades += 1;
                }
                self.stats.generation = generation;
                tracing::info!(generation, took_ms, upgrade = p.upgrade, "worker active");
                self.failed_starts = 0;
                self.active = Some(p.worker);
                self.booted = true;
                notify(&[sd_notify::NotifyState::Ready]);
                self.push_stats().await;
            }
            ToMaster::DumpFailed { why } if self.awaiting_dump_from(generation) => {
                self.rollback(
                    "dump",
                    &format!("the active worker could not send its state: {why}"),
                )
                .await;
            }
            ToMaster::Refused { why } if pending_gen == Some(generation) => {
                let step = self.pending.as_ref().map_or("start", |p| p.step.name());
                if !self.booted && self.active.is_none() {
                    // The very first worker refused (e.g. an unmigrated database): give up.
                    eprintln!("kansas: {why}");
                    tracing::error!(why, "the first worker refused to start");
                    if let Some(p) = self.pending.take() {
                        p.worker.kill();
                    }
                    return Some(ExitCode::from(2));
                }
                self.rollback(step, &format!("refused: {why}")).await;
            }
            other => tracing::debug!(generation, ?other, "unexpected message"),
        }
        None
    }

    async fn exited(
        &mut self,
        generation: u64,
        status: std::process::ExitStatus,
    ) -> Option<ExitCode> {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.worker.generation == generation)
        {
            let step = self.pending.as_ref().map_or("?", |p| p.step.name());
            self.rollback(step, &format!("worker exited ({status})"))
                .await;
            return None;
        }
        if self
            .active
            .as_ref()
            .is_some_and(|w| w.generation == generation)
        {
            self.active = None;
            self.stats.restarts += 1;
            tracing::error!(generation, %status, "the active worker died: starting a new one");
            if let Some(p) = self.pending.take() {
                // An upgrade was under way: let its worker start fresh instead.
                p.worker.kill();
            }
            self.start_again();
            return None;
        }
        self.draining.retain(|w| w.generation != generation);
        tracing::info!(generation, %status, "previous worker exited");
        None
    }

    /// SIGTERM/SIGINT/SIGQUIT: every worker drains; a second one stops at once.
    async fn stop(
        &mut self,
        signal: SignalName,
        rx: &mut mpsc::UnboundedReceiver<Event>,
    ) -> ExitCode {
        tracing::info!(signal = %signal, "stopping: every worker drains");
        notify(&[sd_notify::NotifyState::Stopping]);
        if let Some(p) = self.pending.take() {
            p.worker.kill();
        }
        let mut alive: Vec<u64> = Vec::new();
        for w in self.active.iter_mut().chain(self.draining.iter_mut()) {
            w.send(&ToWorker::Stop).await;
            alive.push(w.generation);
        }
        let pids: Vec<ChildPid> = self
            .active
            .iter()
            .chain(self.draining.iter())
            .map(|w| w.pid)
            .collect();
        while !alive.is_empty() {
            match rx.recv().await {
                Some(Event::Exited(generation, _)) => alive.retain(|g| *g != generation),
                Some(Event::Signal(signo, _)) if signals::meaning(signo) == Meaning::Stop => {
                    return stop_now(&pids)
                }
                Some(Event::Signal(signo, arrived)) => {
                    ignored(signo, arrived, "kansas is stopping")
                }
                Some(_) => {}
                None => break,
            }
        }
        tracing::info!("kansas stopped");
        ExitCode::SUCCESS
    }
}

/// Logs a signal that changes nothing.
fn ignored(signo: i32, arrived: u64, why: &str) {
    tracing::warn!(signal = %SignalName(signo), arrived, "{} ignored: {why}", SignalName(signo));
}

fn stop_now(pids: &[ChildPid]) -> ExitCode {
    tracing::warn!("second stop signal: stopping at once");
    for pid in pids {
        pid.kill();
    }
    ExitCode::FAILURE
}

/// Tells systemd (Type=notify) where we are; does nothing elsewhere.
fn notify(states: &[sd_notify::NotifyState]) {
    let _ = sd_notify::notify(false, states);
}
