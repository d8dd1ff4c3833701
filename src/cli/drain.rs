//! `kansas drain`: a shard's weight lowered step by step, each step a routing change with its
//! drain window. Each step starts from the weight in force, so an interrupted drain resumes
//! where it stopped; when too many windows are open it waits for the oldest to close.

use std::time::Duration;

use tokio_postgres::Client;

use super::change::{commit, report_window, ChangeArgs};
use super::clock::clock;
use super::conn::client;
use super::input::known_shard;
use super::CmdError;
use crate::config::Config;
use crate::store::admin::{self, Change};
use crate::store::StoreError;

#[derive(clap::Args)]
pub(super) struct Args {
    shard: String,
    /// Target weight.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    to: f64,
    /// Weight removed per step.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    step: f64,
    /// Time between steps (e.g. 5m, 30s).
    #[arg(long, default_value = "5m")]
    every: String,
    #[command(flatten)]
    change: ChangeArgs,
}

/// A drain with its arguments checked.
struct Plan<'a> {
    shard: &'a str,
    to: f64,
    step: f64,
    every: Duration,
    window: Duration,
    /// The weight when the database has none for the shard.
    config_weight: f64,
    port: u16,
}

/// What one step did.
#[derive(Debug, PartialEq)]
enum Step {
    /// The weight in force is at or below the target already.
    Drained { current: f64 },
    /// The weight was lowered to `next`.
    Lowered { next: f64 },
    /// Too many drain windows are open: nothing changed; the next closes at `next_close`.
    Full { next_close: String },
}

/// The weight after one step down from `current`: `step` less, never below `to`, rounded to
/// nine decimals (no 0.30000000000000004-style weights).
fn next_weight(current: f64, step: f64, to: f64) -> f64 {
    (((current - step) * 1e9).round() / 1e9).max(to)
}

fn plan<'a>(config: &Config, args: &'a Args) -> Result<Plan<'a>, CmdError> {
    let (shard, to, step) = (args.shard.as_str(), args.to, args.step);
    known_shard(config, shard)?;
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
    let every = crate::config::duration(&args.every).map_err(|source| CmdError::Duration {
        flag: "--every",
        source,
    })?;
    if every.is_zero() {
        return Err(CmdError::Usage("--every must be longer than 0".into()));
    }
    let window = args.change.window(config)?;
    let s = config
        .routing
        .shard(config.routing.shard_id(shard).expect("checked"));
    Ok(Plan {
        shard,
        to,
        step,
        every,
        window,
        config_weight: s.weight,
        port: s.port,
    })
}

/// One step: the weight in force, lowered by one step in a change of its own.
async fn step(
    config: &Config,
    client: &mut Client,
    plan: &Plan<'_>,
    args: &ChangeArgs,
) -> Result<Step, CmdError> {
    let current = admin::shards(client)
        .await?
        .into_iter()
        .find(|(n, _, _)| n == plan.shard)
        .map_or(plan.config_weight, |(_, _, w)| w);
    if current <= plan.to {
        return Ok(Step::Drained { current });
    }
    let next = next_weight(current, plan.step, plan.to);
    let c = Change::begin(client).await?;
    admin::set_weight(c.tx(), plan.shard, next, plan.port).await?;
    let what = format!("drain {}: weight {current} -> {next}", plan.shard);
    match commit(config, c, &what, args, plan.window).await {
        Ok(committed) => {
            println!("{} {what}", clock());
            report_window(&committed);
            Ok(Step::Lowered { next })
        }
        Err(StoreError::TooManyWindows { next_close, .. }) => Ok(Step::Full { next_close }),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn run(config: &Config, args: Args) -> Result<(), CmdError> {
    let plan = plan(config, &args)?;
    let (shard, to) = (plan.shard, plan.to);
    let mut client = client(config).await?;
    loop {
        match step(config, &mut client, &plan, &args.change).await? {
            Step::Drained { current } => {
                println!("{shard}: weight {current} (target {to}): drained");
                return Ok(());
            }
            Step::Lowered { next } if next <= to => {
                println!("{shard}: drained to {to}");
                return Ok(());
            }
            Step::Lowered { .. } => {
                println!(
                    "  next step in {}s (Ctrl-C is safe; run the same command to resume)",
                    plan.every.as_secs_f64()
                );
                tokio::time::sleep(plan.every).await;
            }
            Step::Full { next_close } => {
                println!(
                    "  {} drain windows open: waiting for the next to close ({next_close} UTC)",
                    config.queues.max_drain_windows
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_weight;

    #[test]
    fn steps_are_rounded_and_stop_at_the_target() {
        assert_eq!(next_weight(0.4, 0.1, 0.0), 0.3);
        assert_eq!(next_weight(0.3, 0.1, 0.0), 0.2);
        assert_eq!(next_weight(0.15, 0.1, 0.1), 0.1);
        assert_eq!(next_weight(1.0, 5.0, 0.0), 0.0);
    }
}
