//! Every way a proxied request can fail, and the one table that maps each to the HTTP answer the
//! client gets. Bodies are Zulip-shaped JSON errors (`{"result":"error","msg":...,"code":...}`) so
//! clients that parse every answer as JSON never see an HTML page.
//!
//! Protocol-level failures are answered by hyper before a request exists: a head over
//! `proxy.max_header_bytes` gets `431`, a malformed head `400`, and a client that does not finish
//! its head within `timeouts.client_header_secs` is disconnected.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// Why kansas answered a request itself instead of relaying a shard's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("missing Host header")]
    MissingHost,
    #[error("invalid Host header")]
    InvalidHost,
    #[error("no shard can serve this realm")]
    NoShard,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("shard refused the connection")]
    UpstreamRefused,
    #[error("connecting to the shard timed out")]
    UpstreamConnectTimeout,
    #[error("shard failed to connect")]
    UpstreamConnect,
    #[error("shard closed the connection before answering")]
    UpstreamClosed,
    #[error("shard did not answer in time")]
    UpstreamTimeout,
    #[error("bad request")]
    BadRequest,
    #[error("shard is restarting and too many requests are waiting for it")]
    ParkOverflow,
    #[error("shard did not come back in time")]
    ParkTimeout,
    #[error("shard failed while sending its answer")]
    UpstreamBodyFailed,
    #[error("shard redirected to a Tornado port that is not a configured shard")]
    RedirectUnknownPort,
    #[error("shard sent an X-Accel-Redirect that cannot be followed")]
    BadRedirect,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("shard sent a malformed response")]
    BadShardResponse,
    #[error("malformed request body")]
    BadRequestBody,
    #[error("client closed the connection while sending its request body")]
    ClientClosed,
    #[error("kansas is out of file descriptors")]
    OutOfFds,
}

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

    /// Short label for metrics (`upstream_errors_total{kind=...}`) and logs.
    pub fn kind(self) -> &'static str {
        use ProxyError::*;
        match self {
            MissingHost => "missing_host",
            InvalidHost => "invalid_host",
            NoShard => "no_shard",
            BodyTooLarge => "body_too_large",
            UpstreamRefused => "connect_refused",
            UpstreamConnectTimeout => "connect_timeout",
            UpstreamConnect => "connect_error",
            UpstreamClosed => "closed_before_head",
            UpstreamTimeout => "response_timeout",
            BadRequest => "bad_request",
            ParkOverflow => "park_overflow",
            ParkTimeout => "park_timeout",
            UpstreamBodyFailed => "failed_after_head",
            RedirectUnknownPort => "redirect_unknown_port",
            BadRedirect => "bad_redirect",
            MethodNotAllowed => "method_not_allowed",
            BadShardResponse => "bad_shard_response",
            BadRequestBody => "bad_request_body",
            ClientClosed => "client_closed",
            OutOfFds => "out_of_fds",
        }
    }

    /// True when the shard failed before its response head in a way that means it is down or
    /// restarting (refused, unreachable, or closed the connection): a GET can be parked. Never
    /// for a shard that answered badly (`BadShardResponse`), a client's mistake
    /// (`BadRequestBody`, `ClientClosed`) or kansas's own shortage (`OutOfFds`).
    pub fn shard_down(self) -> bool {
        use ProxyError::*;
        matches!(
            self,
            UpstreamRefused | UpstreamConnectTimeout | UpstreamConnect | UpstreamClosed
        )
    }

    /// The complete answer for the client.
    pub fn response(self) -> Response<Full<Bytes>> {
        let (status, code) = self.status_and_code();
        let mut resp = json_response(status, &error_body(&self.to_string(), code));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if self == ProxyError::MethodNotAllowed {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        resp
    }
}

/// What the proxy listener forwards: every method but `CONNECT` (a tunnel) and `TRACE`.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// `Retry-After` on every `503`.
pub const RETRY_AFTER_SECS: &str = "5";

/// A Zulip-shaped JSON error body.
pub fn error_body(msg: &str, code: &str) -> String {
    serde_json::json!({"result": "error", "msg": msg, "code": code}).to_string()
}

/// A JSON answer with the given status.
pub fn json_response(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for own in [
            ProxyError::BadShardResponse,
            ProxyError::BadRequestBody,
            ProxyError::ClientClosed,
            ProxyError::OutOfFds,
        ] {
            assert!(!own.shard_down(), "{own:?}");
        }
        let r = ProxyError::ParkOverflow.response();
        assert_eq!(r.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
    }

    #[test]
    fn body_is_zulip_shaped_json() {
        let v: serde_json::Value =
            serde_json::from_str(&error_body("bad \"host\"", "BAD_HOST")).unwrap();
        assert_eq!(v["result"], "error");
        assert_eq!(v["msg"], "bad \"host\"");
        assert_eq!(v["code"], "BAD_HOST");
    }
}
