//! kansas-load end to end: 200 clients for 10 s against fake-tornado directly and through a real
//! kansas with several shards (zero lost, duplicated or reordered events, every queue deleted at
//! the end), the same following a routing config as Django does (publishing to the realm's
//! shards, registering through the Django stand-in, with and without `--publish-current-only`),
//! and a broken target (a shard killed without restart) that must make it exit non-zero and name
//! the failures.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use kansas_testkit::harness::fake::{free_port, Fake};
use kansas_testkit::harness::kansas::{shard, Kansas};
use kansas_testkit::harness::load::LoadRun;
use kansas_testkit::harness::raw_shard::RawShard;

fn load(target: SocketAddr, shards: &[SocketAddr], extra: &[&str]) -> (Output, serde_json::Value) {
    let run = LoadRun::new(target);
    let run = if shards.is_empty() {
        run
    } else {
        run.shards(shards)
    };
    run.args(extra).run()
}

fn assert_clean(out: &Output, report: &serde_json::Value) {
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["events_lost"], 0, "{summary}");
    assert_eq!(report["events_duplicated"], 0, "{summary}");
    assert_eq!(report["events_out_of_order"], 0, "{summary}");
    assert_eq!(report["errors"], serde_json::json!({}), "{summary}");
    assert_eq!(report["registrations"], 200, "{summary}");
    assert!(
        report["events_received"].as_u64().unwrap() > 1000,
        "{summary}"
    );
    assert_eq!(
        report["events_received"], report["events_expected"],
        "{summary}"
    );
    assert!(summary.contains("result:   PASS"), "{summary}");
}

/// `n` fake shards (2 s heartbeats) and their `[[shards]]` config as s0, s1, ...
fn fakes(n: usize) -> (Vec<Fake>, String) {
    let fakes: Vec<Fake> = (0..n)
        .map(|_| Fake::start(&["--heartbeat-secs", "2"]))
        .collect();
    let config = fakes
        .iter()
        .enumerate()
        .map(|(i, f)| shard(&format!("s{i}"), f.addr))
        .collect();
    (fakes, config)
}

const ARGS: &[&str] = &[
    "--clients",
    "200",
    "--realms",
    "20",
    "--duration",
    "10s",
    "--publish-rate",
    "200/s",
];

/// How many queues a fake holds.
fn queue_count(f: &Fake) -> u64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(kansas_testkit::harness::client::get(
        f.addr,
        "x",
        "/fake/queues",
        &[],
    ));
    r.json()["count"].as_u64().unwrap()
}

#[test]
fn direct_to_a_fake_shard() {
    let f = Fake::start(&["--heartbeat-secs", "2"]);
    let (out, report) = load(f.addr, &[f.addr], ARGS);
    assert_clean(&out, &report);
    assert_eq!(queue_count(&f), 0, "every client deleted its queue");
}

#[test]
fn through_kansas_with_three_shards() {
    let (fakes, config) = fakes(3);
    let k = Kansas::start(&config);
    let addrs: Vec<SocketAddr> = fakes.iter().map(|f| f.addr).collect();
    let proxy = k.proxy;
    let run = std::thread::spawn(move || load(proxy, &addrs, ARGS));
    // Halfway through, the realms really are spread over the shards.
    std::thread::sleep(Duration::from_secs(5));
    let served = fakes.iter().filter(|f| queue_count(f) > 0).count();
    let (out, report) = run.join().unwrap();
    assert_clean(&out, &report);
    assert!(served >= 2, "queues on {served} of 3 shards");
    // At the end, every client deleted its queue (through kansas, with a form body).
    for f in &fakes {
        assert_eq!(queue_count(f), 0, "{report:#}");
    }
}

#[test]
fn keep_queues_leaves_them_on_the_shard() {
    let f = Fake::start(&["--heartbeat-secs", "2"]);
    let args = [
        "--clients",
        "50",
        "--realms",
        "5",
        "--duration",
        "3s",
        "--publish-rate",
        "50/s",
        "--keep-queues",
    ];
    let (out, report) = load(f.addr, &[f.addr], &args);
    assert!(out.status.success(), "{report:#}");
    assert_eq!(queue_count(&f), 50);
}

/// Three fakes on fixed ports following one routing config file (no database) that kansas runs
/// with too: realms r0..r2 of run `rc` assigned to s0, s1, s2, the others hashed.
struct Routed {
    fakes: Vec<Fake>,
    kansas: Kansas,
    config: String,
    _dir: tempfile::TempDir,
}

fn routed() -> Routed {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut body: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!("[[shards]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{p}\"\nport = {p}\n")
        })
        .collect();
    body.push_str("[assignments]\n");
    for i in 0..3 {
        body.push_str(&format!("\"r{i}.rc.load.example.com\" = \"s{i}\"\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routing.toml");
    std::fs::write(&path, &body).unwrap();
    let config = path.to_str().unwrap().to_string();
    let fakes = ports
        .iter()
        .map(|p| {
            Fake::start_on(
                &format!("127.0.0.1:{p}"),
                &["--heartbeat-secs", "2", "--routing-config", &config],
            )
        })
        .collect();
    let kansas = Kansas::start(&body);
    Routed {
        fakes,
        kansas,
        config,
        _dir: dir,
    }
}

fn routed_args<'a>(config: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = ARGS.to_vec();
    args.extend(["--routing-config", config, "--run-id", "rc"]);
    args.extend(["--lifespan-secs", "120"]);
    args.extend(extra);
    args
}

/// The queues of `realm` a fake holds, and their lifespans.
fn queues_of(f: &Fake, realm: &str) -> Vec<f64> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let path = format!("/fake/queues?realm={realm}");
    let r = rt.block_on(kansas_testkit::harness::client::get(
        f.addr,
        "x",
        &path,
        &[],
    ));
    r.json()["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["lifespan_secs"].as_f64().unwrap())
        .collect()
}

#[test]
fn through_kansas_publishing_and_registering_as_django() {
    let r = routed();
    let (proxy, config) = (r.kansas.proxy, r.config.clone());
    let run = std::thread::spawn(move || load(proxy, &[], &routed_args(&config, &[])));
    // Halfway through: each assigned realm's 10 queues are on its shard, with the lifespan
    // asked at registration.
    std::thread::sleep(Duration::from_secs(5));
    for (i, f) in r.fakes.iter().enumerate() {
        let held = queues_of(f, &format!("r{i}.rc.load.example.com"));
        assert_eq!(held, vec![120.0; 10], "s{i}");
    }
    let (out, report) = run.join().unwrap();
    assert_clean(&out, &report);
    assert_eq!(
        report["requests_by_status"].as_object().unwrap().len(),
        1,
        "only 200s: {report:#}"
    );
    // Every queue was deleted at the end, through kansas.
    for f in &r.fakes {
        assert_eq!(queue_count(f), 0, "{report:#}");
    }
}

#[test]
fn publishing_to_current_shards_only_is_clean_when_nothing_moves() {
    let r = routed();
    let args = routed_args(&r.config, &["--publish-current-only"]);
    let (out, report) = load(r.kansas.proxy, &[], &args);
    assert_clean(&out, &report);
}

#[test]
fn registration_through_the_target_still_works_with_a_routing_config() {
    let r = routed();
    let args = routed_args(&r.config, &["--register-via", "target"]);
    let (out, report) = load(r.kansas.proxy, &[], &args);
    assert_clean(&out, &report);
}

/// Runs 100 clients through kansas (with `extra_config`) over two shards, one of which is
/// killed for good after 3 s; returns the exit status, summary and report.
fn run_with_a_dead_shard(extra_config: &str) -> (Option<i32>, String, serde_json::Value) {
    let (mut fakes, config) = fakes(2);
    let k = Kansas::start(&format!("{extra_config}{config}"));
    let addrs: Vec<SocketAddr> = fakes.iter().map(|f| f.addr).collect();
    let victim = fakes.remove(1);
    let killer = std::thread::spawn(move || {
        let mut victim = victim;
        std::thread::sleep(Duration::from_secs(3));
        victim.kill();
        victim
    });
    let (out, report) = load(
        k.proxy,
        &addrs,
        &[
            "--clients",
            "100",
            "--realms",
            "10",
            "--duration",
            "6s",
            "--publish-rate",
            "100/s",
            "--settle",
            "3s",
            "--backoff-scale",
            "0.1",
        ],
    );
    let _victim = killer.join().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), summary, report)
}

#[test]
fn a_dead_shard_fails_the_run_and_is_named() {
    // Without parking, clients of the dead shard see 502s; the run names them and the loss.
    let (code, summary, report) = run_with_a_dead_shard("[parking]\nenabled = false\n");
    assert_eq!(code, Some(1), "{summary}");
    assert!(report["events_lost"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        report["errors"]["http_502"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(summary.contains("FAIL"), "{summary}");
    assert!(summary.contains("events lost"), "{summary}");
    assert!(summary.contains("http_502 errors"), "{summary}");
    assert!(
        report["failures"].as_array().unwrap().len() >= 2,
        "{report}"
    );
}

#[test]
fn a_dead_shard_behind_parking_still_fails_the_run() {
    // With parking, clients of the dead shard wait instead of failing, but their events never
    // arrive: the run still fails, naming the loss.
    let (code, summary, report) = run_with_a_dead_shard("");
    assert_eq!(code, Some(1), "{summary}");
    assert!(report["events_lost"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary.contains("events lost"), "{summary}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        vec![
            "--target",
            "http://127.0.0.1:1/x",
            "--shards",
            "127.0.0.1:1",
        ],
        vec![
            "--target",
            "127.0.0.1:1",
            "--shards",
            "127.0.0.1:1",
            "--duration",
            "soon",
        ],
        vec![
            "--target",
            "127.0.0.1:1",
            "--shards",
            "127.0.0.1:1",
            "--allow",
            "http_502",
        ],
        vec![
            "--target",
            "127.0.0.1:1",
            "--shards",
            "127.0.0.1:1",
            "--clients",
            "0",
        ],
        // Neither where to publish nor a routing config.
        vec!["--target", "127.0.0.1:1"],
        vec![
            "--target",
            "127.0.0.1:1",
            "--shards",
            "127.0.0.1:1",
            "--register-via",
            "django",
        ],
        vec![
            "--target",
            "127.0.0.1:1",
            "--shards",
            "127.0.0.1:1",
            "--publish-current-only",
        ],
        vec![
            "--target",
            "127.0.0.1:1",
            "--routing-config",
            "/nonexistent/k.toml",
        ],
    ] {
        let out = Command::new(kansas_testkit::harness::bins::kansas_load())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

/// kansas-load's requests to its target are in origin-form with the realm as Host, as nginx
/// forwards Zulip's: never absolute-form (whose authority, the target's address, would differ
/// from the Host: an HTTP/1 proxy may refuse that; issue 13's engine does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_the_target_are_in_origin_form() {
    let answer = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec();
    let target = RawShard::start(answer).await;
    // Events go to an address where nothing listens: only the target's requests are looked at.
    let nowhere: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let run = LoadRun::new(target.addr).shards(&[nowhere]).args([
        "--clients",
        "2",
        "--duration",
        "1s",
        "--settle",
        "1s",
        "--publish-rate",
        "0/s",
    ]);
    let (out, _report) = tokio::task::spawn_blocking(move || run.run())
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "every request failed, so the run must fail"
    );
    let lines = target.request_lines();
    assert!(!lines.is_empty(), "kansas-load sent nothing");
    for line in &lines {
        assert!(
            line.starts_with("GET /json/events?") || line.starts_with("GET /api/v1/events?"),
            "not an origin-form registration or poll: {line:?}"
        );
    }
}
