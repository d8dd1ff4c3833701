//! The `fake-tornado` binary: a stand-in Zulip Tornado shard (see `kansas_testkit::fake_tornado`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kansas_testkit::fake_tornado::{FakeTornado, Options};
use tokio::signal::unix::{signal, SignalKind};

/// A faithful stand-in for one Zulip Tornado shard: event queues, long-polls, heartbeats,
/// per-queue lifespans, persistence across restart (with Zulip's restart event), event injection
/// (POST /fake/publish), and which users it serves: by a kansas routing config (as Tornado with
/// kansas_zulip's patches) or a fixed user split.
///
/// Users served elsewhere: a GET gets an empty body with X-Accel-Redirect to the user's current
/// port, Django's registration (POST /api/v1/events/internal) a 500, a DELETE is forwarded as a
/// cleanup to POST http://127.0.0.1:<port>/fake/cleanup of each port the user is resident on
/// (this assumes every shard listens on 127.0.0.1 at its Tornado port) and answered 200.
#[derive(Parser)]
#[command(name = "fake-tornado", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9800")]
    listen: SocketAddr,
    /// Dump queues here on SIGTERM; load (and remove) it on start.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Seconds before an idle long-poll gets a heartbeat (plus the jitter).
    #[arg(long, default_value_t = 45.0)]
    heartbeat_secs: f64,
    /// Random extra seconds added to each heartbeat delay (Tornado: 0-10).
    #[arg(long, default_value_t = 10.0)]
    heartbeat_jitter_secs: f64,
    /// Lifespan of a queue registered without lifespan_secs (or 0): seconds without a
    /// connected client before it is deleted (Zulip: 600). A registration's lifespan_secs
    /// overrides it, capped at 7 days.
    #[arg(long, default_value_t = 600.0)]
    queue_timeout_secs: f64,
    /// Comma-separated Tornado ports a realm's users are split over (user_id % n); this
    /// process's own port must be one of them. The user id comes from the X-Zulip-User-Id header.
    #[arg(long, value_delimiter = ',', conflicts_with = "routing_config")]
    user_split: Vec<u16>,
    /// A kansas config file: serve the users its routing (its [database] included, followed
    /// live) puts on this process's Tornado port, at least until their drain windows close.
    /// The user is the X-Zulip-User-Id header, or user_profile_id / user_id at registration;
    /// the realm is the Host header.
    #[arg(long)]
    routing_config: Option<PathBuf>,
    /// The Tornado port this process answers to (default: the port it listens on).
    #[arg(long)]
    tornado_port: Option<u16>,
    /// Log filter.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn secs(name: &str, v: f64, allow_zero: bool) -> Result<Duration, String> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) {
        return Err(format!(
            "--{name} must be a positive number of seconds (got {v})"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn main() -> ExitCode {
    let args = Args::parse();
    kansas::logging::init(kansas::config::LogFormat::Text, &args.log_level);
    let options = match (|| -> Result<Options, String> {
        let port = args.tornado_port.unwrap_or(args.listen.port());
        if !args.user_split.is_empty() && !args.user_split.contains(&port) {
            return Err(format!(
                "--user-split {:?} must include this process's port {port}",
                args.user_split,
            ));
        }
        if args.tornado_port == Some(0) {
            return Err("--tornado-port must be 1-65535".into());
        }
        Ok(Options {
            listen: args.listen,
            state_file: args.state_file.clone(),
            heartbeat: secs("heartbeat-secs", args.heartbeat_secs, false)?,
            heartbeat_jitter: secs("heartbeat-jitter-secs", args.heartbeat_jitter_secs, true)?,
            queue_timeout: secs("queue-timeout-secs", args.queue_timeout_secs, false)?,
            user_split: args.user_split.clone(),
            routing_config: args.routing_config.clone(),
            tornado_port: args.tornado_port,
        })
    })() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fake-tornado: {e}");
            return ExitCode::from(2);
        }
    };
    kansas::limits::raise_fd_limit();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let fake = match FakeTornado::start(options).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("fake-tornado: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(listen = %fake.addr(), "fake-tornado listening");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        match fake.stop().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fake-tornado: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
