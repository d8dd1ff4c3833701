//! One ordered delivery lane per shard, standing in for a RabbitMQ queue
//! (`notify_tornado_port_<port>`) and for Django's direct calls to that Tornado: it carries
//! event batches (`POST /fake/publish`, retried until the shard takes them, so a restarted shard
//! misses nothing) and queue registrations (`POST /api/v1/events/internal`, tried once, the
//! answer handed back), strictly in the order they were queued.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::conn::Conn;

/// How long one request of a lane may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Events for one realm with consecutive sequence numbers.
#[derive(Debug, Clone)]
pub struct Batch {
    pub realm: Arc<str>,
    pub first_seq: u64,
    pub count: u64,
    pub published_at_us: u64,
}

/// A queue registration, as Django sends it to the user's Tornado.
#[derive(Debug)]
pub struct Register {
    pub realm: Arc<str>,
    pub user: u64,
    pub lifespan_secs: u64,
    /// The publisher's sequence number for the realm when the registration was queued.
    pub realm_seq: u64,
    pub reply: oneshot::Sender<Result<Registered, RegisterError>>,
}

/// A queue the shard created.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub queue_id: String,
    /// The realm's sequence number the queue starts after.
    pub realm_seq: u64,
}

/// Why a registration failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterError {
    /// The shard answered this status (500: its routing disagrees with Django's).
    Status(u16),
    /// No usable answer: the failure's kind (`connect_refused`, `timeout`, `malformed`, ...).
    Failed(String),
}

/// What a lane carries.
#[derive(Debug)]
pub enum Op {
    /// A batch for the queues of `users` (every queue of the realm when `None`).
    Publish {
        batch: Batch,
        users: Option<Arc<str>>,
    },
    Register(Register),
}

/// Publisher counters.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub posts: AtomicU64,
    pub retries: AtomicU64,
    /// Batches queued but not yet accepted by their shard.
    pub pending: AtomicU64,
    /// Batches for a port no configured shard answers to (never delivered).
    pub undeliverable: AtomicU64,
}

/// Runs the lane to the shard at `addr` until `stop`.
pub async fn run(
    addr: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<Op>,
    stats: Arc<PublishStats>,
    stop: CancellationToken,
) {
    let mut conn = Conn::new(addr, None);
    loop {
        let op = tokio::select! {
            _ = stop.cancelled() => return,
            op = rx.recv() => match op {
                Some(op) => op,
                None => return,
            },
        };
        match op {
            Op::Publish { batch, users } => {
                if !publish(&mut conn, addr, &batch, users.as_deref(), &stats, &stop).await {
                    return;
                }
            }
            Op::Register(r) => register(&mut conn, addr, r).await,
        }
    }
}

/// Delivers one batch, retrying every 100 ms until the shard takes it; false when stopped.
async fn publish(
    conn: &mut Conn,
    addr: SocketAddr,
    b: &Batch,
    users: Option<&str>,
    stats: &PublishStats,
    stop: &CancellationToken,
) -> bool {
    let users = users.map_or(String::new(), |u| format!("&users={u}"));
    loop {
        let uri = format!(
            "http://{addr}/fake/publish?realm={}&seq={}&count={}&published_at_us={}{users}",
            b.realm, b.first_seq, b.count, b.published_at_us
        );
        let req = Request::post(uri)
            .header(http::header::HOST, addr.to_string())
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        stats.posts.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::select! {
            _ = stop.cancelled() => return false,
            r = conn.send(req, REQUEST_TIMEOUT) => matches!(r, Ok(a) if a.status == 200),
        };
        if ok {
            stats.pending.fetch_sub(1, Ordering::Relaxed);
            return true;
        }
        stats.retries.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Sends one registration (unless its caller gave up waiting) and hands back the answer.
async fn register(conn: &mut Conn, addr: SocketAddr, r: Register) {
    if r.reply.is_closed() {
        return;
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("user_profile_id", &r.user.to_string())
        .append_pair("lifespan_secs", &r.lifespan_secs.to_string())
        .append_pair("realm_seq", &r.realm_seq.to_string())
        .append_pair("dont_block", "true")
        .finish();
    let req = Request::post(format!("http://{addr}/api/v1/events/internal"))
        .header(http::header::HOST, &*r.realm)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    #[derive(Deserialize)]
    struct Answer {
        queue_id: String,
        realm_seq: u64,
    }
    let result = match conn.send(req, REQUEST_TIMEOUT).await {
        Err(f) => Err(RegisterError::Failed(f.name().to_string())),
        Ok(a) if a.status == 200 => match serde_json::from_slice::<Answer>(&a.body) {
            Ok(a) => Ok(Registered {
                queue_id: a.queue_id,
                realm_seq: a.realm_seq,
            }),
            Err(_) => Err(RegisterError::Failed("malformed".into())),
        },
        Ok(a) => Err(RegisterError::Status(a.status.as_u16())),
    };
    let _ = r.reply.send(result);
}
