//! One request on the engine, from its record to its answer (`docs/engine.md` §5): the route
//! (`proxy::decide`, the same decisions as the hyper path), then a bodiless GET through
//! [`super::get`] (parking, replay, redirect, other resident shards, queue learning), anything
//! else sent once (a DELETE for a queue the shard does not know is asked of the realm's other
//! resident shards), or the reload answer for a queue whose realm moved away.

use std::sync::Arc;

use tokio::net::TcpStream;

use super::body::Streamed;
use super::get;
use super::record::Record;
use super::relay::{self, Relayed};
use super::shard::{self, exchange, Got, Request, Stop};
use super::Engine;
use crate::error::ProxyError;
use crate::h1::response::ToClient;
use crate::h1::Framing;
use crate::proxy::answers::{self, Own};
use crate::proxy::decide::{self, Decision};
pub use crate::proxy::Route;
use crate::routing::ShardId;

/// Largest answer body read whole (a registration's, a `BAD_EVENT_QUEUE_ID`).
pub const MAX_SMALL_BODY: usize = 64 * 1024;

/// How a request was answered.
#[derive(Debug)]
pub enum Outcome {
    /// A shard's answer was relayed (`status`), from `shard`.
    Relayed {
        shard: ShardId,
        status: u16,
        relayed: Relayed,
    },
    /// kansas answers itself (a routed request names its shard).
    Own { shard: Option<ShardId>, own: Own },
    /// A failure before any answer: the error table's answer.
    Failed {
        shard: Option<ShardId>,
        error: ProxyError,
    },
    /// The client left; nothing is answered.
    ClientLeft { shard: Option<ShardId> },
}

impl Outcome {
    fn from_stop(shard: ShardId, stop: Stop) -> Outcome {
        match stop {
            Stop::Failed(error) => Outcome::Failed {
                shard: Some(shard),
                error,
            },
            Stop::ClientLeft => Outcome::ClientLeft { shard: Some(shard) },
        }
    }
}

/// Routes and forwards `rec` (its realm valid) from `client`; `body` is the client's body, if
/// it has one, not read yet.
pub async fn forward(
    engine: &Arc<Engine>,
    client: &TcpStream,
    rec: &Record,
    realm: &str,
    mut body: Option<&mut Streamed<'_>>,
    to: &ToClient<'_>,
) -> Outcome {
    let proxy = &engine.proxy;
    let mut queue_id = rec.queue_id.as_deref().map(str::to_string);
    let mut whole = None;
    if let (true, None, Some(b)) = (rec.is_delete(), &queue_id, body.as_deref_mut()) {
        // Zulip's clients send a DELETE's queue_id in a form-encoded body.
        match Box::pin(b.read_whole(engine)).await {
            Ok(bytes) => {
                queue_id = decide::queue_id(std::str::from_utf8(&bytes).ok());
                whole = Some(bytes);
            }
            Err(error) => return Outcome::Failed { shard: None, error },
        }
    }
    let snapshot = proxy.snapshot().load();
    let decision = decide::decide(
        &snapshot,
        proxy.queues(),
        realm,
        queue_id.as_deref(),
        rec.is_get(),
        proxy.default_move_policy(),
        crate::routing::residency::now_epoch(),
    );
    let (target, home, known) = match decision {
        Decision::NoShard => {
            let error = crate::proxy::no_shard(&snapshot, realm);
            return Outcome::Failed { shard: None, error };
        }
        Decision::Reload { old, queue_id } => {
            drop(snapshot);
            // Boxed: rare, and it waits (`queues.reload_delay_secs`).
            return Box::pin(reload(engine, rec, old, queue_id)).await;
        }
        Decision::Forward {
            target,
            home,
            known,
            moved,
        } => {
            if moved {
                proxy.metrics().queues.drain_moves.inc();
            }
            (target, home, known)
        }
    };
    drop(snapshot);
    let route = Route {
        target,
        home,
        known,
        realm,
        queue_id: queue_id.as_deref(),
    };
    let body = body.filter(|b| !b.is_done());
    if rec.is_get() && body.is_none() && whole.is_none() {
        return get::forward_get(engine, client, rec, &route, to).await;
    }
    // Boxed: a long-poll is a GET; other requests are answered at once.
    Box::pin(send(engine, client, rec, &route, body, whole, to)).await
}

/// Anything but a bodiless GET: sent once, never parked or redirected.
async fn send(
    engine: &Arc<Engine>,
    client: &TcpStream,
    rec: &Record,
    route: &Route<'_>,
    body: Option<&mut Streamed<'_>>,
    whole: Option<Vec<u8>>,
    to: &ToClient<'_>,
) -> Outcome {
    let framing = match (&whole, &body) {
        (Some(w), _) => Framing::Length(w.len() as u64),
        (None, Some(b)) => b.framing,
        (None, None) => Framing::Empty,
    };
    let write = |out: &mut Vec<u8>| {
        rec.write_head(framing, out);
        if let Some(w) = &whole {
            out.extend_from_slice(w);
        }
    };
    let req = Request {
        write: &write,
        body,
        to_head: rec.is_head(),
    };
    let got = exchange(engine, route.target, req, Some(client), to).await;
    let got = match got {
        Ok(got) => got,
        Err(stop) => return Outcome::from_stop(route.target, stop),
    };
    if got.redirect().is_some() {
        tracing::error!(
            method = rec.method(),
            shard = engine.proxy.shard_name(got.shard),
            "X-Accel-Redirect on a request that is not a GET"
        );
        got.discard();
        return Outcome::Failed {
            shard: Some(route.target),
            error: ProxyError::BadRedirect,
        };
    }
    // A DELETE for a queue the map does not know may be on another resident shard.
    let answer = if rec.is_delete() && whole.is_some() {
        let others = get::others(engine, route, got.info.status);
        if others.is_empty() {
            Answer::Got(got)
        } else {
            Box::pin(get::ask_others(
                engine,
                client,
                got,
                others,
                get::Ask::Send(&write),
                to,
            ))
            .await
        }
    } else {
        Answer::Got(got)
    };
    if let (Some(q), Some(status)) = (route.queue_id, answer.status()) {
        if (rec.is_delete() && (200..300).contains(&status)) || status == 400 {
            engine.proxy.queues().forget(q);
        }
    }
    answer.deliver(engine, client).await
}

/// An answer in hand: a shard's (its body unread, or read whole), or a failure.
pub enum Answer {
    Got(Got),
    Whole(Got, Vec<u8>),
    /// kansas's own answer for a request routed to the shard (the park deadline's).
    Own(ShardId, Own),
    Stopped(ShardId, Stop),
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Got(g) | Answer::Whole(g, _) => Some(g.info.status),
            Answer::Own(_, own) => Some(own.status.as_u16()),
            Answer::Stopped(..) => None,
        }
    }

    /// Sends it to the client.
    pub async fn deliver(self, engine: &Engine, client: &TcpStream) -> Outcome {
        match self {
            Answer::Got(got) => {
                let (shard, status) = (got.shard, got.info.status);
                // Boxed: relaying comes after the wait, and a waiting long-poll should not
                // carry its space.
                let relayed = Box::pin(relay::relay(engine, client, got)).await;
                Outcome::Relayed {
                    shard,
                    status,
                    relayed,
                }
            }
            Answer::Whole(got, body) => {
                let (shard, status) = (got.shard, got.info.status);
                let relayed = Box::pin(relay::write_whole(client, got, &body)).await;
                Outcome::Relayed {
                    shard,
                    status,
                    relayed,
                }
            }
            Answer::Own(shard, own) => Outcome::Own {
                shard: Some(shard),
                own,
            },
            Answer::Stopped(shard, stop) => Outcome::from_stop(shard, stop),
        }
    }
}

/// The `reload` move: Zulip's exact `BAD_EVENT_QUEUE_ID` answer (the client reloads and
/// re-registers on the realm's new shard), the queue forgotten, and a DELETE sent to the old
/// shard in the background with the client's own credentials, so Tornado frees it. The answer
/// is held for `queues.reload_delay_secs` (see the hyper path's `elsewhere::reload`).
pub async fn reload(engine: &Arc<Engine>, rec: &Record, old: ShardId, queue_id: &str) -> Outcome {
    let proxy = &engine.proxy;
    proxy.queues().forget(queue_id);
    proxy.metrics().queues.reload_moves.inc();
    let mut delete = Vec::new();
    rec.write_reload_delete(queue_id, &mut delete);
    let queue = queue_id.to_string();
    let engine_for_delete = engine.clone();
    tokio::spawn(async move {
        let e = &engine_for_delete;
        let name = e.proxy.shard_name(old).to_string();
        let to = ToClient {
            request_id: b"-",
            version: crate::h1::Version::Http11,
            keep_alive: true,
        };
        let write = |out: &mut Vec<u8>| out.extend_from_slice(&delete);
        let req = Request {
            write: &write,
            body: None,
            to_head: false,
        };
        match exchange(e, old, req, None, &to).await {
            Ok(got) => {
                let status = got.info.status;
                if let Some((got, _)) = relay::read_whole(e, got, MAX_SMALL_BODY).await {
                    let (up, reuse) = (got.up, got.info.shard_keep_alive);
                    super::pool::give(got.buf);
                    super::pool::give(got.out);
                    shard::checkin(
                        up,
                        if reuse {
                            super::upstream::Reuse::Clean
                        } else {
                            super::upstream::Reuse::Close
                        },
                    );
                }
                tracing::info!(
                    shard = name,
                    queue_id = queue,
                    status,
                    "realm moved: old queue deleted"
                );
            }
            Err(stop) => {
                tracing::warn!(shard = name, queue_id = queue, error = ?stop, "realm moved: could not delete the old queue");
            }
        }
    });
    let delay = proxy.reload_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Outcome::Own {
        shard: Some(old),
        own: answers::bad_event_queue(queue_id),
    }
}
