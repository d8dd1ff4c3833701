//! A worker process (`kansas worker`, started only by the master): receives the listening
//! sockets over its control socket, builds the proxy, says it is ready, starts from the state the
//! master hands it (refusing one it cannot read), accepts, dumps its state on request, and on
//! `Stop` (or the master's death) stops accepting, drains and exits.
//!
//! Once active, nothing but `Stop` or the master's end makes it drain (`control`): a message
//! it cannot read is logged and skipped, a state it cannot send is reported to the master
//! (`DumpFailed`) while it serves on, and its own SIGTERM/SIGINT asks the master to replace it
//! first (`Leaving`; a second one, or no `Stop` in time, drains anyway), so some worker always
//! accepts.
//!
//! `KANSAS_TEST_FAIL_FILE`, only in a build with the `test-faults` feature (the tests'): when set to a file whose content names a step
//! (`before-ready`, `refuse`, `crash-at-start`, `hang`, `bad-dump`, `dump-fails`,
//! `garbled-state`), the worker fails there; `tiny-chunks` makes every process cut its frames into 16-byte pieces.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::ExitCode;

use tokio::sync::watch;

use self::control::Control;
use crate::daemon::Daemon;
use crate::handoff::{self, fd, write_frame, ToMaster, ToWorker};

mod control;

/// Runs a worker; never returns until it has drained.
pub fn main(config_path: &Path, control_fd: i32, generation: u64, master_pid: i32) -> ExitCode {
    // Exit with the master: SIGTERM (drain, then exit) when the thread that started us dies.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    if nix::unistd::getppid().as_raw() != master_pid {
        eprintln!("kansas worker: the master is gone");
        return ExitCode::FAILURE;
    }
    let control = match fd::control_from_fd(control_fd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kansas worker: control socket: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (proxy_listener, admin_listener) = match fd::recv_listeners(&control) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kansas worker: listeners: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match crate::config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kansas worker: {}", crate::config::report(config_path, &e));
            return ExitCode::from(2);
        }
    };
    crate::logging::init(config.log.format, &config.log.level);
    warn_if_moved(&config, &proxy_listener, &admin_listener);
    // Control, admin, database follower and parking: light work on one thread. Requests are
    // served by the serving threads (see `proxy::serve`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kansas worker: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(
        config,
        control,
        proxy_listener,
        admin_listener,
        generation,
        master_pid,
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(generation, error = format!("{e:#}"), "worker failed");
            ExitCode::FAILURE
        }
    }
}

/// The listeners are the master's, bound at its start: a changed listen address in the
/// configuration takes a full restart, which the operator should hear about.
fn warn_if_moved(
    config: &crate::config::Config,
    proxy: &std::net::TcpListener,
    admin: &std::net::TcpListener,
) {
    for (key, wanted, socket) in [
        ("proxy.listen", config.proxy.listen, proxy),
        ("admin.listen", config.admin_listen, admin),
    ] {
        let Ok(have) = socket.local_addr() else {
            continue;
        };
        let differs =
            wanted.ip() != have.ip() || (wanted.port() != 0 && wanted.port() != have.port());
        if differs {
            tracing::warn!(key, configured = %wanted, listening = %have, "the configured address differs from the master's listener: restart kansas (not an upgrade) to move it");
        }
    }
}

async fn serve(
    config: crate::config::Config,
    control: StdUnixStream,
    proxy_listener: std::net::TcpListener,
    admin_listener: std::net::TcpListener,
    generation: u64,
    master_pid: i32,
) -> anyhow::Result<()> {
    control.set_nonblocking(true)?;
    let upgrade_timeout = config.master.upgrade_timeout;
    let (mut rx, mut tx) = tokio::net::UnixStream::from_std(control)?.into_split();
    let mut daemon = Daemon::new(config);
    if handoff::test_switch("before-ready") {
        crate::logging::flush();
        std::process::exit(3);
    }
    write_frame(&mut tx, &ToMaster::Ready).await?;

    let Some(frame) = handoff::read_raw_frame(&mut rx).await? else {
        anyhow::bail!("the master went away before starting this worker");
    };
    let (ToWorker::Start { state, stats }, legacy_master) =
        handoff::legacy::decode_to_worker(&frame)?
    else {
        anyhow::bail!("the master's first message was not Start");
    };
    if legacy_master {
        tracing::warn!(
            generation,
            "the master runs an earlier kansas (state format 1): restart kansas once when convenient"
        );
    }
    if handoff::test_switch("crash-at-start") {
        crate::logging::flush();
        std::process::exit(4);
    }
    if handoff::test_switch("hang") {
        // Hangs while validating the state, before accepting anything.
        std::future::pending::<()>().await;
    }
    let refusal = start_from(&mut daemon, state).await;
    if let Some(why) = refusal {
        tracing::error!(generation, why, "refusing to start");
        write_frame(&mut tx, &ToMaster::Refused { why }).await?;
        return Ok(());
    }
    daemon.metrics.master.set(&stats);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let proxy = daemon.proxy.clone();
    let metrics = daemon.metrics.clone();
    let db = daemon.db_view();
    let dump_proxy = proxy.clone();
    let dump = move |g: u64| crate::daemon::dump(&dump_proxy, db.as_ref(), g);
    let serving = tokio::spawn(daemon.serve(proxy_listener, admin_listener, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    write_frame(&mut tx, &ToMaster::Active).await?;
    tracing::info!(generation, "worker active");
    let control = Control {
        dump: &dump,
        generation,
        metrics: &metrics,
        legacy_master,
        master_pid,
        upgrade_timeout,
    };
    control::run(rx, &mut tx, &control).await;
    let _ = stop_tx.send(true);
    drop(proxy);
    let drained = serving.await??;
    tracing::info!(generation, drained, "worker stopped");
    Ok(())
}

/// Starts `daemon` from the state handed over (or reads the database for a fresh start); why
/// it cannot, if it cannot.
async fn start_from(daemon: &mut Daemon, state: Option<Box<handoff::Envelope>>) -> Option<String> {
    if handoff::test_switch("refuse") {
        return Some("refused on purpose (test switch)".to_string());
    }
    match state {
        Some(env) => {
            // Without the database part (an older master), read the database before accepting.
            let without_db = env.state.database.is_none();
            match daemon.restore(*env) {
                Err(e) => Some(e),
                Ok(()) if without_db => daemon.first_read().await.err().map(|e| e.to_string()),
                Ok(()) => None,
            }
        }
        None => daemon.first_read().await.err().map(|e| e.to_string()),
    }
}
