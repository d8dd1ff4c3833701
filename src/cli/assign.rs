//! Realm assignments: `kansas assign` (to a shard, or to several split by user), `unassign`
//! (back to rules and hashing), and `assignments` (the list).

use super::change::{commit_and_report, ChangeArgs};
use super::conn::client;
use super::input::{known_shard, one_line, realm, registered, shard_list};
use super::CmdError;
use crate::config::Config;
use crate::store::admin::{self, Change};

#[derive(clap::Args)]
pub(super) struct AssignArgs {
    realm: String,
    /// SHARD or SHARD,SHARD,...
    shards: String,
    /// Why, for the record (at most 1000 characters, no control characters).
    #[arg(long, value_parser = one_line::<1000>)]
    note: Option<String>,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(clap::Args)]
pub(super) struct UnassignArgs {
    realm: String,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(clap::Args)]
pub(super) struct ListArgs {
    /// Only this shard's.
    #[arg(long)]
    shard: Option<String>,
}

pub(super) async fn assign(config: &Config, args: AssignArgs) -> Result<(), CmdError> {
    let r = realm(&args.realm)?;
    let list = shard_list(config, &args.shards)?;
    let window = args.change.window(config)?;
    let mut client = client(config).await?;
    let c = Change::begin(&mut client).await?;
    registered(&c, &list)?;
    let who = args.change.who();
    let before = admin::assign(c.tx(), &r, &list, args.note.as_deref(), &who).await?;
    let to = list.join(",");
    let what = match &before {
        Some(b) if *b == list => format!("assign {r} {to} (unchanged)"),
        Some(b) => format!("assign {r} {} -> {to}", b.join(",")),
        None => format!("assign {r} -> {to}"),
    };
    println!("{what}");
    commit_and_report(config, c, &what, &args.change, window).await
}

pub(super) async fn unassign(config: &Config, args: UnassignArgs) -> Result<(), CmdError> {
    let r = realm(&args.realm)?;
    let window = args.change.window(config)?;
    let mut client = client(config).await?;
    let c = Change::begin(&mut client).await?;
    let what = match admin::unassign(c.tx(), &r).await? {
        Some(shards) => format!(
            "unassign {r} (was {}); rules and hashing decide now",
            shards.join(",")
        ),
        None => {
            println!("{r} was not assigned; nothing to do");
            return Ok(());
        }
    };
    println!("{what}");
    commit_and_report(config, c, &what, &args.change, window).await
}

pub(super) async fn list(config: &Config, args: ListArgs) -> Result<(), CmdError> {
    if let Some(s) = &args.shard {
        known_shard(config, s)?;
    }
    let c = client(config).await?;
    let rows = admin::assignments(&c, args.shard.as_deref()).await?;
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
