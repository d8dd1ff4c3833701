//! The `kansas` command line: the daemon, configuration checks, routing explanations, database
//! migrations and the operator commands. Exit codes: 0 success, 1 a failure while running (the
//! database unreachable, ...), 2 bad input or configuration (nothing was written).

mod db;

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
    /// Print which shard a realm host is routed to, and why (consults the database if any).
    Route {
        /// Realm host, as in the Host header (e.g. chat.example.com).
        host: String,
    },
    /// Database schema.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Assign a realm to a shard (in the database).
    Assign {
        realm: String,
        shard: String,
        /// Why, for the record.
        #[arg(long)]
        note: Option<String>,
        /// Who is making the change (default: $SUDO_USER or $USER).
        #[arg(long)]
        by: Option<String>,
        /// What the realm's existing queues do: reload (clients re-register on the new shard)
        /// or drain (they stay until they expire). Default: queues.move_policy.
        #[arg(long = "move")]
        move_policy: Option<String>,
    },
    /// Remove a realm's assignment: it goes back to rules and hashing.
    Unassign { realm: String },
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
    },
    /// List shards: address, port, weight and where it comes from, assigned realms.
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
        /// Print the plan, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a sharding.json telling Django the port kansas routes each listed realm to.
    ExportZulip {
        /// File with one realm host per line.
        #[arg(long)]
        realms: PathBuf,
        /// Where to write (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DbAction {
    /// Apply missing migrations (safe to run twice).
    Migrate,
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
            UrlEnvUnset(_) | BadUrl | SchemaNotMigrated { .. } | SchemaTooNew { .. } => {
                CmdError::Usage(e.to_string())
            }
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
