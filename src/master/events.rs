//! The master machine's vocabulary: the events it hears, the actions it asks for, the steps
//! of an upgrade (typed: a rollback names its step by this enum, never by a string).

use std::time::Duration;

use crate::handoff::{ToMaster, ToWorker};

/// A worker, by the number of its start (1, 2, ...).
pub type Generation = u64;

/// What the master hears.
#[derive(Debug)]
pub enum Event {
    Message(Generation, ToMaster),
    /// A frame from the worker that could not be read (skipped; the stream is still in step).
    Unreadable(Generation, String),
    /// The worker exited (its status, for the log).
    Exited(Generation, String),
    /// A signal, and how many of it arrived since the last one passed on.
    Signal(i32, u64),
    /// [`Action::Spawn`] failed.
    SpawnFailed(Generation, String),
    /// Time passed (a deadline from [`Machine::deadline`] may have come).
    Tick,
}

/// What the master does.
#[derive(Debug)]
pub enum Action {
    /// Start the binary on disk as this worker; [`Event::SpawnFailed`] if it cannot.
    Spawn {
        generation: Generation,
        upgrade: bool,
    },
    Send(Generation, ToWorker),
    /// SIGKILL (nothing when the worker has already exited).
    Kill(Generation),
    /// Tell systemd (Type=notify).
    Notify(Notice),
    /// The master exits with this code.
    Exit(u8),
    /// The very first worker refused to start (an unmigrated database, say): print why, exit 2.
    Refused(String),
}

/// What systemd is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Ready,
    Reloading,
    Stopping,
}

/// Where an upgrade (or a fresh start) stands; a rollback names the step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Starting the process.
    Spawn,
    /// Waiting for the new worker's `Ready`.
    Init,
    /// Waiting for the active worker's state.
    Dump,
    /// Waiting for the new worker's `Active`.
    Start,
}

impl Step {
    /// The name in logs and in `kansas_upgrade_rollbacks{step}`.
    pub fn label(self) -> &'static str {
        match self {
            Step::Spawn => "spawn",
            Step::Init => "init",
            Step::Dump => "dump",
            Step::Start => "start",
        }
    }
}

/// The configuration the decisions depend on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub upgrade_timeout: Duration,
    pub max_draining: usize,
}
