//! `kansas import-zulip` and `kansas export-zulip`: Zulip's own sharding files into the
//! database (one routing change, with its drain window), and back out for operators who stay
//! on `sharding.json`. Reading and merging the imported files is [`super::merge`].

use std::path::PathBuf;

use super::change::{commit, report_window, ChangeArgs};
use super::conn::{client, current_routing};
use super::input::{read, registered};
use super::CmdError;
use crate::config::Config;
use crate::store::admin::{self, Change};
use crate::store::zulip::{self, Plan};

#[derive(clap::Args)]
pub(super) struct ImportArgs {
    #[arg(long)]
    sharding_json: Option<PathBuf>,
    #[arg(long)]
    zulip_conf: Option<PathBuf>,
    /// EXTERNAL_HOST, for bare realm names in zulip.conf.
    #[arg(long)]
    external_host: Option<String>,
    /// Zulip's first Tornado port (settings.TORNADO_PORTS[0]), where Zulip sends every realm
    /// it does not list. Default: 9800 if a shard has it, else the lowest shard port.
    #[arg(long)]
    default_port: Option<u16>,
    /// Print the plan, write nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(clap::Args)]
pub(super) struct ExportArgs {
    /// File with one realm host per line (realms placed by hashing must be listed).
    #[arg(long)]
    realms: Option<PathBuf>,
    /// Where to write (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
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

pub(super) async fn import(config: &Config, args: ImportArgs) -> Result<(), CmdError> {
    if args.sharding_json.is_none() && args.zulip_conf.is_none() {
        return Err(CmdError::Usage(
            "give --sharding-json FILE and/or --zulip-conf FILE".into(),
        ));
    }
    let window = args.change.window(config)?;
    let sharding = super::merge::merged(
        args.sharding_json.as_deref(),
        args.zulip_conf.as_deref(),
        args.external_host.as_deref(),
    )?;
    let port = args.default_port.unwrap_or_else(|| default_port(config));
    let plan = zulip::plan(&config.routing, &sharding, Some(port)).map_err(|problems| {
        CmdError::Usage(format!("nothing imported:\n  {}", problems.join("\n  ")))
    })?;
    print_plan(&plan, port);
    if args.dry_run {
        println!("dry run: nothing written");
        return Ok(());
    }
    write(config, &plan, &args.change, window).await
}

fn print_plan(plan: &Plan, port: u16) {
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
}

/// The plan as one routing change.
async fn write(
    config: &Config,
    plan: &Plan,
    args: &ChangeArgs,
    window: std::time::Duration,
) -> Result<(), CmdError> {
    let mut client = client(config).await?;
    let c = Change::begin(&mut client).await?;
    for (_, shards, _) in &plan.assignments {
        registered(&c, shards)?;
    }
    for (_, shards) in &plan.rules {
        registered(&c, shards)?;
    }
    admin::import(c.tx(), &plan.assignments, &plan.rules, &args.who()).await?;
    let what = format!(
        "import-zulip: {} assignment(s), {} rule(s)",
        plan.assignments.len(),
        plan.rules.len()
    );
    let committed = commit(config, c, &what, args, window).await?;
    println!(
        "imported {} assignment(s) and {} rule(s)",
        plan.assignments.len(),
        plan.rules.len()
    );
    report_window(&committed);
    Ok(())
}

pub(super) async fn export(config: &Config, args: ExportArgs) -> Result<(), CmdError> {
    let list: Vec<String> = match &args.realms {
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
    match args.output {
        Some(path) => {
            if let Err(source) = std::fs::write(&path, text) {
                return Err(CmdError::Write { path, source });
            }
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
