//! Unit tests of the master machine: every upgrade path, rollback at each step, restart, retry
//! with backoff and stop, with plain time values (no process, no clock).

use nix::libc;
use tokio::time::{Duration, Instant};

use super::machine::{Action, Event, Limits, Machine};
use crate::handoff::{Envelope, State, ToMaster, ToWorker, STATE_FORMAT};

mod leaving;

fn limits() -> Limits {
    Limits {
        upgrade_timeout: Duration::from_secs(10),
        max_draining: 2,
    }
}

/// Actions as short strings, for tables.
fn show(actions: Vec<Action>) -> Vec<String> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::Spawn {
                generation,
                upgrade,
            } => format!(
                "spawn {generation}{}",
                if upgrade { " upgrade" } else { "" }
            ),
            Action::Send(g, ToWorker::Start { state: Some(_), .. }) => {
                format!("start {g} with state")
            }
            Action::Send(g, ToWorker::Start { state: None, .. }) => format!("start {g}"),
            Action::Send(g, ToWorker::Dump) => format!("dump {g}"),
            Action::Send(g, ToWorker::Stop) => format!("stop {g}"),
            Action::Send(g, ToWorker::Stats(s)) => format!("stats {g} gen {}", s.generation),
            Action::Kill(g) => format!("kill {g}"),
            Action::Notify(n) => format!("notify {n:?}"),
            Action::Exit(c) => format!("exit {c}"),
            Action::Refused(why) => format!("refused: {why}"),
        })
        .collect()
}

fn msg(g: u64, m: ToMaster) -> Event {
    Event::Message(g, m)
}

/// A state message (from whichever worker sends it).
fn state() -> ToMaster {
    ToMaster::State {
        state: Box::new(Envelope {
            format: STATE_FORMAT,
            kansas_version: "test".into(),
            generation: 1,
            state: State::default(),
        }),
    }
}

/// A master whose worker 1 is active, at `t0`.
fn booted(t0: Instant) -> Machine {
    let mut m = Machine::new(limits());
    assert_eq!(show(m.start(t0)), ["spawn 1"]);
    assert_eq!(show(m.on(msg(1, ToMaster::Ready), t0)), ["start 1"]);
    assert_eq!(
        show(m.on(msg(1, ToMaster::Active), t0)),
        ["notify Ready", "stats 1 gen 1"]
    );
    assert_eq!(m.active(), Some(1));
    assert_eq!(m.deadline(), None);
    m
}

/// `m` with an upgrade to `g` started and ready (waiting for the active worker's state).
fn upgrade_to_dump(m: &mut Machine, g: u64, active: u64, t: Instant) {
    assert_eq!(
        show(m.on(Event::Signal(libc::SIGUSR1, 1), t)),
        ["notify Reloading", format!("spawn {g} upgrade").as_str()]
    );
    assert_eq!(
        show(m.on(msg(g, ToMaster::Ready), t)),
        [format!("dump {active}")]
    );
}

#[test]
fn an_upgrade_hands_the_state_over_and_the_old_worker_drains() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    upgrade_to_dump(&mut m, 2, 1, t0);
    assert_eq!(show(m.on(state_from(1), t0)), ["start 2 with state"]);
    // The state comes from the active worker only.
    let mut other = booted(t0);
    upgrade_to_dump(&mut other, 2, 1, t0);
    assert!(show(other.on(state_from(2), t0)).is_empty());
    assert_eq!(
        show(m.on(msg(2, ToMaster::Active), t0 + Duration::from_secs(1))),
        ["stop 1", "notify Ready", "stats 2 gen 2"]
    );
    assert_eq!(m.active(), Some(2));
    assert_eq!((m.stats().upgrades, m.stats().generation), (1, 2));
    assert!(show(m.on(Event::Exited(1, "exit status: 0".into()), t0)).is_empty());
    assert_eq!(m.deadline(), None);
}

#[test]
fn sighup_upgrades_too_and_a_second_request_is_refused() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    assert_eq!(
        show(m.on(Event::Signal(libc::SIGHUP, 1), t0)),
        ["notify Reloading", "spawn 2 upgrade"]
    );
    assert!(show(m.on(Event::Signal(libc::SIGUSR1, 1), t0)).is_empty());
    assert!(show(m.on(Event::Signal(libc::SIGHUP, 1), t0)).is_empty());
}

#[test]
fn a_rollback_at_each_step_stops_the_new_worker_and_counts_the_step() {
    let t0 = Instant::now();
    let late = t0 + Duration::from_secs(11);
    type Fail = fn(&mut Machine, Instant) -> Vec<Action>;
    let cases: [(&str, bool, Fail); 7] = [
        ("spawn", false, |m, t| {
            m.on(Event::SpawnFailed(2, "ENOENT".into()), t)
        }),
        ("init", false, |m, t| {
            m.on(Event::Exited(2, "exit status: 3".into()), t)
        }),
        ("init", false, |m, _| {
            m.on(Event::Tick, Instant::now() + Duration::from_secs(11))
        }),
        ("dump", true, |m, t| {
            m.on(
                msg(
                    1,
                    ToMaster::DumpFailed {
                        why: "too large".into(),
                    },
                ),
                t,
            )
        }),
        ("dump", true, |m, t| {
            m.on(Event::Unreadable(1, "garbage".into()), t)
        }),
        ("start", true, |m, t| {
            m.on(state_from(1), t);
            m.on(
                msg(
                    2,
                    ToMaster::Refused {
                        why: "bad state".into(),
                    },
                ),
                t,
            )
        }),
        ("start", true, |m, t| {
            m.on(state_from(1), t);
            m.on(Event::Exited(2, "signal: 6".into()), t)
        }),
    ];
    for (step, ready, fail) in cases {
        let mut m = booted(t0);
        if ready {
            upgrade_to_dump(&mut m, 2, 1, t0);
        } else {
            m.on(Event::Signal(libc::SIGUSR1, 1), t0);
        }
        assert!(show(m.on(Event::Tick, t0)).is_empty(), "{step}: not yet");
        let mut want = vec!["kill 2", "notify Ready", "stats 1 gen 1"];
        if step == "spawn" {
            want.remove(0);
        }
        assert_eq!(show(fail(&mut m, t0)), want, "{step}");
        assert_eq!(m.stats().rollbacks, [(step.to_string(), 1)], "{step}");
        assert_eq!(m.active(), Some(1), "{step}: the old worker serves on");
        assert_eq!(m.deadline(), None, "{step}: no retry, a worker serves");
        // The next upgrade is a new generation.
        assert_eq!(
            show(m.on(Event::Signal(libc::SIGUSR1, 1), late))[1],
            "spawn 3 upgrade"
        );
    }
}

#[test]
fn a_failed_dump_or_an_unreadable_frame_outside_the_dump_changes_nothing() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    assert!(show(m.on(Event::Unreadable(1, "x".into()), t0)).is_empty());
    assert!(show(m.on(msg(1, ToMaster::DumpFailed { why: "x".into() }), t0)).is_empty());
    m.on(Event::Signal(libc::SIGUSR1, 1), t0);
    // Still at init: the active worker was not asked for its state yet.
    assert!(show(m.on(msg(1, ToMaster::DumpFailed { why: "x".into() }), t0)).is_empty());
    assert!(show(m.on(Event::Unreadable(2, "x".into()), t0)).is_empty());
    assert!(m.stats().rollbacks.is_empty());
}

#[test]
fn at_most_max_draining_generations_drain() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    for (new, old) in [(2, 1), (3, 2), (4, 3)] {
        upgrade_to_dump(&mut m, new, old, t0);
        m.on(state_from(old), t0);
        let out = show(m.on(msg(new, ToMaster::Active), t0));
        if new == 4 {
            assert_eq!(out[..2], ["stop 3", "kill 1"]);
        } else {
            assert_eq!(out[0], format!("stop {old}"));
        }
    }
}

/// The state, sent by worker `g`.
fn state_from(g: u64) -> Event {
    msg(g, state())
}

#[test]
fn a_dead_active_worker_is_replaced_at_once_even_during_an_upgrade() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    assert_eq!(
        show(m.on(Event::Exited(1, "signal: 9".into()), t0)),
        ["spawn 2"]
    );
    assert_eq!(m.stats().restarts, 1);
    m.on(msg(2, ToMaster::Ready), t0);
    m.on(msg(2, ToMaster::Active), t0);
    upgrade_to_dump(&mut m, 3, 2, t0);
    assert_eq!(
        show(m.on(Event::Exited(2, "signal: 9".into()), t0)),
        ["kill 3", "spawn 4"]
    );
    assert_eq!(show(m.on(msg(4, ToMaster::Ready), t0)), ["start 4"]);
}

#[test]
fn a_worker_that_cannot_be_started_is_tried_again_with_backoff() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    assert_eq!(
        show(m.on(Event::Exited(1, "signal: 9".into()), t0)),
        ["spawn 2"]
    );
    let mut t = t0;
    let mut gen = 2;
    for delay_ms in [200, 400, 800, 1600, 3200, 5000, 5000] {
        assert!(show(m.on(Event::SpawnFailed(gen, "ETXTBSY".into()), t)).is_empty());
        let due = t + Duration::from_millis(delay_ms);
        assert_eq!(m.deadline(), Some(due));
        assert!(show(m.on(Event::Tick, due - Duration::from_millis(1))).is_empty());
        gen += 1;
        assert_eq!(show(m.on(Event::Tick, due)), [format!("spawn {gen}")]);
        t = due;
    }
    // A start that gets as far as running, then fails, is retried the same way.
    assert_eq!(
        show(m.on(Event::Exited(gen, "exit status: 1".into()), t)),
        ["kill 9", "notify Ready"]
    );
    assert_eq!(m.deadline(), Some(t + Duration::from_secs(5)));
    gen += 1;
    let t = t + Duration::from_secs(5);
    assert_eq!(show(m.on(Event::Tick, t)), [format!("spawn {gen}")]);
    m.on(msg(gen, ToMaster::Ready), t);
    m.on(msg(gen, ToMaster::Active), t);
    // Success resets the backoff.
    m.on(Event::Exited(gen, "signal: 9".into()), t);
    m.on(Event::SpawnFailed(gen + 1, "ENOENT".into()), t);
    assert_eq!(m.deadline(), Some(t + Duration::from_millis(200)));
}

#[test]
fn a_new_worker_that_hangs_at_start_is_rolled_back_at_the_timeout() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    upgrade_to_dump(&mut m, 2, 1, t0);
    m.on(state_from(1), t0);
    assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(10)));
    assert!(show(m.on(Event::Tick, t0 + Duration::from_secs(9))).is_empty());
    assert_eq!(
        show(m.on(Event::Tick, t0 + Duration::from_secs(10)))[0],
        "kill 2"
    );
    assert_eq!(m.stats().rollbacks, [("start".to_string(), 1)]);
}

#[test]
fn the_first_worker_refusing_ends_the_master() {
    let t0 = Instant::now();
    let mut m = Machine::new(limits());
    m.start(t0);
    m.on(msg(1, ToMaster::Ready), t0);
    let out = m.on(
        msg(
            1,
            ToMaster::Refused {
                why: "unmigrated".into(),
            },
        ),
        t0,
    );
    assert_eq!(show(out), ["kill 1", "refused: unmigrated"]);
    // Later (a worker has served) a refusing restart is retried instead.
    let mut m = booted(t0);
    m.on(Event::Exited(1, "signal: 9".into()), t0);
    m.on(msg(2, ToMaster::Ready), t0);
    let out = m.on(
        msg(
            2,
            ToMaster::Refused {
                why: "db down".into(),
            },
        ),
        t0,
    );
    assert_eq!(show(out), ["kill 2", "notify Ready"]);
    assert_eq!(m.deadline(), Some(t0 + Duration::from_millis(200)));
}

#[test]
fn a_stop_drains_every_worker_and_a_second_one_stops_at_once() {
    let t0 = Instant::now();
    for second in [false, true] {
        let mut m = booted(t0);
        upgrade_to_dump(&mut m, 2, 1, t0);
        m.on(state_from(1), t0);
        m.on(msg(2, ToMaster::Active), t0);
        upgrade_to_dump(&mut m, 3, 2, t0);
        assert_eq!(
            show(m.on(Event::Signal(libc::SIGQUIT, 1), t0)),
            ["notify Stopping", "kill 3", "stop 2", "stop 1"]
        );
        assert_eq!(m.deadline(), None);
        // Nothing but exits and stop signals matters now.
        assert!(show(m.on(Event::Signal(libc::SIGUSR1, 1), t0)).is_empty());
        assert!(show(m.on(state_from(2), t0)).is_empty());
        assert!(show(m.on(Event::Exited(3, "signal: 9".into()), t0)).is_empty());
        assert!(show(m.on(Event::Exited(2, "exit status: 0".into()), t0)).is_empty());
        if second {
            assert_eq!(
                show(m.on(Event::Signal(libc::SIGTERM, 1), t0)),
                ["kill 1", "exit 1"]
            );
        } else {
            assert_eq!(
                show(m.on(Event::Exited(1, "exit status: 0".into()), t0)),
                ["exit 0"]
            );
        }
    }
}

#[test]
fn ignored_signals_do_nothing() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    for s in [
        libc::SIGUSR2,
        libc::SIGWINCH,
        libc::SIGTSTP,
        libc::SIGRTMIN() + 2,
    ] {
        assert!(show(m.on(Event::Signal(s, 3), t0)).is_empty());
    }
    assert_eq!(m.active(), Some(1));
}
