//! How workers are ended: the master's own stop (SIGTERM/SIGINT/SIGQUIT to the master: every
//! worker drains, then the master exits), and an active worker that got SIGTERM or SIGINT
//! itself (`Leaving`): it is replaced as in an upgrade, keeping its state, and told to stop only
//! once its successor is active. The master's stop wins over a leaving worker: once stopping,
//! `Leaving` is not heard, and a stop during the replacement kills the successor.

use tokio::time::Instant;

use super::super::signals::{self, Meaning, SignalName};
use super::{Action, Event, Generation, Machine, Notice};
use crate::handoff::ToWorker;

impl Machine {
    /// Worker `generation` got `signal` itself (not from the master) and asks to be replaced.
    pub(super) fn worker_leaving(
        &mut self,
        generation: Generation,
        signal: i32,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let signal = SignalName(signal);
        if self.active != Some(generation) {
            // A draining generation (told to stop as the signal came): it drains already.
            tracing::info!(generation, signal = %signal, "a previous worker got {signal}: it drains already");
            return;
        }
        if self.leaving.is_some_and(|(g, _)| g == generation) {
            return;
        }
        self.leaving = Some((generation, signal));
        if let Some(p) = &self.pending {
            tracing::info!(
                generation,
                signal = %signal,
                successor = p.generation,
                "the active worker got {signal}: the upgrade under way replaces it"
            );
            return;
        }
        tracing::info!(generation, signal = %signal, "the active worker got {signal}: starting its successor");
        out.push(Action::Notify(Notice::Reloading));
        self.spawn(true, now, out);
    }

    /// SIGTERM/SIGINT/SIGQUIT: every worker drains.
    pub(super) fn stop(&mut self, signal: SignalName, out: &mut Vec<Action>) {
        tracing::info!(signal = %signal, "stopping: every worker drains");
        out.push(Action::Notify(Notice::Stopping));
        if let Some(p) = self.pending.take() {
            out.push(Action::Kill(p.generation));
        }
        let alive: Vec<Generation> = self
            .active
            .iter()
            .chain(self.draining.iter())
            .copied()
            .collect();
        for w in &alive {
            out.push(Action::Send(*w, ToWorker::Stop));
        }
        self.stopping = Some(alive);
        self.check_stopped(out);
    }

    /// Stopping: only exits and a second stop signal matter (a leaving worker's request too is
    /// moot: it has been told to stop).
    pub(super) fn on_while_stopping(&mut self, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::Exited(generation, _) => {
                if let Some(alive) = &mut self.stopping {
                    alive.retain(|g| *g != generation);
                }
                self.check_stopped(out);
            }
            Event::Signal(signo, _) if signals::meaning(signo) == Meaning::Stop => {
                tracing::warn!("second stop signal: stopping at once");
                for g in self.stopping.iter().flatten() {
                    out.push(Action::Kill(*g));
                }
                out.push(Action::Exit(1));
            }
            Event::Signal(signo, arrived) => ignored(signo, arrived, "kansas is stopping"),
            _ => {}
        }
    }

    fn check_stopped(&self, out: &mut Vec<Action>) {
        if self.stopping.as_ref().is_some_and(|a| a.is_empty()) {
            tracing::info!("kansas stopped");
            out.push(Action::Exit(0));
        }
    }
}

/// Logs a signal that changes nothing.
pub(super) fn ignored(signo: i32, arrived: u64, why: &str) {
    let signal = SignalName(signo);
    tracing::warn!(signal = %signal, arrived, "{signal} ignored: {why}");
}
