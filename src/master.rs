//! `kansas run`: the supervisor-parent master. It binds the proxy and admin listeners once and
//! keeps them for its whole life, never accepting on them; it runs one worker at a time (plus
//! previous generations while they drain), handing each the listeners over a `socketpair`.
//!
//! SIGUSR1 (or SIGHUP) upgrades: spawn the binary on disk now, wait until it is ready, ask the
//! active worker for its state, hand the state over, and once the new worker is active tell the
//! old one to drain. If the new worker exits, refuses the state or is not active within
//! `master.upgrade_timeout_secs`, it is killed and the old one keeps serving (it keeps accepting
//! whatever fails: a state it cannot send is reported with `DumpFailed`, and the upgrade rolled
//! back at once; an unreadable frame from a worker is logged and skipped). An active worker that
//! got SIGTERM/SIGINT itself (not from the master) serves on and says so (`Leaving`): the master
//! replaces it as in an upgrade (or lets the upgrade under way do it), then tells it to stop. A
//! worker that dies outside an upgrade is restarted at once. SIGTERM/SIGINT/SIGQUIT to the master:
//! every worker drains (a leaving worker's replacement is abandoned), then the master exits 0; a
//! second one stops everything at once. Every other signal has its meaning in the table in
//! `signals` (most: logged and ignored).

//!
//! The decisions are in `machine` (no I/O: events in, actions out); this file is the shell that
//! binds, spawns, talks to the workers and carries the actions out.

mod child;
mod events;
mod machine;
mod signals;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::child::ChildPid;
use self::machine::{Action, Event, Generation, Limits, Machine, Notice};
use crate::config::Config;
use crate::handoff::{fd, read_frame, write_frame, ToMaster};

/// A running worker's process and the sending half of its control socket.
struct WorkerIo {
    pid: ChildPid,
    tx: OwnedWriteHalf,
}

/// What the shell holds: the listeners, the binary, the workers' handles.
struct Shell {
    exe: PathBuf,
    config_path: PathBuf,
    proxy: StdListener,
    admin: StdListener,
    events: mpsc::UnboundedSender<Event>,
    workers: HashMap<Generation, WorkerIo>,
}

/// Runs the master until it is stopped; returns the process exit code.
pub fn main(config_path: &Path) -> ExitCode {
    let config = match crate::config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kansas: {}", crate::config::report(config_path, &e));
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
        engine = config.proxy.engine.as_str(),
        fd_limit,
        pid = std::process::id(),
        "kansas listening"
    );
    crate::limits::warn_if_short(fd_limit, config.proxy.max_connections);
    let (events, mut rx) = mpsc::unbounded_channel();
    signals::listen(events.clone(), Event::Signal)?;
    let mut shell = Shell {
        exe,
        config_path,
        proxy,
        admin,
        events,
        workers: HashMap::new(),
    };
    let mut machine = Machine::new(Limits {
        upgrade_timeout: config.master.upgrade_timeout,
        max_draining: config.master.max_draining,
    });
    // The first worker: if it cannot even be started, neither can kansas.
    for action in machine.start(Instant::now()) {
        if let Action::Spawn {
            generation,
            upgrade,
        } = action
        {
            shell.spawn(generation, upgrade)?;
        }
    }
    loop {
        let event = tokio::select! {
            _ = sleep_until(machine.deadline()) => Event::Tick,
            Some(event) = rx.recv() => event,
        };
        let exited = match &event {
            Event::Exited(generation, _) => Some(*generation),
            _ => None,
        };
        let actions = machine.on(event, Instant::now());
        if let Some(code) = shell.execute(&mut machine, actions).await {
            return Ok(code);
        }
        if let Some(generation) = exited {
            // Reaped: its pid may name another process from now on.
            shell.workers.remove(&generation);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Shell {
    /// Carries out `actions` (and what the machine decides when a spawn fails); `Some(code)`
    /// when the master must exit.
    async fn execute(&mut self, machine: &mut Machine, actions: Vec<Action>) -> Option<ExitCode> {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Spawn {
                    generation,
                    upgrade,
                } => {
                    if let Err(e) = self.spawn(generation, upgrade) {
                        let failed = Event::SpawnFailed(generation, format!("{e:#}"));
                        queue.extend(machine.on(failed, Instant::now()));
                    }
                }
                Action::Send(generation, msg) => {
                    if let Some(w) = self.workers.get_mut(&generation) {
                        if let Err(e) = write_frame(&mut w.tx, &msg).await {
                            tracing::warn!(generation, error = %e, "cannot reach worker");
                        }
                    }
                }
                Action::Kill(generation) => {
                    if let Some(w) = self.workers.get(&generation) {
                        w.pid.kill();
                    }
                }
                Action::Notify(notice) => notify(notice),
                Action::Exit(code) => return Some(ExitCode::from(code)),
                Action::Refused(why) => {
                    eprintln!("kansas: {why}");
                    return Some(ExitCode::from(2));
                }
            }
        }
        None
    }

    /// Starts worker `generation`: socketpair, exec, listeners, reader and reaper tasks.
    fn spawn(&mut self, generation: Generation, upgrade: bool) -> anyhow::Result<()> {
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
        let (reader, tx) = tokio::net::UnixStream::from_std(ours)?.into_split();
        tokio::spawn(read_worker(generation, reader, self.events.clone()));
        let events = self.events.clone();
        let mut child = child;
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = events.send(Event::Exited(generation, status.to_string()));
            }
        });
        tracing::info!(generation, pid = pid.raw(), upgrade, "worker started");
        self.workers.insert(generation, WorkerIo { pid, tx });
        Ok(())
    }
}

/// Passes a worker's messages on until its control socket ends; a frame that cannot be read is
/// reported and skipped (the stream stays in step).
async fn read_worker(
    generation: Generation,
    mut reader: tokio::net::unix::OwnedReadHalf,
    events: mpsc::UnboundedSender<Event>,
) {
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
}

/// Tells systemd (Type=notify) where we are; does nothing elsewhere.
fn notify(notice: Notice) {
    let state = match notice {
        Notice::Ready => sd_notify::NotifyState::Ready,
        Notice::Reloading => sd_notify::NotifyState::Reloading,
        Notice::Stopping => sd_notify::NotifyState::Stopping,
    };
    let _ = sd_notify::notify(false, &[state]);
}
