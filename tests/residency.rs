//! Realm residency through real kansas processes, fake-tornado shards and PostgreSQL: a queue of
//! a realm that drains stays on its old shard while the window is open and is answered
//! `BAD_EVENT_QUEUE_ID` once after it closes; a kansas that does not know a queue finds it on
//! the realm's other resident shards (so two kansas instances route alike); a DELETE's
//! `queue_id` is read from its form body; and `kansas route --batch` and `kansas residency`
//! tell what each process must do.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kansas_testkit::harness::cli::Cli;
use kansas_testkit::harness::client::{get, send, Resp};
use kansas_testkit::harness::fake::{shards, Fake};
use kansas_testkit::harness::kansas::Kansas;
use kansas_testkit::harness::metrics::scrape;
use kansas_testkit::harness::pg::TestDb;

const REALM: &str = "moving.example.com";

async fn register(proxy: SocketAddr) -> String {
    let r = get(proxy, REALM, "/json/events?dont_block=true", &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["queue_id"].as_str().unwrap().to_string()
}

async fn poll(proxy: SocketAddr, queue: &str) -> Resp {
    let path = format!("/json/events?queue_id={queue}&last_event_id=-1&dont_block=true");
    get(proxy, REALM, &path, &[]).await
}

async fn delete(proxy: SocketAddr, queue: &str) -> Resp {
    let body = format!("queue_id={queue}");
    let raw = format!(
        "DELETE /json/events HTTP/1.1\r\nHost: {REALM}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    send(proxy, raw.as_bytes()).await
}

async fn queues_on(fake: &Fake) -> Vec<String> {
    let r = get(fake.addr, "x", &format!("/fake/queues?realm={REALM}"), &[]).await;
    r.json()["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap().to_string())
        .collect()
}

/// Polls until `f` holds (kansas follows the database within milliseconds).
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_bad_queue(r: &Resp) -> bool {
    r.status == 400 && r.json()["code"] == "BAD_EVENT_QUEUE_ID"
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_queue_stays_while_resident_then_reloads_once_and_any_kansas_finds_it() {
    let db = TestDb::new();
    let (f0, f1) = (Fake::start(&[]), Fake::start(&[]));
    let shards = shards(&[&f0, &f1]);
    let cli = Cli::new(&shards, &db.url);
    cli.ok(&["db", "migrate"]);
    cli.ok(&["assign", REALM, "s0", "--move", "reload"]);
    let config = format!("[database]\nurl = \"{}\"\n{shards}", db.url);
    let a = Kansas::start(&config);
    let q = register(a.proxy).await;
    let q2 = register(a.proxy).await;
    assert_eq!(queues_on(&f0).await.len(), 2);

    // The realm moves to s1 with a drain window: s0 stays resident.
    let out = cli.ok(&["assign", REALM, "s1", "--drain-for", "1h"]);
    assert!(out.contains("drain window"), "{out}");
    let residency = cli.ok(&["residency", REALM]);
    assert!(
        residency.contains("s1") && residency.contains("current") && residency.contains("until"),
        "{residency}"
    );
    eventually("new queues land on s1", async || {
        register(a.proxy).await;
        !queues_on(&f1).await.is_empty()
    })
    .await;
    assert_eq!(
        poll(a.proxy, &q).await.status,
        200,
        "the known queue stays on s0"
    );

    // A second kansas, which never saw these queues, finds them on the resident s0.
    let b = Kansas::start(&config);
    let r = poll(b.proxy, &q).await;
    assert_eq!(
        r.status,
        200,
        "found on the other resident shard: {:?}",
        r.json()
    );
    // A DELETE names its queue in the body; b finds it on s0 too.
    let r = delete(b.proxy, &q2).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(
        !queues_on(&f0).await.contains(&q2),
        "deleted where it lived"
    );
    assert!(queues_on(&f0).await.contains(&q));

    // The window closes: each kansas answers the old queue BAD_EVENT_QUEUE_ID once (the client
    // re-registers on s1), and s0 is told to drop it.
    assert!(cli
        .ok(&["residency", "--all"])
        .contains("1 drain window(s) closed"));
    eventually("a's old queue gets the reload answer", async || {
        is_bad_queue(&poll(a.proxy, &q).await)
    })
    .await;
    eventually("s0 dropped the queue", async || {
        !queues_on(&f0).await.contains(&q)
    })
    .await;
    let again = poll(a.proxy, &q).await;
    assert!(is_bad_queue(&again), "{:?}", again.json());
    let r = poll(b.proxy, &q).await;
    assert!(is_bad_queue(&r), "b too: {:?}", r.json());
    let m = scrape(a.admin).await;
    assert!(
        m.contains("kansas_queue_moves_total{policy=\"reload\"} 1\n"),
        "exactly one reload answer from a: {m}"
    );
}

#[test]
fn route_batch_and_residency_say_where_each_realm_lives() {
    let db = TestDb::new();
    let shards: String = (0..3)
        .map(|i| {
            format!(
                "[[shards]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{}\"\n",
                9800 + i
            )
        })
        .collect();
    let cli = Cli::new(&shards, &db.url);
    cli.ok(&["db", "migrate"]);
    cli.ok(&["assign", "split.example.com", "s0,s1", "--move", "reload"]);
    cli.ok(&["assign", "split.example.com", "s0,s2", "--drain-for", "2h"]);
    cli.ok(&["rule", "set", "10", "^eu\\.", "s2", "--move", "reload"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kansas"))
        .args(["route", "--batch", "--config", &cli.config])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(
                b"split.example.com 5\nSplit.Example.com:443 4\neu.example.com\nbad host!\n",
            )?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["targets"], serde_json::json!(["s0", "s2"]));
    assert_eq!(lines[0]["ports"], serde_json::json!([9800, 9802]));
    let resident: Vec<&str> = lines[0]["resident"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["shard"].as_str().unwrap())
        .collect();
    assert_eq!(resident, ["s0", "s2", "s1"]);
    assert!(lines[0]["resident"][2]["until"].as_f64().is_some());
    // User 5 moved s1 -> s2 (odd users), user 4 stayed on s0.
    assert_eq!(
        lines[0]["user_resident_ports"],
        serde_json::json!([9802, 9801])
    );
    assert_eq!(lines[1]["realm"], "split.example.com");
    assert_eq!(lines[1]["user_resident_ports"], serde_json::json!([9800]));
    assert_eq!(lines[2]["targets"], serde_json::json!(["s2"]));
    assert!(lines[3]["error"].is_string());
    let windows = cli.ok(&["residency"]);
    assert!(
        windows.contains("assign split.example.com s0,s1 -> s0,s2") && windows.contains("1 open"),
        "{windows}"
    );
    let json: serde_json::Value = serde_json::from_str(&cli.ok(&["residency", "--json"])).unwrap();
    assert_eq!(json["windows"].as_array().unwrap().len(), 1);
    let route = cli.ok(&["route", "split.example.com", "--user", "5"]);
    assert!(
        route.contains("resident shards") && route.contains("user 5"),
        "{route}"
    );
}

/// kansas decided a known queue's shard still serves the realm, but the shard, an instant
/// later, no longer does (its drain window closed in between) and redirects the poll: the queue
/// there gets no more events, so kansas answers `BAD_EVENT_QUEUE_ID` and deletes it there,
/// exactly as when it sees the window closed itself, instead of following the redirect (which
/// would leave the queue behind until Tornado's garbage collection).
#[tokio::test(flavor = "multi_thread")]
async fn a_known_queue_its_shard_redirects_away_is_reloaded_and_deleted_there() {
    let (p0, p1) = (
        kansas_testkit::harness::fake::free_port(),
        kansas_testkit::harness::fake::free_port(),
    );
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("s0.json");
    let state_file = state_file.to_str().unwrap();
    let mut f0 = Fake::start_on(&format!("127.0.0.1:{p0}"), &["--state-file", state_file]);
    let f1 = Fake::start_on(&format!("127.0.0.1:{p1}"), &[]);
    let k = Kansas::start(&format!(
        "{}[assignments]\n\"{REALM}\" = \"s0\"\n",
        shards(&[&f0, &f1])
    ));
    let q = register(k.proxy).await;
    assert_eq!(poll(k.proxy, &q).await.status, 200);
    assert_eq!(queues_on(&f0).await, std::slice::from_ref(&q));

    // s0 comes back serving user 0 (the test's user) on s1's port only.
    f0.terminate();
    let split = format!("{p1},{p0}");
    let f0 = Fake::start_on(
        &format!("127.0.0.1:{p0}"),
        &["--state-file", state_file, "--user-split", &split],
    );
    assert_eq!(queues_on(&f0).await, std::slice::from_ref(&q), "restored");
    let r = poll(k.proxy, &q).await;
    assert!(is_bad_queue(&r), "{:?}", r.json());
    eventually("s0 dropped the queue", async || {
        queues_on(&f0).await.is_empty()
    })
    .await;
    let m = scrape(k.admin).await;
    assert!(
        m.contains("kansas_queue_moves_total{policy=\"reload\"} 1\n"),
        "one reload answer: {m}"
    );
}
