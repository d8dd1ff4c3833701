//! The commands that read or write the database (and `route`, which consults it when there is
//! one): dispatch, the checks every input goes through against the config file before anything
//! is written, and the schema commands.

use std::time::Duration;

use tokio_postgres::Client;

use super::{ChangeArgs, CmdError, Command, DbAction};
use crate::config::{Config, DatabaseConfig};
use crate::routing::{normalize_host, MovePolicy, Snapshot};
use crate::store::{self, admin, schema};

/// Runs a command that needs the database (or may use it).
pub(super) fn dispatch(command: Command, config: Config) -> Result<(), CmdError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CmdError::Failed(format!("cannot start the runtime: {e}")))?;
    rt.block_on(run(command, config))
}

async fn run(command: Command, config: Config) -> Result<(), CmdError> {
    match command {
        Command::Route {
            host,
            batch,
            at,
            user,
        } => super::show::route(&config, host, batch, at, user).await,
        Command::Residency {
            realm,
            user,
            json,
            close,
            all,
        } => match (close, all) {
            (Some(id), _) => super::change::close(&config, Some(id)).await,
            (None, true) => super::change::close(&config, None).await,
            (None, false) => super::show::residency(&config, realm, user, json).await,
        },
        Command::Db {
            action: DbAction::Migrate { change },
        } => migrate(&config, &change).await,
        Command::Db {
            action: DbAction::Status,
        } => {
            let (client, _) = store::connect(database(&config)?).await?;
            match schema::version(&client).await? {
                None => println!("kansas schema: not migrated (run `kansas db migrate`)"),
                Some(v) => println!(
                    "kansas schema: version {v} (this kansas: {})",
                    schema::latest()
                ),
            }
            Ok(())
        }
        Command::Assign {
            realm,
            shards,
            note,
            change,
        } => super::change::assign(&config, &realm, &shards, note, &change).await,
        Command::Unassign { realm, change } => {
            super::change::unassign(&config, &realm, &change).await
        }
        Command::Assignments { shard } => super::show::assignments(&config, shard).await,
        Command::Weight {
            shard,
            weight,
            change,
        } => super::change::weight(&config, &shard, &weight, &change).await,
        Command::Rule { action } => super::change::rule(&config, action).await,
        Command::Rules => super::show::rules(&config).await,
        Command::Shards => super::show::shards(&config).await,
        Command::Drain {
            shard,
            to,
            step,
            every,
            change,
        } => super::change::drain(&config, &shard, to, step, &every, &change).await,
        Command::ImportZulip {
            sharding_json,
            zulip_conf,
            external_host,
            default_port,
            dry_run,
            change,
        } => {
            let files = super::zulip::Files {
                sharding_json,
                zulip_conf,
                external_host,
                default_port,
            };
            super::zulip::import(&config, files, dry_run, &change).await
        }
        Command::ExportZulip { realms, output } => {
            super::zulip::export(&config, realms, output).await
        }
        Command::Run | Command::CheckConfig { .. } | Command::Worker { .. } => {
            unreachable!("handled by cli::main")
        }
    }
}

/// `kansas db migrate`: the schema, then the config file's shards in the registry (a routing
/// change like any other, with its drain window).
async fn migrate(config: &Config, change: &ChangeArgs) -> Result<(), CmdError> {
    let window = window(config, change)?;
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
    let committed = c
        .commit(
            &what,
            &who(change.by.clone()),
            window,
            config.queues.max_drain_windows,
        )
        .await?;
    for line in &done {
        println!("{line}");
    }
    if done.is_empty() {
        println!("every shard in the config file is registered");
    }
    super::change::report_window(&committed);
    Ok(())
}

pub(super) fn database(config: &Config) -> Result<&DatabaseConfig, CmdError> {
    config.database.as_ref().ok_or_else(|| {
        CmdError::Usage("this command needs a [database] section in the config".into())
    })
}

/// A connection with a migrated schema.
pub(super) async fn client(config: &Config) -> Result<Client, CmdError> {
    let (client, _notifications) = store::connect(database(config)?).await?;
    schema::check(&client).await?;
    Ok(client)
}

pub(super) fn realm(host: &str) -> Result<String, CmdError> {
    normalize_host(host).map_err(|_| CmdError::Usage(format!("{host:?} is not a valid realm host")))
}

pub(super) fn known_shard(config: &Config, shard: &str) -> Result<(), CmdError> {
    if config.routing.shard_id(shard).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = config
        .routing
        .shards()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    Err(CmdError::Usage(format!(
        "unknown shard {shard:?} (the config file has: {})",
        names.join(", ")
    )))
}

/// `SHARD` or `SHARD,SHARD,...`: each known to the config file, none twice, at most 64.
pub(super) fn shard_list(config: &Config, text: &str) -> Result<Vec<String>, CmdError> {
    let list: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
    for (i, s) in list.iter().enumerate() {
        known_shard(config, s)?;
        if list[..i].contains(s) {
            return Err(CmdError::Usage(format!("shard {s:?} is listed twice")));
        }
    }
    if list.len() > 64 {
        return Err(CmdError::Usage("at most 64 shards in a split".into()));
    }
    Ok(list)
}

/// Fails unless every shard of `list` is registered in the database.
pub(super) fn registered(change: &admin::Change<'_>, list: &[String]) -> Result<(), CmdError> {
    let registered = change.registered();
    match list.iter().find(|s| !registered.contains(&s.as_str())) {
        Some(s) => Err(CmdError::Usage(format!(
            "shard {s:?} is not registered in the database: run `kansas db migrate` first"
        ))),
        None => Ok(()),
    }
}

pub(super) fn weight(text: &str) -> Result<f64, CmdError> {
    match text.trim().parse::<f64>() {
        Ok(w) if w.is_finite() && w >= 0.0 => Ok(w),
        _ => Err(CmdError::Usage(format!(
            "weight {text:?} must be a finite number >= 0"
        ))),
    }
}

pub(super) fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        // From the environment, not checked like --by: keep it one plain line.
        .map(|u| u.chars().filter(|c| !c.is_control()).take(100).collect())
        .filter(|u: &String| !u.is_empty())
        .unwrap_or_else(|| "kansas-cli".into())
}

/// The drain window a change opens: zero for `--move reload`, `--drain-for`, else the
/// configured default for the configured policy.
pub(super) fn window(config: &Config, args: &ChangeArgs) -> Result<Duration, CmdError> {
    let policy = match args.move_policy.as_deref() {
        None => None,
        Some(p) => Some(
            MovePolicy::parse(p)
                .ok_or_else(|| CmdError::Usage(format!("--move {p:?} must be reload or drain")))?,
        ),
    };
    if let Some(text) = &args.drain_for {
        if policy == Some(MovePolicy::Reload) {
            return Err(CmdError::Usage(
                "--drain-for goes with --move drain, not reload".into(),
            ));
        }
        let d = crate::config::duration(text)
            .map_err(|e| CmdError::Usage(format!("--drain-for: {e}")))?;
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

pub(super) fn read(path: &std::path::Path) -> Result<String, CmdError> {
    crate::config::read_text(path)
        .map_err(|e| CmdError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// The routing kansas would use now (with its drain windows): the database's if reachable,
/// else the config file's.
pub(super) async fn current_routing(config: &Config) -> Result<Snapshot, CmdError> {
    let Some(db) = &config.database else {
        return Ok(config.routing.clone());
    };
    match store::connect(db).await {
        Ok((mut client, _)) => {
            schema::check(&client).await?;
            let state = store::load(&mut client).await?;
            let (snapshot, ignored) = store::compose(&config.routing, &state);
            for row in ignored {
                eprintln!("kansas: warning: {}: {}", row.what, row.why);
            }
            Ok(snapshot)
        }
        Err(e) => {
            eprintln!("kansas: warning: {e}; showing the config file's routing");
            Ok(config.routing.clone())
        }
    }
}
