//! The commands that change routing: `assign`, `unassign`, `weight`, `rule set|remove`,
//! `drain`, and `residency --close`. Each change is one transaction that also opens its drain
//! window (`docs/residency.md` §4); each prints what it did and the window it opened.

use std::time::Duration;

use super::db::{
    client, known_shard, realm, registered, shard_list, weight as parse_weight, who, window,
};
use super::{ChangeArgs, CmdError, RuleAction};
use crate::config::Config;
use crate::store::admin::{self, Change, Committed};

/// Prints the drain window a change opened, if any.
pub(super) fn report_window(c: &Committed) {
    match c.window {
        Some((id, until)) => println!(
            "drain window {id} open until {} UTC: the moved realms stay resident on their old shards until then",
            utc(until)
        ),
        None if c.changed => println!("no drain window: moved realms' old queues get BAD_EVENT_QUEUE_ID at their next poll"),
        None => println!("routing unchanged"),
    }
}

/// `YYYY-MM-DD HH:MM:SS` for seconds since the epoch (UTC).
pub fn utc(epoch: f64) -> String {
    let secs = epoch.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

async fn commit(
    config: &Config,
    c: Change<'_>,
    what: &str,
    args: &ChangeArgs,
    window: Duration,
) -> Result<(), CmdError> {
    let committed = c
        .commit(
            what,
            &who(args.by.clone()),
            window,
            config.queues.max_drain_windows,
        )
        .await?;
    report_window(&committed);
    Ok(())
}

pub(super) async fn assign(
    config: &Config,
    host: &str,
    shards: &str,
    note: Option<String>,
    args: &ChangeArgs,
) -> Result<(), CmdError> {
    let r = realm(host)?;
    let list = shard_list(config, shards)?;
    let window = window(config, args)?;
    let mut client = client(config).await?;
    let c = Change::begin(&mut client).await?;
    registered(&c, &list)?;
    let before = admin::assign(c.tx(), &r, &list, note.as_deref(), &who(args.by.clone())).await?;
    let to = list.join(",");
    let what = match &before {
        Some(b) if *b == list => format!("assign {r} {to} (unchanged)"),
        Some(b) => format!("assign {r} {} -> {to}", b.join(",")),
        None => format!("assign {r} -> {to}"),
    };
    println!("{what}");
    commit(config, c, &what, args, window).await
}

pub(super) async fn unassign(
    config: &Config,
    host: &str,
    args: &ChangeArgs,
) -> Result<(), CmdError> {
    let r = realm(host)?;
    let window = window(config, args)?;
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
    commit(config, c, &what, args, window).await
}

pub(super) async fn weight(
    config: &Config,
    shard: &str,
    text: &str,
    args: &ChangeArgs,
) -> Result<(), CmdError> {
    known_shard(config, shard)?;
    let w = parse_weight(text)?;
    let window = window(config, args)?;
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
    commit(config, c, &what, args, window).await
}

pub(super) async fn rule(config: &Config, action: RuleAction) -> Result<(), CmdError> {
    match action {
        RuleAction::Set {
            priority,
            pattern,
            shards,
            change: args,
        } => {
            let list = shard_list(config, &shards)?;
            if pattern.is_empty() || pattern.chars().count() > 1000 {
                return Err(CmdError::Usage("a pattern is 1 to 1000 characters".into()));
            }
            if let Err(e) = crate::routing::Rule::new(&pattern, 0) {
                return Err(CmdError::Usage(format!(
                    "{pattern:?} is not a valid regular expression: {e}"
                )));
            }
            let window = window(config, &args)?;
            let mut client = client(config).await?;
            let c = Change::begin(&mut client).await?;
            registered(&c, &list)?;
            let before = admin::set_rule(c.tx(), priority, &pattern, &list).await?;
            let what = match before {
                Some((p, s)) => format!(
                    "rule {priority}: {p:?} -> {} replaced by {pattern:?} -> {}",
                    s.join(","),
                    list.join(",")
                ),
                None => format!("rule {priority}: {pattern:?} -> {}", list.join(",")),
            };
            println!("{what}");
            commit(config, c, &what, &args, window).await
        }
        RuleAction::Remove {
            priority,
            change: args,
        } => {
            let window = window(config, &args)?;
            let mut client = client(config).await?;
            let c = Change::begin(&mut client).await?;
            if !admin::remove_rule(c.tx(), priority).await? {
                println!("no rule at priority {priority}; nothing to do");
                return Ok(());
            }
            let what = format!("rule {priority} removed");
            println!("{what}");
            commit(config, c, &what, &args, window).await
        }
    }
}

/// Lowers `shard`'s weight to `to`, `step` at a time, `every` apart, each step a change with
/// its drain window. It starts from the weight in force, so an interrupted drain resumes where
/// it stopped; when too many windows are open it waits for the oldest to close.
pub(super) async fn drain(
    config: &Config,
    shard: &str,
    to: f64,
    step: f64,
    every: &str,
    args: &ChangeArgs,
) -> Result<(), CmdError> {
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
    let every = crate::config::duration(every).map_err(|e| CmdError::Usage(e.to_string()))?;
    if every.is_zero() {
        return Err(CmdError::Usage("--every must be longer than 0".into()));
    }
    let window = window(config, args)?;
    let id = config.routing.shard_id(shard).expect("checked");
    let (config_weight, port) = (
        config.routing.shard(id).weight,
        config.routing.shard(id).port,
    );
    let mut client = client(config).await?;
    loop {
        let current = admin::shards(&client)
            .await?
            .into_iter()
            .find(|(n, _, _)| n == shard)
            .map_or(config_weight, |(_, _, w)| w);
        if current <= to {
            println!("{shard}: weight {current} (target {to}): drained");
            return Ok(());
        }
        // Round to avoid 0.30000000000000004-style steps.
        let next = (((current - step) * 1e9).round() / 1e9).max(to);
        let c = Change::begin(&mut client).await?;
        admin::set_weight(c.tx(), shard, next, port).await?;
        let what = format!("drain {shard}: weight {current} -> {next}");
        match c
            .commit(
                &what,
                &who(args.by.clone()),
                window,
                config.queues.max_drain_windows,
            )
            .await
        {
            Ok(committed) => {
                println!("{} {what}", super::show::clock());
                report_window(&committed);
            }
            Err(crate::store::StoreError::TooManyWindows { next_close, .. }) => {
                println!(
                    "  {} drain windows open: waiting for the next to close ({next_close} UTC)",
                    config.queues.max_drain_windows
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
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

/// `residency --close ID` / `--all`.
pub(super) async fn close(config: &Config, id: Option<i64>) -> Result<(), CmdError> {
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
