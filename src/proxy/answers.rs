//! Every answer kansas makes itself instead of relaying a shard's, built in this one place: the
//! table mapping each [`ProxyError`] to its status and machine-readable code (with
//! `Retry-After` on a `503` and `Allow` on a `405`), Zulip's empty events result for a GET still
//! parked at its deadline, and the `BAD_EVENT_QUEUE_ID` that sends a client of a moved realm to
//! reload. Bodies are Zulip-shaped JSON (`{"result":...,"msg":...,"code":...}`), so clients that
//! parse every answer as JSON never see an HTML page. Each carries the [`OwnAnswer`] mark, so the
//! queue map never learns from one as if a shard had given it.
//!
//! Protocol-level failures are answered before a request exists (by hyper, or by the engine from
//! `h1`'s refusal): a head over `proxy.max_header_bytes` gets `431`, a malformed head `400`, and
//! a client that does not finish its head within `timeouts.client_header_secs` is disconnected.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use super::body::ClientBody;
use crate::error::ProxyError;

/// What the proxy listener forwards: every method but `CONNECT` (a tunnel) and `TRACE`.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// `Retry-After` on every `503`.
pub const RETRY_AFTER_SECS: &str = "5";

impl ProxyError {
    /// The table: status and machine-readable code for each error.
    pub fn status_and_code(self) -> (StatusCode, &'static str) {
        use ProxyError::*;
        match self {
            MissingHost | InvalidHost => (StatusCode::BAD_REQUEST, "BAD_HOST"),
            BadRequest | BadRequestBody | ClientClosed => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "REQUEST_TOO_LARGE"),
            NoShard => (StatusCode::SERVICE_UNAVAILABLE, "NO_SHARD"),
            UpstreamRefused | UpstreamConnectTimeout | UpstreamConnect | UpstreamClosed => {
                (StatusCode::BAD_GATEWAY, "UPSTREAM_ERROR")
            }
            BadShardResponse => (StatusCode::BAD_GATEWAY, "UPSTREAM_ERROR"),
            OutOfFds => (StatusCode::SERVICE_UNAVAILABLE, "OVERLOADED"),
            UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "UPSTREAM_TIMEOUT"),
            ParkOverflow | ParkTimeout => (StatusCode::SERVICE_UNAVAILABLE, "SHARD_RESTARTING"),
            // The head was already sent: the client connection is closed instead.
            UpstreamBodyFailed | RedirectUnknownPort | BadRedirect => {
                (StatusCode::BAD_GATEWAY, "UPSTREAM_ERROR")
            }
        }
    }

    /// The complete answer for the client.
    pub fn response(self) -> Response<ClientBody> {
        self.own().into_response()
    }

    /// The answer as both engines write it.
    pub fn own(self) -> Own {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({"result": "error", "msg": self.to_string(), "code": code});
        Own {
            status,
            body: body.to_string(),
            allow: self == ProxyError::MethodNotAllowed,
        }
    }
}

/// An answer kansas makes itself: status and JSON body (`Retry-After` goes with every `503`,
/// `Allow` with a `405`). The hyper path turns it into a [`Response`]; the engine writes it as
/// bytes ([`Own::write`]): the same status, fields and body either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Own {
    pub status: StatusCode,
    pub body: String,
    allow: bool,
}

impl Own {
    /// A JSON answer with `status` and `body`.
    pub fn json(status: StatusCode, body: &serde_json::Value) -> Own {
        Own {
            status,
            body: body.to_string(),
            allow: status == StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The hyper path's response, marked as kansas's own.
    pub fn into_response(self) -> Response<ClientBody> {
        let mut resp = Response::new(Either::Right(Full::new(Bytes::from(self.body))));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        resp.extensions_mut().insert(OwnAnswer);
        resp
    }

    /// The whole answer as the engine sends it: HTTP/1.1 status line, the fields (`Date`, as
    /// hyper sends it), the request id, `Connection: close` when the connection ends after it,
    /// and the body.
    pub fn write(&self, request_id: &[u8], close: bool, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let reason = self.status.canonical_reason().unwrap_or("");
        let _ = write!(
            out,
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.status.as_u16(),
            self.body.len()
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            out.extend_from_slice(b"Retry-After: ");
            out.extend_from_slice(RETRY_AFTER_SECS.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.allow {
            out.extend_from_slice(b"Allow: ");
            out.extend_from_slice(ALLOWED_METHODS.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\nX-Request-Id: ");
        out.extend_from_slice(request_id);
        out.extend_from_slice(b"\r\n");
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body.as_bytes());
    }
}

/// Zulip's normal empty events result for `queue_id`: what a GET still parked at its deadline
/// gets (the client simply polls again).
pub fn empty_events(queue_id: &str) -> Own {
    let body = serde_json::json!({
        "result": "success", "msg": "", "events": [], "queue_id": queue_id,
    });
    Own::json(StatusCode::OK, &body)
}

/// Zulip's exact `BAD_EVENT_QUEUE_ID` answer for `queue_id`: the client reloads and registers a
/// new queue (the `reload` move of a realm that changed shard).
pub fn bad_event_queue(queue_id: &str) -> Own {
    let body = serde_json::json!({
        "result": "error",
        "msg": format!("Bad event queue ID: {queue_id}"),
        "code": "BAD_EVENT_QUEUE_ID",
        "queue_id": queue_id,
    });
    Own::json(StatusCode::BAD_REQUEST, &body)
}

/// Marks an answer kansas made itself (not a shard's), so the queue map never learns from it.
#[derive(Debug, Clone, Copy)]
pub(super) struct OwnAnswer;

/// Whether kansas made this answer itself (see [`OwnAnswer`]).
pub(super) fn is_own<B>(resp: &Response<B>) -> bool {
    resp.extensions().get::<OwnAnswer>().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn json(resp: Response<ClientBody>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn table_covers_the_statuses_clients_must_see() {
        assert_eq!(ProxyError::InvalidHost.status_and_code().0, 400);
        assert_eq!(ProxyError::BodyTooLarge.status_and_code().0, 413);
        assert_eq!(ProxyError::UpstreamRefused.status_and_code().0, 502);
        assert_eq!(ProxyError::UpstreamClosed.status_and_code().0, 502);
        assert_eq!(ProxyError::UpstreamTimeout.status_and_code().0, 504);
        assert_eq!(ProxyError::NoShard.status_and_code().0, 503);
        assert_eq!(ProxyError::ParkOverflow.status_and_code().0, 503);
        assert_eq!(ProxyError::BadShardResponse.status_and_code().0, 502);
        assert_eq!(ProxyError::BadRequestBody.status_and_code().0, 400);
        assert_eq!(ProxyError::OutOfFds.status_and_code().0, 503);
        let r = ProxyError::ParkOverflow.response();
        assert_eq!(r.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
        let r = ProxyError::MethodNotAllowed.response();
        assert_eq!(r.headers()[header::ALLOW], ALLOWED_METHODS);
    }

    #[tokio::test]
    async fn every_own_answer_is_marked_and_zulip_shaped() {
        let r = ProxyError::InvalidHost.response();
        assert!(is_own(&r));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let v = json(r).await;
        assert_eq!(v["result"], "error");
        assert_eq!(v["msg"], "invalid Host header");
        assert_eq!(v["code"], "BAD_HOST");

        let r = empty_events("1:\"q\"").into_response();
        assert!(is_own(&r));
        assert_eq!(r.status(), StatusCode::OK);
        let v = json(r).await;
        assert_eq!(v["result"], "success");
        assert_eq!(v["events"], serde_json::json!([]));
        assert_eq!(v["queue_id"], "1:\"q\"");

        let r = bad_event_queue("7:q").into_response();
        assert!(is_own(&r));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v = json(r).await;
        assert_eq!(v["code"], "BAD_EVENT_QUEUE_ID");
        assert_eq!(v["msg"], "Bad event queue ID: 7:q");
        assert_eq!(v["queue_id"], "7:q");
    }
}
