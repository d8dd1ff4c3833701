//! Why a message is refused: [`RequestError`] for a client's request (each variant names the
//! RFC 9112 rule it enforces, with the status the client gets) and [`ResponseError`] for a
//! shard's answer (always a `502` for that request; the shard connection is dropped). A
//! [`Refusal`] adds whether the client connection must close: it must whenever the bytes that
//! follow can no longer be framed with certainty.

/// A client request kansas refuses, by rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request head ({0})")]
    Malformed(&'static str),
    #[error("HTTP version not supported (only HTTP/1.0 and HTTP/1.1)")]
    Version,
    #[error("request head larger than the limit")]
    HeadTooLarge,
    #[error("more header fields than the limit")]
    TooManyHeaders,
    #[error("method not allowed on this listener (CONNECT, TRACE)")]
    MethodNotAllowed,
    #[error("request target is not origin-form or absolute-form")]
    TargetForm,
    #[error("absolute-form target with user info or a bad authority")]
    BadAbsoluteTarget,
    #[error("no Host header")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("Host header differs from the absolute-form target's authority")]
    HostMismatch,
    #[error("Content-Length is not a decimal number that fits 64 bits")]
    BadContentLength,
    #[error("more than one Content-Length")]
    RepeatedContentLength,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    #[error("unknown transfer coding")]
    UnknownCoding,
    #[error("transfer coding other than chunked alone")]
    UnsupportedCoding,
    #[error("chunked is not the final transfer coding, or appears twice")]
    ChunkedNotLast,
    #[error("empty element in Transfer-Encoding")]
    EmptyCoding,
    #[error("malformed chunked body ({0})")]
    BadChunk(&'static str),
    #[error("request body larger than the limit")]
    BodyTooLarge,
}

impl RequestError {
    /// The status the client gets.
    pub fn status(self) -> u16 {
        use RequestError::*;
        match self {
            Version => 505,
            HeadTooLarge | TooManyHeaders => 431,
            MethodNotAllowed => 405,
            UnknownCoding | UnsupportedCoding => 501,
            BodyTooLarge => 413,
            _ => 400,
        }
    }

    /// The rule's short name (as the corpus writes it).
    pub fn rule(self) -> &'static str {
        use RequestError::*;
        match self {
            Malformed(_) => "malformed",
            Version => "version",
            HeadTooLarge => "head-too-large",
            TooManyHeaders => "too-many-headers",
            MethodNotAllowed => "method",
            TargetForm => "target-form",
            BadAbsoluteTarget => "absolute-target",
            MissingHost => "missing-host",
            DuplicateHost => "duplicate-host",
            HostMismatch => "host-mismatch",
            BadContentLength => "bad-content-length",
            RepeatedContentLength => "repeated-content-length",
            LengthAndChunked => "cl-and-te",
            TransferEncodingInHttp10 => "te-in-http10",
            UnknownCoding => "unknown-coding",
            UnsupportedCoding => "unsupported-coding",
            ChunkedNotLast => "chunked-not-last",
            EmptyCoding => "empty-coding",
            BadChunk(_) => "bad-chunk",
            BodyTooLarge => "body-too-large",
        }
    }

    /// Whether a refusal for this reason leaves bytes that cannot be framed: everything but the
    /// refusals made after the head and its framing were read whole (method, Host), which close
    /// only when the request has a body (see [`crate::h1::request::parse`]).
    pub fn breaks_framing(self) -> bool {
        use RequestError::*;
        !matches!(
            self,
            MethodNotAllowed | MissingHost | DuplicateHost | HostMismatch
        )
    }
}

/// A refused request: why, and whether the client connection closes after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub error: RequestError,
    pub close: bool,
}

impl Refusal {
    /// A refusal after which the stream cannot be trusted: answered, then closed.
    pub fn closing(error: RequestError) -> Refusal {
        Refusal { error, close: true }
    }

    pub fn status(&self) -> u16 {
        self.error.status()
    }
}

impl From<RequestError> for Refusal {
    fn from(error: RequestError) -> Refusal {
        Refusal {
            error,
            close: error.breaks_framing(),
        }
    }
}

/// A shard answer kansas does not relay: the client gets `502` for that request, the shard
/// connection is dropped, and the shard is not marked down (issue 15, item 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed response head ({0})")]
    Malformed(&'static str),
    #[error("response head larger than the limit")]
    HeadTooLarge,
    #[error("more header fields than the limit")]
    TooManyHeaders,
    #[error("status code outside 100-599")]
    BadStatus,
    #[error("101 Switching Protocols on the event path")]
    Upgrade,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("Content-Length is not a decimal number that fits 64 bits")]
    BadContentLength,
    #[error("more than one Content-Length")]
    RepeatedContentLength,
    #[error("transfer coding other than chunked alone")]
    UnsupportedCoding,
    #[error("malformed chunked body ({0})")]
    BadChunk(&'static str),
}

impl ResponseError {
    /// The status the client gets (always `502`).
    pub fn status(self) -> u16 {
        502
    }

    /// The rule's short name (as the corpus writes it).
    pub fn rule(self) -> &'static str {
        use ResponseError::*;
        match self {
            Malformed(_) => "malformed",
            HeadTooLarge => "head-too-large",
            TooManyHeaders => "too-many-headers",
            BadStatus => "bad-status",
            Upgrade => "upgrade",
            LengthAndChunked => "cl-and-te",
            BadContentLength => "bad-content-length",
            RepeatedContentLength => "repeated-content-length",
            UnsupportedCoding => "unsupported-coding",
            BadChunk(_) => "bad-chunk",
        }
    }
}
