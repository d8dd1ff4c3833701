//! The routing proxy end to end: a real `kansas` process in front of real upstream servers on
//! loopback. Routing by assignment, rule and hash; header rules; request ids; error answers;
//! limits; header-read timeout; streaming; graceful stop.

use std::time::Duration;

use kansas_testkit::harness::client::{get, send};
use kansas_testkit::harness::kansas::{config_text, shard, Kansas};
use kansas_testkit::harness::metrics::scrape;
use kansas_testkit::harness::upstream::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Three upstreams a, b, c; `pinned.example.com` assigned to c, `*.eu.example.com` ruled to b.
async fn three() -> (Vec<Upstream>, String) {
    let ups = vec![
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let mut body: String = ups.iter().map(|u| shard(&u.name, u.addr)).collect();
    body.push_str(
        "[assignments]\n\"Pinned.Example.com\" = \"c\"\n\
         [[rules]]\npattern = '[a-z0-9-]+\\.eu\\.example\\.com'\nshard = \"b\"\n",
    );
    (ups, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_assignment_rule_then_hash() {
    let (ups, body) = three().await;
    let k = Kansas::start(&body);
    let expected = kansas::config::parse(&config_text(&body)).unwrap().routing;

    let r = get(k.proxy, "pinned.example.com:443", "/json/events", &[]).await;
    assert_eq!(
        r.json()["shard"],
        "c",
        "assignment (host with port, mixed case in config)"
    );
    let r = get(k.proxy, "PINNED.example.com.", "/json/events", &[]).await;
    assert_eq!(
        r.json()["shard"],
        "c",
        "assignment (upper case, trailing dot)"
    );
    let r = get(k.proxy, "chat.EU.example.com", "/api/v1/events", &[]).await;
    assert_eq!(r.json()["shard"], "b", "regex rule, case-insensitive");

    let mut seen = std::collections::BTreeSet::new();
    for i in 0..60 {
        let host = format!("realm{i}.example.org");
        let want = expected.shard(expected.hash(&host).unwrap()).name.clone();
        let r = get(k.proxy, &host, "/json/events?dont_block=true", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["shard"], want.as_str(), "hashed realm {host}");
        seen.insert(want);
    }
    assert_eq!(seen.len(), 3, "60 hashed realms reach every shard");
    drop(ups);
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_are_rewritten_both_ways() {
    let (_ups, body) = three().await;
    let k = Kansas::start(&body);
    let r = get(
        k.proxy,
        "pinned.example.com",
        "/json/events?queue_id=abc&last_event_id=4",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Request-Id", "req-from-nginx-1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic c2VjcmV0"),
            ("TE", "trailers"),
            ("Connection", "close, X-Client-Private"),
            ("X-Client-Private", "do-not-forward"),
            ("Cookie", "sessionid=1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let echo = r.json();
    let h = &echo["headers"];
    assert_eq!(echo["path"], "/json/events");
    assert_eq!(echo["query"], "queue_id=abc&last_event_id=4");
    assert_eq!(h["host"], "pinned.example.com", "Host preserved");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-request-id"], "req-from-nginx-1");
    assert_eq!(h["cookie"], "sessionid=1");
    for gone in [
        "keep-alive",
        "proxy-authorization",
        "te",
        "x-client-private",
    ] {
        assert!(
            h.get(gone).is_none(),
            "{gone} must not reach the shard: {h}"
        );
    }
    assert!(
        h["connection"]
            .as_str()
            .is_none_or(|c| !c.contains("x-client-private")),
        "client's Connection header is not forwarded"
    );
    // Response: upstream's hop-by-hop headers removed, the rest kept, request id returned.
    assert_eq!(r.header("x-upstream-public"), Some("visible"));
    assert_eq!(r.header("x-upstream-private"), None);
    assert_eq!(r.header("keep-alive"), None);
    assert_eq!(r.header("x-request-id"), Some("req-from-nginx-1"));
    // The request id is logged with the request.
    let line = k
        .wait_log(Duration::from_secs(5), |v| {
            v["request_id"] == "req-from-nginx-1"
        })
        .expect("access log line with the request id");
    assert_eq!(line["realm"], "pinned.example.com");
    assert_eq!(line["shard"], "c");
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/json/events");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_id_is_generated_when_absent() {
    let (_ups, body) = three().await;
    let k = Kansas::start(&body);
    let a = get(k.proxy, "pinned.example.com", "/json/events", &[]).await;
    let b = get(k.proxy, "pinned.example.com", "/json/events", &[]).await;
    let (ida, idb) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert_eq!(ida.len(), 32);
    assert_ne!(ida, idb);
    assert_eq!(
        a.json()["headers"]["x-request-id"],
        ida,
        "sent upstream too"
    );
    assert!(k
        .wait_log(Duration::from_secs(5), |v| v["request_id"] == ida)
        .is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_or_missing_host_is_400_and_not_forwarded() {
    let (ups, body) = three().await;
    let k = Kansas::start(&body);
    for host in ["bad host", "a..b", "x.example.com:http", "-"] {
        let r = get(k.proxy, host, "/json/events", &[]).await;
        assert_eq!(r.status, 400, "{host}");
        assert_eq!(r.json()["result"], "error");
        assert!(r.json()["msg"].is_string());
    }
    let r = send(k.proxy, b"GET /json/events HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 400, "missing Host");
    assert_eq!(r.json()["result"], "error");
    assert_eq!(ups.iter().map(|u| u.requests()).sum::<usize>(), 0);
}

/// The shard always gets exactly the Host kansas routed on: Host named in `Connection` is not
/// stripped, an absolute-form target's authority becomes the Host (not the shard's address),
/// and two Host headers are refused with 400, never forwarded.
#[tokio::test(flavor = "multi_thread")]
async fn the_shard_gets_exactly_the_host_kansas_routed_on() {
    let (ups, body) = three().await;
    let k = Kansas::start(&body);
    let host_named_hop_by_hop = "GET /json/events HTTP/1.1\r\nHost: pinned.example.com\r\n\
         Connection: close, Host\r\n\r\n";
    let absolute_form_without_host =
        "GET http://pinned.example.com/json/events HTTP/1.1\r\nConnection: close\r\n\r\n";
    for raw in [host_named_hop_by_hop, absolute_form_without_host] {
        let r = send(k.proxy, raw.as_bytes()).await;
        assert_eq!(r.status, 200, "{raw}");
        assert_eq!(r.json()["headers"]["host"], "pinned.example.com", "{raw}");
        assert_eq!(r.json()["shard"], "c", "routed on it: {raw}");
    }
    let before: usize = ups.iter().map(|u| u.requests()).sum();
    let two_hosts = "GET /json/events HTTP/1.1\r\nHost: pinned.example.com\r\n\
         Host: other.example.com\r\nConnection: close\r\n\r\n";
    let r = send(k.proxy, two_hosts.as_bytes()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "BAD_HOST");
    assert_eq!(ups.iter().map(|u| u.requests()).sum::<usize>(), before);
}

/// Only Zulip-shaped queue ids (UUIDs, `generation:counter`; at most 64 characters) are
/// learned from a shard's answers: a client cannot fill the queue map with arbitrary bytes.
#[tokio::test(flavor = "multi_thread")]
async fn only_zulip_shaped_queue_ids_are_learned() {
    let (_ups, body) = three().await;
    let k = Kansas::start(&body);
    let long = "q".repeat(1000);
    for q in [
        long.as_str(),
        "a%20b",
        "1f0e8a3c-5b1e-4b9e-9c3a-2f6d7e8a9b0c",
    ] {
        let path = format!("/json/events?queue_id={q}&last_event_id=-1");
        let r = get(k.proxy, "r.example.com", &path, &[]).await;
        assert_eq!(r.status, 200, "the shard answered");
    }
    let m = scrape(k.admin).await;
    assert!(m.contains("\nkansas_queues 1\n"), "only the UUID: {m}");
}

/// `CONNECT` (a tunnel) and `TRACE` are never forwarded: `405` with `Allow`.
#[tokio::test(flavor = "multi_thread")]
async fn connect_and_trace_are_405_and_not_forwarded() {
    let (ups, body) = three().await;
    let k = Kansas::start(&body);
    for raw in [
        "CONNECT a.example.com:443 HTTP/1.1\r\nHost: a.example.com:443\r\nConnection: close\r\n\r\n",
        "TRACE /json/events HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    ] {
        let r = send(k.proxy, raw.as_bytes()).await;
        assert_eq!(r.status, 405, "{raw}");
        assert_eq!(r.json()["code"], "METHOD_NOT_ALLOWED", "{raw}");
        assert!(r.header("allow").is_some_and(|a| a.contains("GET")), "{raw}");
    }
    assert_eq!(ups.iter().map(|u| u.requests()).sum::<usize>(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_shard_is_502_json() {
    // Reserve a port, then free it: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // With parking off every method gets 502 at once; with parking on (tests/parking.rs) a
    // GET waits for the shard instead, and only other methods get 502.
    let k = Kansas::start(&format!(
        "[parking]\nenabled = false\n{}",
        shard("dead", dead)
    ));
    for method in ["GET", "DELETE"] {
        let req = format!(
            "{method} /json/events?queue_id=q HTTP/1.1\r\nHost: r.example.com\r\nConnection: close\r\n\r\n"
        );
        let r = send(k.proxy, req.as_bytes()).await;
        assert_eq!(r.status, 502, "{method}");
        assert_eq!(r.json()["result"], "error");
    }
    let metrics = scrape(k.admin).await;
    assert!(
        metrics.contains("kansas_errors_total{kind=\"connect_refused\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_is_504() {
    let up = Upstream::start("slow").await;
    let body = format!(
        "[timeouts]\nupstream_response_secs = 0.3\n{}",
        shard("slow", up.addr)
    );
    let k = Kansas::start(&body);
    let r = get(k.proxy, "r.example.com", "/slow?ms=3000", &[]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["result"], "error");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_body_is_413_and_oversized_head_is_431() {
    let up = Upstream::start("a").await;
    let body = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 1000\nmax_header_bytes = 8192\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n{}",
        shard("a", up.addr)
    );
    let k = Kansas::start_raw(&body);
    let small = "x".repeat(1000);
    let req = format!(
        "POST /api/v1/events/internal HTTP/1.1\r\nHost: r.example.com\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{small}"
    );
    let r = send(k.proxy, req.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 1000);

    let big = "x".repeat(1001);
    let req = format!(
        "POST /api/v1/events/internal HTTP/1.1\r\nHost: r.example.com\r\nContent-Length: 1001\r\nConnection: close\r\n\r\n{big}"
    );
    let r = send(k.proxy, req.as_bytes()).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["result"], "error");

    // Chunked: the limit is enforced while streaming.
    let chunk = "x".repeat(800);
    let req = format!(
        "POST /api/v1/events/internal HTTP/1.1\r\nHost: r.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let r = send(k.proxy, req.as_bytes()).await;
    assert_eq!(r.status, 413);

    let long = "y".repeat(9000);
    let req = format!(
        "GET /json/events HTTP/1.1\r\nHost: r.example.com\r\nX-Long: {long}\r\nConnection: close\r\n\r\n"
    );
    let r = send(k.proxy, req.as_bytes()).await;
    assert_eq!(r.status, 431);
    // The chunked request's head was streamed before its body crossed the limit; its body
    // never reached the shard whole.
    assert_eq!(
        up.complete_bodies(),
        1,
        "only the small body reached the shard"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_stalling_its_head_is_cut_off() {
    let up = Upstream::start("a").await;
    let body = format!(
        "[timeouts]\nclient_header_secs = 0.5\n{}",
        shard("a", up.addr)
    );
    let k = Kansas::start(&body);
    let mut s = TcpStream::connect(k.proxy).await.unwrap();
    s.write_all(b"GET /json/events HTTP/1.1\r\nHost: r.exa")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    let read = read.expect("kansas closes a stalled connection");
    // Closed: EOF (possibly after a 408 answer) or a reset.
    if let Ok(n) = read {
        assert!(
            n == 0 || buf.starts_with(b"HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&buf)
        );
    }
    assert_eq!(up.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_answer_reaches_client_before_upstream_finishes() {
    let up = Upstream::start("a").await;
    let k = Kansas::start(&shard("a", up.addr));
    let mut s = TcpStream::connect(k.proxy).await.unwrap();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: r.example.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // The first chunk arrives while the upstream is still holding the second one back.
    while !String::from_utf8_lossy(&buf).contains("first") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk))
            .await
            .expect("first chunk is streamed through")
            .unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(!String::from_utf8_lossy(&buf).contains("second"));
    up.release();
    s.read_to_end(&mut buf).await.unwrap();
    let r = kansas_testkit::harness::client::parse(&buf).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"first\nsecond\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_request_completes_across_sigterm() {
    let up = Upstream::start("a").await;
    let mut k = Kansas::start(&shard("a", up.addr));
    let proxy = k.proxy;
    let slow = tokio::spawn(async move { get(proxy, "r.example.com", "/slow?ms=1500", &[]).await });
    // Wait until the upstream has the request, then ask kansas to stop.
    for _ in 0..500 {
        if up.requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(up.requests(), 1);
    k.signal(15);
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "in-flight request finished");
    let status = tokio::task::block_in_place(|| k.wait_exit(Duration::from_secs(20)))
        .expect("kansas exits after draining");
    assert_eq!(status.code(), Some(0));
    assert!(TcpStream::connect(proxy).await.is_err(), "listener closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_health_on_admin_listener() {
    let (_ups, body) = three().await;
    let k = Kansas::start(&body);
    get(k.proxy, "pinned.example.com", "/json/events", &[]).await;
    get(k.proxy, "bad host", "/json/events", &[]).await;
    let m = scrape(k.admin).await;
    assert!(
        m.contains("kansas_requests_total{shard=\"c\",class=\"2xx\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("kansas_requests_total{shard=\"\",class=\"4xx\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("kansas_request_duration_seconds_count{shard=\"c\"} 1"),
        "{m}"
    );
    assert!(m.contains("kansas_in_flight_requests"), "{m}");
    assert!(
        m.contains("kansas_errors_total{kind=\"invalid_host\"} 1"),
        "{m}"
    );
    let r = get(k.admin, "localhost", "/healthz", &[]).await;
    assert_eq!((r.status, r.body.as_slice()), (200, b"ok\n".as_slice()));
    // Metrics are not served on the proxy listener.
    let r = get(k.proxy, "pinned.example.com", "/metrics", &[]).await;
    assert_eq!(r.json()["shard"], "c");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_serving_thread_count_serves_and_logs_every_request_through_a_stop() {
    let up = Upstream::start("a").await;
    for threads in [1, 3] {
        let body = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nthreads = {threads}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n{}",
            shard("a", up.addr)
        );
        let mut k = Kansas::start_raw(&body);
        let proxy = k.proxy;
        // 40 clients at once, 10 requests each, each with its own request id.
        let clients: Vec<_> = (0..40)
            .map(|c| {
                tokio::spawn(async move {
                    for i in 0..10 {
                        let id = format!("t{threads}-c{c}-r{i}");
                        let r = get(
                            proxy,
                            "r.example.com",
                            "/json/events",
                            &[("X-Request-Id", &id)],
                        )
                        .await;
                        assert_eq!(r.status, 200, "{id}");
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        // A slow request is in flight when the stop comes: the drain lets it finish, and its
        // access line, written just before the worker exits, still reaches the log.
        let last = format!("t{threads}-last");
        let slow = tokio::spawn(async move {
            get(
                proxy,
                "r.example.com",
                "/slow?ms=600",
                &[("X-Request-Id", &last)],
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        k.signal(15);
        assert_eq!(slow.await.unwrap().status, 200);
        let status = k.wait_exit(Duration::from_secs(30)).expect("kansas exits");
        assert!(status.success(), "{status:?}");
        let ids: std::collections::HashSet<String> = k
            .logs()
            .iter()
            .filter(|v| v["target"] == "kansas::access")
            .filter_map(|v| v["request_id"].as_str().map(str::to_string))
            .collect();
        for c in 0..40 {
            for i in 0..10 {
                let id = format!("t{threads}-c{c}-r{i}");
                assert!(ids.contains(&id), "no access line for {id}");
            }
        }
        assert!(
            ids.contains(&format!("t{threads}-last")),
            "no access line for the last request"
        );
    }
}
