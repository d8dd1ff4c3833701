//! The master's decisions, without I/O: [`Machine::on`] takes what happened (a worker's message
//! or exit, a signal, a failed spawn, the clock) and the time, and returns what to do
//! ([`Action`]s: spawn, send, kill, tell systemd, exit). How workers are ended (the master's
//! stop, a worker's own `Leaving`) is in `stopping`. The shell in `master.rs` carries the
//! actions out and feeds the events in; every upgrade path, rollback, restart and retry is
//! tested here with plain time values. Workers are named by their generation.

use std::collections::VecDeque;
use tokio::time::Instant;

use self::stopping::ignored;
use super::child::retry_delay;
pub use super::events::{Action, Event, Generation, Limits, Notice, Step};
use super::signals::{self, Meaning, SignalName};
use crate::handoff::{MasterStats, ToMaster, ToWorker};

mod stopping;

#[derive(Debug)]
struct Pending {
    generation: Generation,
    step: Step,
    deadline: Instant,
    /// An upgrade (false: a start with no previous worker).
    upgrade: bool,
    spawned: Instant,
}

/// The master's state.
#[derive(Debug)]
pub struct Machine {
    limits: Limits,
    next_generation: Generation,
    active: Option<Generation>,
    pending: Option<Pending>,
    draining: VecDeque<Generation>,
    stats: MasterStats,
    /// A worker has been active once.
    booted: bool,
    /// When to try again to start a worker, while none is active or starting.
    retry_at: Option<Instant>,
    /// Failed starts in a row (the retry backoff).
    failed_starts: u32,
    /// Stopping: the workers not yet exited.
    stopping: Option<Vec<Generation>>,
    /// The active worker got this signal itself and waits to be replaced.
    leaving: Option<(Generation, SignalName)>,
}

impl Machine {
    /// A master with no worker; [`Machine::start`] starts the first.
    pub fn new(limits: Limits) -> Machine {
        Machine {
            limits,
            next_generation: 1,
            active: None,
            pending: None,
            draining: VecDeque::new(),
            stats: MasterStats::default(),
            booted: false,
            retry_at: None,
            failed_starts: 0,
            stopping: None,
            leaving: None,
        }
    }

    /// Starts the first worker.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.spawn(false, now, &mut out);
        out
    }

    /// The next time [`Event::Tick`] is due, if any.
    pub fn deadline(&self) -> Option<Instant> {
        if self.stopping.is_some() {
            return None;
        }
        let pending = self.pending.as_ref().map(|p| p.deadline);
        match (pending, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The active worker, if any.
    #[cfg(test)]
    pub fn active(&self) -> Option<Generation> {
        self.active
    }

    /// The active worker, when it asked to be replaced (`Leaving`) and waits for its successor.
    #[cfg(test)]
    pub fn leaving(&self) -> Option<Generation> {
        self.leaving.map(|(g, _)| g)
    }

    /// The master's counters.
    #[cfg(test)]
    pub fn stats(&self) -> &MasterStats {
        &self.stats
    }

    /// What to do about `event`, at `now`.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.stopping.is_some() {
            self.on_while_stopping(event, &mut out);
            return out;
        }
        match event {
            Event::Message(generation, msg) => self.message(generation, msg, now, &mut out),
            Event::Unreadable(generation, why) => {
                tracing::error!(generation, why, "unreadable message from a worker: skipped");
                if self.awaiting_dump_from(generation) {
                    let why = format!("unreadable state: {why}");
                    self.rollback(Step::Dump, &why, now, &mut out);
                }
            }
            Event::Exited(generation, status) => self.exited(generation, &status, now, &mut out),
            Event::Signal(signo, arrived) => match signals::meaning(signo) {
                Meaning::Upgrade => self.upgrade(SignalName(signo), now, &mut out),
                Meaning::Stop => self.stop(SignalName(signo), &mut out),
                Meaning::Ignore => ignored(signo, arrived, "it has no meaning for kansas"),
            },
            Event::SpawnFailed(generation, why) => {
                self.spawn_failed(generation, &why, now, &mut out)
            }
            Event::Tick => {
                if self.pending.as_ref().is_some_and(|p| p.deadline <= now) {
                    let step = self.pending.as_ref().map_or(Step::Spawn, |p| p.step);
                    self.rollback(step, "timed out", now, &mut out);
                }
                if self.retry_at.is_some_and(|t| t <= now) {
                    self.start_again(now, &mut out);
                }
            }
        }
        out
    }

    fn spawn(&mut self, upgrade: bool, now: Instant, out: &mut Vec<Action>) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.pending = Some(Pending {
            generation,
            step: Step::Init,
            deadline: now + self.limits.upgrade_timeout,
            upgrade,
            spawned: now,
        });
        out.push(Action::Spawn {
            generation,
            upgrade,
        });
    }

    /// An upgrade asked for by `signal` (SIGUSR1 or SIGHUP).
    fn upgrade(&mut self, signal: SignalName, now: Instant, out: &mut Vec<Action>) {
        if self.pending.is_some() || self.active.is_none() {
            tracing::warn!(signal = %signal, "{signal} refused: an upgrade or start is already under way");
            return;
        }
        tracing::info!(from_generation = self.active, "{signal}: upgrading");
        out.push(Action::Notify(Notice::Reloading));
        self.spawn(true, now, out);
    }

    fn spawn_failed(
        &mut self,
        generation: Generation,
        why: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(p) = self.pending.as_ref().filter(|p| p.generation == generation) else {
            return;
        };
        if p.upgrade {
            self.rollback(Step::Spawn, why, now, out);
            return;
        }
        self.pending = None;
        self.failed_starts += 1;
        let delay = retry_delay(self.failed_starts);
        tracing::error!(
            error = why,
            attempt = self.failed_starts,
            retry_in_ms = delay.as_millis() as u64,
            "cannot start a worker: no worker serves; retrying"
        );
        self.retry_at = Some(now + delay);
    }

    /// Stops the pending worker; the active one (if any) keeps serving.
    fn rollback(&mut self, step: Step, why: &str, now: Instant, out: &mut Vec<Action>) {
        if let Some(p) = self.pending.take() {
            if step != Step::Spawn {
                out.push(Action::Kill(p.generation));
            }
            let failed = p.generation;
            if p.upgrade {
                let serving = self.active;
                tracing::error!(
                    step = step.label(),
                    why,
                    generation = failed,
                    serving,
                    "upgrade rolled back: generation {failed} failed at {} ({why}) and was stopped; generation {} serves on",
                    step.label(),
                    serving.map_or("none".to_string(), |g| g.to_string()),
                );
                if let Some((g, signal)) = self.leaving {
                    tracing::warn!(generation = g, signal = %signal, "generation {g} got {signal}: it serves until its own deadline, then drains, and a new worker is started when it has exited");
                }
            } else {
                tracing::error!(
                    step = step.label(),
                    why,
                    generation = failed,
                    "worker failed to start; retrying"
                );
            }
        }
        match self
            .stats
            .rollbacks
            .iter_mut()
            .find(|(s, _)| s == step.label())
        {
            Some((_, n)) => *n += 1,
            None => self.stats.rollbacks.push((step.label().to_string(), 1)),
        }
        out.push(Action::Notify(Notice::Ready));
        self.push_stats(out);
        if self.active.is_none() {
            // A fresh start failed: nobody serves; try again after a pause.
            self.failed_starts += 1;
            self.retry_at = Some(now + retry_delay(self.failed_starts));
        }
    }

    /// Starts a worker now, there being none active or starting.
    fn start_again(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.retry_at = None;
        if self.active.is_none() && self.pending.is_none() {
            self.spawn(false, now, out);
        }
    }

    /// Tells the active worker the master's counters.
    fn push_stats(&self, out: &mut Vec<Action>) {
        if let Some(a) = self.active {
            out.push(Action::Send(a, ToWorker::Stats(self.stats.clone())));
        }
    }

    /// Whether an upgrade waits for the state of worker `generation` (the active one).
    fn awaiting_dump_from(&self, generation: Generation) -> bool {
        self.active == Some(generation)
            && self.pending.as_ref().is_some_and(|p| p.step == Step::Dump)
    }

    fn message(
        &mut self,
        generation: Generation,
        msg: ToMaster,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let pending = self.pending.as_ref().map(|p| p.generation);
        match msg {
            ToMaster::Ready if pending == Some(generation) => self.ready(generation, out),
            ToMaster::State { state } if self.awaiting_dump_from(generation) => {
                let p = self.pending.as_mut().expect("awaiting a dump");
                p.step = Step::Start;
                let stats = MasterStats {
                    generation: p.generation,
                    ..self.stats.clone()
                };
                tracing::info!(
                    queues = state.state.queues.len(),
                    "state handed to the new worker"
                );
                let start = ToWorker::Start {
                    state: Some(state),
                    stats,
                };
                out.push(Action::Send(p.generation, start));
            }
            ToMaster::DumpFailed { why } if self.awaiting_dump_from(generation) => {
                let why = format!("the active worker could not send its state: {why}");
                self.rollback(Step::Dump, &why, now, out);
            }
            ToMaster::Active if pending == Some(generation) => self.activated(now, out),
            ToMaster::Refused { why } if pending == Some(generation) => {
                if !self.booted && self.active.is_none() {
                    tracing::error!(why, "the first worker refused to start");
                    self.pending = None;
                    out.push(Action::Kill(generation));
                    out.push(Action::Refused(why));
                    return;
                }
                let step = self.pending.as_ref().map_or(Step::Start, |p| p.step);
                self.rollback(step, &format!("refused: {why}"), now, out);
            }
            ToMaster::Leaving { signal } => self.worker_leaving(generation, signal, now, out),
            other => tracing::debug!(generation, ?other, "unexpected message"),
        }
    }

    /// The pending worker is ready: ask the active one for its state, or start it empty.
    fn ready(&mut self, generation: Generation, out: &mut Vec<Action>) {
        let p = self.pending.as_mut().expect("pending");
        match self.active {
            Some(active) if p.upgrade => {
                p.step = Step::Dump;
                out.push(Action::Send(active, ToWorker::Dump));
            }
            _ => {
                p.step = Step::Start;
                let stats = MasterStats {
                    generation,
                    ..self.stats.clone()
                };
                out.push(Action::Send(
                    generation,
                    ToWorker::Start { state: None, stats },
                ));
            }
        }
    }

    /// The pending worker accepts: the old one drains.
    fn activated(&mut self, now: Instant, out: &mut Vec<Action>) {
        let p = self.pending.take().expect("pending");
        let took_ms = (now - p.spawned).as_secs_f64() * 1e3;
        if let Some(old) = self.active.take() {
            out.push(Action::Send(old, ToWorker::Stop));
            self.leaving = None;
            tracing::info!(old, "old worker draining");
            self.draining.push_back(old);
            while self.draining.len() > self.limits.max_draining {
                let oldest = self.draining.pop_front().expect("non-empty");
                tracing::warn!(
                    generation = oldest,
                    "too many generations draining: stopping the oldest now"
                );
                out.push(Action::Kill(oldest));
            }
        }
        if p.upgrade {
            self.stats.upgrades += 1;
        }
        self.stats.generation = p.generation;
        tracing::info!(
            generation = p.generation,
            took_ms,
            upgrade = p.upgrade,
            "worker active"
        );
        self.failed_starts = 0;
        self.active = Some(p.generation);
        self.booted = true;
        out.push(Action::Notify(Notice::Ready));
        self.push_stats(out);
    }

    fn exited(
        &mut self,
        generation: Generation,
        status: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.generation == generation)
        {
            let step = self.pending.as_ref().map_or(Step::Start, |p| p.step);
            self.rollback(step, &format!("worker exited ({status})"), now, out);
        } else if self.active == Some(generation) {
            self.active = None;
            self.stats.restarts += 1;
            match self.leaving.take() {
                Some((_, signal)) => tracing::warn!(
                    generation,
                    status,
                    signal = %signal,
                    "the active worker got {signal} and exited before a successor was active: starting a new one"
                ),
                None => tracing::error!(
                    generation,
                    status,
                    "the active worker died: starting a new one"
                ),
            }
            if let Some(p) = self.pending.take() {
                // An upgrade was under way: let its worker start fresh instead.
                out.push(Action::Kill(p.generation));
            }
            self.start_again(now, out);
        } else {
            self.draining.retain(|w| *w != generation);
            tracing::info!(generation, status, "previous worker exited");
        }
    }
}
