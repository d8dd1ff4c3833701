//! Whose fault a failure is (issue 15, items 3, 4, 6, 7): a shard that is up but answers
//! malformed bytes gets a `502` for that request, never a "shard down" with parking and replays;
//! a client whose own body fails is a client error, never counted against the shard; kansas out
//! of file descriptors is kansas's own `503`, with the shard left up and few log lines.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kansas_testkit::harness::client::{get, send};
use kansas_testkit::harness::kansas::{shard, Kansas};
use kansas_testkit::harness::metrics::{scrape, value};
use kansas_testkit::harness::raw_shard::RawShard;
use kansas_testkit::harness::upstream::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn errors(kind: &str) -> String {
    format!("kansas_errors_total{{kind=\"{kind}\"}}")
}

/// Waits (up to 10 s) until the error kind has been counted `want` times; returns the metrics.
async fn wait_error(admin: SocketAddr, kind: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(admin).await;
        if value(&m, &errors(kind)) >= want || Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Parking on (a GET would wait for a down shard and be replayed), with a short deadline so a
/// regression shows as the deadline's own answer instead of a hang.
fn parking_config(addr: SocketAddr) -> String {
    format!(
        "[parking]\ntimeout_secs = 2\nprobe_interval_secs = 0.1\n{}",
        shard("s", addr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_shard_answers_are_502_and_never_mark_the_shard_down() {
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_head = format!("X-Big: {}\r\n", "a".repeat(1024 * 1024));
    let answers = [
        (
            "two Content-Lengths",
            "Content-Length: 2\r\nContent-Length: 3\r\n".to_string(),
        ),
        ("too many headers", many_headers),
        ("a 1 MB head", huge_head),
        ("garbage", String::new()),
    ];
    for (what, headers) in answers {
        let raw = if headers.is_empty() {
            b"\x16\x03\x01 this is not HTTP at all\r\n\r\n".to_vec()
        } else {
            format!("HTTP/1.1 200 OK\r\n{headers}\r\n{{}}").into_bytes()
        };
        let shard = RawShard::start(raw).await;
        let k = Kansas::start(&parking_config(shard.addr));
        let r = get(k.proxy, "r.example.com", "/json/events?queue_id=q1", &[]).await;
        assert_eq!(r.status, 502, "{what}: {:?}", r.json());
        assert_eq!(r.json()["code"], "UPSTREAM_ERROR", "{what}");
        let post = "POST /json/messages HTTP/1.1\r\nHost: r.example.com\r\n\
                    Content-Length: 2\r\nConnection: close\r\n\r\n{}";
        assert_eq!(send(k.proxy, post.as_bytes()).await.status, 502, "{what}");
        assert_eq!(shard.requests(), 2, "{what}: one try each, no replay");
        let m = scrape(k.admin).await;
        assert_eq!(value(&m, &errors("bad_shard_response")), 2.0, "{what}: {m}");
        assert_eq!(value(&m, &errors("closed_before_head")), 0.0, "{what}: {m}");
        let down = "kansas_shard_down_transitions_total{shard=\"s\"}";
        assert_eq!(value(&m, down), 0.0, "{what}: the shard is up: {m}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_transfer_encoding_from_a_shard_is_502() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
                a\r\n0123456789\r\n0\r\n\r\n"
        .to_vec();
    let shard = RawShard::start(raw).await;
    let k = Kansas::start(&parking_config(shard.addr));
    for path in ["/json/events?queue_id=q1", "/json/users"] {
        let r = get(k.proxy, "r.example.com", path, &[]).await;
        assert_eq!(
            r.status,
            502,
            "{path}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let m = scrape(k.admin).await;
    assert_eq!(value(&m, &errors("bad_shard_response")), 2.0, "{m}");
    let down = "kansas_shard_down_transitions_total{shard=\"s\"}";
    assert_eq!(value(&m, down), 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_chunk_from_the_client_is_400_and_not_the_shards_fault() {
    let up = Upstream::start("s").await;
    let k = Kansas::start(&parking_config(up.addr));
    let req = "POST /json/messages HTTP/1.1\r\nHost: r.example.com\r\n\
               Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
               4\r\nabcd\r\nzz\r\nnot a chunk\r\n0\r\n\r\n";
    let r = send(k.proxy, req.as_bytes()).await;
    assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(&r.body));
    let m = wait_error(k.admin, "bad_request_body", 1.0).await;
    assert_eq!(value(&m, &errors("bad_request_body")), 1.0, "{m}");
    assert_eq!(value(&m, &errors("closed_before_head")), 0.0, "{m}");
    assert_eq!(
        value(&m, "kansas_requests_total{shard=\"s\",class=\"5xx\"}"),
        0.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_after_100_continue_is_not_the_shards_fault() {
    let up = Upstream::start("s").await;
    let k = Kansas::start(&parking_config(up.addr));
    let mut c = TcpStream::connect(k.proxy).await.unwrap();
    let head = "POST /json/messages HTTP/1.1\r\nHost: r.example.com\r\n\
                Expect: 100-continue\r\nContent-Length: 100\r\n\r\n";
    c.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).await.unwrap();
    let got = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(got.starts_with("HTTP/1.1 100 Continue"), "{got}");
    c.write_all(b"only ten b").await.unwrap();
    drop(c);
    let m = wait_error(k.admin, "client_closed", 1.0).await;
    assert_eq!(value(&m, &errors("client_closed")), 1.0, "{m}");
    assert_eq!(value(&m, &errors("closed_before_head")), 0.0, "{m}");
    assert_eq!(
        value(&m, "kansas_requests_total{shard=\"s\",class=\"5xx\"}"),
        0.0,
        "{m}"
    );
}

/// Sends one request on a keep-alive connection and reads its answer (a Content-Length body).
async fn exchange(
    c: &mut TcpStream,
    host: &str,
    path: &str,
) -> kansas_testkit::harness::client::Resp {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = kansas_testkit::harness::client::parse(&buf) {
            let len: usize = r.header("content-length").map_or(0, |l| l.parse().unwrap());
            if r.body.len() >= len {
                return r;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_descriptors_is_kansas_own_503_and_is_logged_rarely() {
    // Under 262 descriptors the worker accepts 3 client connections; its idle pooled
    // connections to 300 shards (one each, kept for reuse) use up the rest, as idle connections
    // to many shards can in production.
    const SHARDS: usize = 300;
    let mut ups = Vec::new();
    let mut body = "[proxy]\nlisten = \"127.0.0.1:0\"\nthreads = 1\n\
                    [admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n\
                    [parking]\ntimeout_secs = 2\n"
        .to_string();
    for i in 0..SHARDS {
        let up = Upstream::start(&format!("s{i}")).await;
        body.push_str(&shard(&up.name, up.addr));
        ups.push(up);
    }
    body.push_str("[assignments]\n");
    for i in 0..SHARDS {
        body.push_str(&format!("\"r{i}.example.com\" = \"s{i}\"\n"));
    }
    let k = Kansas::start_raw_with_fd_limit(262, &body);
    let mut first = TcpStream::connect(k.proxy).await.unwrap();
    let mut next = 0;
    let out_at = loop {
        assert!(next < SHARDS, "descriptors never ran out");
        let r = exchange(&mut first, &format!("r{next}.example.com"), "/json/users").await;
        next += 1;
        if r.status != 200 {
            assert_eq!(
                (r.status, r.json()["code"].clone()),
                (503, "OVERLOADED".into())
            );
            assert!(r.header("retry-after").is_some());
            break next - 1;
        }
    };
    // Twenty more shards kansas cannot reach for want of descriptors: each a 503, one log line.
    for i in next..next + 20 {
        let r = exchange(&mut first, &format!("r{i}.example.com"), "/json/users").await;
        assert_eq!(r.status, 503, "r{i}");
    }
    // A shard already connected still serves.
    let r = exchange(&mut first, "r0.example.com", "/json/users").await;
    assert_eq!(r.status, 200);
    // A new client cannot be accepted while no descriptor is free: the accept loop pauses and
    // logs rarely, however long it lasts.
    let mut second = TcpStream::connect(k.proxy).await.unwrap();
    second
        .write_all(b"GET /json/users HTTP/1.1\r\nHost: r1.example.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let accept_failed = |l: &serde_json::Value| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("accept failed"))
    };
    k.wait_log(Duration::from_secs(10), accept_failed)
        .expect("the accept loop reports the shortage");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(first);
    let mut rest = Vec::new();
    second.read_to_end(&mut rest).await.unwrap();
    let r =
        kansas_testkit::harness::client::parse(&rest).expect("an answer once a descriptor is free");
    assert_eq!(r.status, 200, "accepted once a connection closed");

    let m = scrape(k.admin).await;
    assert_eq!(value(&m, &errors("out_of_fds")), 21.0, "{m}");
    for bad in [
        "connect_error",
        "connect_refused",
        "closed_before_head",
        "park_timeout",
    ] {
        assert_eq!(value(&m, &errors(bad)), 0.0, "{bad}: {m}");
    }
    let downs: f64 = (0..SHARDS)
        .map(|i| {
            value(
                &m,
                &format!("kansas_shard_down_transitions_total{{shard=\"s{i}\"}}"),
            )
        })
        .sum();
    assert_eq!(
        downs, 0.0,
        "no shard marked down (ran out at r{out_at}): {m}"
    );
    let logs = k.logs();
    let connect_lines = logs
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("kansas is out of file descriptors"))
        })
        .count();
    assert_eq!(connect_lines, 1, "21 failed connects, one line");
    let accept_lines = logs.iter().filter(|l| accept_failed(l)).count();
    assert!(accept_lines <= 2, "{accept_lines} accept-failure lines");
}
