//! `kansas route`: one realm explained (its shard, why, its resident shards), or with `--batch`
//! one JSON object per input line, the form the Python module is checked against.

use std::io::{BufRead, Write};

use serde_json::{json, Value};

use super::conn::current_routing;
use super::input::realm;
use super::CmdError;
use crate::config::Config;
use crate::routing::residency::now_epoch;
use crate::routing::{normalize_host, Resident, Snapshot};

#[derive(clap::Args)]
pub(super) struct Args {
    /// Realm host, as in the Host header (e.g. chat.example.com).
    #[arg(required_unless_present = "batch")]
    host: Option<String>,
    /// Read hosts from standard input, answer in JSON lines.
    #[arg(long, conflicts_with = "host")]
    batch: bool,
    /// Evaluate drain windows at this time (seconds since the epoch; default now).
    #[arg(long)]
    at: Option<f64>,
    /// Also show this user's shards (a realm split by user).
    #[arg(long)]
    user: Option<u64>,
}

pub(super) async fn run(config: &Config, args: Args) -> Result<(), CmdError> {
    let now = match args.at {
        Some(t) if !t.is_finite() => return Err(CmdError::Usage("--at must be a number".into())),
        Some(t) => t,
        None => now_epoch(),
    };
    let snapshot = current_routing(config).await?;
    if args.batch {
        return batch(&snapshot, now);
    }
    let host = args.host.expect("clap requires HOST without --batch");
    let mut text = crate::explain::explain(&snapshot, &host).map_err(CmdError::Usage)?;
    let r = realm(&host)?;
    text.push_str(&crate::explain::residency(&snapshot, &r, args.user, now));
    print!("{text}");
    Ok(())
}

fn resident_json(list: &[Resident]) -> Value {
    list.iter()
        .map(|r| json!({"shard": r.name, "port": r.port, "until": r.until}))
        .collect()
}

/// One batch answer: the realm's shards, its resident shards, and a user's when given.
pub fn batch_answer(snapshot: &Snapshot, line: &str, now: f64) -> Value {
    let mut words = line.split_whitespace();
    let host = words.next().unwrap_or("");
    let user = match words.next().map(str::parse::<u64>) {
        None => None,
        Some(Ok(u)) => Some(u),
        Some(Err(_)) => return json!({"realm": host, "error": "the user id is not a number"}),
    };
    let Ok(r) = normalize_host(host) else {
        return json!({"realm": host, "error": "not a valid realm host"});
    };
    let targets = snapshot.route_targets(&r).map(|(_, ids)| ids.to_vec());
    let names = targets.as_ref().map(|ids| {
        ids.iter()
            .map(|&i| snapshot.shard(i).name.clone())
            .collect::<Vec<_>>()
    });
    let ports = targets.as_ref().map(|ids| {
        ids.iter()
            .map(|&i| snapshot.shard(i).port)
            .collect::<Vec<_>>()
    });
    let mut out = json!({
        "realm": r,
        "targets": names,
        "ports": ports,
        "resident": resident_json(&snapshot.resident(&r, now)),
    });
    if let Some(u) = user {
        let mine = snapshot.user_resident(&r, u, now);
        out["user_id"] = json!(u);
        // The user's current port: none when the realm has no current shard.
        let current = mine.first().filter(|x| x.until.is_none());
        out["user_port"] = json!(current.map(|x| x.port));
        out["user_resident_ports"] = mine.iter().map(|x| x.port).collect();
    }
    out
}

fn batch(snapshot: &Snapshot, now: f64) -> Result<(), CmdError> {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line.map_err(CmdError::Stdin)?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = batch_answer(snapshot, &line, now);
        writeln!(out, "{answer}").map_err(CmdError::Stdout)?;
    }
    out.flush().map_err(CmdError::Stdout)
}
