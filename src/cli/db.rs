//! The commands that read or write the database (and `route`, which consults it when there is
//! one). Every input is checked against the config file before anything is written.

use std::time::Duration;

use tokio_postgres::Client;

use super::{CmdError, Command, DbAction};
use crate::config::{Config, DatabaseConfig};
use crate::routing::{normalize_host, MovePolicy, Snapshot};
use crate::store::{self, admin, schema, zulip};

/// Runs a command that needs the database (or may use it).
pub(super) fn dispatch(command: Command, config: Config) -> Result<(), CmdError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CmdError::Failed(format!("cannot start the runtime: {e}")))?;
    rt.block_on(run(command, config))
}

fn database(config: &Config) -> Result<&DatabaseConfig, CmdError> {
    config.database.as_ref().ok_or_else(|| {
        CmdError::Usage("this command needs a [database] section in the config".into())
    })
}

/// A connection with a migrated schema.
async fn client(config: &Config) -> Result<Client, CmdError> {
    let (client, _notifications) = store::connect(database(config)?).await?;
    schema::check(&client).await?;
    Ok(client)
}

fn realm(host: &str) -> Result<String, CmdError> {
    normalize_host(host).map_err(|_| CmdError::Usage(format!("{host:?} is not a valid realm host")))
}

fn known_shard(config: &Config, shard: &str) -> Result<(), CmdError> {
    if config.routing.shard_id(shard).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = config
        .routing
        .shards()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    Err(CmdError::Usage(format!(
        "unknown shard {shard:?} (the config file has: {})",
        names.join(", ")
    )))
}

fn weight(text: &str) -> Result<f64, CmdError> {
    match text.trim().parse::<f64>() {
        Ok(w) if w.is_finite() && w >= 0.0 => Ok(w),
        _ => Err(CmdError::Usage(format!(
            "weight {text:?} must be a finite number >= 0"
        ))),
    }
}

fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "kansas-cli".into())
}

fn read(path: &std::path::Path) -> Result<String, CmdError> {
    std::fs::read_to_string(path)
        .map_err(|e| CmdError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// The routing kansas would use now: the database's if reachable, else the config file's.
async fn current_routing(config: &Config) -> Result<Snapshot, CmdError> {
    let Some(db) = &config.database else {
        return Ok(config.routing.clone());
    };
    match store::connect(db).await {
        Ok((mut client, _)) => {
            schema::check(&client).await?;
            let state = store::load(&mut client).await?;
            let (snapshot, ignored) = store::compose(&config.routing, &state);
            for row in ignored {
                eprintln!(
                    "kansas: warning: ignoring database {}: {}",
                    row.what, row.why
                );
            }
            Ok(snapshot)
        }
        Err(e) => {
            eprintln!("kansas: warning: {e}; showing the config file's routing");
            Ok(config.routing.clone())
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), CmdError> {
    match command {
        Command::Route { host } => {
            let snapshot = current_routing(&config).await?;
            let text = crate::explain::explain(&snapshot, &host).map_err(CmdError::Usage)?;
            print!("{text}");
        }
        Command::Db {
            action: DbAction::Migrate,
        } => {
            let (mut client, _) = store::connect(database(&config)?).await?;
            let applied = schema::migrate(&mut client).await?;
            if applied.is_empty() {
                println!(
                    "database schema is up to date (version {})",
                    schema::latest()
                );
            } else {
                let list: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
                println!(
                    "applied migration(s) {}; schema is at version {}",
                    list.join(", "),
                    schema::latest()
                );
            }
        }
        Command::Db {
            action: DbAction::Status,
        } => {
            let (client, _) = store::connect(database(&config)?).await?;
            match schema::version(&client).await? {
                None => println!("kansas schema: not migrated (run `kansas db migrate`)"),
                Some(v) => println!(
                    "kansas schema: version {v} (this kansas: {})",
                    schema::latest()
                ),
            }
        }
        Command::Assign {
            realm: host,
            shard,
            note,
            by,
            move_policy,
        } => {
            let r = realm(&host)?;
            known_shard(&config, &shard)?;
            if let Some(p) = &move_policy {
                if MovePolicy::parse(p).is_none() {
                    return Err(CmdError::Usage(format!(
                        "--move {p:?} must be reload or drain"
                    )));
                }
            }
            if note.as_ref().is_some_and(|n| n.chars().count() > 1000) {
                return Err(CmdError::Usage(
                    "--note is limited to 1000 characters".into(),
                ));
            }
            let mut c = client(&config).await?;
            let before = admin::assign(
                &mut c,
                &r,
                &shard,
                note.as_deref(),
                &who(by),
                move_policy.as_deref(),
            )
            .await?;
            match before {
                Some(b) if b == shard => println!("{r} stays assigned to {shard}"),
                Some(b) => println!("{r}: {b} -> {shard}"),
                None => println!("{r} -> {shard}"),
            }
        }
        Command::Unassign { realm: host } => {
            let r = realm(&host)?;
            let mut c = client(&config).await?;
            match admin::unassign(&mut c, &r).await? {
                Some(shard) => {
                    println!("{r} unassigned (was {shard}); rules and hashing decide now")
                }
                None => println!("{r} was not assigned; nothing to do"),
            }
        }
        Command::Assignments { shard } => {
            if let Some(s) = &shard {
                known_shard(&config, s)?;
            }
            let c = client(&config).await?;
            let rows = admin::assignments(&c, shard.as_deref()).await?;
            println!(
                "{:<40} {:<20} {:<8} {:<20} {:<12} NOTE",
                "REALM", "SHARD", "MOVE", "UPDATED (UTC)", "BY"
            );
            for a in &rows {
                println!(
                    "{:<40} {:<20} {:<8} {:<20} {:<12} {}",
                    a.realm,
                    a.shard,
                    a.move_policy.as_deref().unwrap_or("default"),
                    a.updated_at,
                    a.changed_by,
                    a.note.as_deref().unwrap_or("")
                );
            }
            println!("{} assignment(s)", rows.len());
        }
        Command::Weight {
            shard,
            weight: text,
        } => {
            known_shard(&config, &shard)?;
            let w = weight(&text)?;
            let mut c = client(&config).await?;
            let before = admin::set_weight(&mut c, &shard, w).await?;
            let was = before.or_else(|| {
                config
                    .routing
                    .shard(config.routing.shard_id(&shard)?)
                    .weight
                    .into()
            });
            println!(
                "{shard}: weight {} -> {w}",
                was.map_or("?".into(), |v| v.to_string())
            );
        }
        Command::Shards => {
            let c = client(&config).await?;
            let weights = admin::weights(&c).await?;
            let counts = admin::assigned_counts(&c).await?;
            println!(
                "{:<20} {:<24} {:<6} {:<8} {:<8} ASSIGNED",
                "NAME", "ADDRESS", "PORT", "WEIGHT", "FROM"
            );
            for s in config.routing.shards() {
                let (w, from) = match weights.get(&s.name) {
                    Some(w) => (*w, "database"),
                    None => (s.weight, "config"),
                };
                let n = counts.get(&s.name).copied().unwrap_or(0);
                println!(
                    "{:<20} {:<24} {:<6} {:<8} {:<8} {n}",
                    s.name, s.address, s.port, w, from
                );
            }
            for (name, n) in counts
                .iter()
                .filter(|(n, _)| config.routing.shard_id(n).is_none())
            {
                println!("warning: {n} realm(s) assigned to {name:?}, which the config file does not have");
            }
        }
        Command::Drain {
            shard,
            to,
            step,
            every,
        } => {
            known_shard(&config, &shard)?;
            if !(to.is_finite() && to >= 0.0) {
                return Err(CmdError::Usage(format!(
                    "--to {to} must be a finite number >= 0"
                )));
            }
            if !(step.is_finite() && step > 0.0) {
                return Err(CmdError::Usage(format!(
                    "--step {step} must be a number > 0"
                )));
            }
            let every = crate::load::args::duration(&every).map_err(CmdError::Usage)?;
            if every.is_zero() {
                return Err(CmdError::Usage("--every must be longer than 0".into()));
            }
            let mut c = client(&config).await?;
            drain(&config, &mut c, &shard, to, step, every).await?;
        }
        Command::ImportZulip {
            sharding_json,
            zulip_conf,
            external_host,
            dry_run,
        } => {
            let mut sharding = zulip::Sharding::default();
            if sharding_json.is_none() && zulip_conf.is_none() {
                return Err(CmdError::Usage(
                    "give --sharding-json FILE and/or --zulip-conf FILE".into(),
                ));
            }
            if let Some(path) = &sharding_json {
                let s = zulip::parse_sharding_json(&read(path)?)
                    .map_err(|e| CmdError::Usage(format!("{}: {e}", path.display())))?;
                sharding.hosts.extend(s.hosts);
                sharding.regexes.extend(s.regexes);
            }
            if let Some(path) = &zulip_conf {
                let s = zulip::parse_zulip_conf(&read(path)?, external_host.as_deref())
                    .map_err(|e| CmdError::Usage(format!("{}: {e}", path.display())))?;
                sharding.hosts.extend(s.hosts);
                sharding.regexes.extend(s.regexes);
            }
            let plan = zulip::plan(&config.routing, &sharding).map_err(|problems| {
                CmdError::Usage(format!("nothing imported:\n  {}", problems.join("\n  ")))
            })?;
            for (realm, shard, note) in &plan.assignments {
                println!("assign {realm} -> {shard}  ({note})");
            }
            for (i, (pattern, shard)) in plan.rules.iter().enumerate() {
                println!("rule {} {pattern:?} -> {shard}", (i + 1) * 10);
            }
            if plan.rules.is_empty() {
                println!("(existing rules are kept)");
            } else {
                println!("(existing rules are replaced by these)");
            }
            if dry_run {
                println!("dry run: nothing written");
            } else {
                let mut c = client(&config).await?;
                admin::import(&mut c, &plan.assignments, &plan.rules, &who(None)).await?;
                println!(
                    "imported {} assignment(s) and {} rule(s)",
                    plan.assignments.len(),
                    plan.rules.len()
                );
            }
        }
        Command::ExportZulip { realms, output } => {
            let list: Vec<String> = read(&realms)?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            let snapshot = current_routing(&config).await?;
            let text = zulip::export(&snapshot, &list)
                .map_err(|p| CmdError::Usage(format!("nothing written:\n  {}", p.join("\n  "))))?;
            match output {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| {
                        CmdError::Failed(format!("cannot write {}: {e}", path.display()))
                    })?;
                    println!("wrote {} realm(s) to {}", list.len(), path.display());
                }
                None => print!("{text}"),
            }
        }
        Command::Run | Command::CheckConfig { .. } | Command::Worker { .. } => {
            unreachable!("handled by cli::main")
        }
    }
    Ok(())
}

/// Lowers `shard`'s weight to `to`, `step` at a time, `every` apart. It starts from the weight
/// in force (database row, else config), so an interrupted drain resumes where it stopped.
async fn drain(
    config: &Config,
    client: &mut Client,
    shard: &str,
    to: f64,
    step: f64,
    every: Duration,
) -> Result<(), CmdError> {
    let config_weight = config
        .routing
        .shard(config.routing.shard_id(shard).expect("checked"))
        .weight;
    loop {
        let current = admin::weights(client)
            .await?
            .get(shard)
            .copied()
            .unwrap_or(config_weight);
        if current <= to {
            println!("{shard}: weight {current} (target {to}): drained");
            return Ok(());
        }
        // Round to avoid 0.30000000000000004-style steps.
        let next = (((current - step) * 1e9).round() / 1e9).max(to);
        admin::set_weight(client, shard, next).await?;
        let now = utc_clock();
        println!("{now} {shard}: weight {current} -> {next}");
        if next <= to {
            println!("{shard}: drained to {to}");
            return Ok(());
        }
        println!(
            "  next step in {}s (Ctrl-C is safe; run the same command to resume)",
            every.as_secs_f64()
        );
        tokio::time::sleep(every).await;
    }
}

/// The current UTC time as `HH:MM:SS`.
fn utc_clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}
