//! A shard's response head, through a real kansas: a raw TCP "shard" answers every request
//! with a mutated HTTP response (garbage, duplicate or huge lengths, both framings, bad chunks,
//! many or huge headers, redirects), one case per request. kansas must never panic (nothing on
//! its stderr, its worker never restarted), every client request gets an HTTP answer or a clean
//! close, and afterwards a healthy shard, and this one once it answers properly, still serve.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mutate::{apply, edits, Edit};
use kansas_testkit::harness::client::get;
use kansas_testkit::harness::kansas::{shard, Kansas};
use kansas_testkit::harness::raw_shard::RawShard;
use kansas_testkit::harness::upstream::Upstream;

const FUZZ_REALM: &str = "fuzz.example.com";
const OK_REALM: &str = "ok.example.com";
const QUEUE: &str = "1f0e8a3c-5b1e-4b9e-9c3a-2f6d7e8a9b0c";
/// In every answer this shard means to give, so a test can tell it from kansas's own.
const MARK: &str = "from-the-fuzzed-shard";

/// Valid answers a Tornado shard gives (or could): the mutations start from these.
fn seeds(ok_port: u16) -> Vec<Vec<u8>> {
    let json = format!(
        "{{\"result\":\"success\",\"msg\":\"{MARK}\",\"events\":[],\"queue_id\":\"{QUEUE}\"}}"
    );
    let bad =
        "{\"result\":\"error\",\"msg\":\"Bad event queue id\",\"code\":\"BAD_EVENT_QUEUE_ID\"}";
    vec![
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        ),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{json}\r\n0\r\n\r\n",
            json.len()
        ),
        format!("HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{bad}", bad.len()),
        format!("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n{json}"),
        "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n".to_string(),
        format!(
            "HTTP/1.1 200 OK\r\nX-Accel-Redirect: /internal/tornado/{ok_port}/json/events?queue_id={QUEUE}\r\nContent-Length: 0\r\n\r\n"
        ),
        "HTTP/1.1 200 OK\r\nX-Accel-Redirect: /internal/tornado/1/x\r\nContent-Length: 0\r\n\r\n"
            .to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// What a fuzzer splices into a response head.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b": ",
    b"\0",
    b"\xff\xfe",
    b"\r\n folded",
    b"Content-Length: 18446744073709551616\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 99999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"ffffffffffffffffff\r\n",
    b"0\r\n\r\n",
    b"HTTP/1.1 ",
    b"HTTP/1.0 200 OK\r\n",
    b"HTTP/2.0 200 OK\r\n",
    b" 999 ",
    b" 1000 ",
    b" 101 Switching Protocols",
    b" 100 Continue\r\n\r\n",
    b"Connection: close, content-length\r\n",
    b"Upgrade: websocket\r\n",
    b"X-Accel-Redirect: /internal/tornado/0/\r\n",
    b"X-Accel-Redirect: http://evil.example.com/\r\n",
    b"Location: //evil\r\n",
];

/// One case: a seed, byte edits, and headers to add (many small, or one huge).
#[derive(Debug, Clone)]
struct Case {
    seed: usize,
    edits: Vec<Edit>,
    many_headers: usize,
    huge_header: usize,
    method: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<usize>(),
        edits(6),
        prop_oneof![6 => Just(0usize), 1 => 1..400usize],
        prop_oneof![8 => Just(0usize), 1 => Just(70_000usize), 1 => Just(1_100_000usize)],
        0..3usize,
    )
        .prop_map(|(seed, edits, many_headers, huge_header, method)| Case {
            seed,
            edits,
            many_headers,
            huge_header,
            method,
        })
}

impl Case {
    fn answer(&self, seeds: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = seeds[self.seed % seeds.len()].clone();
        let head_end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes.len(), |p| p + 2);
        let mut extra = Vec::new();
        for i in 0..self.many_headers {
            extra.extend_from_slice(format!("X-Junk-{i}: {i}\r\n").as_bytes());
        }
        if self.huge_header > 0 {
            extra.extend_from_slice(b"X-Huge: ");
            extra.resize(extra.len() + self.huge_header, b'a');
            extra.extend_from_slice(b"\r\n");
        }
        bytes.splice(head_end..head_end, extra);
        apply(bytes, &self.edits, TOKENS)
    }

    fn request(&self) -> String {
        request(self.method)
    }
}

/// The client's request of kind `method` (0: poll, 1: registration, 2: DELETE).
fn request(method: usize) -> String {
    let target = match method {
        0 => format!("GET /json/events?queue_id={QUEUE}&last_event_id=-1"),
        1 => "GET /json/events?dont_block=true&event_types=%5B%5D".to_string(),
        _ => format!("DELETE /json/events?queue_id={QUEUE}"),
    };
    format!(
        "{target} HTTP/1.1\r\nHost: {FUZZ_REALM}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// Sends `request` and reads to the end: an HTTP answer (a complete head), or a clean close.
async fn exchange(proxy: SocketAddr, request: &str) -> Result<Option<u16>, String> {
    let mut s = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    match read {
        Err(_) => return Err("no answer and no close within 30 s".into()),
        Ok(Err(e)) if buf.is_empty() => return Err(format!("reset without an answer: {e}")),
        Ok(_) => {}
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&buf) {
        Ok(httparse::Status::Complete(_)) => Ok(resp.code),
        _ => Err(format!(
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&buf)
        )),
    }
}

fn stderr_text(path: &std::path::Path) -> String {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .unwrap();
    text
}

#[test]
fn mutated_shard_answers_never_break_kansas() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fuzzed = rt.block_on(RawShard::start(Vec::new()));
    let healthy = rt.block_on(Upstream::start("s1"));
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr");
    let k = Kansas::start_stderr_to(
        &format!(
            "{}{}[assignments]\n\"{FUZZ_REALM}\" = \"s0\"\n\"{OK_REALM}\" = \"s1\"\n\
             [parking]\ntimeout_secs = 0.5\nprobe_interval_secs = 0.05\n\
             [timeouts]\nupstream_response_secs = 5\n",
            shard("s0", fuzzed.addr),
            shard("s1", healthy.addr),
        ),
        std::fs::File::create(&stderr_path).unwrap(),
    );
    let seeds = seeds(healthy.addr.port());
    let mut runner = TestRunner::new(crate::cases(24).clone_with_source_file(file!()));
    let (answered, closed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = runner.run(&case(), |case| {
        fuzzed.set_answer(case.answer(&seeds));
        let before = stderr_text(&stderr_path).len();
        let got = rt.block_on(exchange(k.proxy, &case.request()));
        let stderr = stderr_text(&stderr_path);
        let new = &stderr[before..];
        prop_assert!(!new.contains("panicked"), "kansas panicked:\n{new}");
        match got {
            Ok(Some(_)) => answered.fetch_add(1, Ordering::Relaxed),
            Ok(None) => closed.fetch_add(1, Ordering::Relaxed),
            Err(e) => return Err(TestCaseError::fail(e)),
        };
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} answered, {} closed cleanly, {} requests reached the fuzzed shard",
        answered.load(Ordering::Relaxed),
        closed.load(Ordering::Relaxed),
        fuzzed.requests()
    );
    rt.block_on(async {
        // The other shard's realm was never disturbed.
        let r = get(k.proxy, OK_REALM, "/json/events?queue_id=x", &[]).await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["shard"], "s1");
        // The fuzzed shard, once it answers properly, serves again (its own answer, not
        // kansas's empty one at a park deadline).
        fuzzed.set_answer(seeds[0].clone());
        let path = format!("/json/events?queue_id={QUEUE}&last_event_id=-1");
        let mut served = false;
        for _ in 0..20 {
            let r = get(k.proxy, FUZZ_REALM, &path, &[]).await;
            if r.status == 200 && String::from_utf8_lossy(&r.body).contains(MARK) {
                served = true;
                break;
            }
        }
        assert!(served, "the fuzzed shard's realm is not served again");
        let metrics = get(k.admin, "localhost", "/metrics", &[]).await;
        let metrics = String::from_utf8_lossy(&metrics.body).to_string();
        assert!(
            metrics.lines().any(|l| l == "kansas_worker_restarts 0"),
            "the worker was restarted:\n{metrics}"
        );
    });
    let generations: std::collections::BTreeSet<String> = k
        .logs()
        .iter()
        .filter(|l| l["message"] == "worker active")
        .map(|l| l["generation"].to_string())
        .collect();
    assert_eq!(
        generations.len(),
        1,
        "one worker for the whole run: {generations:?}"
    );
    let stderr = stderr_text(&stderr_path);
    assert!(!stderr.contains("panicked"), "kansas panicked:\n{stderr}");
    // Nothing the shard answered ever reached it as (part of) a request: every request line is
    // one a client sent (a GET replayed after an outage-like answer, or followed through an
    // X-Accel-Redirect, keeps its line), or kansas's own clean-up of a known queue its shard
    // redirected away (the reload move: `DELETE` on the poll's path, `queue_id` in a form body).
    let mut sent: Vec<String> = (0..3)
        .map(|method| request(method).lines().next().unwrap().to_string())
        .collect();
    sent.push("DELETE /json/events HTTP/1.1".to_string());
    for line in &fuzzed.request_lines() {
        assert!(
            sent.contains(line),
            "the shard got a request no client sent: {line:?}"
        );
    }
}
