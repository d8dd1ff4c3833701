//! The `kansas` command line: the daemon, configuration checks, routing explanations, database
//! migrations and the operator commands. Exit codes: 0 success, 1 a failure while running (the
//! database unreachable, ...), 2 bad input or configuration (nothing was written).
//!
//! One file per command group, each with its arguments and its code: `check` (`check-config`),
//! `route`, `residency`, `db`, `assign` (`assign`, `unassign`, `assignments`), `rules`
//! (`rule`, `rules`), `shards` (`weight`, `shards`), `drain`, `zulip` (`import-zulip`,
//! `export-zulip`, with the merging of Zulip's files in `merge`). Shared by them: `change`
//! (the flags every routing change takes, and its commit), `input` (arguments checked against
//! the config file), `conn` (the database), `clock` and `error`.

mod assign;
mod change;
mod check;
mod clock;
mod conn;
mod db;
mod drain;
mod error;
mod input;
mod merge;
mod residency;
mod route;
mod rules;
mod shards;
mod zulip;

pub use clock::utc;
pub use error::CmdError;
pub use route::batch_answer;

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
    /// The operator commands (database and routing).
    #[command(flatten)]
    Op(Operation),
}

/// The commands that work from the configuration (and the database, when there is one).
#[derive(Subcommand)]
enum Operation {
    /// Print which shard a realm host is routed to, why, and its resident shards (consults the
    /// database if any). With --batch: read `HOST [USER_ID]` lines on standard input and print
    /// one JSON object per line.
    Route(route::Args),
    /// Show the open drain windows, or a realm's resident shards and until when; close windows.
    Residency(residency::Args),
    /// Database schema.
    Db {
        #[command(subcommand)]
        action: db::Action,
    },
    /// Assign a realm to a shard, or to several (comma-separated: split by user, as Zulip's
    /// `9802_9803` ports).
    Assign(assign::AssignArgs),
    /// Remove a realm's assignment: it goes back to rules and hashing.
    Unassign(assign::UnassignArgs),
    /// List realm assignments.
    Assignments(assign::ListArgs),
    /// Set a shard's weight for hashed realms (0: none).
    Weight(shards::WeightArgs),
    /// Regex rules: `rule set PRIORITY PATTERN SHARDS`, `rule remove PRIORITY`.
    Rule {
        #[command(subcommand)]
        action: rules::Action,
    },
    /// List regex rules in the order they apply.
    Rules,
    /// List shards: address, port, weight, whether registered in the database, assigned realms.
    Shards,
    /// Lower a shard's weight step by step (safe to interrupt and run again).
    Drain(drain::Args),
    /// Import Zulip's sharding (sharding.json and/or zulip.conf) as assignments and rules.
    ImportZulip(zulip::ImportArgs),
    /// Write a sharding.json with every assignment and rule (split port lists included), and
    /// each realm listed in --realms as kansas routes it, for Django without kansas_zulip.
    ExportZulip(zulip::ExportArgs),
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
        Command::CheckConfig { file } => return check::run(&file),
        Command::Op(op) => load(&cli.config).and_then(|config| block_on(run(op, config))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kansas: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn load(path: &Path) -> Result<Config, CmdError> {
    crate::config::load(path).map_err(|source| CmdError::Config {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs a command on a runtime of its own: the commands that read or write the database (and
/// `route`, which consults it when there is one).
fn block_on(
    command: impl std::future::Future<Output = Result<(), CmdError>>,
) -> Result<(), CmdError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CmdError::Runtime)?
        .block_on(command)
}

async fn run(command: Operation, config: Config) -> Result<(), CmdError> {
    match command {
        Operation::Route(args) => route::run(&config, args).await,
        Operation::Residency(args) => residency::run(&config, args).await,
        Operation::Db { action } => db::run(&config, action).await,
        Operation::Assign(args) => assign::assign(&config, args).await,
        Operation::Unassign(args) => assign::unassign(&config, args).await,
        Operation::Assignments(args) => assign::list(&config, args).await,
        Operation::Weight(args) => shards::weight(&config, args).await,
        Operation::Rule { action } => rules::run(&config, action).await,
        Operation::Rules => rules::list(&config).await,
        Operation::Shards => shards::list(&config).await,
        Operation::Drain(args) => drain::run(&config, args).await,
        Operation::ImportZulip(args) => zulip::import(&config, args).await,
        Operation::ExportZulip(args) => zulip::export(&config, args).await,
    }
}
