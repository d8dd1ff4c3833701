//! The commands that show routing: `route` (one realm explained, or a batch in JSON lines, the
//! form the Python module is checked against), `residency`, `assignments`, `rules`, `shards`.

use std::io::{BufRead, Write};

use serde_json::{json, Value};

use super::change::utc;
use super::db::{client, current_routing, known_shard, realm};
use super::CmdError;
use crate::config::Config;
use crate::routing::residency::now_epoch;
use crate::routing::{normalize_host, Resident, Snapshot};
use crate::store::admin;

/// The current UTC time as `HH:MM:SS`.
pub(super) fn clock() -> String {
    utc(now_epoch())[11..].to_string()
}

pub(super) async fn route(
    config: &Config,
    host: Option<String>,
    batch: bool,
    at: Option<f64>,
    user: Option<u64>,
) -> Result<(), CmdError> {
    let now = match at {
        Some(t) if !t.is_finite() => return Err(CmdError::Usage("--at must be a number".into())),
        Some(t) => t,
        None => now_epoch(),
    };
    let snapshot = current_routing(config).await?;
    if batch {
        return route_batch(&snapshot, now);
    }
    let host = host.expect("clap requires HOST without --batch");
    let mut text = crate::explain::explain(&snapshot, &host).map_err(CmdError::Usage)?;
    let r = realm(&host)?;
    text.push_str(&crate::explain::residency(&snapshot, &r, user, now));
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

fn route_batch(snapshot: &Snapshot, now: f64) -> Result<(), CmdError> {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| CmdError::Failed(format!("reading standard input: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = batch_answer(snapshot, &line, now);
        writeln!(out, "{answer}").map_err(|e| CmdError::Failed(format!("writing: {e}")))?;
    }
    out.flush()
        .map_err(|e| CmdError::Failed(format!("writing: {e}")))
}

pub(super) async fn residency(
    config: &Config,
    host: Option<String>,
    user: Option<u64>,
    json_out: bool,
) -> Result<(), CmdError> {
    let now = now_epoch();
    let Some(host) = host else {
        let c = client(config).await?;
        let windows = admin::windows(&c).await?;
        if json_out {
            println!("{}", json!({ "windows": windows }));
            return Ok(());
        }
        println!(
            "{:<6} {:<20} {:<20} {:<12} CHANGE",
            "ID", "OPENED (UTC)", "UNTIL (UTC)", "BY"
        );
        for w in &windows {
            println!(
                "{:<6} {:<20} {:<20} {:<12} {}",
                w.id,
                utc(w.opened_at),
                utc(w.until),
                w.changed_by,
                w.change
            );
        }
        println!(
            "{} open drain window(s) (at most {})",
            windows.len(),
            config.queues.max_drain_windows
        );
        return Ok(());
    };
    let r = realm(&host)?;
    let snapshot = current_routing(config).await?;
    if json_out {
        let line = match user {
            Some(u) => format!("{r} {u}"),
            None => r,
        };
        println!("{}", batch_answer(&snapshot, &line, now));
    } else {
        print!("{}", crate::explain::residency(&snapshot, &r, user, now));
    }
    Ok(())
}

pub(super) async fn assignments(config: &Config, shard: Option<String>) -> Result<(), CmdError> {
    if let Some(s) = &shard {
        known_shard(config, s)?;
    }
    let c = client(config).await?;
    let rows = admin::assignments(&c, shard.as_deref()).await?;
    println!(
        "{:<40} {:<20} {:<20} {:<12} NOTE",
        "REALM", "SHARD(S)", "UPDATED (UTC)", "BY"
    );
    for a in &rows {
        println!(
            "{:<40} {:<20} {:<20} {:<12} {}",
            a.realm,
            a.shards.join(","),
            a.updated_at,
            a.changed_by,
            a.note.as_deref().unwrap_or("")
        );
    }
    println!("{} assignment(s)", rows.len());
    Ok(())
}

pub(super) async fn rules(config: &Config) -> Result<(), CmdError> {
    let mut c = client(config).await?;
    let state = crate::store::load(&mut c).await?;
    println!("{:<10} {:<40} SHARD(S)", "PRIORITY", "PATTERN");
    for (priority, (pattern, shards)) in &state.rules {
        println!(
            "{priority:<10} {:<40} {}",
            format!("{pattern:?}"),
            shards.join(",")
        );
    }
    println!(
        "{} rule(s), applied in this order (case-insensitive, anchored at the start)",
        state.rules.len()
    );
    Ok(())
}

pub(super) async fn shards(config: &Config) -> Result<(), CmdError> {
    let c = client(config).await?;
    let registry = admin::shards(&c).await?;
    let counts = admin::assigned_counts(&c).await?;
    println!(
        "{:<20} {:<24} {:<6} {:<8} {:<12} ASSIGNED",
        "NAME", "ADDRESS", "PORT", "WEIGHT", "REGISTERED"
    );
    for s in config.routing.shards() {
        let row = registry.iter().find(|(n, _, _)| *n == s.name);
        let (port, weight, registered) = match row {
            Some((_, Some(p), w)) => (*p, *w, "yes"),
            Some((_, None, w)) => (s.port, *w, "no port"),
            None => (s.port, s.weight, "no"),
        };
        let n = counts.get(&s.name).copied().unwrap_or(0);
        println!(
            "{:<20} {:<24} {:<6} {:<8} {:<12} {n}",
            s.name, s.address, port, weight, registered
        );
    }
    for (name, port, weight) in &registry {
        if config.routing.shard_id(name).is_none() {
            println!(
                "warning: shard {name:?} (port {}, weight {weight}) is registered in the database but not in the config file",
                port.map_or("none".into(), |p| p.to_string())
            );
        }
    }
    if registry.len() < config.routing.shards().len() {
        println!("run `kansas db migrate` to register the config file's shards");
    }
    Ok(())
}
