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
