//! The exposition, compared with the one dashboards and tests were written against
//! (`exposition.txt`). A deliberate change of a metric rewrites it with
//! `KANSAS_WRITE_EXPOSITION=1 cargo test --lib metrics` (run twice: the file is compiled in);
//! review the diff as operators will see it.

use std::collections::HashMap;

use super::*;
use crate::routing::Shard;

/// The exposition with each metric's sample lines sorted (label sets come out of a hash
/// map in no fixed order); the `# HELP`/`# TYPE` lines keep their registration order.
fn normalized(text: &str) -> String {
    let mut out = Vec::new();
    let mut samples: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            samples.sort_unstable();
            out.append(&mut samples);
            out.push(line);
        } else {
            samples.push(line);
        }
    }
    samples.sort_unstable();
    out.append(&mut samples);
    out.join("\n") + "\n"
}

#[test]
fn every_name_label_and_help_text_is_unchanged() {
    let shard = |name: &str, port: u16| Shard {
        name: name.into(),
        address: format!("127.0.0.1:{port}"),
        port,
        weight: 1.0,
    };
    let snapshot = Snapshot::new(
        vec![shard("a", 9800), shard("b", 9801)],
        HashMap::new(),
        vec![],
    )
    .unwrap();
    let metrics = Metrics::new(&snapshot);
    metrics.error(ProxyError::ParkTimeout);
    metrics.shard(1).observe(200, 0.02);
    metrics.unrouted(400);
    metrics.park(0).parked.inc();
    metrics.queues.reload_moves.inc();
    let rendered = normalized(&metrics.render());
    if std::env::var_os("KANSAS_WRITE_EXPOSITION").is_some() {
        std::fs::write("src/metrics/exposition.txt", &rendered).unwrap();
    }
    // Dashboards and tests read these names: a change here is a change for operators.
    assert_eq!(rendered, include_str!("exposition.txt"));
}
