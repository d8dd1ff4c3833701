//! A bodiless GET on the engine (`docs/engine.md` §5), as the hyper path's `forward_get`: tried
//! while its shard is up; parked while it is down (the record and the park ticket are all it
//! holds) and sent again when released; answered at the park deadline if the shard does not
//! come back; an `X-Accel-Redirect` to a configured shard followed once. A known queue that a
//! shard redirects away gets the reload answer; a queue the map does not know that its shard
//! does not have is asked of the realm's other resident shards; the queue map learns from the
//! answer (a registration's body is read whole for its new `queue_id`).

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::forward::{reload, Answer, Outcome, Route, MAX_SMALL_BODY};
use super::record::Record;
use super::relay;
use super::shard::{client_left, exchange, Got, Request, Stop};
use super::Engine;
use crate::config::TimeoutAnswer;
use crate::error::ProxyError;
use crate::h1::response::ToClient;
use crate::h1::Framing;
use crate::parking::Released;
use crate::proxy::answers;
use crate::routing::ShardId;

/// Forwards a bodiless GET and relays its answer.
pub async fn forward_get(
    engine: &Arc<Engine>,
    client: &TcpStream,
    rec: &Record,
    route: &Route<'_>,
    to: &ToClient<'_>,
) -> Outcome {
    // A known queue lives on its shard: a redirect from there means the shard no longer serves
    // the user, so the queue gets no more events and the client must re-register.
    let follow = !route.known;
    let answer = get(engine, client, rec, route.target, follow, to).await;
    // Boxed: everything after the wait, so a waiting long-poll carries none of its space.
    Box::pin(answered(engine, client, rec, route, to, answer)).await
}

/// A GET's answer in hand: the reload answer for a known queue its shard redirected away, the
/// realm's other resident shards asked for an unknown queue, the queue map taught, and the
/// answer delivered.
async fn answered(
    engine: &Arc<Engine>,
    client: &TcpStream,
    rec: &Record,
    route: &Route<'_>,
    to: &ToClient<'_>,
    answer: Answer,
) -> Outcome {
    let registration = route.queue_id.is_none() && rec.is_registration();
    let follow = !route.known;
    let answer = match (answer, route.queue_id) {
        (Answer::Got(got), Some(q)) if !follow && got.redirect().is_some() => {
            got.discard();
            return reload(engine, rec, route.target, q).await;
        }
        (Answer::Got(got), _) => {
            let others = others(engine, route, got.info.status);
            if others.is_empty() {
                Answer::Got(got)
            } else {
                Box::pin(ask_others(engine, client, got, others, Ask::Get(rec), to)).await
            }
        }
        (answer, _) => answer,
    };
    let answer = match learn(engine, route, registration, answer) {
        Learned::Done(answer) => answer,
        Learned::ReadFirst(got) => Box::pin(learn_registration(engine, route, got)).await,
    };
    answer.deliver(engine, client).await
}

/// The realm's other resident shards to ask when the answer is `status` (see
/// `proxy::others_for`).
pub fn others(engine: &Engine, route: &Route<'_>, status: u16) -> Vec<ShardId> {
    crate::proxy::others_for(&engine.proxy, route, status)
}

/// How the request is sent to another resident shard.
pub enum Ask<'a> {
    /// A GET: with parking and a redirect, as to its first shard.
    Get(&'a Record),
    /// Anything else: what writes it, once.
    Send(&'a (dyn Fn(&mut Vec<u8>) + Sync)),
}

/// While the answer so far is `BAD_EVENT_QUEUE_ID`, asks each of `others` in turn; the first
/// that has the queue answers. When none has it (or none answers), the first answer stands.
pub async fn ask_others(
    engine: &Arc<Engine>,
    client: &TcpStream,
    first: Got,
    others: Vec<ShardId>,
    ask: Ask<'_>,
    to: &ToClient<'_>,
) -> Answer {
    let shard = first.shard;
    let Some((first, body)) = relay::read_whole(engine, first, MAX_SMALL_BODY).await else {
        return Answer::Stopped(shard, Stop::Failed(ProxyError::UpstreamBodyFailed));
    };
    let bad_queue = serde_json::from_slice::<serde_json::Value>(&body)
        .is_ok_and(|v| v["code"] == "BAD_EVENT_QUEUE_ID");
    if !bad_queue {
        return Answer::Whole(first, body);
    }
    for other in others {
        let answer = match ask {
            Ask::Get(rec) => get(engine, client, rec, other, true, to).await,
            Ask::Send(write) => {
                let req = Request {
                    write,
                    body: None,
                    to_head: false,
                };
                match exchange(engine, other, req, Some(client), to).await {
                    Ok(got) => Answer::Got(got),
                    Err(stop) => Answer::Stopped(other, stop),
                }
            }
        };
        match answer {
            Answer::Got(got) if got.info.status == 400 => got.discard(),
            Answer::Stopped(_, Stop::ClientLeft) => return answer,
            Answer::Stopped(..) => {}
            Answer::Own(_, ref own) if own.status == 400 => {}
            answer => {
                first.discard();
                return answer;
            }
        }
    }
    Answer::Whole(first, body)
}

/// A GET at `shard`, parked while it is down; a redirect followed once when `follow`.
async fn get(
    engine: &Arc<Engine>,
    client: &TcpStream,
    rec: &Record,
    mut shard: ShardId,
    follow: bool,
    to: &ToClient<'_>,
) -> Answer {
    let parking = engine.proxy.parking();
    let deadline = Instant::now() + parking.timeout;
    let mut seq = None;
    let mut redirected: Option<Box<[u8]>> = None;
    loop {
        let park = engine.proxy.park(shard).clone();
        if park.is_up() || !parking.enabled {
            let write = |out: &mut Vec<u8>| match &redirected {
                Some(head) => out.extend_from_slice(head),
                None => rec.write_head(Framing::Empty, out),
            };
            let req = Request {
                write: &write,
                body: None,
                to_head: false,
            };
            let sent = exchange(engine, shard, req, Some(client), to).await;
            match sent {
                Ok(got) => {
                    let Some(location) = got.redirect().filter(|_| follow).map(<[u8]>::to_vec)
                    else {
                        return Answer::Got(got);
                    };
                    got.discard();
                    if redirected.is_some() {
                        tracing::error!(
                            shard = engine.proxy.shard_name(shard),
                            "second X-Accel-Redirect in a row: not followed"
                        );
                        return Answer::Stopped(shard, ProxyError::BadRedirect.into());
                    }
                    match crate::proxy::redirect_to(&engine.proxy, shard, &location) {
                        Ok((next, path)) => {
                            let mut head = Vec::new();
                            rec.write_redirected_head(path, &mut head);
                            redirected = Some(head.into_boxed_slice());
                            shard = next;
                            seq = None;
                            engine.proxy.metrics().queues.redirects.inc();
                            continue;
                        }
                        Err(e) => return Answer::Stopped(shard, e.into()),
                    }
                }
                Err(Stop::Failed(e)) if e.shard_down() && parking.enabled => {
                    park.mark_down(e.kind())
                }
                Err(stop) => return Answer::Stopped(shard, stop),
            }
        }
        let Ok(ticket) = park.park(seq) else {
            return Answer::Stopped(shard, ProxyError::ParkOverflow.into());
        };
        seq = Some(ticket.seq());
        tokio::select! {
            released = ticket.wait(deadline) => {
                if released == Released::Deadline {
                    return deadline_answer(parking.timeout_answer, shard, rec);
                }
            }
            () = client_left(Some(client)) => return Answer::Stopped(shard, Stop::ClientLeft),
        }
    }
}

/// What a GET still parked at its deadline gets: Zulip's normal empty events result for its
/// queue, or `503` when so configured or when it names no queue.
fn deadline_answer(answer: TimeoutAnswer, shard: ShardId, rec: &Record) -> Answer {
    match (answer, rec.queue_id.as_deref()) {
        (TimeoutAnswer::EmptyEvents, Some(q)) => Answer::Own(shard, answers::empty_events(q)),
        _ => Answer::Stopped(shard, ProxyError::ParkTimeout.into()),
    }
}

/// What [`learn`] left to do.
enum Learned {
    Done(Answer),
    /// A registration's answer: its body must be read for the new queue's id.
    ReadFirst(Got),
}

/// Teaches the queue map from a GET's answer: a success for a queue (or a registration's new
/// queue, read from its body) is where that queue lives; a 400 for a queue forgets it. kansas's
/// own answers teach nothing.
fn learn(engine: &Engine, route: &Route<'_>, registration: bool, answer: Answer) -> Learned {
    let queues = engine.proxy.queues();
    let (shard, status) = match &answer {
        Answer::Got(g) | Answer::Whole(g, _) => (g.shard, g.info.status),
        Answer::Own(..) | Answer::Stopped(..) => return Learned::Done(answer),
    };
    match (route.queue_id, status, answer) {
        (Some(q), 200, answer) => {
            if !(route.known && shard == route.target) {
                queues.learn(q, shard, route.home, route.realm);
            }
            Learned::Done(answer)
        }
        (Some(q), 400, answer) => {
            queues.forget(q);
            Learned::Done(answer)
        }
        (None, 200, Answer::Got(got)) if registration => Learned::ReadFirst(got),
        (None, 200, Answer::Whole(got, body)) if registration => {
            learn_new_queue(engine, route, shard, &body);
            Learned::Done(Answer::Whole(got, body))
        }
        (_, _, answer) => Learned::Done(answer),
    }
}

/// Reads a registration's answer whole and learns its new queue.
async fn learn_registration(engine: &Engine, route: &Route<'_>, got: Got) -> Answer {
    let shard = got.shard;
    match relay::read_whole(engine, got, MAX_SMALL_BODY).await {
        Some((got, body)) => {
            learn_new_queue(engine, route, shard, &body);
            Answer::Whole(got, body)
        }
        None => Answer::Stopped(shard, ProxyError::UpstreamBodyFailed.into()),
    }
}

/// The `queue_id` of a registration's answer, learned as living on `shard`.
fn learn_new_queue(engine: &Engine, route: &Route<'_>, shard: ShardId, body: &[u8]) {
    if let Some(q) = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["queue_id"].as_str().map(str::to_string))
    {
        engine
            .proxy
            .queues()
            .learn(&q, shard, route.home, route.realm);
    }
}
