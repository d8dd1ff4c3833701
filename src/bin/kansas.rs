//! The `kansas` binary: parses the command line and calls the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sharding reverse proxy for Zulip's real-time event system.
#[derive(Parser)]
#[command(name = "kansas", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy daemon.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/kansas/kansas.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and print every problem; exit 2 when it is invalid.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
    },
    /// Print which shard a realm host is routed to, and why.
    Route {
        /// Realm host, as in the Host header (e.g. chat.example.com).
        host: String,
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/kansas/kansas.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config),
        Command::CheckConfig { file } => match kansas::config::load(&file) {
            Ok(config) => {
                println!(
                    "{}: valid ({} shards, {} assignments, {} rules)",
                    file.display(),
                    config.routing.shards().len(),
                    config.routing.assignments().len(),
                    config.routing.rules().len()
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
        },
        Command::Route { host, config } => {
            let config = match load_or_report(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match kansas::explain::explain(&config.routing, &host) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(msg) => {
                    eprintln!("kansas route: {msg}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn load_or_report(path: &Path) -> Result<kansas::config::Config, ExitCode> {
    kansas::config::load(path).map_err(|e| {
        eprintln!("kansas: invalid configuration {}:", path.display());
        for p in e.problems() {
            eprintln!("  {p}");
        }
        ExitCode::from(2)
    })
}

fn run(path: PathBuf) -> ExitCode {
    let config = match load_or_report(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    kansas::logging::init(config.log.format, &config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kansas: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kansas::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "kansas failed");
            eprintln!("kansas: {e:#}");
            ExitCode::FAILURE
        }
    }
}
