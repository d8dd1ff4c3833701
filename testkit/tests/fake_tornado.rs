//! fake-tornado against the real binary: each Zulip behaviour it must reproduce. Long-polls wake
//! on publish, heartbeats, pruning, `dont_block`, queue creation, the exact `BAD_EVENT_QUEUE_ID`
//! body, a poll without `last_event_id` refused, DELETE (query or form body), idle expiry after
//! each queue's own lifespan, publishing to some users only, dump-on-SIGTERM and reload with
//! Zulip's restart event, X-Accel-Redirect for user splits, and, following a kansas routing
//! config, what Tornado with kansas_zulip's patches does for users it does not serve: redirect
//! the GET, refuse the registration, forward the DELETE as a cleanup.

use std::net::SocketAddr;
use std::time::Duration;

use kansas_testkit::harness::client::{get, send, Resp};
use kansas_testkit::harness::fake::{free_port, Fake};
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

/// A request with a form-encoded body (`Connection: close`).
async fn form(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Connection: close\r\n\r\n{body}"));
    send(addr, req.as_bytes()).await
}

/// Django's registration of a queue for `body`'s user.
async fn register(addr: SocketAddr, host: &str, body: &str) -> Resp {
    form(addr, "POST", host, "/api/v1/events/internal", body, &[]).await
}

/// The queues a fake holds (for `realm`, if given), without touching any.
async fn queues(addr: SocketAddr, realm: Option<&str>) -> Value {
    let path = match realm {
        Some(r) => format!("/fake/queues?realm={r}"),
        None => "/fake/queues".to_string(),
    };
    get(addr, "x", &path, &[]).await.json()
}

async fn has_queue(addr: SocketAddr, queue: &str) -> bool {
    queues(addr, None).await["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["id"] == queue)
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
async fn delete_takes_the_queue_id_from_a_form_body() {
    let f = Fake::start(&[]);
    let q = create(f.addr).await;
    let body = format!("queue_id={q}");
    let r = form(f.addr, "DELETE", REALM, "/api/v1/events", &body, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], "success");
    assert!(!has_queue(f.addr, &q).await);
    let r = form(f.addr, "DELETE", REALM, "/api/v1/events", &body, &[]).await;
    assert_eq!(r.json()["code"], "BAD_EVENT_QUEUE_ID");
    let r = form(f.addr, "DELETE", REALM, "/api/v1/events", "", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["msg"], "Missing 'queue_id' argument");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poll_without_last_event_id_is_refused() {
    let f = Fake::start(&[]);
    let q = create(f.addr).await;
    for path in [
        format!("/json/events?queue_id={q}"),
        format!("/api/v1/events?queue_id={q}&dont_block=true"),
    ] {
        let r = get(f.addr, REALM, &path, &[]).await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(
            r.json(),
            serde_json::json!({"result": "error", "msg": "Missing 'last_event_id' argument",
                               "code": "BAD_REQUEST"})
        );
    }
    // The queue is untouched: the next proper poll works.
    assert_eq!(poll(f.addr, &q, -1, true).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_queue_lives_its_own_lifespan() {
    // The default lifespan (no lifespan_secs, or 0) is --queue-timeout-secs.
    let f = Fake::start(&["--queue-timeout-secs", "60"]);
    let lifespan = |r: Resp| r.json()["queue_id"].as_str().unwrap().to_string();
    let short = lifespan(register(f.addr, REALM, "user_profile_id=1&lifespan_secs=2").await);
    let long = lifespan(register(f.addr, REALM, "user_profile_id=2&lifespan_secs=60").await);
    let default = lifespan(register(f.addr, REALM, "user_profile_id=3&lifespan_secs=0").await);
    let capped =
        lifespan(register(f.addr, REALM, "user_profile_id=4&lifespan_secs=99999999").await);
    let held = queues(f.addr, None).await;
    let secs = |q: &str| {
        held["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == q)
            .unwrap()["lifespan_secs"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(secs(&default), 60.0);
    assert_eq!(secs(&capped), 7.0 * 24.0 * 3600.0, "at most 7 days");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(has_queue(f.addr, &short).await, "1 s idle of 2 s");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !has_queue(f.addr, &short).await,
        "3.5 s idle of 2 s: expired"
    );
    assert!(has_queue(f.addr, &long).await, "3.5 s idle of 60 s: kept");
    assert!(has_queue(f.addr, &default).await);
    assert_eq!(poll(f.addr, &long, -1, true).await.status, 200);
    let r = register(f.addr, REALM, "user_profile_id=5&lifespan_secs=soon").await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_can_address_some_users_only() {
    let f = Fake::start(&[]);
    let q1 = register(f.addr, REALM, "user_profile_id=1").await.json()["queue_id"]
        .as_str()
        .unwrap()
        .to_string();
    let q2 = register(f.addr, REALM, "user_id=2").await.json()["queue_id"]
        .as_str()
        .unwrap()
        .to_string();
    let post = |query: String| {
        let req = format!(
            "POST /fake/publish?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        async move { send(f.addr, req.as_bytes()).await }
    };
    let r = post(format!("realm={REALM}&count=2&users=2,7")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["queues"], 1);
    assert_eq!(r.json()["realm_seq"], 2);
    assert_eq!(ids(&poll(f.addr, &q1, -1, true).await), Vec::<i64>::new());
    let r = poll(f.addr, &q2, -1, true).await;
    assert_eq!(ids(&r), vec![0, 1]);
    assert_eq!(r.json()["events"][1]["seq"], 2);
    // Without the filter, every queue of the realm.
    assert_eq!(publish(f.addr, REALM, 1).await["queues"], 2);
    assert_eq!(post(format!("realm={REALM}&users=x")).await.status, 400);
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
async fn sigterm_dumps_queues_cuts_long_polls_and_restart_reloads_them_with_a_restart_event() {
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
    // Every restored queue got Zulip's restart event, with the queue's next id.
    let r = poll(f2.addr, &pending, 0, true).await;
    assert_eq!(ids(&r), vec![1, 2]);
    let restart = &r.json()["events"][1];
    assert_eq!(restart["type"], "restart");
    assert_eq!(restart["zulip_version"], "fake-tornado");
    assert_eq!(restart["zulip_feature_level"], 0);
    assert_eq!(restart["immediate"], false);
    assert!(restart["server_generation"].as_u64().unwrap() > 1_600_000_000);
    // The cut GET replayed after the restart, same queue_id and last_event_id: answered at once
    // with the restart event.
    let r = tokio::time::timeout(Duration::from_secs(5), poll(f2.addr, &q, 1, false))
        .await
        .expect("a replayed poll is answered at once");
    assert_eq!(ids(&r), vec![2]);
    assert_eq!(r.json()["events"][0]["type"], "restart");
    // The next poll waits, and gets the next event with the next id and the realm's next
    // sequence number.
    let (addr, q2) = (f2.addr, q.clone());
    let waiting = tokio::spawn(async move { poll(addr, &q2, 2, false).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    let p = publish(f2.addr, REALM, 1).await;
    assert_eq!(
        p["realm_seq"], 3,
        "the realm's sequence survived the restart"
    );
    let r = waiting.await.unwrap();
    assert_eq!(ids(&r), vec![3]);
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
    // A DELETE for user 1 sent to a is forwarded to b as a cleanup, and answered success.
    let q = r.json()["queue_id"].as_str().unwrap().to_string();
    let body = format!("queue_id={q}");
    let r = form(
        fa.addr,
        "DELETE",
        REALM,
        "/json/events",
        &body,
        &[("X-Zulip-User-Id", "1")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], "success");
    assert!(!has_queue(fb.addr, &q).await, "b dropped the queue");
    // A process whose own port is not in the split refuses to start.
    let out = std::process::Command::new(kansas_testkit::harness::bins::fake_tornado())
        .args(["--listen", "127.0.0.1:0", "--user-split", &split])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Two fakes on fixed ports following one routing config (no database) whose shards name those
/// ports: `home.example.com` lives on a, `moved.example.com` on b.
fn routed_pair() -> (Fake, Fake, u16, u16, tempfile::TempDir) {
    let (pa, pb) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routing.toml");
    std::fs::write(
        &config,
        format!(
            "[[shards]]\nname = \"a\"\naddress = \"127.0.0.1:{pa}\"\nport = {pa}\n\
             [[shards]]\nname = \"b\"\naddress = \"127.0.0.1:{pb}\"\nport = {pb}\n\
             [assignments]\n\"home.example.com\" = \"a\"\n\"moved.example.com\" = \"b\"\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let a = Fake::start_on(&format!("127.0.0.1:{pa}"), &["--routing-config", config]);
    let b = Fake::start_on(&format!("127.0.0.1:{pb}"), &["--routing-config", config]);
    (a, b, pa, pb, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_config_redirects_gets_of_users_served_elsewhere() {
    let (a, b, _pa, pb, _dir) = routed_pair();
    let user = [("X-Zulip-User-Id", "7")];
    let r = get(
        a.addr,
        "home.example.com",
        "/json/events?dont_block=true",
        &user,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-accel-redirect").is_none());
    assert_eq!(r.json()["result"], "success");
    // The realm lives on b: a redirects every GET there, the original path and query kept.
    let q = "aaaaaaaa-0000-4000-8000-000000000000";
    for path in [
        "/json/events?dont_block=true".to_string(),
        format!("/api/v1/events?queue_id={q}&last_event_id=4"),
    ] {
        let r = get(a.addr, "Moved.Example.com:443", &path, &user).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.is_empty());
        assert_eq!(
            r.header("x-accel-redirect"),
            Some(format!("/internal/tornado/{pb}{path}").as_str())
        );
    }
    let r = get(
        b.addr,
        "moved.example.com",
        "/json/events?dont_block=true",
        &user,
    )
    .await;
    assert!(r.header("x-accel-redirect").is_none());
    assert_eq!(r.json()["result"], "success");
    // A realm that routes nowhere is not served anywhere (and not by this fake).
    let r = get(a.addr, "bad host", "/json/events?dont_block=true", &user).await;
    assert_eq!(r.status, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_config_refuses_registrations_for_the_wrong_port() {
    let (a, b, _pa, _pb, _dir) = routed_pair();
    let r = register(
        a.addr,
        "moved.example.com",
        "user_profile_id=7&lifespan_secs=60",
    )
    .await;
    assert_eq!(r.status, 500, "Django's view of the routing is stale");
    assert_eq!(r.json()["result"], "error");
    assert_eq!(queues(a.addr, None).await["count"], 0);
    // On the user's port: created, answering the realm_seq Django sent.
    let r = register(
        b.addr,
        "moved.example.com",
        "user_profile_id=7&lifespan_secs=60&realm_seq=41&dont_block=true",
    )
    .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["result"], "success");
    assert_eq!(j["last_event_id"], -1);
    assert_eq!(j["realm_seq"], 41);
    let held = queues(b.addr, Some("moved.example.com")).await;
    assert_eq!(held["queues"][0]["user_id"], 7);
    assert_eq!(held["queues"][0]["id"], j["queue_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_config_forwards_deletes_as_cleanups() {
    let (a, b, _pa, _pb, _dir) = routed_pair();
    let user = [("X-Zulip-User-Id", "7")];
    let r = register(b.addr, "moved.example.com", "user_profile_id=7").await;
    let q = r.json()["queue_id"].as_str().unwrap().to_string();
    let body = format!("queue_id={q}");
    // Another user's cleanup does not delete it.
    let r = form(
        a.addr,
        "DELETE",
        "moved.example.com",
        "/json/events",
        &body,
        &[("X-Zulip-User-Id", "8")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(has_queue(b.addr, &q).await, "not user 8's queue");
    // The owner's DELETE sent to a (not its port) is forwarded to b and answered success.
    let r = form(
        a.addr,
        "DELETE",
        "moved.example.com",
        "/json/events",
        &body,
        &user,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], "success");
    assert!(!has_queue(b.addr, &q).await, "b dropped the queue");
    // On the right port, the usual DELETE semantics.
    let r = form(
        b.addr,
        "DELETE",
        "moved.example.com",
        "/json/events",
        &body,
        &user,
    )
    .await;
    assert_eq!(r.json()["code"], "BAD_EVENT_QUEUE_ID");
    // /fake/cleanup answers success whether or not it had the queue.
    let r = form(
        b.addr,
        "POST",
        "x",
        &format!("/fake/cleanup?{body}&user_id=7"),
        "",
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
}

#[test]
fn routing_config_conflicts_with_user_split_and_must_load() {
    let run = |args: &[&str]| {
        std::process::Command::new(kansas_testkit::harness::bins::fake_tornado())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--routing-config",
        "/nonexistent.toml",
        "--user-split",
        "1,2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["--routing-config", "/nonexistent/kansas.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kansas.toml"));
}
