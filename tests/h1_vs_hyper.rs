//! The differential test of issue 13: the same requests through kansas's HTTP/1 core
//! (`kansas::h1`) and through hyper's HTTP/1 server (what the proxy listener runs today) give
//! the same verdicts, or the difference is written down and justified. Every request case of
//! the conformance corpus (`tests/data/http/`) and random valid pipelined requests go through
//! both (`kansas_testkit::h1_diff`); per request in order, both accept (with the same method,
//! origin-form target, Host, end-to-end fields and body) or both refuse. Statuses are not
//! compared (see `docs/http.md`). `tests/data/http/differences.txt` lists each corpus case whose
//! verdicts differ and why; the list must be exact: an unlisted difference fails, and so does a
//! listed case that no longer differs. `KANSAS_DIFF_SHOW=1` prints both engines' verdicts.

use std::collections::BTreeMap;
use std::path::Path;

use kansas::h1::Limits;
use kansas_testkit::h1_corpus::{load, Direction};
use kansas_testkit::h1_diff::{hyper_verdicts, kansas_verdicts, Verdict};
use proptest::prelude::*;

/// A runtime with a paused clock: a connection's run ends when it goes quiet.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Whether two engines' verdicts agree: per request in order, both accepted the same request
/// or both refused (whatever the status).
fn same(kansas: &[Verdict], hyper: &[Verdict]) -> bool {
    kansas.len() == hyper.len()
        && kansas.iter().zip(hyper).all(|pair| match pair {
            (Verdict::Accepted(k), Verdict::Accepted(h)) => k == h,
            (Verdict::Refused(_), Verdict::Refused(_)) => true,
            _ => false,
        })
}

fn show(verdicts: &[Verdict]) -> String {
    if verdicts.is_empty() {
        return "  (no request)".to_string();
    }
    let lines: Vec<_> = verdicts.iter().map(|v| format!("  {v}")).collect();
    lines.join("\n")
}

/// `differences.txt`: `CASE-NAME REASON` per line, `#` comments.
fn differences(text: &str) -> BTreeMap<String, String> {
    let mut listed = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, why) = line.split_once(' ').unwrap_or((line, ""));
        assert!(
            !why.trim().is_empty(),
            "differences.txt: {name} has no reason"
        );
        let again = listed.insert(name.to_string(), why.trim().to_string());
        assert!(again.is_none(), "differences.txt: {name} listed twice");
    }
    listed
}

#[test]
fn corpus_requests_get_the_same_verdicts_or_a_listed_difference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/http");
    let listed = differences(&std::fs::read_to_string(dir.join("differences.txt")).unwrap());
    let show_all = std::env::var_os("KANSAS_DIFF_SHOW").is_some();
    let rt = runtime();
    let (mut unlisted, mut stale, mut names) = (Vec::new(), Vec::new(), Vec::new());
    let cases = load(&dir);
    for case in cases.iter().filter(|c| c.direction == Direction::Request) {
        names.push(case.name.clone());
        let kansas = kansas_verdicts(&case.input, &case.limits);
        let hyper = rt.block_on(hyper_verdicts(&case.input, &case.limits));
        let report = format!(
            "case {}:\n kansas:\n{}\n hyper:\n{}",
            case.name,
            show(&kansas),
            show(&hyper)
        );
        if show_all {
            println!("{report}\n");
        }
        match (same(&kansas, &hyper), listed.contains_key(&case.name)) {
            (false, false) => unlisted.push(report),
            (true, true) => stale.push(report),
            _ => {}
        }
    }
    assert!(names.len() >= 150, "only {} request cases", names.len());
    let unknown: Vec<_> = listed.keys().filter(|n| !names.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "differences.txt lists cases the corpus does not have: {unknown:?}"
    );
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "{} unlisted differences (add each to tests/data/http/differences.txt with why, or fix \
         kansas::h1):\n{}\n\n{} listed cases no longer differ (remove them from \
         differences.txt):\n{}",
        unlisted.len(),
        unlisted.join("\n\n"),
        stale.len(),
        stale.join("\n\n")
    );
}

/// One random valid request: its bytes, and whether the connection stays open after it.
fn request() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let method = prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
    ]);
    let path = prop::collection::vec("[a-zA-Z0-9._~-]{0,8}", 1..4).prop_map(|s| s.join("/"));
    let query = prop::option::of(prop::collection::vec(
        "[a-z_]{1,6}=([a-zA-Z0-9._~-]|%[0-9A-F]{2}){0,10}",
        1..4,
    ));
    let field = (
        "X-[A-Za-z0-9-]{1,12}",
        prop::sample::select(vec![":", ": ", ":\t", ":  "]),
        "[!-~]([ -~]{0,24}[!-~])?",
    );
    let fields = prop::collection::vec(field, 0..6);
    // 0: no body, 1: Content-Length, 2: chunked (HTTP/1.1), in chunks of these sizes.
    let body = (
        0..3u8,
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(1..64usize, 1..6),
    );
    // HTTP/1.1 and 0: no Connection, 1: close, 2: keep-alive; HTTP/1.0 and 0: close, else
    // keep-alive.
    let connection = (any::<bool>(), 0..3u8);
    (method, path, query, fields, body, connection).prop_map(
        |(method, path, query, fields, (kind, data, sizes), (v11, conn))| {
            let mut out = format!("{method} /{path}").into_bytes();
            if let Some(q) = query {
                out.extend(format!("?{}", q.join("&")).bytes());
            }
            out.extend_from_slice(if v11 {
                b" HTTP/1.1\r\n"
            } else {
                b" HTTP/1.0\r\n"
            });
            out.extend_from_slice(b"Host: r.example.com\r\n");
            for (name, colon, value) in fields {
                out.extend(format!("{name}{colon}{value}\r\n").bytes());
            }
            let keep_alive = match (v11, conn) {
                (true, 1) => {
                    out.extend_from_slice(b"Connection: close\r\n");
                    false
                }
                (true, 2) | (false, 1..) => {
                    out.extend_from_slice(b"Connection: keep-alive\r\n");
                    true
                }
                (true, _) => true,
                (false, _) => false,
            };
            let body = match kind {
                2 if v11 => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    let mut rest = data.as_slice();
                    for size in sizes.iter().cycle() {
                        if rest.is_empty() {
                            break;
                        }
                        let (chunk, after) = rest.split_at((*size).min(rest.len()));
                        out.extend(format!("{:x}\r\n", chunk.len()).bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                        rest = after;
                    }
                    b"0\r\n\r\n".to_vec()
                }
                0 => b"\r\n".to_vec(),
                _ => {
                    out.extend(format!("Content-Length: {}\r\n\r\n", data.len()).bytes());
                    data
                }
            };
            out.extend(body);
            (out, keep_alive)
        },
    )
}

/// 128 cases (CI), times `KANSAS_FUZZ_SCALE` when set (as `tests/fuzz/`).
fn cases() -> ProptestConfig {
    let scale = std::env::var("KANSAS_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    ProptestConfig::with_cases(128u32.saturating_mul(scale))
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn random_valid_requests_are_accepted_alike(reqs in prop::collection::vec(request(), 1..4)) {
        let input: Vec<u8> = reqs.iter().flat_map(|(bytes, _)| bytes.clone()).collect();
        // Requests after one that closes the connection are never read.
        let expected = reqs.iter().position(|(_, keep)| !keep).map_or(reqs.len(), |i| i + 1);
        let limits = Limits::default();
        let kansas = kansas_verdicts(&input, &limits);
        let hyper = runtime().block_on(hyper_verdicts(&input, &limits));
        let all_accepted = kansas.len() == expected
            && kansas.iter().all(|v| matches!(v, Verdict::Accepted(_)));
        prop_assert!(
            all_accepted && same(&kansas, &hyper),
            "input {:?}\n kansas:\n{}\n hyper:\n{}",
            String::from_utf8_lossy(&input),
            show(&kansas),
            show(&hyper)
        );
    }
}
