//! Unit tests of the master machine when a worker got SIGTERM/SIGINT itself
//! (`ToMaster::Leaving`): it is replaced as in an upgrade, never twice, and the master's own
//! stop wins.

use super::*;

/// The active worker's own SIGTERM (or SIGINT).
fn leaving(g: u64, signal: i32) -> Event {
    msg(g, ToMaster::Leaving { signal })
}

#[test]
fn a_leaving_active_worker_is_replaced_as_in_an_upgrade_and_stopped_once_its_successor_is_active() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    assert_eq!(
        show(m.on(leaving(1, libc::SIGTERM), t0)),
        ["notify Reloading", "spawn 2 upgrade"]
    );
    // Told again (a repeated message) or asked for an upgrade meanwhile: nothing more starts.
    assert!(show(m.on(leaving(1, libc::SIGINT), t0)).is_empty());
    assert!(show(m.on(Event::Signal(libc::SIGUSR1, 1), t0)).is_empty());
    assert_eq!(show(m.on(msg(2, ToMaster::Ready), t0)), ["dump 1"]);
    assert_eq!(show(m.on(state_from(1), t0)), ["start 2 with state"]);
    assert_eq!(m.active(), Some(1), "the leaving worker serves until then");
    assert_eq!(
        show(m.on(msg(2, ToMaster::Active), t0)),
        ["stop 1", "notify Ready", "stats 2 gen 2"]
    );
    assert_eq!((m.stats().upgrades, m.stats().restarts), (1, 0));
    assert!(show(m.on(Event::Exited(1, "exit status: 0".into()), t0)).is_empty());
    assert_eq!(m.stats().restarts, 0);
    // The new worker may leave in its turn.
    assert_eq!(
        show(m.on(leaving(2, libc::SIGINT), t0)),
        ["notify Reloading", "spawn 3 upgrade"]
    );
}

#[test]
fn a_worker_leaving_during_an_upgrade_is_replaced_by_that_upgrade() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    upgrade_to_dump(&mut m, 2, 1, t0);
    assert!(show(m.on(leaving(1, libc::SIGTERM), t0)).is_empty());
    assert_eq!(m.leaving(), Some(1), "heard, and left to the upgrade");
    assert_eq!(show(m.on(state_from(1), t0)), ["start 2 with state"]);
    assert_eq!(
        show(m.on(msg(2, ToMaster::Active), t0)),
        ["stop 1", "notify Ready", "stats 2 gen 2"]
    );
    assert_eq!(m.leaving(), None);
    // Leaving before the upgrade's new worker is even ready: the same.
    let mut m = booted(t0);
    m.on(Event::Signal(libc::SIGHUP, 1), t0);
    assert!(show(m.on(leaving(1, libc::SIGTERM), t0)).is_empty());
    assert_eq!(m.leaving(), Some(1));
    assert_eq!(show(m.on(msg(2, ToMaster::Ready), t0)), ["dump 1"]);
}

#[test]
fn leaving_from_a_draining_or_a_starting_worker_changes_nothing() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    assert_eq!(
        show(m.on(leaving(1, libc::SIGTERM), t0)),
        ["notify Reloading", "spawn 2 upgrade"]
    );
    m.on(msg(2, ToMaster::Ready), t0);
    m.on(state_from(1), t0);
    m.on(msg(2, ToMaster::Active), t0);
    // Worker 1 asks again (a second signal before it read the stop): it drains already.
    assert!(show(m.on(leaving(1, libc::SIGINT), t0)).is_empty());
    assert_eq!((m.active(), m.leaving()), (Some(2), None));
    assert_eq!(m.deadline(), None, "no upgrade started");
    // Nor does a worker not yet active start anything.
    m.on(Event::Signal(libc::SIGUSR1, 1), t0);
    assert!(show(m.on(leaving(3, libc::SIGTERM), t0)).is_empty());
    assert_eq!(show(m.on(msg(3, ToMaster::Ready), t0)), ["dump 2"]);
}

#[test]
fn the_masters_stop_wins_over_a_leaving_worker() {
    let t0 = Instant::now();
    // The worker's request first (a SIGTERM to the whole process group), then the master's.
    let mut m = booted(t0);
    m.on(leaving(1, libc::SIGTERM), t0);
    assert_eq!(
        show(m.on(Event::Signal(libc::SIGTERM, 1), t0)),
        ["notify Stopping", "kill 2", "stop 1"]
    );
    assert!(show(m.on(msg(2, ToMaster::Ready), t0)).is_empty());
    assert!(show(m.on(Event::Exited(2, "signal: 9".into()), t0)).is_empty());
    assert_eq!(
        show(m.on(Event::Exited(1, "exit status: 0".into()), t0)),
        ["exit 0"]
    );
    // The master's first: the request is moot.
    let mut m = booted(t0);
    assert_eq!(
        show(m.on(Event::Signal(libc::SIGINT, 1), t0)),
        ["notify Stopping", "stop 1"]
    );
    assert!(show(m.on(leaving(1, libc::SIGINT), t0)).is_empty());
    assert_eq!(
        show(m.on(Event::Exited(1, "exit status: 0".into()), t0)),
        ["exit 0"]
    );
}

#[test]
fn a_leaving_worker_whose_successor_fails_serves_on_until_it_exits_then_is_replaced() {
    let t0 = Instant::now();
    let mut m = booted(t0);
    m.on(leaving(1, libc::SIGTERM), t0);
    m.on(msg(2, ToMaster::Ready), t0);
    m.on(state_from(1), t0);
    assert_eq!(
        show(m.on(Event::Tick, t0 + Duration::from_secs(10))),
        ["kill 2", "notify Ready", "stats 1 gen 1"]
    );
    assert_eq!(m.active(), Some(1), "it serves on");
    // At its own deadline it drains and exits: a new worker starts at once.
    let t = t0 + Duration::from_secs(20);
    assert_eq!(
        show(m.on(Event::Exited(1, "exit status: 0".into()), t)),
        ["spawn 3"]
    );
    assert_eq!(m.stats().restarts, 1);
    // It exits while its successor starts (a second SIGTERM): replaced at once, as a death is.
    let mut m = booted(t0);
    m.on(leaving(1, libc::SIGTERM), t0);
    m.on(msg(2, ToMaster::Ready), t0);
    assert_eq!(
        show(m.on(Event::Exited(1, "exit status: 0".into()), t0)),
        ["kill 2", "spawn 3"]
    );
}
