//! `kansas route HOST`: the routing decision for one realm and why, in words an operator can
//! check: the assignment or rule that matched, or every shard's rendezvous score.

use std::fmt::Write;

use crate::routing::{normalize_host, Snapshot, Source};

/// Explains how `host` is routed; `Err` with a message when the host is not a valid realm.
pub fn explain(snapshot: &Snapshot, host: &str) -> Result<String, String> {
    let realm = normalize_host(host).map_err(|e| format!("{host:?}: {e}"))?;
    let mut out = String::new();
    let _ = writeln!(out, "realm:  {realm}");
    let _ = writeln!(out, "routing data: {}", snapshot.origin());
    let Some(decision) = snapshot.route(&realm) else {
        let _ = writeln!(
            out,
            "shard:  none (no assignment or rule matches and every shard has weight 0)"
        );
        return Ok(out);
    };
    let shard = snapshot.shard(decision.shard);
    let _ = writeln!(out, "shard:  {} ({})", shard.name, shard.address);
    match decision.source {
        Source::Assignment => {
            let _ = writeln!(out, "source: assignment {realm} -> {}", shard.name);
        }
        Source::Rule(i) => {
            let rule = &snapshot.rules()[i];
            let _ = writeln!(
                out,
                "source: rules[{i}] pattern {:?} (case-insensitive, anchored at the start) -> {}",
                rule.pattern, shard.name
            );
        }
        Source::Hash => {
            let _ = writeln!(
                out,
                "source: weighted rendezvous hashing (no assignment or rule matched)"
            );
        }
    }
    let _ = writeln!(out, "scores:");
    let mut scores = snapshot.scores(&realm);
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (id, score) in scores {
        let s = snapshot.shard(id);
        let mark = if id == decision.shard && decision.source == Source::Hash {
            "*"
        } else {
            " "
        };
        let _ = writeln!(
            out,
            "  {mark} {:<24} weight {:<8} score {:.6}",
            s.name, s.weight, score
        );
    }
    Ok(out)
}

/// The realm's resident shards at `now` (and one user's, when given), for `kansas route` and
/// `kansas residency`.
pub fn residency(snapshot: &Snapshot, realm: &str, user: Option<u64>, now: f64) -> String {
    let mut out = String::new();
    let line = |out: &mut String, r: &crate::routing::Resident| {
        let until = match r.until {
            None => "current".to_string(),
            Some(t) => format!("until {} UTC (drain window)", crate::cli::utc(t)),
        };
        let _ = writeln!(out, "  {:<24} port {:<6} {until}", r.name, r.port);
    };
    let _ = writeln!(
        out,
        "resident shards (Django publishes to each; kansas serves known queues on each):"
    );
    for r in snapshot.resident(realm, now) {
        line(&mut out, &r);
    }
    if let Some(u) = user {
        let _ = writeln!(out, "user {u}: (registers on the first)");
        for r in snapshot.user_resident(realm, u, now) {
            line(&mut out, &r);
        }
    }
    out
}
