//! The fake shard's HTTP surface, matching Tornado's: the long-poll `GET` on `/json/events` and
//! `/api/v1/events` (here, with Zulip's checks: a user served elsewhere is redirected with
//! `X-Accel-Redirect`, a poll without `last_event_id` is refused), the request helpers, and the
//! dispatch to the rest (`manage.rs`: `DELETE`, Django's registration, the fake's own endpoints).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;

use super::manage;
use super::routing::Placement;
use super::state::Event;
use super::Shared;

pub(super) type Resp = Response<Full<Bytes>>;

/// Header the fake reads the user id from (the stand-in for Zulip's authentication).
pub const USER_ID_HEADER: &str = "x-zulip-user-id";

pub(super) fn json_resp(status: StatusCode, body: serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    r
}

pub(super) fn error(status: StatusCode, msg: &str, code: &str) -> Resp {
    json_resp(status, json!({"result": "error", "msg": msg, "code": code}))
}

pub(super) fn success() -> Resp {
    json_resp(StatusCode::OK, json!({"result": "success", "msg": ""}))
}

/// Zulip's exact answer for an unknown queue.
pub fn bad_queue(queue_id: &str) -> Resp {
    json_resp(
        StatusCode::BAD_REQUEST,
        json!({"result": "error", "msg": format!("Bad event queue ID: {queue_id}"),
               "code": "BAD_EVENT_QUEUE_ID", "queue_id": queue_id}),
    )
}

/// What Zulip does when the realm has no Tornado port at all (kansas_zulip's `NoShard`).
pub(super) fn no_shard(realm: &str) -> Resp {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("realm {realm} has no Tornado shard"),
        "NO_SHARD",
    )
}

fn events_resp(queue_id: &str, events: Vec<Event>) -> Resp {
    json_resp(
        StatusCode::OK,
        json!({"result": "success", "msg": "", "events": events, "queue_id": queue_id}),
    )
}

/// The `Host` header as sent ("" when absent or not text).
pub(super) fn host(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
}

/// The realm: `Host` lower-cased without port.
pub(super) fn realm(req: &Request<Incoming>) -> Option<String> {
    let host = host(req);
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

pub(super) fn params(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The query's parameters and then the form-encoded body's (which win), as Django merges
/// `request.GET` and `request.POST` for `REQ`.
pub(super) async fn form_params(req: Request<Incoming>) -> Result<HashMap<String, String>, Resp> {
    let mut p = params(req.uri().query());
    let body = match tokio::time::timeout(Duration::from_secs(10), req.into_body().collect()).await
    {
        Ok(Ok(b)) => b.to_bytes(),
        _ => return Err(error(StatusCode::BAD_REQUEST, "Bad body", "BAD_REQUEST")),
    };
    p.extend(form_urlencoded::parse(&body).into_owned());
    Ok(p)
}

/// A non-negative integer parameter; `Err` names a bad value (see [`bad_param`]).
pub(super) fn uint_param(p: &HashMap<String, String>, name: &str) -> Result<Option<u64>, String> {
    match p.get(name).map(|v| v.trim().parse::<u64>()) {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(_)) => Err(name.to_string()),
    }
}

/// The answer to a bad parameter.
pub(super) fn bad_param(name: String) -> Resp {
    error(
        StatusCode::BAD_REQUEST,
        &format!("Bad '{name}'"),
        "BAD_REQUEST",
    )
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
        (Method::DELETE, "/json/events" | "/api/v1/events") => {
            manage::delete_queue(&shared, req).await
        }
        (Method::POST, "/api/v1/events/internal") => manage::register(&shared, req).await,
        (Method::POST, "/fake/publish") => manage::publish(&shared, &req).await,
        (Method::POST, "/fake/cleanup") => manage::cleanup(&shared, req).await,
        (Method::GET, "/fake/queues") => manage::list_queues(&shared, &req),
        (
            _,
            "/json/events"
            | "/api/v1/events"
            | "/api/v1/events/internal"
            | "/fake/publish"
            | "/fake/cleanup",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "BAD_REQUEST",
        ),
        _ => error(StatusCode::NOT_FOUND, "Not found", "NOT_FOUND"),
    };
    Ok(resp)
}

/// Where a GET for a user this process does not serve goes: Zulip's `get_events` answers an
/// empty body with `X-Accel-Redirect` to the user's current port, which nginx follows.
fn redirect_if_elsewhere(shared: &Shared, req: &Request<Incoming>) -> Option<Resp> {
    let host = host(req);
    let port = match shared.placement(host, user_id(req)) {
        Placement::Here => return None,
        Placement::NoShard => return Some(no_shard(host)),
        Placement::Elsewhere { current, .. } => current,
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut r = Response::new(Full::new(Bytes::new()));
    r.headers_mut().insert(
        "x-accel-redirect",
        format!("/internal/tornado/{port}{pq}").parse().unwrap(),
    );
    Some(r)
}

/// The `X-Zulip-User-Id` header (0 when absent).
pub(super) fn user_id(req: &Request<Incoming>) -> u64 {
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
        let lifespan_secs = match uint_param(&p, "lifespan_secs") {
            Ok(l) => l,
            Err(name) => return bad_param(name),
        };
        let Some((id, seq)) = shared.create(&realm, user_id(&req), lifespan_secs) else {
            return std::future::pending().await;
        };
        return json_resp(
            StatusCode::OK,
            json!({"result": "success", "msg": "", "events": [], "queue_id": id,
                   "last_event_id": -1, "realm_seq": seq}),
        );
    };
    // Zulip's `fetch_events`: polling a queue needs the last event the client has.
    let last_event_id: i64 = match p.get("last_event_id").map(|v| v.parse()) {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "Missing 'last_event_id' argument",
                "BAD_REQUEST",
            )
        }
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
