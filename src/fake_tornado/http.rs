//! The fake shard's HTTP surface, matching Tornado's: long-poll `GET` and `DELETE` on
//! `/json/events` and `/api/v1/events`, Django's `POST /api/v1/events/internal`, and the fake's
//! own `/fake/publish` (event injection) and `/fake/queues` (inspection).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

use super::state::Event;
use super::Shared;

type Resp = Response<Full<Bytes>>;

/// Header the fake reads the user id from (the stand-in for Zulip's authentication).
pub const USER_ID_HEADER: &str = "x-zulip-user-id";

fn json_resp(status: StatusCode, body: serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    r
}

fn error(status: StatusCode, msg: &str, code: &str) -> Resp {
    json_resp(status, json!({"result": "error", "msg": msg, "code": code}))
}

/// Zulip's exact answer for an unknown queue.
pub fn bad_queue(queue_id: &str) -> Resp {
    json_resp(
        StatusCode::BAD_REQUEST,
        json!({"result": "error", "msg": format!("Bad event queue ID: {queue_id}"),
               "code": "BAD_EVENT_QUEUE_ID", "queue_id": queue_id}),
    )
}

fn events_resp(queue_id: &str, events: Vec<Event>) -> Resp {
    json_resp(
        StatusCode::OK,
        json!({"result": "success", "msg": "", "events": events, "queue_id": queue_id}),
    )
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The realm: `Host` lower-cased without port.
fn realm(req: &Request<Incoming>) -> Option<String> {
    let host = req.headers().get(header::HOST)?.to_str().ok()?;
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

fn params(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Serves one request.
pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    if shared.lock().stopping {
        // Like Tornado after SIGTERM: no answer; the connection is closed shortly.
        return std::future::pending().await;
    }
    let path = req.uri().path().to_string();
    let resp = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/json/events" | "/api/v1/events") => get_events(&shared, req).await,
        (Method::DELETE, "/json/events" | "/api/v1/events") => delete_queue(&shared, &req),
        (Method::POST, "/api/v1/events/internal") => register(&shared, req).await,
        (Method::POST, "/fake/publish") => publish(&shared, &req).await,
        (Method::GET, "/fake/queues") => list_queues(&shared, &req),
        (_, "/json/events" | "/api/v1/events" | "/api/v1/events/internal" | "/fake/publish") => {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "BAD_REQUEST",
            )
        }
        _ => error(StatusCode::NOT_FOUND, "Not found", "NOT_FOUND"),
    };
    Ok(resp)
}

/// `X-Accel-Redirect` for a user that lives on another port (user-split realms).
fn redirect_if_elsewhere(shared: &Shared, req: &Request<Incoming>) -> Option<Resp> {
    let ports = &shared.options.user_split;
    if ports.is_empty() {
        return None;
    }
    let user_id = user_id(req);
    let port = ports[(user_id % ports.len() as u64) as usize];
    if port == shared.port {
        return None;
    }
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut r = Response::new(Full::new(Bytes::new()));
    r.headers_mut().insert(
        "x-accel-redirect",
        format!("/internal/tornado/{port}{pq}").parse().unwrap(),
    );
    Some(r)
}

fn user_id(req: &Request<Incoming>) -> u64 {
    req.headers()
        .get(USER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn get_events(shared: &Arc<Shared>, req: Request<Incoming>) -> Resp {
    if let Some(r) = redirect_if_elsewhere(shared, &req) {
        return r;
    }
    let p = params(req.uri().query());
    let dont_block = p.get("dont_block").is_some_and(|v| v == "true");
    let Some(queue_id) = p.get("queue_id").cloned() else {
        if !dont_block {
            return error(
                StatusCode::BAD_REQUEST,
                "Missing 'queue_id' argument",
                "BAD_REQUEST",
            );
        }
        let Some(realm) = realm(&req) else {
            return error(StatusCode::BAD_REQUEST, "Missing Host", "BAD_REQUEST");
        };
        let Some((id, seq)) = shared.create(&realm, user_id(&req)) else {
            return std::future::pending().await;
        };
        return json_resp(
            StatusCode::OK,
            json!({"result": "success", "msg": "", "events": [], "queue_id": id,
                   "last_event_id": -1, "realm_seq": seq}),
        );
    };
    let last_event_id: i64 = match p.get("last_event_id").map(|v| v.parse()) {
        None => -1,
        Some(Ok(v)) => v,
        Some(Err(_)) => {
            return error(StatusCode::BAD_REQUEST, "Bad last_event_id", "BAD_REQUEST");
        }
    };
    let wait = {
        let mut state = shared.lock();
        let Some(q) = state.queues.get_mut(&queue_id) else {
            return bad_queue(&queue_id);
        };
        q.prune(last_event_id);
        if !q.events.is_empty() || dont_block {
            let events = q.events.iter().cloned().collect();
            state.touch(&queue_id);
            return events_resp(&queue_id, events);
        }
        state.wait(&queue_id).expect("queue exists")
    };
    // Marks the queue idle again however this request ends, client disconnects included.
    let _guard = WaitGuard {
        shared: shared.clone(),
        queue_id: &queue_id,
        generation: wait.generation,
    };
    let heartbeat =
        shared.options.heartbeat + shared.options.heartbeat_jitter.mul_f64(fastrand::f64());
    tokio::select! {
        _ = wait.wake => {}
        _ = tokio::time::sleep(heartbeat) => shared.lock().heartbeat(&queue_id),
    }
    let state = shared.lock();
    match state.queues.get(&queue_id) {
        Some(q) => events_resp(&queue_id, q.events.iter().cloned().collect()),
        None => bad_queue(&queue_id),
    }
}

struct WaitGuard<'a> {
    shared: Arc<Shared>,
    queue_id: &'a str,
    generation: u64,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().unwait(self.queue_id, self.generation);
    }
}

fn delete_queue(shared: &Shared, req: &Request<Incoming>) -> Resp {
    let p = params(req.uri().query());
    let Some(queue_id) = p.get("queue_id") else {
        return error(
            StatusCode::BAD_REQUEST,
            "Missing 'queue_id' argument",
            "BAD_REQUEST",
        );
    };
    match shared.lock().queues.remove(queue_id) {
        Some(_) => json_resp(StatusCode::OK, json!({"result": "success", "msg": ""})),
        None => bad_queue(queue_id),
    }
}

async fn register(shared: &Shared, req: Request<Incoming>) -> Resp {
    let Some(realm) = realm(&req) else {
        return error(StatusCode::BAD_REQUEST, "Missing Host", "BAD_REQUEST");
    };
    let mut p = params(req.uri().query());
    let header_user = req
        .headers()
        .contains_key(USER_ID_HEADER)
        .then(|| user_id(&req));
    let body = match tokio::time::timeout(Duration::from_secs(10), req.into_body().collect()).await
    {
        Ok(Ok(b)) => b.to_bytes(),
        _ => return error(StatusCode::BAD_REQUEST, "Bad body", "BAD_REQUEST"),
    };
    p.extend(form_urlencoded::parse(&body).into_owned());
    let user_id = match p.get("user_id").map(|v| v.parse::<u64>()) {
        Some(Ok(u)) => u,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "Bad user_id", "BAD_REQUEST"),
        None => header_user.unwrap_or(0),
    };
    let Some((id, seq)) = shared.create(&realm, user_id) else {
        return std::future::pending().await;
    };
    json_resp(
        StatusCode::OK,
        json!({"result": "success", "msg": "", "queue_id": id, "last_event_id": -1,
               "realm_seq": seq}),
    )
}

async fn publish(shared: &Shared, req: &Request<Incoming>) -> Resp {
    let p = params(req.uri().query());
    let Some(realm) = p.get("realm").map(|r| r.to_ascii_lowercase()) else {
        return error(StatusCode::BAD_REQUEST, "Missing 'realm'", "BAD_REQUEST");
    };
    let num = |k: &str| p.get(k).map(|v| v.parse::<u64>());
    let count = match num("count") {
        None => 1,
        Some(Ok(c)) if c >= 1 => c,
        _ => return error(StatusCode::BAD_REQUEST, "Bad 'count'", "BAD_REQUEST"),
    };
    let published_at_us = match num("published_at_us") {
        None => now_us(),
        Some(Ok(t)) => t,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Bad 'published_at_us'",
                "BAD_REQUEST",
            )
        }
    };
    let answer = {
        let mut state = shared.lock();
        if state.stopping {
            None
        } else {
            let first_seq = match num("seq") {
                None => state.realm_seq.get(&realm).copied().unwrap_or(0) + 1,
                Some(Ok(s)) if s >= 1 => s,
                _ => return error(StatusCode::BAD_REQUEST, "Bad 'seq'", "BAD_REQUEST"),
            };
            let queues = state.publish(&realm, first_seq, count, published_at_us);
            Some(json!({"result": "success", "msg": "", "queues": queues,
                        "realm_seq": state.realm_seq[&realm]}))
        }
    };
    match answer {
        Some(body) => json_resp(StatusCode::OK, body),
        None => std::future::pending().await,
    }
}

fn list_queues(shared: &Shared, req: &Request<Incoming>) -> Resp {
    let p = params(req.uri().query());
    let realm = p.get("realm").map(|r| r.to_ascii_lowercase());
    let state = shared.lock();
    let queues: Vec<_> = state
        .queues
        .iter()
        .filter(|(_, q)| realm.as_ref().is_none_or(|r| &q.realm == r))
        .map(|(id, q)| json!({"id": id, "realm": q.realm, "user_id": q.user_id, "pending": q.events.len()}))
        .collect();
    json_resp(
        StatusCode::OK,
        json!({"result": "success", "msg": "", "count": queues.len(), "queues": queues}),
    )
}
