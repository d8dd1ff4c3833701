//! The active worker's side of the control socket: it answers the master (its state on `Dump`,
//! the master's counters on `Stats`) until told to `Stop`, or the master is gone. Nothing else
//! ends it: an unreadable message is skipped, a state that cannot be sent is reported to the
//! master (`DumpFailed`), and the worker serves on (until the next worker is active, the old one
//! is the only one accepting).
//!
//! A SIGTERM or SIGINT the worker gets itself (an operator's `kill` of its pid, not the master's
//! `Stop`) does not stop it accepting: it tells the master (`Leaving`), which replaces it as in an
//! upgrade and then tells it to stop. It drains at once, without asking, on a second such
//! signal, when the master is gone (the parent-death signal is a SIGTERM) or runs an earlier
//! kansas that reads state format 1 only, or when no `Stop` came within its own
//! `master.upgrade_timeout_secs` + [`LEAVE_MARGIN`] (a master of a kansas that predates
//! `Leaving` skips the message it cannot read): so a worker can always be stopped.
//!
//! Frames are read by a task of their own, so a signal never cuts a frame in half.

use std::time::Duration;

use nix::libc;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::handoff::{self, write_frame, write_raw_frame, FrameError, ToMaster, ToWorker};

/// How much longer than its `master.upgrade_timeout_secs` a leaving worker waits for the
/// master's `Stop` before draining anyway (the master's upgrade is bounded by the same timeout).
pub const LEAVE_MARGIN: Duration = Duration::from_secs(10);

/// What the control loop works with besides the socket.
pub struct Control<'a> {
    pub dump: &'a dyn Fn(u64) -> handoff::Envelope,
    pub generation: u64,
    pub metrics: &'a crate::metrics::Metrics,
    /// The master runs an earlier kansas (state format 1).
    pub legacy_master: bool,
    pub master_pid: i32,
    /// The worker's `master.upgrade_timeout_secs`.
    pub upgrade_timeout: Duration,
}

/// A frame as the reader task passes it on.
type Frame = Result<Option<Vec<u8>>, FrameError>;

/// Answers the master until the worker must drain (see the module docs); then returns.
pub async fn run(rx: OwnedReadHalf, tx: &mut OwnedWriteHalf, c: &Control<'_>) {
    let generation = c.generation;
    let mut frames = read_frames(rx);
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    // Set once the master was told this worker is leaving: drain when it passes.
    let mut leave_by: Option<Instant> = None;
    loop {
        let frame = tokio::select! {
            f = frames.recv() => f,
            _ = term.recv() => {
                if leave(tx, c, libc::SIGTERM, &mut leave_by).await { return; }
                continue;
            }
            _ = int.recv() => {
                if leave(tx, c, libc::SIGINT, &mut leave_by).await { return; }
                continue;
            }
            _ = sleep_until(leave_by) => {
                tracing::warn!(generation, "no Stop from the master in time after the signal: draining");
                return;
            }
        };
        let frame = match frame {
            Some(Ok(Some(frame))) => frame,
            Some(Ok(None)) | None => {
                tracing::warn!(generation, "the master is gone: draining");
                return;
            }
            Some(Err(e)) if e.in_step() => {
                tracing::error!(generation, error = %e, "unreadable message from the master: skipped");
                continue;
            }
            Some(Err(e)) => {
                tracing::warn!(generation, error = %e, "the master is gone: draining");
                return;
            }
        };
        match handoff::legacy::decode_to_worker(&frame) {
            Ok((ToWorker::Dump, _)) => {
                send_state(tx, (c.dump)(generation), generation, c.legacy_master).await
            }
            Ok((ToWorker::Stats(stats), _)) => c.metrics.master.set(&stats),
            Ok((ToWorker::Stop, _)) => {
                tracing::info!(generation, "told to stop: draining");
                return;
            }
            Ok((ToWorker::Start { .. }, _)) => tracing::warn!(generation, "unexpected Start"),
            Err(e) => {
                tracing::error!(generation, error = %e, "undecodable message from the master: skipped")
            }
        }
    }
}

/// Reads frames in a task of its own until the stream ends or is out of step.
fn read_frames(mut rx: OwnedReadHalf) -> mpsc::Receiver<Frame> {
    let (tx, frames) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let frame = handoff::read_raw_frame(&mut rx).await;
            let more = match &frame {
                Ok(Some(_)) => true,
                Ok(None) => false,
                Err(e) => e.in_step(),
            };
            if tx.send(frame).await.is_err() || !more {
                return;
            }
        }
    });
    frames
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The worker got `signo` itself: asks the master for a successor and serves on (`false`), or
/// says why it drains now (`true`).
async fn leave(
    tx: &mut OwnedWriteHalf,
    c: &Control<'_>,
    signo: i32,
    leave_by: &mut Option<Instant>,
) -> bool {
    let generation = c.generation;
    let name = if signo == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    if leave_by.is_some() {
        tracing::info!(generation, "second {name}: draining at once");
        return true;
    }
    if nix::unistd::getppid().as_raw() != c.master_pid {
        tracing::info!(generation, "{name}: the master is gone: draining");
        return true;
    }
    if c.legacy_master {
        tracing::info!(
            generation,
            "{name}: draining (the master runs an earlier kansas, which cannot replace this worker first)"
        );
        return true;
    }
    if let Err(e) = write_frame(tx, &ToMaster::Leaving { signal: signo }).await {
        tracing::warn!(generation, error = %e, "{name}: cannot tell the master: draining");
        return true;
    }
    let wait = c.upgrade_timeout + LEAVE_MARGIN;
    *leave_by = Some(Instant::now() + wait);
    tracing::info!(
        generation,
        signal = name,
        wait_secs = wait.as_secs_f64(),
        "{name}: serving on until the master's new worker is active (another {name} drains at once)"
    );
    false
}

/// Sends the state to the master, or tells it why it could not (the worker serves on either way).
async fn send_state(
    tx: &mut OwnedWriteHalf,
    mut env: handoff::Envelope,
    generation: u64,
    legacy_master: bool,
) {
    if handoff::test_switch("bad-dump") {
        env.format = 999;
    }
    let queues = env.state.queues.len();
    let sent = if handoff::test_switch("dump-fails") {
        Err(FrameError::Encode(
            "failing on purpose (test switch)".into(),
        ))
    } else if handoff::test_switch("garbled-state") {
        // Bytes that are no message: the master skips them and reads on.
        let _ = write_raw_frame(tx, &[0xff; 40]).await;
        return;
    } else if legacy_master {
        // Format 1, in one piece: an earlier master reads nothing else.
        match handoff::legacy::encode_state(env) {
            Ok(bytes) if bytes.len() > 1 << 30 => Err(FrameError::TooLarge(bytes.len() as u64)),
            Ok(bytes) => handoff::frame::write_pieces(tx, &bytes, usize::MAX).await,
            Err(e) => Err(FrameError::Encode(e.to_string())),
        }
    } else {
        let msg = ToMaster::State {
            state: Box::new(env),
        };
        write_frame(tx, &msg).await
    };
    match sent {
        Ok(pieces) => tracing::info!(generation, queues, pieces, "state sent to the master"),
        Err(e) => {
            tracing::error!(generation, queues, error = %e, "cannot send the state to the master: serving on");
            // An earlier master knows no DumpFailed (it would stop reading): it times out.
            if e.in_step() && !legacy_master {
                let why = e.to_string();
                if let Err(e) = write_frame(tx, &ToMaster::DumpFailed { why }).await {
                    tracing::warn!(generation, error = %e, "cannot tell the master either");
                }
            }
        }
    }
}
