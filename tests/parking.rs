//! Hiding Tornado restarts, end to end with real processes: a shard stopped with SIGTERM and
//! started again under load is invisible to 500 clients; non-GETs get 502; a shard that never
//! comes back gets the empty events answer at the deadline; the lot overflows with 503 and frees
//! a slot when a parked client leaves; a shard failing mid-answer closes the client connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kansas_testkit::harness::client::{get, send};
use kansas_testkit::harness::fake::Fake;
use kansas_testkit::harness::kansas::{shard, Kansas};
use kansas_testkit::harness::load::LoadRun;
use kansas_testkit::harness::metrics::{scrape, value, wait_value};
use kansas_testkit::harness::upstream::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn dead_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn a_shard_restart_is_invisible_to_500_clients() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("event_queues.9801.json");
    let state = state.to_str().unwrap().to_string();
    let a = Fake::start(&[]);
    let mut b = Fake::start(&["--state-file", &state]);
    let b_addr = b.addr;
    let k = Kansas::start(&format!("{}{}", shard("a", a.addr), shard("b", b_addr)));
    let load = LoadRun::new(k.proxy)
        .shards(&[a.addr, b_addr])
        .args(["--clients", "500", "--realms", "40", "--duration", "16s"])
        .args(["--publish-rate", "200/s", "--settle", "20s"])
        .spawn();

    std::thread::sleep(Duration::from_secs(4));
    let status = b.terminate();
    assert!(status.success(), "fake-tornado stops cleanly: {status:?}");
    std::thread::sleep(Duration::from_secs(5));
    let _b2 = Fake::start_on(&b_addr.to_string(), &["--state-file", &state]);

    let (status, report) = load.wait();
    assert!(status.success(), "kansas-load failed: {report:#}");
    assert_eq!(
        report["errors"],
        serde_json::json!({}),
        "no client-visible error"
    );
    assert_eq!(report["events_lost"], 0);
    assert_eq!(report["events_duplicated"], 0);
    assert_eq!(report["events_out_of_order"], 0);
    assert_eq!(report["reloads"], 0, "queues survived the restart");
    assert_eq!(
        report["requests_by_status"].as_object().unwrap().len(),
        1,
        "{report:#}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let m = rt.block_on(scrape(k.admin));
    let replayed = value(&m, "kansas_replayed_total{shard=\"b\"}");
    assert!(replayed > 0.0, "parked requests were replayed:\n{m}");
    assert_eq!(
        value(&m, "kansas_shard_down_transitions_total{shard=\"b\"}"),
        1.0,
        "{m}"
    );
    assert!(
        value(&m, "kansas_shard_down_seconds_total{shard=\"b\"}") >= 4.0,
        "{m}"
    );
    assert_eq!(value(&m, "kansas_shard_up{shard=\"b\"}"), 1.0);
    assert_eq!(value(&m, "kansas_parked_requests{shard=\"b\"}"), 0.0);
    assert_eq!(
        value(&m, "kansas_shard_down_transitions_total{shard=\"a\"}"),
        0.0
    );
    assert!(k
        .logs()
        .iter()
        .any(|l| l["message"] == "shard up: replaying parked requests" && l["shard"] == "b"));
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_is_502_and_a_get_gets_empty_events_at_the_deadline() {
    let dead = dead_addr();
    let k = Kansas::start(&format!(
        "[parking]\ntimeout_secs = 1\nprobe_interval_secs = 0.1\n{}",
        shard("dead", dead)
    ));
    let req = "DELETE /json/events?queue_id=q1 HTTP/1.1\r\nHost: r.example.com\r\nConnection: close\r\n\r\n";
    let r = send(k.proxy, req.as_bytes()).await;
    assert_eq!(r.status, 502, "a DELETE is never replayed");
    // A GET waits for the deadline, then gets Zulip's normal empty answer; the client polls
    // again and gets the same.
    for _ in 0..2 {
        let started = Instant::now();
        let r = get(
            k.proxy,
            "r.example.com",
            "/json/events?queue_id=q1&last_event_id=7",
            &[],
        )
        .await;
        assert!(started.elapsed() >= Duration::from_millis(900), "it waited");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            serde_json::json!({"result": "success", "msg": "", "events": [], "queue_id": "q1"})
        );
    }
    // A GET naming no queue cannot get an events answer: 503 with Retry-After.
    let r = get(
        k.proxy,
        "r.example.com",
        "/json/events?dont_block=true",
        &[],
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    let m = scrape(k.admin).await;
    assert_eq!(
        value(&m, "kansas_park_timeouts_total{shard=\"dead\"}"),
        3.0,
        "{m}"
    );
    assert_eq!(value(&m, "kansas_shard_up{shard=\"dead\"}"), 0.0, "{m}");
    // kansas's own empty answer teaches the queue map nothing: no shard said q1 exists.
    assert_eq!(value(&m, "kansas_queues"), 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_answer_can_be_503() {
    let k = Kansas::start(&format!(
        "[parking]\ntimeout_secs = 0.5\ntimeout_answer = \"503\"\n{}",
        shard("dead", dead_addr())
    ));
    let r = get(k.proxy, "r.example.com", "/json/events?queue_id=q1", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.json()["result"], "error");
}

#[tokio::test(flavor = "multi_thread")]
async fn overflow_is_503_and_a_leaving_client_frees_its_slot() {
    let k = Kansas::start(&format!(
        "[parking]\nmax_per_shard = 2\ntimeout_secs = 30\n{}",
        shard("dead", dead_addr())
    ));
    let req = b"GET /json/events?queue_id=q HTTP/1.1\r\nHost: r.example.com\r\n\r\n";
    let mut first = TcpStream::connect(k.proxy).await.unwrap();
    first.write_all(req).await.unwrap();
    let mut second = TcpStream::connect(k.proxy).await.unwrap();
    second.write_all(req).await.unwrap();
    let parked = "kansas_parked_requests{shard=\"dead\"}";
    assert_eq!(wait_value(k.admin, parked, 2.0).await, 2.0);

    let r = get(k.proxy, "r.example.com", "/json/events?queue_id=q", &[]).await;
    assert_eq!(r.status, 503, "the lot is full");
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.json()["result"], "error");

    drop(first);
    assert_eq!(
        wait_value(k.admin, parked, 1.0).await,
        1.0,
        "slot freed at once"
    );
    let m = scrape(k.admin).await;
    assert_eq!(
        value(&m, "kansas_park_abandoned_total{shard=\"dead\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(&m, "kansas_park_overflows_total{shard=\"dead\"}"),
        1.0,
        "{m}"
    );
    let mut third = TcpStream::connect(k.proxy).await.unwrap();
    third.write_all(req).await.unwrap();
    assert_eq!(
        wait_value(k.admin, parked, 2.0).await,
        2.0,
        "the freed slot is usable"
    );
    drop((second, third));
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_after_the_head_closes_the_client_connection() {
    let up = Upstream::start("a").await;
    let k = Kansas::start(&shard("a", up.addr));
    let mut s = TcpStream::connect(k.proxy).await.unwrap();
    s.write_all(b"GET /stream-abort HTTP/1.1\r\nHost: r.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("first") {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    up.release();
    // The connection ends without the final chunk: the client sees a truncated answer.
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        rest
    })
    .await
    .expect("kansas closes the client connection");
    buf.extend_from_slice(&rest);
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    assert!(!buf.ends_with(b"0\r\n\r\n"), "no terminating chunk");
    let m = scrape(k.admin).await;
    assert_eq!(
        value(&m, "kansas_errors_total{kind=\"failed_after_head\"}"),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_answers_parked_gets_before_exiting() {
    let mut k = Kansas::start(&format!(
        "[parking]\ntimeout_secs = 2\n[timeouts]\ndrain_secs = 20\n{}",
        shard("dead", dead_addr())
    ));
    let proxy = k.proxy;
    let parked = tokio::spawn(async move {
        get(
            proxy,
            "r.example.com",
            "/json/events?queue_id=q9&last_event_id=3",
            &[],
        )
        .await
    });
    let series = "kansas_parked_requests{shard=\"dead\"}";
    assert_eq!(wait_value(k.admin, series, 1.0).await, 1.0);
    k.signal(15);
    let r = parked.await.unwrap();
    assert_eq!(r.status, 200, "answered at its deadline, not cut off");
    assert_eq!(r.json()["queue_id"], "q9");
    let status = tokio::task::block_in_place(|| k.wait_exit(Duration::from_secs(20)))
        .expect("kansas exits once the parked GET is answered");
    assert_eq!(status.code(), Some(0));
}

/// At its open-file limit kansas stops accepting instead of running out of descriptors: 250
/// long-polls through a kansas limited to 400 descriptors (72 connections after its reserve)
/// are all answered, in turns, and the healthy shard is never taken for down.
#[tokio::test(flavor = "multi_thread")]
async fn at_the_fd_limit_kansas_stops_accepting_and_no_shard_is_taken_for_down() {
    let fake = Fake::start(&["--heartbeat-secs", "1", "--heartbeat-jitter-secs", "0"]);
    let k = Kansas::start_with_fd_limit(400, &shard("s0", fake.addr));
    let warned = k.wait_log(Duration::from_secs(5), |l| {
        l["level"] == "WARN" && l["carried"] == 72
    });
    assert!(
        warned.is_some(),
        "the master warns at start: {:?}",
        k.logs()
    );
    let mut queues = Vec::new();
    for _ in 0..250 {
        let r = get(
            fake.addr,
            "r.example.com",
            "/json/events?dont_block=true",
            &[],
        )
        .await;
        queues.push(r.json()["queue_id"].as_str().unwrap().to_string());
    }
    let polls = queues.into_iter().map(|q| {
        let proxy = k.proxy;
        tokio::spawn(async move {
            let path = format!("/json/events?queue_id={q}&last_event_id=-1");
            get(proxy, "r.example.com", &path, &[]).await.status
        })
    });
    let statuses = futures_util::future::join_all(polls).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "{statuses:?}"
    );
    let m = scrape(k.admin).await;
    assert_eq!(value(&m, "kansas_shard_up{shard=\"s0\"}"), 1.0, "{m}");
    assert_eq!(
        value(&m, "kansas_shard_down_transitions_total{shard=\"s0\"}"),
        0.0,
        "{m}"
    );
}
