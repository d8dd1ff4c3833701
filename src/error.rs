//! Every way a proxied request can fail ([`ProxyError`]), with its label for metrics and logs
//! and whether it means the shard is down. The answer each gets (status, code, body) is in the
//! table in `proxy::answers`, beside every other answer kansas makes itself.

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_shard_is_down() {
        for own in [
            ProxyError::BadShardResponse,
            ProxyError::BadRequestBody,
            ProxyError::ClientClosed,
            ProxyError::OutOfFds,
        ] {
            assert!(!own.shard_down(), "{own:?}");
        }
        assert!(ProxyError::UpstreamRefused.shard_down());
    }
}
