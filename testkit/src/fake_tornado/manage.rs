//! Creating and deleting queues, as Tornado does for Django and for clients: Django's
//! registration (`POST /api/v1/events/internal`, refused with a 500 for a user this process does
//! not serve, like Zulip's `assert is_current_port`), the client's `DELETE` (forwarded as a
//! cleanup to the user's resident ports when served elsewhere, like Zulip's
//! `cleanup_event_queue`), and the fake's own `/fake/cleanup` (the forwarded cleanup),
//! `/fake/publish` (Django publishing, optionally to some users only) and `/fake/queues`.
//!
//! Forwarded cleanups go to `http://127.0.0.1:<port>/fake/cleanup`: they assume every shard
//! listens on 127.0.0.1 at its Tornado port, as Zulip's Tornado processes do (and as the tests
//! arrange).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;

use super::http::{
    bad_param, bad_queue, error, form_params, host, json_resp, no_shard, params, realm, success,
    uint_param, user_id, Resp, USER_ID_HEADER,
};
use super::routing::Placement;
use super::Shared;

/// How long one forwarded cleanup may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(2);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Django's registration. The user is `user_profile_id` (Zulip's name) or `user_id`, else the
/// `X-Zulip-User-Id` header; `lifespan_secs` and `realm_seq` (the harness's publisher's sequence
/// number for the realm at registration) are optional.
pub async fn register(shared: &Shared, req: Request<Incoming>) -> Resp {
    let Some(realm) = realm(&req) else {
        return error(StatusCode::BAD_REQUEST, "Missing Host", "BAD_REQUEST");
    };
    let host = host(&req).to_string();
    let header_user = req
        .headers()
        .contains_key(USER_ID_HEADER)
        .then(|| user_id(&req));
    let p = match form_params(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (profile, user, lifespan_secs, realm_seq) = match (
        uint_param(&p, "user_profile_id"),
        uint_param(&p, "user_id"),
        uint_param(&p, "lifespan_secs"),
        uint_param(&p, "realm_seq"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(name), ..) | (_, Err(name), ..) | (_, _, Err(name), _) | (.., Err(name)) => {
            return bad_param(name)
        }
    };
    let user_id = profile.or(user).or(header_user).unwrap_or(0);
    match shared.placement(&host, user_id) {
        Placement::Here => {}
        Placement::NoShard => return no_shard(&host),
        Placement::Elsewhere { current, .. } => {
            // Django's routing view and this Tornado's disagree (one of them lags a change).
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!(
                    "user {user_id} of {realm} is not served by port {} (its port is {current})",
                    shared.port
                ),
                "WRONG_TORNADO_PORT",
            );
        }
    }
    let Some((id, seq)) = shared.create(&realm, user_id, lifespan_secs) else {
        return std::future::pending().await;
    };
    json_resp(
        StatusCode::OK,
        json!({"result": "success", "msg": "", "queue_id": id, "last_event_id": -1,
               "realm_seq": realm_seq.unwrap_or(seq)}),
    )
}

/// The client's `DELETE`. Zulip's clients send `queue_id` in a form-encoded body; the query
/// counts too. A queue this process holds for the user is deleted here, whatever the routing
/// says now (kansas's patch: after a move, kansas deletes old queues on the old shard). For a
/// user served elsewhere, the cleanup is forwarded to each of the user's resident ports (best
/// effort) and the answer is success, as Zulip's `cleanup_event_queue`.
pub async fn delete_queue(shared: &Shared, req: Request<Incoming>) -> Resp {
    let host = host(&req).to_string();
    let user = user_id(&req);
    let p = match form_params(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(queue_id) = p.get("queue_id") else {
        return error(
            StatusCode::BAD_REQUEST,
            "Missing 'queue_id' argument",
            "BAD_REQUEST",
        );
    };
    let held = shared
        .lock()
        .queues
        .get(queue_id.as_str())
        .is_some_and(|q| q.user_id == user);
    match shared.placement(&host, user) {
        _ if held => {}
        Placement::Here => {}
        Placement::NoShard => return no_shard(&host),
        Placement::Elsewhere { resident, .. } => {
            let forwards = resident
                .iter()
                .map(|&port| forward_cleanup(port, queue_id, user));
            futures_util::future::join_all(forwards).await;
            return success();
        }
    }
    match shared.lock().queues.remove(queue_id) {
        Some(_) => success(),
        None => bad_queue(queue_id),
    }
}

/// Sends a cleanup for `queue_id` to the process at 127.0.0.1:`port`; failures are logged.
async fn forward_cleanup(port: u16, queue_id: &str, user: u64) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("queue_id", queue_id)
        .append_pair("user_id", &user.to_string())
        .finish();
    let send = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::post(format!("/fake/cleanup?{query}"))
            .header(header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(resp.status())
    };
    match tokio::time::timeout(CLEANUP_TIMEOUT, send).await {
        Ok(Ok(s)) if s.is_success() => {}
        Ok(Ok(s)) => tracing::warn!(port, queue_id, status = s.as_u16(), "cleanup refused"),
        Ok(Err(e)) => tracing::warn!(port, queue_id, error = %e, "cleanup not delivered"),
        Err(_) => tracing::warn!(port, queue_id, "cleanup timed out"),
    }
}

/// A forwarded cleanup (Zulip's `cleanup_queue` notice): deletes the queue if it is here and,
/// when `user_id` is given, belongs to that user. Success either way.
pub async fn cleanup(shared: &Shared, req: Request<Incoming>) -> Resp {
    let p = match form_params(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let user = match uint_param(&p, "user_id") {
        Ok(u) => u,
        Err(name) => return bad_param(name),
    };
    let Some(queue_id) = p.get("queue_id") else {
        return error(
            StatusCode::BAD_REQUEST,
            "Missing 'queue_id' argument",
            "BAD_REQUEST",
        );
    };
    let mut state = shared.lock();
    if state
        .queues
        .get(queue_id)
        .is_some_and(|q| user.is_none_or(|u| u == q.user_id))
    {
        state.queues.remove(queue_id);
    }
    success()
}

/// `POST /fake/publish?realm=R[&count=N][&seq=S][&published_at_us=T][&users=1,2,3]`.
pub async fn publish(shared: &Shared, req: &Request<Incoming>) -> Resp {
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
    let users: Option<HashSet<u64>> = match p.get("users") {
        None => None,
        Some(list) => match list
            .split(',')
            .filter(|u| !u.trim().is_empty())
            .map(|u| u.trim().parse::<u64>())
            .collect()
        {
            Ok(set) => Some(set),
            Err(_) => return error(StatusCode::BAD_REQUEST, "Bad 'users'", "BAD_REQUEST"),
        },
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
            let queues = state.publish(&realm, first_seq, count, published_at_us, users.as_ref());
            Some(json!({"result": "success", "msg": "", "queues": queues,
                        "realm_seq": state.realm_seq[&realm]}))
        }
    };
    match answer {
        Some(body) => json_resp(StatusCode::OK, body),
        None => std::future::pending().await,
    }
}

/// `GET /fake/queues[?realm=R]`: the queues held.
pub fn list_queues(shared: &Shared, req: &Request<Incoming>) -> Resp {
    let p = params(req.uri().query());
    let realm = p.get("realm").map(|r| r.to_ascii_lowercase());
    let state = shared.lock();
    let queues: Vec<_> = state
        .queues
        .iter()
        .filter(|(_, q)| realm.as_ref().is_none_or(|r| &q.realm == r))
        .map(|(id, q)| {
            json!({"id": id, "realm": q.realm, "user_id": q.user_id, "pending": q.events.len(),
                   "lifespan_secs": q.lifespan.as_secs_f64()})
        })
        .collect();
    json_resp(
        StatusCode::OK,
        json!({"result": "success", "msg": "", "count": queues.len(), "queues": queues}),
    )
}
