//! fake-tornado against the real binary: each Zulip behaviour it must reproduce. Long-polls wake
//! on publish, heartbeats, pruning, `dont_block`, queue creation, the exact `BAD_EVENT_QUEUE_ID`
//! body, DELETE, idle expiry, dump-on-SIGTERM and reload, and X-Accel-Redirect for user splits.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::client::{get, send, Resp};
use common::fake::{free_port, Fake};
use serde_json::Value;

const REALM: &str = "chat.example.com";

async fn create(addr: SocketAddr) -> String {
    let r = get(addr, REALM, "/json/events?dont_block=true", &[]).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["result"], "success");
    assert_eq!(j["events"], serde_json::json!([]));
    j["queue_id"].as_str().unwrap().to_string()
}

async fn publish(addr: SocketAddr, realm: &str, count: u64) -> Value {
    let req = format!(
        "POST /fake/publish?realm={realm}&count={count} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let r = send(addr, req.as_bytes()).await;
    assert_eq!(r.status, 200);
    r.json()
}

async fn poll(addr: SocketAddr, queue: &str, last: i64, dont_block: bool) -> Resp {
    let db = if dont_block { "&dont_block=true" } else { "" };
    get(
        addr,
        REALM,
        &format!("/api/v1/events?queue_id={queue}&last_event_id={last}{db}"),
        &[],
    )
    .await
}

fn ids(r: &Resp) -> Vec<i64> {
    r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_creation_answers_a_uuid4_and_requires_dont_block() {
    let f = Fake::start(&[]);
    let q = create(f.addr).await;
    assert_eq!(q.len(), 36);
    assert_eq!(&q[14..15], "4", "UUID version 4: {q}");
    let r = get(f.addr, REALM, "/json/events", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["result"], "error");
    // Django's internal registration.
    let req = format!(
        "POST /api/v1/events/internal HTTP/1.1\r\nHost: {REALM}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\nConnection: close\r\n\r\nuser_id=42"
    );
    let r = send(f.addr, req.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], "success");
    assert_eq!(r.json()["queue_id"].as_str().unwrap().len(), 36);
}

#[tokio::test(flavor = "multi_thread")]
async fn long_poll_wakes_on_publish() {
    let f = Fake::start(&[]);
    let q = create(f.addr).await;
    let (addr, q2) = (f.addr, q.clone());
    let waiting = tokio::spawn(async move { poll(addr, &q2, -1, false).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "nothing pending: the GET waits");
    let p = publish(f.addr, REALM, 1).await;
    assert_eq!(p["queues"], 1);
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["queue_id"], q.as_str());
    let ev = &j["events"][0];
    assert_eq!(
        (ev["id"].as_i64(), ev["type"].as_str()),
        (Some(0), Some("fake_event"))
    );
    assert_eq!(ev["realm"], REALM);
    assert_eq!(ev["seq"], 1);
    assert!(ev["published_at_us"].as_u64().unwrap() > 1_600_000_000_000_000);
    // Events go only to the publishing realm's queues.
    assert_eq!(publish(f.addr, "other.example.com", 1).await["queues"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_long_poll_gets_a_heartbeat() {
    let f = Fake::start(&["--heartbeat-secs", "0.5", "--heartbeat-jitter-secs", "0"]);
    let q = create(f.addr).await;
    let r = poll(f.addr, &q, -1, false).await;
    let j = r.json();
    assert_eq!(
        j["events"],
        serde_json::json!([{"type": "heartbeat", "id": 0}])
    );
    // The heartbeat is acknowledged like any event.
    let r = poll(f.addr, &q, 0, true).await;
    assert_eq!(ids(&r), Vec::<i64>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn last_event_id_prunes_and_dont_block_answers_at_once() {
    let f = Fake::start(&[]);
    let q = create(f.addr).await;
    publish(f.addr, REALM, 3).await;
    assert_eq!(ids(&poll(f.addr, &q, -1, false).await), vec![0, 1, 2]);
    assert_eq!(ids(&poll(f.addr, &q, 1, true).await), vec![2]);
    // Pruned events are gone even when asking from an older id again.
    assert_eq!(ids(&poll(f.addr, &q, -1, true).await), vec![2]);
    let r = poll(f.addr, &q, 2, true).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        ids(&r),
        Vec::<i64>::new(),
        "empty events is a normal answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_queue_gets_zulips_exact_error() {
    let f = Fake::start(&[]);
    let r = poll(f.addr, "no-such-queue", -1, false).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        serde_json::json!({"result": "error", "msg": "Bad event queue ID: no-such-queue",
                           "code": "BAD_EVENT_QUEUE_ID", "queue_id": "no-such-queue"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_drops_the_queue() {
    let f = Fake::start(&[]);
    let q = create(f.addr).await;
    let req = format!(
        "DELETE /json/events?queue_id={q} HTTP/1.1\r\nHost: {REALM}\r\nConnection: close\r\n\r\n"
    );
    let r = send(f.addr, req.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], "success");
    let r = send(f.addr, req.as_bytes()).await;
    assert_eq!(r.json()["code"], "BAD_EVENT_QUEUE_ID");
    assert_eq!(poll(f.addr, &q, -1, true).await.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_queues_expire() {
    let f = Fake::start(&["--queue-timeout-secs", "0.5"]);
    let idle = create(f.addr).await;
    let kept = create(f.addr).await;
    // `kept` has a client connected the whole time (a long-poll); `idle` has none.
    let (addr, k) = (f.addr, kept.clone());
    let waiting = tokio::spawn(async move { poll(addr, &k, -1, false).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        poll(f.addr, &idle, -1, true).await.status,
        400,
        "idle queue expired"
    );
    publish(f.addr, REALM, 1).await;
    let r = waiting.await.unwrap();
    assert_eq!(ids(&r), vec![0], "connected queue kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_dumps_queues_cuts_long_polls_and_restart_reloads_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("event_queues.json");
    let state_arg = state.to_str().unwrap();
    let mut f = Fake::start(&["--state-file", state_arg]);
    let q = create(f.addr).await;
    let pending = create(f.addr).await;
    publish(f.addr, REALM, 2).await;
    // `pending` acknowledges event 0 only, so event 1 must survive the restart.
    assert_eq!(ids(&poll(f.addr, &pending, 0, true).await), vec![1]);
    // `q` has everything acknowledged and a long-poll open while the shard stops.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let req =
        format!("GET /json/events?queue_id={q}&last_event_id=1 HTTP/1.1\r\nHost: {REALM}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = f.terminate();
    assert!(status.success(), "{status:?}");
    let mut buf = Vec::new();
    let n = s.read_to_end(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "the open long-poll is closed mid-request, unanswered");
    assert!(state.exists(), "queues dumped");

    let f2 = Fake::start(&["--state-file", state_arg]);
    assert!(!state.exists(), "the dump is consumed on load");
    assert_eq!(ids(&poll(f2.addr, &pending, 0, true).await), vec![1]);
    // The cut GET replayed after the restart, same queue_id and last_event_id: it waits, and
    // gets the next event with the next id and the realm's next sequence number.
    let (addr, q2) = (f2.addr, q.clone());
    let waiting = tokio::spawn(async move { poll(addr, &q2, 1, false).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    let p = publish(f2.addr, REALM, 1).await;
    assert_eq!(
        p["realm_seq"], 3,
        "the realm's sequence survived the restart"
    );
    let r = waiting.await.unwrap();
    assert_eq!(ids(&r), vec![2]);
    assert_eq!(r.json()["events"][0]["seq"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_split_redirects_other_ports_users() {
    let (a, b) = (free_port(), free_port());
    let split = format!("{a},{b}");
    let fa = Fake::start_on(&format!("127.0.0.1:{a}"), &["--user-split", &split]);
    let fb = Fake::start_on(&format!("127.0.0.1:{b}"), &["--user-split", &split]);
    // user 0 → ports[0] = a: served by a.
    let r = get(
        fa.addr,
        REALM,
        "/json/events?dont_block=true",
        &[("X-Zulip-User-Id", "0")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-accel-redirect").is_none());
    // user 1 → ports[1] = b: a answers with an empty body and the redirect.
    let path = "/json/events?dont_block=true&client=web";
    let r = get(fa.addr, REALM, path, &[("X-Zulip-User-Id", "1")]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("x-accel-redirect"),
        Some(format!("/internal/tornado/{b}{path}").as_str())
    );
    let r = get(fb.addr, REALM, path, &[("X-Zulip-User-Id", "1")]).await;
    assert_eq!(r.json()["result"], "success");
    // A process whose own port is not in the split refuses to start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fake-tornado"))
        .args(["--listen", "127.0.0.1:0", "--user-split", &split])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
