//! `kansas residency`: the open drain windows, or a realm's resident shards and until when;
//! `--close ID` / `--all` close windows now.

use serde_json::json;

use super::clock::utc;
use super::conn::{client, current_routing};
use super::input::realm;
use super::route::batch_answer;
use super::CmdError;
use crate::config::Config;
use crate::routing::residency::now_epoch;
use crate::store::admin;

#[derive(clap::Args)]
pub(super) struct Args {
    /// Realm host (none: list the open drain windows).
    realm: Option<String>,
    /// Also show this user's resident shards.
    #[arg(long)]
    user: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Close this drain window now (its realms' old queues get BAD_EVENT_QUEUE_ID).
    #[arg(long, conflicts_with_all = ["realm", "all"])]
    close: Option<i64>,
    /// Close every open drain window now.
    #[arg(long, conflicts_with = "realm")]
    all: bool,
}

pub(super) async fn run(config: &Config, args: Args) -> Result<(), CmdError> {
    match (args.close, args.all, args.realm) {
        (Some(id), _, _) => close(config, Some(id)).await,
        (None, true, _) => close(config, None).await,
        (None, false, None) => windows(config, args.json).await,
        (None, false, Some(host)) => show(config, &host, args.user, args.json).await,
    }
}

/// The open drain windows.
async fn windows(config: &Config, json_out: bool) -> Result<(), CmdError> {
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
    Ok(())
}

/// A realm's resident shards (and a user's).
async fn show(
    config: &Config,
    host: &str,
    user: Option<u64>,
    json_out: bool,
) -> Result<(), CmdError> {
    let now = now_epoch();
    let r = realm(host)?;
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

/// `--close ID` / `--all`.
async fn close(config: &Config, id: Option<i64>) -> Result<(), CmdError> {
    let client = client(config).await?;
    let n = admin::close_windows(&client, id).await?;
    match (id, n) {
        (Some(id), 0) => return Err(CmdError::Usage(format!("no open drain window {id}"))),
        (Some(id), _) => println!("drain window {id} closed"),
        (None, n) => println!("{n} drain window(s) closed"),
    }
    println!("the realms they kept on old shards are resident on their current shards only: their old queues get BAD_EVENT_QUEUE_ID at their next poll");
    Ok(())
}
