//! `kansas db migrate` (the schema, then the config file's shards registered: a routing change
//! like any other, with its drain window) and `kansas db status`.

use std::time::Duration;

use clap::Subcommand;

use super::change::{commit, report_window, ChangeArgs};
use super::conn::database;
use super::CmdError;
use crate::config::Config;
use crate::store::{self, admin, schema};

#[derive(Subcommand)]
pub(super) enum Action {
    /// Apply missing migrations and register the config file's shards (safe to run twice;
    /// run it again after changing [[shards]]).
    Migrate {
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Print the schema version.
    Status,
}

pub(super) async fn run(config: &Config, action: Action) -> Result<(), CmdError> {
    match action {
        Action::Migrate { change } => migrate(config, &change).await,
        Action::Status => status(config).await,
    }
}

async fn status(config: &Config) -> Result<(), CmdError> {
    let (client, _) = store::connect(database(config)?).await?;
    match schema::version(&client).await? {
        None => println!("kansas schema: not migrated (run `kansas db migrate`)"),
        Some(v) => println!(
            "kansas schema: version {v} (this kansas: {})",
            schema::latest()
        ),
    }
    Ok(())
}

async fn migrate(config: &Config, change: &ChangeArgs) -> Result<(), CmdError> {
    let window = change.window(config)?;
    let (mut client, _) = store::connect(database(config)?).await?;
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
    let shards: Vec<(String, u16, f64)> = config
        .routing
        .shards()
        .iter()
        .map(|s| (s.name.clone(), s.port, s.weight))
        .collect();
    let c = admin::Change::begin(&mut client).await?;
    // The first registration moves nothing anyone knew about: no window.
    let window = if c.before().shards.is_empty() {
        Duration::ZERO
    } else {
        window
    };
    let done = admin::register(c.tx(), &shards).await?;
    let what = format!("register shards: {}", done.join("; "));
    let committed = commit(config, c, &what, change, window).await?;
    for line in &done {
        println!("{line}");
    }
    if done.is_empty() {
        println!("every shard in the config file is registered");
    }
    report_window(&committed);
    Ok(())
}
