//! `kansas import-zulip` and `kansas export-zulip`: Zulip's own sharding files into the
//! database (one routing change, with its drain window), and back out for operators who stay
//! on `sharding.json`.

use std::path::PathBuf;

use super::db::{client, current_routing, read, registered, who, window};
use super::{ChangeArgs, CmdError};
use crate::config::Config;
use crate::store::admin::{self, Change};
use crate::store::zulip;

/// The files to import and how to read them.
pub(super) struct Files {
    pub sharding_json: Option<PathBuf>,
    pub zulip_conf: Option<PathBuf>,
    pub external_host: Option<String>,
    pub default_port: Option<u16>,
}

/// Zulip's first Tornado port: 9800 if a shard has it, else the lowest shard port.
fn default_port(config: &Config) -> u16 {
    let ports: Vec<u16> = config.routing.shards().iter().map(|s| s.port).collect();
    if ports.contains(&9800) {
        9800
    } else {
        ports.into_iter().min().expect("a config has shards")
    }
}

pub(super) async fn import(
    config: &Config,
    files: Files,
    dry_run: bool,
    args: &ChangeArgs,
) -> Result<(), CmdError> {
    if files.sharding_json.is_none() && files.zulip_conf.is_none() {
        return Err(CmdError::Usage(
            "give --sharding-json FILE and/or --zulip-conf FILE".into(),
        ));
    }
    let window = window(config, args)?;
    let mut sharding = zulip::Sharding::default();
    if let Some(path) = &files.sharding_json {
        let s = zulip::parse_sharding_json(&read(path)?)
            .map_err(|e| CmdError::Usage(format!("{}: {e}", path.display())))?;
        sharding
            .merge(s)
            .map_err(|e| CmdError::Usage(format!("{}: {e}", path.display())))?;
    }
    if let Some(path) = &files.zulip_conf {
        let s = zulip::parse_zulip_conf(&read(path)?, files.external_host.as_deref())
            .map_err(|e| CmdError::Usage(format!("{}: {e}", path.display())))?;
        sharding
            .merge(s)
            .map_err(|e| CmdError::Usage(format!("{}: {e}", path.display())))?;
    }
    let port = files.default_port.unwrap_or_else(|| default_port(config));
    let plan = zulip::plan(&config.routing, &sharding, Some(port)).map_err(|problems| {
        CmdError::Usage(format!("nothing imported:\n  {}", problems.join("\n  ")))
    })?;
    for (realm, shards, note) in &plan.assignments {
        println!("assign {realm} -> {}  ({note})", shards.join(","));
    }
    for (i, (pattern, shards)) in plan.rules.iter().enumerate() {
        let why = if pattern == zulip::CATCH_ALL {
            format!("  (every other realm: Zulip's first Tornado port, {port})")
        } else {
            String::new()
        };
        println!(
            "rule {} {pattern:?} -> {}{why}",
            (i + 1) * 10,
            shards.join(",")
        );
    }
    println!("(existing rules are replaced by these)");
    if dry_run {
        println!("dry run: nothing written");
        return Ok(());
    }
    let mut client = client(config).await?;
    let c = Change::begin(&mut client).await?;
    for (_, shards, _) in &plan.assignments {
        registered(&c, shards)?;
    }
    for (_, shards) in &plan.rules {
        registered(&c, shards)?;
    }
    admin::import(
        c.tx(),
        &plan.assignments,
        &plan.rules,
        &who(args.by.clone()),
    )
    .await?;
    let what = format!(
        "import-zulip: {} assignment(s), {} rule(s)",
        plan.assignments.len(),
        plan.rules.len()
    );
    let committed = c
        .commit(
            &what,
            &who(args.by.clone()),
            window,
            config.queues.max_drain_windows,
        )
        .await?;
    println!(
        "imported {} assignment(s) and {} rule(s)",
        plan.assignments.len(),
        plan.rules.len()
    );
    super::change::report_window(&committed);
    Ok(())
}

pub(super) async fn export(
    config: &Config,
    realms: Option<PathBuf>,
    output: Option<PathBuf>,
) -> Result<(), CmdError> {
    let list: Vec<String> = match &realms {
        None => Vec::new(),
        Some(path) => read(path)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
    };
    let snapshot = current_routing(config).await?;
    let text = zulip::export(&snapshot, &list)
        .map_err(|p| CmdError::Usage(format!("nothing written:\n  {}", p.join("\n  "))))?;
    eprintln!(
        "kansas: note: Zulip sends every realm sharding.json does not list to its first Tornado \
         port; realms kansas places by hashing are listed only if given in --realms"
    );
    match output {
        Some(path) => {
            std::fs::write(&path, text)
                .map_err(|e| CmdError::Failed(format!("cannot write {}: {e}", path.display())))?;
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
