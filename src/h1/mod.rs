//! The HTTP/1 framing core of the event path (issue 13): pure functions and small state
//! machines over byte slices, with no sockets and no runtime, so every rule can be proven on
//! bytes alone (the conformance corpus in `tests/data/http/`, the differential test against
//! hyper, the fuzz target). A client's request head is parsed with `httparse` and validated by
//! RFC 9112 for this listener ([`request`], [`framing`]); the head the shard gets is written in
//! one pass from the client's bytes ([`forward`]); bodies are framed by length or by the
//! incremental chunked decoder ([`chunked`]); a shard's response head is validated and turned
//! into the client's ([`response`]); [`pipeline`] runs a whole buffer of pipelined requests or
//! a whole response through those steps, as the engine will on a socket. Every refusal is an
//! [`error::RequestError`] or [`error::ResponseError`] naming the rule it enforces, with its
//! status and whether the connection must close. `docs/http.md` lists the rules and why.

pub mod chunked;
pub mod error;
pub mod forward;
pub mod framing;
pub mod pipeline;
pub mod request;
pub mod response;

pub use error::{Refusal, RequestError, ResponseError};
pub use framing::Framing;

/// Most header fields in one head (hyper's default too); more is `431` (or a bad shard answer).
pub const MAX_HEADERS: usize = 100;

/// The bounds of one connection's heads and bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request head (request line, fields, final empty line): `proxy.max_header_bytes`.
    pub max_head_bytes: usize,
    /// Largest request body: `proxy.max_body_bytes`.
    pub max_body_bytes: u64,
    /// Longest response head from a shard.
    pub max_response_head_bytes: usize,
    /// Longest trailer section of a chunked body (read and dropped).
    pub max_trailer_bytes: usize,
}

impl Default for Limits {
    /// The configuration's defaults (16 KiB heads, 1 MiB bodies), 64 KiB shard heads, 8 KiB
    /// trailers.
    fn default() -> Limits {
        Limits {
            max_head_bytes: 16_384,
            max_body_bytes: 1 << 20,
            max_response_head_bytes: 65_536,
            max_trailer_bytes: 8_192,
        }
    }
}

/// The protocol version of a message (only these two are served; others are `505`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Whether `list` (a comma-separated header value) holds `token`, case-insensitively.
pub(crate) fn list_has(list: &[u8], token: &str) -> bool {
    list_items(list).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// The elements of a comma-separated header value, optional whitespace trimmed (empty ones
/// included, so a caller can refuse them).
pub(crate) fn list_items(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',').map(trim_ows)
}

/// `bytes` without leading and trailing spaces and tabs.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let Some(start) = start else { return &[] };
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(start);
    &bytes[start..=end]
}
