//! The `kansas-load` binary: parses arguments, runs `kansas_testkit::load`, prints the summary, writes
//! the JSON report, and exits 1 when events were lost, duplicated or reordered or errors went
//! past the allowances (2 for bad arguments).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kansas_testkit::load::{self, args, Options, RegisterVia};

/// Simulated Zulip clients long-polling through kansas (or nginx, or a shard), counting every
/// lost, duplicated or reordered event and every error by kind.
///
/// Without --routing-config, every event batch goes to every --shards address and clients
/// register through the target. With it (a kansas config file, its [database] followed live),
/// kansas-load plays Django: each batch goes to the shards its realm's users are resident on
/// (with the users whose queues may be there), and clients register through a Django stand-in
/// that asks the user's current shard directly (POST /api/v1/events/internal), in order with
/// the events queued for that shard. At the end every client deletes its queue through the
/// target (DELETE with a form body).
#[derive(Parser)]
#[command(name = "kansas-load", version)]
struct Args {
    /// Where clients send requests: http://host:port.
    #[arg(long)]
    target: String,
    /// Number of realms; clients are spread over them evenly.
    #[arg(long, default_value_t = 200)]
    realms: usize,
    /// Number of concurrent clients.
    #[arg(long, default_value_t = 2000)]
    clients: usize,
    /// How long events are published (60s, 2m, ...).
    #[arg(long, default_value = "60s")]
    duration: String,
    /// Events per second over all realms (500/s, 600/m, ...).
    #[arg(long, default_value = "500/s")]
    publish_rate: String,
    /// fake-tornado shards to inject every event into (comma-separated host:port or http://
    /// URLs). Ignored with --routing-config, which says where events go.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "routing_config"
    )]
    shards: Vec<String>,
    /// A kansas config file: publish and register by its routing, as Django does with
    /// kansas_zulip (shard addresses from its [[shards]]; its [database], if any, followed).
    #[arg(long)]
    routing_config: Option<PathBuf>,
    /// How clients register: "django" (the stand-in calls the user's current shard; the default
    /// with --routing-config) or "target" (a GET through the target; the default without).
    #[arg(long, value_parser = ["target", "django"])]
    register_via: Option<String>,
    /// Publish each event to its users' current shard only, not to every shard they are
    /// resident on (a realm draining from one shard to another then loses events: this shows
    /// the harness sees it). Needs --routing-config.
    #[arg(long, requires = "routing_config")]
    publish_current_only: bool,
    /// lifespan_secs asked at registration: seconds a queue lives without a client (0: the
    /// server's default, Zulip's 600 s).
    #[arg(long, default_value_t = 0)]
    lifespan_secs: u64,
    /// Do not delete the queues at the end of the run (by default every client deletes its
    /// queue through the target, as a Zulip client does when it leaves).
    #[arg(long)]
    keep_queues: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Errors allowed before the run fails: KIND=N (e.g. http_502=3, reset=1, any=10). Repeatable.
    #[arg(long)]
    allow: Vec<String>,
    /// Spread client connections over this many loopback source addresses (127.0.0.1, .2, ...).
    #[arg(long, default_value_t = 0)]
    sources: usize,
    /// Client request timeout (the web app uses 90 s).
    #[arg(long, default_value = "90s")]
    request_timeout: String,
    /// Spread client starts over this long (default: 1 s per 2,000 clients).
    #[arg(long)]
    ramp: Option<String>,
    /// After publishing stops, how long clients get to receive every event.
    #[arg(long, default_value = "15s")]
    settle: String,
    /// Multiplies the web app's retry delays (1 = the web app's; smaller for quick tests).
    #[arg(long, default_value_t = 1.0)]
    backoff_scale: f64,
    /// Realm hosts are r<i>.<run-id>.<realm-domain>; default run id is random.
    #[arg(long)]
    run_id: Option<String>,
    #[arg(long, default_value = "load.example.com")]
    realm_domain: String,
    /// No live progress display.
    #[arg(long)]
    quiet: bool,
}

fn options(a: &Args) -> Result<Options, String> {
    if a.clients == 0 || a.realms == 0 {
        return Err("--clients and --realms must be at least 1".into());
    }
    if !(a.backoff_scale.is_finite() && a.backoff_scale >= 0.0) {
        return Err("--backoff-scale must be a number >= 0".into());
    }
    let register_via = match (a.register_via.as_deref(), &a.routing_config) {
        (Some("target"), _) | (None, None) => RegisterVia::Target,
        (Some(_), None) => return Err("--register-via django needs --routing-config".into()),
        (_, Some(path)) => {
            kansas::config::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
            RegisterVia::Django
        }
    };
    let run_id = a.run_id.clone().unwrap_or_else(load::new_run_id);
    let probe = format!("r0.{run_id}.{}", a.realm_domain);
    if kansas::routing::normalize_host(&probe).ok().as_deref() != Some(probe.as_str()) {
        return Err(format!(
            "--run-id/--realm-domain make an invalid host {probe:?}"
        ));
    }
    Ok(Options {
        target: args::target(&a.target)?,
        realms: a.realms,
        clients: a.clients,
        duration: args::duration(&a.duration)?,
        publish_rate: args::rate(&a.publish_rate)?,
        shards: a
            .shards
            .iter()
            .map(|s| args::target(s))
            .collect::<Result<_, _>>()?,
        routing_config: a.routing_config.clone(),
        register_via,
        publish_current_only: a.publish_current_only,
        lifespan_secs: a.lifespan_secs,
        keep_queues: a.keep_queues,
        realm_domain: a.realm_domain.clone(),
        run_id,
        sources: args::loopback_sources(a.sources)?,
        request_timeout: args::duration(&a.request_timeout)?,
        ramp: match &a.ramp {
            Some(r) => args::duration(r)?,
            None => std::time::Duration::from_secs_f64(a.clients as f64 / 2000.0),
        },
        settle: args::duration(&a.settle)?,
        backoff_scale: a.backoff_scale,
        allow: a
            .allow
            .iter()
            .map(|s| args::allowance(s))
            .collect::<Result<_, _>>()?,
        progress: !a.quiet,
    })
}

fn main() -> ExitCode {
    let a = Args::parse();
    kansas::logging::init(kansas::config::LogFormat::Text, "warn");
    let opts = match options(&a) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kansas-load: {e}");
            return ExitCode::from(2);
        }
    };
    kansas::limits::raise_fd_limit();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let report = match rt.block_on(load::run(opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kansas-load: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.summary());
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("kansas-load: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
