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

/// A client's state between polls.
struct Client {
    spec: ClientSpec,
    stats: Stats,
    reg: Option<Registration>,
    conn: Conn,
    queue_id: Option<String>,
    last_event_id: i64,
    failures: u32,
}

/// Runs the client until `stop`.
pub async fn run(spec: ClientSpec, stop: CancellationToken) -> ClientResult {
    tokio::select! {
        _ = stop.cancelled() => {
            return ClientResult { realm: spec.realm, stats: Stats::default(), open: None };
        }
        _ = tokio::time::sleep(spec.start_delay) => {}
    }
    let mut c = Client {
        conn: Conn::new(spec.target, spec.source),
        spec,
        stats: Stats::default(),
        reg: None,
        queue_id: None,
        last_event_id: -1,
        failures: 0,
    };
    loop {
        let retry_in = if let (None, Some(django)) = (&c.queue_id, c.spec.django.clone()) {
            let user = c.spec.id as u64;
            let registered = tokio::select! {
                _ = stop.cancelled() => break,
                r = django.register(&c.spec.realm, user, c.spec.lifespan_secs) => r,
            };
            match registered {
                Ok(r) => {
                    c.registered(r.queue_id, r.realm_seq);
                    None
                }
                Err(e) => {
                    tracing::debug!(client = c.spec.id, error = ?e, "registration failed");
                    Some(c.failed("register_failed"))
                }
            }
        } else {
            let req = c.request();
            let started = Instant::now();
            let result = tokio::select! {
                _ = stop.cancelled() => break,
                r = c.conn.send(req, c.spec.request_timeout) => r,
            };
            c.answered(result, started)
        };
        if let Some(delay) = retry_in {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
    if let (Some(q), Some(timeout)) = (&c.queue_id, c.spec.delete_timeout) {
        // The long-poll in flight was abandoned: its connection cannot carry the DELETE.
        c.conn.reset();
        delete(&mut c.conn, &c.spec, q, timeout, &mut c.stats).await;
    }
    ClientResult {
        realm: c.spec.realm,
        stats: c.stats,
        open: c.reg,
    }
}

impl Client {
    /// The next request: a registration through the target, or a poll of the queue.
    /// Origin-form, as nginx forwards it (the Host header names the realm).
    fn request(&self) -> Request<Full<Bytes>> {
        let spec = &self.spec;
        let uri = match &self.queue_id {
            None => {
                let lifespan = match spec.lifespan_secs {
                    0 => String::new(),
                    n => format!("&lifespan_secs={n}"),
                };
                format!("{}?dont_block=true{lifespan}", spec.path)
            }
            Some(q) => format!(
                "{}?queue_id={q}&last_event_id={}{}",
                spec.path,
                self.last_event_id,
                if self.failures > 0 {
                    "&dont_block=true"
                } else {
                    ""
                }
            ),
        };
        Request::get(uri)
            .header(http::header::HOST, &*spec.realm)
            .header(USER_ID_HEADER, spec.id.to_string())
            .body(Full::new(Bytes::new()))
            .expect("valid request")
    }

    /// A queue was registered.
    fn registered(&mut self, queue_id: String, realm_seq: u64) {
        self.queue_id = Some(queue_id);
        self.last_event_id = -1;
        self.failures = 0;
        self.stats.registrations += 1;
        self.reg = Some(Registration::new(realm_seq));
        self.spec.last_seq.store(realm_seq, Ordering::Relaxed);
        self.spec.live.registered.fetch_add(1, Ordering::Relaxed);
    }

    /// A failure of `kind`: counted; returns the web app's delay before the next try.
    fn failed(&mut self, kind: &str) -> Duration {
        self.failures += 1;
        note_error(&mut self.stats, &self.spec, kind);
        backoff(self.failures, self.spec.backoff_scale)
    }

    /// What the target answered (or how the request failed); `Some(delay)` to wait before the
    /// next request.
    fn answered(
        &mut self,
        result: Result<Answer, super::conn::Failure>,
        started: Instant,
    ) -> Option<Duration> {
        self.stats.requests += 1;
        self.spec.live.requests.fetch_add(1, Ordering::Relaxed);
        let micros = started.elapsed().as_micros().max(1) as u64;
        let _ = self.stats.round_trip.record(micros);
        let outcome = match result {
            Err(f) => Err(f.name().to_string()),
            Ok(answer) => {
                *self
                    .stats
                    .by_status
                    .entry(answer.status.as_u16())
                    .or_default() += 1;
                interpret(&answer)
            }
        };
        match outcome {
            Ok(body) if self.queue_id.is_none() => {
                if let (Some(q), Some(seq)) = (body.queue_id, body.realm_seq) {
                    self.registered(q, seq);
                } else {
                    self.failures += 1;
                    note_error(&mut self.stats, &self.spec, "malformed");
                }
                None
            }
            Ok(body) => {
                self.failures = 0;
                self.events(body.events.unwrap_or_default());
                None
            }
            Err(kind) if kind == "reload" => {
                self.stats.reloads += 1;
                if let Some(r) = self.reg.take() {
                    r.close(None, &mut self.stats);
                    self.spec.live.registered.fetch_sub(1, Ordering::Relaxed);
                }
                self.spec.last_seq.store(u64::MAX, Ordering::Relaxed);
                self.queue_id = None;
                None
            }
            Err(kind) => Some(self.failed(&kind)),
        }
    }

    /// The events of one poll: every id counts for `last_event_id`; `fake_event`s are checked.
    fn events(&mut self, events: Vec<serde_json::Value>) {
        let r = self.reg.as_mut().expect("registered");
        for ev in events {
            if let Some(id) = ev["id"].as_i64() {
                self.last_event_id = self.last_event_id.max(id);
            }
            if ev["type"] != "fake_event" {
                continue;
            }
            let (Some(seq), Some(at)) = (ev["seq"].as_u64(), ev["published_at_us"].as_u64()) else {
                note_error(&mut self.stats, &self.spec, "malformed");
                continue;
            };
            r.receive(seq, &mut self.stats);
            let latency = now_us().saturating_sub(at).max(1);
            let _ = self.stats.event_latency.record(latency);
            if at >= self.spec.steady_after_us {
                let _ = self.stats.event_latency_steady.record(latency);
            }
            self.spec.live.events.fetch_add(1, Ordering::Relaxed);
        }
        self.spec.last_seq.store(r.last_seq, Ordering::Relaxed);
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
    let req = Request::delete(spec.path)
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
