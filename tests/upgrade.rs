//! Zero-downtime kansas restarts with real processes: ten upgrades under load (long-polling
//! kansas-load clients plus short requests with and without keep-alive) without one failed
//! request or lost event; a new worker failing at every step, or hanging, rolled back while the
//! old one serves; double SIGUSR1; SIGKILL of the worker (restarted, no refused connection) and of
//! the master (workers exit); SIGTERM/SIGINT to the worker itself (replaced as in an upgrade,
//! drained at once by a second one or at its own deadline, the master's stop winning); the state
//! round trip.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use kansas_testkit::harness::client::get;
use kansas_testkit::harness::fake::Fake;
use kansas_testkit::harness::kansas::{shard, Kansas};
use kansas_testkit::harness::load::LoadRun;
use kansas_testkit::harness::metrics::scrape_blocking;

/// One queue registration through kansas, from a plain test thread; its status.
fn register(k: &Kansas) -> u16 {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(get(
            k.proxy,
            "r.example.com",
            "/json/events?dont_block=true",
            &[],
        ))
        .status
}

/// One shard and a kansas whose workers obey a fault switch of their own (never set_var: other
/// tests run concurrently), with `master.upgrade_timeout_secs`; returns once the first worker
/// is active (arming the switch earlier would fail it too). The shard and the directory must
/// stay alive as long as kansas.
fn switched(upgrade_timeout_secs: &str) -> (Fake, tempfile::TempDir, std::path::PathBuf, Kansas) {
    let fake = Fake::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let fail_file = dir.path().join("fail");
    let k = Kansas::start_env(
        &format!(
            "[master]\nupgrade_timeout_secs = {upgrade_timeout_secs}\n{}",
            shard("s0", fake.addr)
        ),
        &[("KANSAS_TEST_FAIL_FILE", fail_file.to_str().unwrap())],
    );
    k.wait_log(Duration::from_secs(10), |l| l["message"] == "worker active")
        .unwrap();
    (fake, dir, fail_file, k)
}

fn count_logs(k: &Kansas, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
    k.logs().iter().filter(|l| pred(l)).count()
}

fn worker_pid(k: &Kansas, generation: u64) -> i32 {
    k.wait_log(Duration::from_secs(10), |l| {
        l["message"] == "worker started" && l["generation"] == generation
    })
    .expect("worker started")["pid"]
        .as_i64()
        .unwrap() as i32
}

/// Short requests in a loop until `stop`: registrations through kansas, on one keep-alive
/// connection (reconnecting only when the server said `Connection: close`) or a new connection
/// each time. Counts successes and failures.
fn short_loop(
    proxy: SocketAddr,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
            while !stop.load(Ordering::Relaxed) {
                if !keep_alive {
                    let r = get(
                        proxy,
                        "short.example.com",
                        "/json/events?dont_block=true",
                        &[],
                    )
                    .await;
                    if r.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                    continue;
                }
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    let stream = tokio::net::TcpStream::connect(proxy)
                        .await
                        .expect("connect never refused");
                    let (s, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                            .unwrap();
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                let s = sender.as_mut().unwrap();
                if s.ready().await.is_err() {
                    sender = None;
                    continue;
                }
                let req = http::Request::get("/json/events?dont_block=true")
                    .header("host", "short.example.com")
                    .body(Empty::new())
                    .unwrap();
                match s.send_request(req).await {
                    Ok(resp) => {
                        let close = resp
                            .headers()
                            .get("connection")
                            .is_some_and(|v| v == "close");
                        let good = resp.status() == 200 && resp.into_body().collect().await.is_ok();
                        if good {
                            ok.fetch_add(1, Ordering::Relaxed)
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed)
                        };
                        if close {
                            sender = None;
                        }
                    }
                    Err(e) => {
                        eprintln!("short request failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        sender = None;
                    }
                }
            }
        });
    })
}

#[test]
fn ten_upgrades_under_load_lose_nothing() {
    let fakes: Vec<Fake> = (0..2)
        .map(|_| Fake::start(&["--heartbeat-secs", "1"]))
        .collect();
    let body = format!(
        "[master]\nmax_draining = 12\n{}{}",
        shard("s0", fakes[0].addr),
        shard("s1", fakes[1].addr)
    );
    let k = Kansas::start(&body);
    let load = LoadRun::new(k.proxy)
        .shards(&[fakes[0].addr, fakes[1].addr])
        .args(["--clients", "1000", "--realms", "50", "--duration", "22s"])
        .args(["--publish-rate", "200/s", "--settle", "20s"])
        .spawn();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let loops: Vec<_> = [true, false]
        .into_iter()
        .map(|ka| short_loop(k.proxy, ka, stop.clone(), ok.clone(), failed.clone()))
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    for n in 1..=10 {
        k.upgrade(n);
        std::thread::sleep(Duration::from_millis(1500));
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }
    let report = load.wait_clean();
    assert_eq!(
        report["reloads"], 0,
        "queues are remembered across upgrades: {report:#}"
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "short requests failed");
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "short requests ran: {}",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(k.active_upgrades(), 10);
    let took: Vec<f64> = k
        .logs()
        .iter()
        .filter(|l| l["message"] == "worker active" && l["upgrade"] == true)
        .map(|l| l["took_ms"].as_f64().unwrap())
        .collect();
    eprintln!("spawn -> active over 10 upgrades (ms): {took:?}");
}

/// The master's line for a rolled-back upgrade (it names the generations and the reason).
fn rolled_back(l: &serde_json::Value) -> bool {
    l["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("upgrade rolled back:"))
}

/// Requests keep succeeding while a broken upgrade is tried and rolled back.
fn assert_rollback(
    k: &Kansas,
    fail_file: &std::path::Path,
    step_content: &str,
    step: &str,
    before: usize,
) {
    std::fs::write(fail_file, step_content).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    k.signal(10);
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_logs(k, rolled_back) <= before {
        let r = rt.block_on(get(
            k.proxy,
            "r.example.com",
            "/json/events?dont_block=true",
            &[],
        ));
        assert_eq!(
            r.status, 200,
            "the old worker keeps serving during {step_content}"
        );
        assert!(Instant::now() < deadline, "{step_content}: no rollback");
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = k
        .logs()
        .into_iter()
        .filter(rolled_back)
        .nth(before)
        .unwrap();
    assert_eq!(line["step"], step, "{step_content}: {line}");
    std::fs::remove_file(fail_file).unwrap();
}

#[test]
fn a_failing_or_hanging_new_worker_is_rolled_back() {
    let (_fake, _dir, fail_file, k) = switched("1.5");
    let cases = [
        ("before-ready", "init"),
        ("refuse", "start"),
        ("crash-at-start", "start"),
        ("hang", "start"),
        ("bad-dump", "start"),
    ];
    for (i, (content, step)) in cases.iter().enumerate() {
        assert_rollback(&k, &fail_file, content, step, i);
    }
    // With the switch removed, the next upgrade works.
    k.upgrade(1);
    let m = scrape_blocking(k.admin);
    assert!(
        m.contains("kansas_upgrade_rollbacks{step=\"start\"} 4"),
        "{m}"
    );
    assert!(
        m.contains("kansas_upgrade_rollbacks{step=\"init\"} 1"),
        "{m}"
    );
    assert!(m.contains("kansas_upgrades 1"), "{m}");
}

/// Issue 15, item 1: the active worker cannot send its state, or sends bytes the master cannot
/// read. It serves on (a connection made every few milliseconds is answered before, during and
/// after), the master says which worker serves and why the upgrade failed; then a state cut into
/// many small pieces is handed over whole, and every queue learned before is known after.
#[test]
fn a_failing_dump_never_stops_service_and_a_state_in_many_pieces_keeps_every_queue() {
    let (_fake, _dir, fail_file, k) = switched("20");
    for _ in 0..25 {
        assert_eq!(register(&k), 200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = short_loop(k.proxy, false, stop.clone(), ok.clone(), failed.clone());

    std::fs::write(&fail_file, "dump-fails").unwrap();
    k.signal(10);
    let line = k
        .wait_log(Duration::from_secs(10), rolled_back)
        .expect("the upgrade is rolled back at once, not after upgrade_timeout_secs");
    assert_eq!(line["step"], "dump", "{line}");
    assert_eq!(line["serving"], 1, "{line}");
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("generation 1 serves on"), "{line}");
    assert!(
        message.contains("test switch"),
        "the reason is told: {line}"
    );
    // The old worker still accepts: new connections keep being answered after the rollback.
    let after = ok.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok.load(Ordering::Relaxed) < after + 50 {
        assert!(
            Instant::now() < deadline,
            "no worker accepts after the failed dump"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A state the master cannot read: skipped, rolled back at once, and the master still hears
    // the first worker (the next upgrade needs its state).
    std::fs::write(&fail_file, "garbled-state").unwrap();
    k.signal(10);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_logs(&k, rolled_back) < 2 {
        assert!(
            Instant::now() < deadline,
            "a garbled state is rolled back at once"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = k.logs().into_iter().filter(rolled_back).nth(1).unwrap();
    assert_eq!(line["step"], "dump", "{line}");
    assert!(
        line["why"].as_str().unwrap().contains("unreadable"),
        "{line}"
    );

    std::fs::write(&fail_file, "tiny-chunks").unwrap();
    k.upgrade(1);
    std::fs::remove_file(&fail_file).unwrap();
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "every connection was served"
    );
    assert!(ok.load(Ordering::Relaxed) > after + 50);
    let sent = k
        .wait_log(Duration::from_secs(5), |l| {
            l["message"] == "state sent to the master"
        })
        .unwrap();
    assert!(sent["pieces"].as_u64().unwrap() > 100, "{sent}");
    let restored = k
        .wait_log(Duration::from_secs(5), |l| l["message"] == "state restored")
        .unwrap();
    assert_eq!(
        restored["queues"], sent["queues"],
        "every queue handed over"
    );
    // The first worker served throughout: it is the one that handed its map over, holding every
    // queue it knew when its dump failed (a fresh worker would have started from nothing).
    assert_eq!(sent["generation"], 1, "{sent}");
    assert_eq!(restored["from_generation"], 1, "{restored}");
    let failed_dump = k
        .wait_log(Duration::from_secs(1), |l| {
            l["message"] == "cannot send the state to the master: serving on"
        })
        .unwrap();
    let known = failed_dump["queues"].as_u64().unwrap();
    assert!(known >= 25, "{failed_dump}");
    assert!(restored["queues"].as_u64().unwrap() >= known, "{restored}");
    let died = |l: &serde_json::Value| l["message"] == "the active worker died: starting a new one";
    assert_eq!(count_logs(&k, died), 0);
    assert_eq!(register(&k), 200);
}

#[test]
fn a_second_sigusr1_during_an_upgrade_is_refused() {
    let (_fake, _dir, fail_file, k) = switched("3");
    // Hold the upgrade open (its new worker hangs), so the second signal surely lands during
    // it: two SIGUSR1s sent back to back may be merged by the kernel into one.
    std::fs::write(&fail_file, "hang").unwrap();
    k.signal(10);
    k.wait_log(Duration::from_secs(10), |l| {
        l["message"] == "SIGUSR1: upgrading"
    })
    .unwrap();
    k.signal(10);
    assert!(k
        .wait_log(Duration::from_secs(5), |l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("SIGUSR1 refused")))
        .is_some());
    k.wait_log(Duration::from_secs(10), rolled_back)
        .expect("the hanging upgrade is rolled back");
    assert_eq!(k.active_upgrades(), 0, "the refused signal started nothing");
    std::fs::remove_file(&fail_file).unwrap();
    k.upgrade(1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(k.active_upgrades(), 1);
}

/// Operators used to nginx send SIGHUP to reload: it upgrades like SIGUSR1, and the master
/// lives on (by default SIGHUP would kill it).
#[test]
fn sighup_upgrades_like_sigusr1() {
    let fake = Fake::start(&[]);
    let mut k = Kansas::start(&shard("s0", fake.addr));
    k.wait_log(Duration::from_secs(10), |l| l["message"] == "worker active")
        .unwrap();
    k.signal(1);
    k.wait_log(Duration::from_secs(10), |l| {
        l["message"] == "SIGHUP: upgrading"
    })
    .expect("SIGHUP is an upgrade");
    k.wait_log(Duration::from_secs(30), |l| {
        l["message"] == "worker active" && l["upgrade"] == true
    })
    .expect("the new worker is active");
    assert!(
        k.wait_exit(Duration::from_millis(300)).is_none(),
        "the master lives"
    );
    assert_eq!(register(&k), 200);
}

/// Issue 15, item 8: every signal the master can catch does what the table in
/// `src/master/signals.rs` (and the README) says. Ignored ones: a log line naming the signal,
/// the master alive and serving, no worker replaced. CHLD and PIPE keep their harmless defaults.
/// HUP and USR1 upgrade; QUIT (like TERM and INT) drains every worker and exits 0.
#[test]
fn every_catchable_signal_has_its_defined_meaning() {
    use nix::libc;
    let fake = Fake::start(&[]);
    let mut k = Kansas::start(&shard("s0", fake.addr));
    k.wait_log(Duration::from_secs(10), |l| l["message"] == "worker active")
        .unwrap();
    let rt = |n: i32| (libc::SIGRTMIN() + n, format!("SIGRTMIN+{n}"));
    let named = |s: i32| {
        (
            s,
            nix::sys::signal::Signal::try_from(s).unwrap().to_string(),
        )
    };
    let mut ignored: Vec<(i32, String)> = [
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGSTKFLT,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGCONT,
        libc::SIGWINCH,
        libc::SIGURG,
    ]
    .into_iter()
    .map(named)
    .collect();
    let last_rt = libc::SIGRTMAX() - 1 - libc::SIGRTMIN();
    ignored.extend([rt(0), rt(5), rt(last_rt)]);
    for (signo, name) in &ignored {
        k.signal(*signo);
        let want = format!("{name} ignored: it has no meaning for kansas");
        let line = k
            .wait_log(Duration::from_secs(5), |l| l["message"] == want.as_str())
            .unwrap_or_else(|| panic!("no log line for {name}"));
        assert_eq!(line["signal"], name.as_str());
        assert_eq!(register(&k), 200, "serving after {name}");
    }
    for signo in [libc::SIGCHLD, libc::SIGPIPE] {
        k.signal(signo);
        assert_eq!(register(&k), 200);
    }
    assert!(
        k.wait_exit(Duration::from_millis(200)).is_none(),
        "the master lives"
    );
    let workers_started = |k: &Kansas| count_logs(k, |l| l["message"] == "worker started");
    assert_eq!(workers_started(&k), 1, "no signal replaced the worker");

    k.signal(libc::SIGHUP);
    k.wait_log(Duration::from_secs(30), |l| {
        l["message"] == "worker active" && l["upgrade"] == true
    })
    .expect("SIGHUP upgrades");
    k.upgrade(2);
    assert!(count_logs(&k, |l| l["message"] == "SIGUSR1: upgrading") == 1);

    k.signal(libc::SIGQUIT);
    let status = k.wait_exit(Duration::from_secs(30)).expect("SIGQUIT stops");
    assert!(status.success(), "{status}");
    let line = k
        .wait_log(Duration::from_secs(1), |l| {
            l["message"] == "stopping: every worker drains"
        })
        .unwrap();
    assert_eq!(line["signal"], "SIGQUIT");
    for signo in [libc::SIGTERM, libc::SIGINT] {
        let mut k = Kansas::start(&shard("s0", fake.addr));
        k.wait_log(Duration::from_secs(10), |l| l["message"] == "worker active")
            .unwrap();
        k.signal(signo);
        let status = k.wait_exit(Duration::from_secs(30)).expect("stops");
        assert!(status.success(), "{status}");
        let line = k
            .wait_log(Duration::from_secs(1), |l| {
                l["message"] == "stopping: every worker drains"
            })
            .unwrap();
        assert_eq!(line["signal"], named(signo).1);
    }
}

#[test]
fn a_killed_worker_is_restarted_and_no_connection_is_refused() {
    let fake = Fake::start(&[]);
    let k = Kansas::start(&shard("s0", fake.addr));
    let pid = worker_pid(&k, 1);
    k.wait_log(Duration::from_secs(10), |l| l["message"] == "worker active")
        .unwrap();
    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Connections made meanwhile wait in the master's listen backlog and are answered.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..20 {
        let r = rt.block_on(get(
            k.proxy,
            "r.example.com",
            "/json/events?dont_block=true",
            &[],
        ));
        assert_eq!(r.status, 200);
    }
    let restarted = k
        .wait_log(Duration::from_secs(5), |l| {
            l["message"] == "worker active" && l["generation"] == 2 && l["took_ms"].is_number()
        })
        .expect("a new worker");
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    assert_eq!(restarted["upgrade"], false);
}

/// The active worker dies while the binary cannot be started (it is being replaced): the
/// master tries again, with backoff and a log line each time, until a worker starts.
#[test]
fn a_worker_is_started_again_and_again_until_the_binary_is_back() {
    let fake = Fake::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("kansas");
    std::fs::copy(kansas_testkit::harness::kansas::binary(), &bin).unwrap();
    let k = Kansas::start_from(&bin, &shard("s0", fake.addr));
    let pid = worker_pid(&k, 1);
    k.wait_log(Duration::from_secs(10), |l| l["message"] == "worker active")
        .unwrap();
    let away = dir.path().join("kansas.away");
    std::fs::rename(&bin, &away).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let failed = |l: &serde_json::Value| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot start a worker"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_logs(&k, failed) < 3 {
        assert!(Instant::now() < deadline, "the master keeps trying");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::rename(&away, &bin).unwrap();
    k.wait_log(Duration::from_secs(15), |l| {
        l["message"] == "worker active" && l["generation"].as_u64() > Some(1)
    })
    .expect("a worker starts once the binary is back");
    assert_eq!(register(&k), 200);
}

#[test]
fn workers_exit_when_the_master_dies() {
    let fake = Fake::start(&[]);
    let mut k = Kansas::start(&shard("s0", fake.addr));
    let pid = worker_pid(&k, 1);
    k.wait_log(Duration::from_secs(10), |l| l["message"] == "worker active")
        .unwrap();
    k.signal(9);
    let _ = k.wait_exit(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
        // A zombie until reaped by init counts as gone once it stopped running.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.split_whitespace().nth(2) == Some("Z") || state.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "worker {pid} outlived its master"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn queues_learned_before_an_upgrade_are_known_after_it() {
    let fake = Fake::start(&[]);
    let k = Kansas::start(&shard("s0", fake.addr));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for i in 0..25 {
        let r = rt.block_on(get(
            k.proxy,
            &format!("r{i}.example.com"),
            "/json/events?dont_block=true",
            &[],
        ));
        assert_eq!(r.status, 200);
    }
    k.upgrade(1);
    let m = scrape_blocking(k.admin);
    assert!(m.contains("kansas_queues 25"), "{m}");
    assert!(m.contains("kansas_generation 2"), "{m}");
    let restored = k
        .wait_log(Duration::from_secs(5), |l| l["message"] == "state restored")
        .unwrap();
    assert_eq!(restored["queues"], 25);
}

/// Sends `sig` to worker `generation` itself (not through the master).
fn signal_worker(k: &Kansas, generation: u64, sig: nix::sys::signal::Signal) {
    let pid = worker_pid(k, generation);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

fn message_is(text: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |l| l["message"] == text
}

/// Issue 15, item 1: an operator's SIGTERM to the active worker's pid (not the master's) does
/// not stop it accepting: the master replaces it as in an upgrade, with its queue map, and only
/// then is it told to drain. A client connecting throughout is always served.
#[test]
fn a_worker_sent_sigterm_serves_until_its_successor_is_active_and_hands_its_queues_over() {
    let fake = Fake::start(&[]);
    let k = Kansas::start(&shard("s0", fake.addr));
    k.wait_log(Duration::from_secs(10), message_is("worker active"))
        .unwrap();
    for _ in 0..25 {
        assert_eq!(register(&k), 200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = short_loop(k.proxy, false, stop.clone(), ok.clone(), failed.clone());
    while ok.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(Duration::from_millis(10));
    }

    signal_worker(&k, 1, nix::sys::signal::Signal::SIGTERM);
    k.wait_log(
        Duration::from_secs(10),
        message_is("the active worker got SIGTERM: starting its successor"),
    )
    .expect("the master hears of the worker's signal");
    let active = k
        .wait_log(Duration::from_secs(30), |l| {
            l["message"] == "worker active" && l["generation"] == 2 && l["took_ms"].is_number()
        })
        .expect("a successor is active");
    assert_eq!(active["upgrade"], true, "{active}");
    k.wait_log(Duration::from_secs(30), |l| {
        l["message"] == "previous worker exited" && l["generation"] == 1
    })
    .expect("the signalled worker drains and exits once its successor is active");
    let after = ok.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok.load(Ordering::Relaxed) < after + 20 {
        assert!(Instant::now() < deadline, "the successor serves");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "every connection was served"
    );

    let sent = k
        .wait_log(
            Duration::from_secs(1),
            message_is("state sent to the master"),
        )
        .expect("the signalled worker hands its state over");
    assert_eq!(sent["generation"], 1, "{sent}");
    let restored = k
        .wait_log(Duration::from_secs(1), message_is("state restored"))
        .unwrap();
    assert_eq!(restored["from_generation"], 1, "{restored}");
    assert!(restored["queues"].as_u64().unwrap() >= 25, "{restored}");
    assert_eq!(
        restored["queues"], sent["queues"],
        "every queue handed over"
    );
    let told =
        |l: &serde_json::Value| l["message"] == "told to stop: draining" && l["generation"] == 1;
    assert_eq!(count_logs(&k, told), 1, "drained when the master said so");
    let died = |l: &serde_json::Value| {
        l["message"].as_str().is_some_and(|m| {
            m.starts_with("the active worker") && m.ends_with("starting a new one")
        })
    };
    assert_eq!(count_logs(&k, died), 0);
}

/// Issue 15, item 1: a worker can always be stopped. While its successor hangs (and the
/// master's upgrade timeout is far away), a second SIGTERM to the worker drains it at once; the
/// master then starts a new worker.
#[test]
fn a_worker_sent_sigterm_twice_drains_at_once() {
    let (_fake, _dir, fail_file, k) = switched("300");
    std::fs::write(&fail_file, "hang").unwrap();
    signal_worker(&k, 1, nix::sys::signal::Signal::SIGTERM);
    k.wait_log(
        Duration::from_secs(10),
        message_is("state handed to the new worker"),
    )
    .expect("the successor got the state, and hangs");
    std::fs::remove_file(&fail_file).unwrap();
    assert_eq!(register(&k), 200, "the signalled worker still serves");

    signal_worker(&k, 1, nix::sys::signal::Signal::SIGTERM);
    k.wait_log(Duration::from_secs(5), |l| {
        l["message"] == "second SIGTERM: draining at once" && l["generation"] == 1
    })
    .expect("the second signal drains the worker");
    k.wait_log(Duration::from_secs(10), |l| {
        l["message"] == "worker stopped" && l["generation"] == 1
    })
    .expect("drained long before the master's upgrade timeout");
    k.wait_log(
        Duration::from_secs(10),
        message_is("the active worker got SIGTERM and exited before a successor was active: starting a new one"),
    )
    .unwrap();
    k.wait_log(Duration::from_secs(20), |l| {
        l["message"] == "worker active" && l["generation"] == 3
    })
    .expect("a new worker replaces it");
    assert_eq!(register(&k), 200);
}

/// A master that never says `Stop` (one of a kansas that predates `Leaving` skips the
/// message): the signalled worker drains at its own deadline, upgrade_timeout_secs + 10 s.
#[test]
fn a_worker_sent_sigterm_and_never_stopped_drains_at_its_own_deadline() {
    let (_fake, _dir, fail_file, k) = switched("1");
    std::fs::write(&fail_file, "hang").unwrap();
    signal_worker(&k, 1, nix::sys::signal::Signal::SIGINT);
    let line = k
        .wait_log(Duration::from_secs(10), rolled_back)
        .expect("the hanging successor is rolled back");
    assert_eq!(line["serving"], 1, "{line}");
    std::fs::remove_file(&fail_file).unwrap();
    assert_eq!(register(&k), 200, "the signalled worker serves on");
    k.wait_log(Duration::from_secs(30), |l| {
        l["message"] == "no Stop from the master in time after the signal: draining"
            && l["generation"] == 1
    })
    .expect("the worker drains at its own deadline");
    k.wait_log(Duration::from_secs(20), |l| {
        l["message"] == "worker active" && l["generation"] == 3
    })
    .expect("a new worker replaces it");
    assert_eq!(register(&k), 200);
}

/// A SIGTERM to the worker and then to the master (as to the whole process group): the
/// master's stop wins, the successor under way is abandoned and everything stops, exit 0.
#[test]
fn a_sigterm_to_the_worker_then_the_master_stops_everything() {
    let (_fake, _dir, fail_file, mut k) = switched("300");
    std::fs::write(&fail_file, "hang").unwrap();
    signal_worker(&k, 1, nix::sys::signal::Signal::SIGTERM);
    k.wait_log(
        Duration::from_secs(10),
        message_is("the active worker got SIGTERM: starting its successor"),
    )
    .unwrap();
    k.signal(15);
    let status = k
        .wait_exit(Duration::from_secs(20))
        .expect("the master's stop wins: no waiting for the successor");
    assert!(status.success(), "{status:?}");
    assert!(k
        .wait_log(Duration::from_secs(1), |l| {
            l["message"] == "told to stop: draining" && l["generation"] == 1
        })
        .is_some());
    assert_eq!(
        count_logs(&k, |l| l["message"] == "worker active"
            && l["generation"] == 2),
        0,
        "no successor became active"
    );
}

/// A long-poll that came before an upgrade and is answered after the old worker began to drain
/// gets `Connection: close` with its answer, so its client's next poll goes to the new
/// generation (as hyper's graceful shutdown does); it is not kept alive only to be closed later
/// without an answer. (The engine read keep-alive when the request came: ten_upgrades_under_load
/// then saw closed and reset connections.)
#[test]
fn a_long_poll_answered_after_the_drain_began_closes_its_connection() {
    use std::io::{Read, Write};
    let shard_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let k = Kansas::start(&shard("s0", shard_listener.local_addr().unwrap()));
    let mut client = std::net::TcpStream::connect(k.proxy).unwrap();
    client
        .write_all(b"GET /json/events?queue_id=q1&last_event_id=-1 HTTP/1.1\r\nHost: r.example.com\r\n\r\n")
        .unwrap();
    // The shard holds the poll while kansas is upgraded.
    let (mut held, _) = shard_listener.accept().unwrap();
    let mut head = [0u8; 4096];
    let n = held.read(&mut head).unwrap();
    assert!(head[..n].starts_with(b"GET /json/events?queue_id=q1"));
    k.upgrade(1);
    k.wait_log(Duration::from_secs(10), |l| {
        l["message"] == "stopped accepting; draining"
    })
    .expect("the old worker drains");
    held.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"{}") {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the answer: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
}

/// A connection whose next request has begun to arrive when a draining worker closes its idle
/// connections is served first (with `Connection: close`), not cut with half a request read.
#[test]
fn a_request_begun_when_idle_connections_close_is_answered() {
    use std::io::{Read, Write};
    let fake = Fake::start(&[]);
    let k = Kansas::start(&shard("s0", fake.addr));
    k.wait_log(Duration::from_secs(10), |l| l["message"] == "worker active")
        .expect("the first worker serves");
    let mut client = std::net::TcpStream::connect(k.proxy).unwrap();
    k.upgrade(1);
    k.wait_log(Duration::from_secs(10), |l| {
        l["message"] == "stopped accepting; draining"
    })
    .expect("the old worker drains");
    // Half a head now; the rest after the drain's grace (2 s), when idle connections close.
    client.write_all(b"GET /json/users HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    client.write_all(b"st: r.example.com\r\n\r\n").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 "), "no answer: {text:?}");
    assert!(text.contains("connection: close\r\n"), "{text}");
}
