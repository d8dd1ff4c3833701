//! kansas-load end to end: 200 clients for 10 s against fake-tornado directly and through a real
//! kansas with several shards (zero lost, duplicated or reordered events), and a broken target
//! (a shard killed without restart) that must make it exit non-zero and name the failures.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use common::fake::Fake;
use common::kansas::{shard, Kansas};

fn load(target: SocketAddr, shards: &[SocketAddr], extra: &[&str]) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let shards: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_kansas-load"))
        .args(["--target", &format!("http://{target}")])
        .args(["--shards", &shards.join(",")])
        .args(["--json", json.to_str().unwrap(), "--quiet"])
        .args(extra)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (out, report)
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

#[test]
fn direct_to_a_fake_shard() {
    let f = Fake::start(&["--heartbeat-secs", "2"]);
    let (out, report) = load(f.addr, &[f.addr], ARGS);
    assert_clean(&out, &report);
}

#[test]
fn through_kansas_with_three_shards() {
    let (fakes, config) = fakes(3);
    let k = Kansas::start(&config);
    let addrs: Vec<SocketAddr> = fakes.iter().map(|f| f.addr).collect();
    let (out, report) = load(k.proxy, &addrs, ARGS);
    assert_clean(&out, &report);
    // The realms really were spread over the shards.
    let served = fakes
        .iter()
        .filter(|f| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let r = rt.block_on(common::client::get(f.addr, "x", "/fake/queues", &[]));
            r.json()["count"].as_u64().unwrap() > 0
        })
        .count();
    assert!(served >= 2, "queues on {served} of 3 shards");
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
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kansas-load"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}
