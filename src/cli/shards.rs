//! Shards: `kansas weight` (a shard's weight for hashed realms) and `shards` (the list: config
//! file and database side by side). Lowering a weight step by step is [`super::drain`].

use super::change::{commit_and_report, ChangeArgs};
use super::conn::client;
use super::input::{known_shard, weight as parse_weight};
use super::CmdError;
use crate::config::Config;
use crate::store::admin::{self, Change};

#[derive(clap::Args)]
pub(super) struct WeightArgs {
    shard: String,
    #[arg(allow_hyphen_values = true)]
    weight: String,
    #[command(flatten)]
    change: ChangeArgs,
}

pub(super) async fn weight(config: &Config, args: WeightArgs) -> Result<(), CmdError> {
    let shard = args.shard.as_str();
    known_shard(config, shard)?;
    let w = parse_weight(&args.weight)?;
    let window = args.change.window(config)?;
    let mut client = client(config).await?;
    let c = Change::begin(&mut client).await?;
    let port = config
        .routing
        .shard(config.routing.shard_id(shard).expect("checked"))
        .port;
    let before = admin::set_weight(c.tx(), shard, w, port).await?;
    let what = format!(
        "weight {shard} {} -> {w}",
        before.map_or("(unregistered)".to_string(), |v| v.to_string())
    );
    println!("{what}");
    commit_and_report(config, c, &what, &args.change, window).await
}

pub(super) async fn list(config: &Config) -> Result<(), CmdError> {
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
