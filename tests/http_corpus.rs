//! The HTTP/1 conformance corpus (`tests/data/http/`, format in `docs/http.md`): every case
//! runs through `kansas::h1` and its outcome (the bytes the shard or client gets, the answer,
//! how the connection ends) must equal the case's expectation. `KANSAS_CORPUS_SHOW=1` prints
//! each case's actual outcome (to write a new case; review it before keeping it).

use std::path::Path;

use kansas_testkit::h1_corpus::{load, outcome};

/// The corpus must cover at least this many cases (issue 13).
const MIN_CASES: usize = 150;

#[test]
fn every_corpus_case_gives_its_expected_outcome() {
    let cases = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/http"));
    assert!(cases.len() >= MIN_CASES, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    let show = std::env::var_os("KANSAS_CORPUS_SHOW").is_some();
    let mut failed = Vec::new();
    for case in &cases {
        assert!(
            names.insert(case.name.clone()),
            "duplicate case name {}",
            case.name
        );
        let got = outcome(case);
        if show {
            println!("=== {}\n{got}\n", case.name);
        }
        if got != case.expect {
            failed.push(format!(
                "case {}:\n--- expected\n{}\n--- got\n{got}",
                case.name, case.expect
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n\n")
    );
}

/// The corpus's refusals on the live engine: every request case refused before anything was
/// forwarded (at the configuration's limits) is sent to a running kansas, which must answer it
/// with the corpus's status and never open a connection to the shard, let alone send it a byte.
/// Run on the kansas engine whatever `KANSAS_TEST_ENGINE` says (hyper accepts some of these:
/// `tests/data/http/differences.txt`).
#[tokio::test]
async fn refused_cases_are_refused_by_the_live_engine_and_never_reach_the_shard() {
    use kansas_testkit::harness::kansas::{shard, Kansas};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shard_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    shard_listener.set_nonblocking(true).unwrap();
    let k = Kansas::start_env(
        &shard("s0", shard_listener.local_addr().unwrap()),
        &[("KANSAS_TEST_ENGINE", "kansas")],
    );
    let cases = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/http"));
    let refused: Vec<_> = cases
        .iter()
        .filter(|c| c.direction == kansas_testkit::h1_corpus::Direction::Request)
        .filter(|c| c.limits == kansas::h1::Limits::default())
        .filter(|c| c.expect.starts_with("@answer "))
        .collect();
    assert!(refused.len() >= 50, "only {} refused cases", refused.len());
    let mut failed = Vec::new();
    for case in &refused {
        let want: u16 = case.expect["@answer ".len()..][..3].parse().unwrap();
        let mut s = tokio::net::TcpStream::connect(k.proxy).await.unwrap();
        let _ = s.write_all(&case.input).await;
        let _ = s.shutdown().await;
        let mut got = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut got));
        let _ = read.await;
        let status = kansas_testkit::harness::client::parse(&got).map(|r| r.status);
        if status != Some(want) {
            failed.push(format!("{}: want {want}, got {status:?}", case.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} cases:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(
        shard_listener.accept().is_err(),
        "a refused request reached the shard"
    );
}
