//! One simulated Zulip client: registers a queue, either as Zulip does (through the Django
//! stand-in, which asks the user's current shard directly) or through the target (GET without
//! `queue_id`, `dont_block=true`), then long-polls through the target in a loop exactly like the
//! web app: `last_event_id` bookkeeping (every event counts for it; only `fake_event`s count
//! for the report, so `restart` and `heartbeat` events are otherwise ignored), the web app's
//! backoff and `dont_block=true` retry after an error, and a re-registration (a "reload") on
//! `BAD_EVENT_QUEUE_ID`. At the end it deletes its queue (`DELETE` with a form body, as Zulip's
//! clients do).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::conn::{Answer, Conn};
use super::publisher::{now_us, Publisher};
use super::report::{Registration, Stats};
use crate::fake_tornado::USER_ID_HEADER;

/// Counters the progress display reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub events: AtomicU64,
    pub errors: AtomicU64,
    pub registered: AtomicU64,
}

/// Everything one client needs.
pub struct ClientSpec {
    pub id: usize,
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
    pub realm: Arc<str>,
    pub path: &'static str,
    pub request_timeout: Duration,
    /// Multiplies the web app's retry delays (1.0 = the web app's).
    pub backoff_scale: f64,
    pub start_delay: Duration,
    /// Events published at or after this (µs since the epoch) count as steady state.
    pub steady_after_us: u64,
    pub live: Arc<Live>,
    /// This client's highest received sequence number (`u64::MAX` while unregistered).
    pub last_seq: Arc<AtomicU64>,
    /// Registers through this Django stand-in, else through the target.
    pub django: Option<Arc<Publisher>>,
    /// `lifespan_secs` asked at registration (0: Zulip's default).
    pub lifespan_secs: u64,
    /// How long the final `DELETE` may take (`None`: no `DELETE`, the queue is kept).
    pub delete_timeout: Option<Duration>,
}

/// What a client hands back at the end: its counters and its live registration, if any.
pub struct ClientResult {
    pub realm: Arc<str>,
    pub stats: Stats,
    pub open: Option<Registration>,
}

#[derive(Deserialize)]
struct Body {
    result: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    queue_id: Option<String>,
    #[serde(default)]
    realm_seq: Option<u64>,
    #[serde(default)]
    events: Option<Vec<serde_json::Value>>,
}

/// The web app's retry delay after `failures` failures in a row.
pub fn backoff(failures: u32, scale: f64) -> Duration {
    let base = 2f64.powf((failures as f64 + 1.0) / 2.0).min(90.0);
    Duration::from_secs_f64(base * (1.0 + fastrand::f64()) / 2.0 * scale)
}

/// Runs the client until `stop`.
pub async fn run(spec: ClientSpec, stop: CancellationToken) -> ClientResult {
    let mut stats = Stats::default();
    let mut reg: Option<Registration> = None;
    tokio::select! {
        _ = stop.cancelled() => return ClientResult { realm: spec.realm, stats, open: None },
        _ = tokio::time::sleep(spec.start_delay) => {}
    }
    let mut conn = Conn::new(spec.target, spec.source);
    let mut queue_id: Option<String> = None;
    let mut last_event_id: i64 = -1;
    let mut failures: u32 = 0;
    let lifespan = match spec.lifespan_secs {
        0 => String::new(),
        n => format!("&lifespan_secs={n}"),
    };
    loop {
        if let (None, Some(django)) = (&queue_id, &spec.django) {
            let user = spec.id as u64;
            let registered = tokio::select! {
                _ = stop.cancelled() => break,
                r = django.register(&spec.realm, user, spec.lifespan_secs) => r,
            };
            match registered {
                Ok(r) => {
                    queue_id = Some(r.queue_id);
                    last_event_id = -1;
                    failures = 0;
                    stats.registrations += 1;
                    reg = Some(Registration::new(r.realm_seq));
                    spec.last_seq.store(r.realm_seq, Ordering::Relaxed);
                    spec.live.registered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(client = spec.id, error = ?e, "registration failed");
                    failures += 1;
                    note_error(&mut stats, &spec, "register_failed");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff(failures, spec.backoff_scale)) => {}
                    }
                }
            }
            continue;
        }
        let uri = match &queue_id {
            None => format!(
                "http://{}{}?dont_block=true{lifespan}",
                spec.target, spec.path
            ),
            Some(q) => format!(
                "http://{}{}?queue_id={q}&last_event_id={last_event_id}{}",
                spec.target,
                spec.path,
                if failures > 0 { "&dont_block=true" } else { "" }
            ),
        };
        let req = Request::get(uri)
            .header(http::header::HOST, &*spec.realm)
            .header(USER_ID_HEADER, spec.id.to_string())
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let started = Instant::now();
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            r = conn.send(req, spec.request_timeout) => r,
        };
        stats.requests += 1;
        spec.live.requests.fetch_add(1, Ordering::Relaxed);
        let _ = stats
            .round_trip
            .record(started.elapsed().as_micros().max(1) as u64);
        let outcome = match result {
            Err(f) => Err(f.name().to_string()),
            Ok(answer) => {
                *stats.by_status.entry(answer.status.as_u16()).or_default() += 1;
                interpret(&answer)
            }
        };
        match outcome {
            Ok(body) if queue_id.is_none() => match (body.queue_id, body.realm_seq) {
                (Some(q), Some(seq)) => {
                    queue_id = Some(q);
                    last_event_id = -1;
                    failures = 0;
                    stats.registrations += 1;
                    reg = Some(Registration::new(seq));
                    spec.last_seq.store(seq, Ordering::Relaxed);
                    spec.live.registered.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    failures += 1;
                    note_error(&mut stats, &spec, "malformed");
                }
            },
            Ok(body) => {
                failures = 0;
                let r = reg.as_mut().expect("registered");
                for ev in body.events.unwrap_or_default() {
                    if let Some(id) = ev["id"].as_i64() {
                        last_event_id = last_event_id.max(id);
                    }
                    if ev["type"] == "fake_event" {
                        let (Some(seq), Some(at)) =
                            (ev["seq"].as_u64(), ev["published_at_us"].as_u64())
                        else {
                            note_error(&mut stats, &spec, "malformed");
                            continue;
                        };
                        r.receive(seq, &mut stats);
                        let latency = now_us().saturating_sub(at).max(1);
                        let _ = stats.event_latency.record(latency);
                        if at >= spec.steady_after_us {
                            let _ = stats.event_latency_steady.record(latency);
                        }
                        spec.live.events.fetch_add(1, Ordering::Relaxed);
                    }
                }
                spec.last_seq.store(r.last_seq, Ordering::Relaxed);
            }
            Err(kind) if kind == "reload" => {
                stats.reloads += 1;
                if let Some(r) = reg.take() {
                    r.close(None, &mut stats);
                    spec.live.registered.fetch_sub(1, Ordering::Relaxed);
                }
                spec.last_seq.store(u64::MAX, Ordering::Relaxed);
                queue_id = None;
            }
            Err(kind) => {
                failures += 1;
                note_error(&mut stats, &spec, &kind);
                let delay = backoff(failures, spec.backoff_scale);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    if let (Some(q), Some(timeout)) = (&queue_id, spec.delete_timeout) {
        // The long-poll in flight was abandoned: its connection cannot carry the DELETE.
        conn.reset();
        delete(&mut conn, &spec, q, timeout, &mut stats).await;
    }
    ClientResult {
        realm: spec.realm,
        stats,
        open: reg,
    }
}

/// Deletes the queue through the target, as Zulip's clients do on leaving (`queue_id` in a
/// form body); a failure counts as `delete_<kind>` (`delete_http_<code>` for a status).
async fn delete(
    conn: &mut Conn,
    spec: &ClientSpec,
    queue_id: &str,
    timeout: Duration,
    stats: &mut Stats,
) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("queue_id", queue_id)
        .finish();
    let req = Request::delete(format!("http://{}{}", spec.target, spec.path))
        .header(http::header::HOST, &*spec.realm)
        .header(USER_ID_HEADER, spec.id.to_string())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    stats.requests += 1;
    spec.live.requests.fetch_add(1, Ordering::Relaxed);
    match conn.send(req, timeout).await {
        Ok(a) => {
            *stats.by_status.entry(a.status.as_u16()).or_default() += 1;
            if a.status != 200 {
                note_error(stats, spec, &format!("delete_http_{}", a.status.as_u16()));
            }
        }
        Err(f) => note_error(stats, spec, &format!("delete_{}", f.name())),
    }
}

fn note_error(stats: &mut Stats, spec: &ClientSpec, kind: &str) {
    stats.error(kind);
    spec.live.errors.fetch_add(1, Ordering::Relaxed);
}

/// Sorts an answer into a usable body, a reload, or an error kind.
fn interpret(a: &Answer) -> Result<Body, String> {
    let body: Option<Body> = serde_json::from_slice(&a.body).ok();
    match (a.status.as_u16(), body) {
        (200, Some(b)) if b.result == "success" => Ok(b),
        (200, _) => Err("malformed".into()),
        (400, Some(b)) if b.code.as_deref() == Some("BAD_EVENT_QUEUE_ID") => Err("reload".into()),
        (code, _) => Err(format!("http_{code}")),
    }
}
