//! What every routing change shares: the flags that say how the moved realms' queues are
//! treated (`--move`, `--drain-for`, `--by`), the drain window they open, and the commit of
//! the change (one transaction that also opens the window, `docs/residency.md` §4) with the
//! line that reports it.

use std::time::Duration;

use super::input::one_line;
use super::CmdError;
use crate::config::Config;
use crate::routing::MovePolicy;
use crate::store::admin::{Change, Committed};
use crate::store::StoreError;

/// How a routing change treats the queues of the realms it moves.
#[derive(clap::Args, Debug, Clone, Default)]
pub(super) struct ChangeArgs {
    /// What moved realms' existing queues do: drain (their old shard stays resident for the
    /// drain window: nobody notices) or reload (their next poll gets BAD_EVENT_QUEUE_ID and the
    /// client re-registers on the new shard). Default: queues.move_policy.
    #[arg(long = "move")]
    move_policy: Option<String>,
    /// The drain window (e.g. 2h, 30m); implies --move drain. Default:
    /// queues.drain_window_secs.
    #[arg(long, allow_hyphen_values = true)]
    drain_for: Option<String>,
    /// Who is making the change (default: $SUDO_USER or $USER; at most 100 characters, no
    /// control characters).
    #[arg(long, value_parser = one_line::<100>)]
    by: Option<String>,
}

impl ChangeArgs {
    /// The drain window a change opens: zero for `--move reload`, `--drain-for`, else the
    /// configured default for the configured policy.
    pub(super) fn window(&self, config: &Config) -> Result<Duration, CmdError> {
        let policy =
            match self.move_policy.as_deref() {
                None => None,
                Some(p) => Some(MovePolicy::parse(p).ok_or_else(|| {
                    CmdError::Usage(format!("--move {p:?} must be reload or drain"))
                })?),
            };
        if let Some(text) = &self.drain_for {
            if policy == Some(MovePolicy::Reload) {
                return Err(CmdError::Usage(
                    "--drain-for goes with --move drain, not reload".into(),
                ));
            }
            let d = crate::config::duration(text).map_err(|source| CmdError::Duration {
                flag: "--drain-for",
                source,
            })?;
            if d > Duration::from_secs(7 * 86_400) {
                return Err(CmdError::Usage("--drain-for is at most 7 days".into()));
            }
            return Ok(d);
        }
        Ok(match policy.unwrap_or(config.queues.move_policy) {
            MovePolicy::Reload => Duration::ZERO,
            MovePolicy::Drain => config.queues.drain_window,
        })
    }

    /// Who makes the change: `--by`, else `$SUDO_USER` or `$USER`, else `kansas-cli`.
    pub(super) fn who(&self) -> String {
        self.by
            .clone()
            .or_else(|| std::env::var("SUDO_USER").ok())
            .or_else(|| std::env::var("USER").ok())
            // From the environment, not checked like --by: keep it one plain line.
            .map(|u| u.chars().filter(|c| !c.is_control()).take(100).collect())
            .filter(|u: &String| !u.is_empty())
            .unwrap_or_else(|| "kansas-cli".into())
    }
}

/// Commits `c`, recorded as `what`, opening `window` (within `queues.max_drain_windows`).
pub(super) async fn commit(
    config: &Config,
    c: Change<'_>,
    what: &str,
    args: &ChangeArgs,
    window: Duration,
) -> Result<Committed, StoreError> {
    c.commit(what, &args.who(), window, config.queues.max_drain_windows)
        .await
}

/// Commits `c` as [`commit`] does and prints the drain window it opened.
pub(super) async fn commit_and_report(
    config: &Config,
    c: Change<'_>,
    what: &str,
    args: &ChangeArgs,
    window: Duration,
) -> Result<(), CmdError> {
    report_window(&commit(config, c, what, args, window).await?);
    Ok(())
}

/// Prints the drain window a change opened, if any.
pub(super) fn report_window(c: &Committed) {
    match c.window {
        Some((id, until)) => println!(
            "drain window {id} open until {} UTC: the moved realms stay resident on their old shards until then",
            super::utc(until)
        ),
        None if c.changed => println!("no drain window: moved realms' old queues get BAD_EVENT_QUEUE_ID at their next poll"),
        None => println!("routing unchanged"),
    }
}
