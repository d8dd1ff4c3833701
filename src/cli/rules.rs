//! Regex rules: `kansas rule set PRIORITY PATTERN SHARDS`, `rule remove PRIORITY`, and `rules`
//! (the list, in the order they apply).

use clap::Subcommand;

use super::change::{commit_and_report, ChangeArgs};
use super::conn::client;
use super::input::{registered, shard_list};
use super::CmdError;
use crate::config::Config;
use crate::store::admin::{self, Change};

#[derive(Subcommand)]
pub(super) enum Action {
    /// Add or replace the rule at PRIORITY (rules apply in ascending priority).
    Set {
        #[arg(allow_negative_numbers = true)]
        priority: i32,
        /// Regular expression, matched case-insensitively at the start of the realm host.
        pattern: String,
        /// SHARD or SHARD,SHARD,... (split by user).
        shards: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Remove the rule at PRIORITY.
    Remove {
        #[arg(allow_negative_numbers = true)]
        priority: i32,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

pub(super) async fn run(config: &Config, action: Action) -> Result<(), CmdError> {
    match action {
        Action::Set {
            priority,
            pattern,
            shards,
            change,
        } => set(config, priority, &pattern, &shards, &change).await,
        Action::Remove { priority, change } => remove(config, priority, &change).await,
    }
}

async fn set(
    config: &Config,
    priority: i32,
    pattern: &str,
    shards: &str,
    args: &ChangeArgs,
) -> Result<(), CmdError> {
    let list = shard_list(config, shards)?;
    if pattern.is_empty() || pattern.chars().count() > 1000 {
        return Err(CmdError::Usage("a pattern is 1 to 1000 characters".into()));
    }
    if let Err(e) = crate::routing::Rule::new(pattern, 0) {
        return Err(CmdError::Usage(format!(
            "{pattern:?} is not a valid regular expression: {e}"
        )));
    }
    let window = args.window(config)?;
    let mut client = client(config).await?;
    let c = Change::begin(&mut client).await?;
    registered(&c, &list)?;
    let before = admin::set_rule(c.tx(), priority, pattern, &list).await?;
    let what = match before {
        Some((p, s)) => format!(
            "rule {priority}: {p:?} -> {} replaced by {pattern:?} -> {}",
            s.join(","),
            list.join(",")
        ),
        None => format!("rule {priority}: {pattern:?} -> {}", list.join(",")),
    };
    println!("{what}");
    commit_and_report(config, c, &what, args, window).await
}

async fn remove(config: &Config, priority: i32, args: &ChangeArgs) -> Result<(), CmdError> {
    let window = args.window(config)?;
    let mut client = client(config).await?;
    let c = Change::begin(&mut client).await?;
    if !admin::remove_rule(c.tx(), priority).await? {
        println!("no rule at priority {priority}; nothing to do");
        return Ok(());
    }
    let what = format!("rule {priority} removed");
    println!("{what}");
    commit_and_report(config, c, &what, args, window).await
}

pub(super) async fn list(config: &Config) -> Result<(), CmdError> {
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
