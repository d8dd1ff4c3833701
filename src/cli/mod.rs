//! The `kansas` command line: the daemon, configuration checks, routing explanations, database
//! migrations and the operator commands. Exit codes: 0 success, 1 a failure while running (the
//! database unreachable, ...), 2 bad input or configuration (nothing was written).

mod change;
mod db;
mod show;
mod zulip;

pub use change::utc;
pub use show::batch_answer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Sharding reverse proxy for Zulip's real-time event system.
#[derive(Parser)]
#[command(name = "kansas", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = "/etc/kansas/kansas.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy daemon: the master, which keeps the listeners and runs workers
    /// (SIGUSR1: upgrade to the binary on disk without dropping a connection).
    Run,
    /// A worker process; started by `kansas run` only.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        control_fd: i32,
        #[arg(long)]
        generation: u64,
        #[arg(long)]
        master_pid: i32,
    },
    /// Check a configuration file and print every problem; exit 2 when it is invalid.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
    },
    /// Print which shard a realm host is routed to, why, and its resident shards (consults the
    /// database if any). With --batch: read `HOST [USER_ID]` lines on standard input and print
    /// one JSON object per line.
    Route {
        /// Realm host, as in the Host header (e.g. chat.example.com).
        #[arg(required_unless_present = "batch")]
        host: Option<String>,
        /// Read hosts from standard input, answer in JSON lines.
        #[arg(long, conflicts_with = "host")]
        batch: bool,
        /// Evaluate drain windows at this time (seconds since the epoch; default now).
        #[arg(long)]
        at: Option<f64>,
        /// Also show this user's shards (a realm split by user).
        #[arg(long)]
        user: Option<u64>,
    },
    /// Show the open drain windows, or a realm's resident shards and until when; close windows.
    Residency {
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
    },
    /// Database schema.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Assign a realm to a shard, or to several (comma-separated: split by user, as Zulip's
    /// `9802_9803` ports).
    Assign {
        realm: String,
        /// SHARD or SHARD,SHARD,...
        shards: String,
        /// Why, for the record (at most 1000 characters, no control characters).
        #[arg(long, value_parser = one_line::<1000>)]
        note: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Remove a realm's assignment: it goes back to rules and hashing.
    Unassign {
        realm: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List realm assignments.
    Assignments {
        /// Only this shard's.
        #[arg(long)]
        shard: Option<String>,
    },
    /// Set a shard's weight for hashed realms (0: none).
    Weight {
        shard: String,
        #[arg(allow_hyphen_values = true)]
        weight: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Regex rules: `rule set PRIORITY PATTERN SHARDS`, `rule remove PRIORITY`.
    Rule {
        #[command(subcommand)]
        action: RuleAction,
    },
    /// List regex rules in the order they apply.
    Rules,
    /// List shards: address, port, weight, whether registered in the database, assigned realms.
    Shards,
    /// Lower a shard's weight step by step (safe to interrupt and run again).
    Drain {
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
    },
    /// Import Zulip's sharding (sharding.json and/or zulip.conf) as assignments and rules.
    ImportZulip {
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
    },
    /// Write a sharding.json with every assignment and rule (split port lists included), and
    /// each realm listed in --realms as kansas routes it, for Django without kansas_zulip.
    ExportZulip {
        /// File with one realm host per line (realms placed by hashing must be listed).
        #[arg(long)]
        realms: Option<PathBuf>,
        /// Where to write (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// How a routing change treats the queues of the realms it moves.
#[derive(clap::Args, Debug, Clone, Default)]
struct ChangeArgs {
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

/// A value kept in the database and printed in tables (`--by`, `--note`): at most `MAX`
/// characters and no control characters (a newline or an escape sequence would break
/// `kansas assignments` and the terminal showing it).
fn one_line<const MAX: usize>(text: &str) -> Result<String, String> {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("control character {c:?} not allowed"));
    }
    if text.chars().count() > MAX {
        return Err(format!("at most {MAX} characters"));
    }
    Ok(text.to_string())
}

#[derive(Subcommand)]
enum RuleAction {
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

#[derive(Subcommand)]
enum DbAction {
    /// Apply missing migrations and register the config file's shards (safe to run twice;
    /// run it again after changing [[shards]]).
    Migrate {
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Print the schema version.
    Status,
}

/// A command's failure.
#[derive(Debug)]
pub enum CmdError {
    /// Bad input or configuration: exit 2, nothing written.
    Usage(String),
    /// Something failed while running: exit 1.
    Failed(String),
}

impl From<crate::store::StoreError> for CmdError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError::*;
        match e {
            UrlEnvUnset(_)
            | BadUrl
            | SchemaNotMigrated { .. }
            | SchemaTooNew { .. }
            | TooManyWindows { .. } => CmdError::Usage(e.to_string()),
            _ => CmdError::Failed(e.to_string()),
        }
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run => return crate::master::main(&cli.config),
        Command::Worker {
            control_fd,
            generation,
            master_pid,
        } => return crate::worker::main(&cli.config, control_fd, generation, master_pid),
        Command::CheckConfig { file } => return check_config(&file),
        command => load(&cli.config).and_then(|config| db::dispatch(command, config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CmdError::Usage(msg)) => {
            eprintln!("kansas: {msg}");
            ExitCode::from(2)
        }
        Err(CmdError::Failed(msg)) => {
            eprintln!("kansas: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<Config, CmdError> {
    crate::config::load(path).map_err(|e| {
        let lines: Vec<String> = e.problems().iter().map(|p| format!("  {p}")).collect();
        CmdError::Usage(format!(
            "invalid configuration {}:\n{}",
            path.display(),
            lines.join("\n")
        ))
    })
}

fn check_config(file: &Path) -> ExitCode {
    match crate::config::load(file) {
        Ok(config) => {
            println!(
                "{}: valid ({} shards, {} assignments, {} rules{})",
                file.display(),
                config.routing.shards().len(),
                config.routing.assignments().len(),
                config.routing.rules().len(),
                if config.database.is_some() {
                    ", database"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let problems = e.problems();
            eprintln!("{}: {} problem(s)", file.display(), problems.len());
            for p in problems {
                eprintln!("  {p}");
            }
            ExitCode::from(2)
        }
    }
}
