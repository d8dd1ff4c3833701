//! What each signal means to the master, in one table (the README's "Signals" section says the
//! same): HUP and USR1 upgrade; TERM, INT and QUIT stop (every worker drains; a second one stops
//! at once); every other signal whose default action would kill or stop the master is logged
//! and ignored, as are the ones ignored by default (CONT, WINCH, URG) and the real-time signals
//! SIGRTMIN..SIGRTMAX-1. Three keep their default on purpose: CHLD (tokio's reaper; each worker's
//! exit is logged), PIPE (ignored by the Rust runtime, silently: a write to a closed socket
//! raises it, and a line each time would flood the log), and the faults (SEGV, BUS, FPE, ILL,
//! TRAP, ABRT, SYS: a master that faults dies loudly; its workers drain). KILL and STOP cannot be
//! caught. Nor can SIGRTMAX itself be: tokio's signal table stops one short of it.
//!
//! Each caught signal becomes an [`Event::Signal`](super::Event) on the master's event channel;
//! a signal that is ignored is logged at most once a second (with how many arrived), so a flood
//! of them cannot flood the log.

use std::fmt;
use std::time::Duration;

use nix::libc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;

use crate::logging::throttle::Throttle;

/// What a signal asks of the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// Start the binary on disk as a new worker and hand over (SIGHUP, SIGUSR1).
    Upgrade,
    /// Every worker drains, then the master exits; a second one stops at once.
    Stop,
    /// Logged, nothing else.
    Ignore,
}

/// The signals the master catches, other than the real-time ones (all [`Meaning::Ignore`]).
pub const TABLE: &[(i32, Meaning)] = &[
    (libc::SIGHUP, Meaning::Upgrade),
    (libc::SIGUSR1, Meaning::Upgrade),
    (libc::SIGTERM, Meaning::Stop),
    (libc::SIGINT, Meaning::Stop),
    (libc::SIGQUIT, Meaning::Stop),
    (libc::SIGUSR2, Meaning::Ignore),
    (libc::SIGALRM, Meaning::Ignore),
    (libc::SIGVTALRM, Meaning::Ignore),
    (libc::SIGPROF, Meaning::Ignore),
    (libc::SIGIO, Meaning::Ignore),
    (libc::SIGPWR, Meaning::Ignore),
    (libc::SIGXCPU, Meaning::Ignore),
    (libc::SIGXFSZ, Meaning::Ignore),
    (libc::SIGSTKFLT, Meaning::Ignore),
    (libc::SIGTSTP, Meaning::Ignore),
    (libc::SIGTTIN, Meaning::Ignore),
    (libc::SIGTTOU, Meaning::Ignore),
    (libc::SIGCONT, Meaning::Ignore),
    (libc::SIGWINCH, Meaning::Ignore),
    (libc::SIGURG, Meaning::Ignore),
];

/// The real-time signals caught (and ignored): SIGRTMIN up to, not including, SIGRTMAX.
pub fn realtime() -> std::ops::Range<i32> {
    libc::SIGRTMIN()..libc::SIGRTMAX()
}

/// What `signo` means to the master.
pub fn meaning(signo: i32) -> Meaning {
    TABLE
        .iter()
        .find(|(s, _)| *s == signo)
        .map_or(Meaning::Ignore, |(_, m)| *m)
}

/// A signal's name for logs: `SIGHUP`, `SIGRTMIN+3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalName(pub i32);

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match nix::sys::signal::Signal::try_from(self.0) {
            Ok(s) => f.write_str(s.as_str()),
            Err(_) if realtime().contains(&self.0) || self.0 == libc::SIGRTMAX() => {
                write!(f, "SIGRTMIN+{}", self.0 - libc::SIGRTMIN())
            }
            Err(_) => write!(f, "signal {}", self.0),
        }
    }
}

/// Installs a handler for every signal in [`TABLE`] and the real-time ones; each arrival is
/// passed to `deliver(signo, arrived)` (`arrived`: how many since the last one passed on, more
/// than 1 only for ignored signals, which are passed on at most once a second).
pub fn listen<E: Send + 'static>(
    events: UnboundedSender<E>,
    deliver: fn(i32, u64) -> E,
) -> std::io::Result<()> {
    let all = TABLE.iter().map(|(s, _)| *s).chain(realtime());
    for signo in all {
        let mut stream = signal(SignalKind::from_raw(signo))?;
        let events = events.clone();
        let limit =
            (meaning(signo) == Meaning::Ignore).then(|| Throttle::new(Duration::from_secs(1)));
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let arrived = match &limit {
                    None => 1,
                    Some(t) => match t.tick() {
                        Some(unlogged) => unlogged + 1,
                        None => continue,
                    },
                };
                if events.send(deliver(signo, arrived)).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_that_would_kill_the_master_has_a_meaning() {
        let caught: Vec<i32> = TABLE.iter().map(|(s, _)| *s).collect();
        for s in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGALRM,
            libc::SIGTERM,
            libc::SIGSTKFLT,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGXCPU,
            libc::SIGXFSZ,
            libc::SIGVTALRM,
            libc::SIGPROF,
            libc::SIGIO,
            libc::SIGPWR,
        ] {
            assert!(caught.contains(&s), "{} is not caught", SignalName(s));
        }
        assert_eq!(meaning(libc::SIGHUP), Meaning::Upgrade);
        assert_eq!(meaning(libc::SIGQUIT), Meaning::Stop);
        assert_eq!(meaning(libc::SIGUSR2), Meaning::Ignore);
        assert_eq!(meaning(libc::SIGRTMIN() + 1), Meaning::Ignore);
        assert!(realtime().contains(&libc::SIGRTMIN()));
    }

    #[test]
    fn signals_are_named_for_logs() {
        assert_eq!(SignalName(libc::SIGHUP).to_string(), "SIGHUP");
        assert_eq!(SignalName(libc::SIGRTMIN() + 3).to_string(), "SIGRTMIN+3");
    }
}
