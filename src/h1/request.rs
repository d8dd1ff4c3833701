//! A client's request head: parsed with `httparse` (which already refuses invalid method and
//! header-name bytes, whitespace before a colon, obs-fold, bare CR, NUL and other control
//! bytes in values, and versions other than HTTP/1.x) and then validated by RFC 9112 for this
//! listener: HTTP/1.0 or 1.1 only (`505`), a head within `proxy.max_header_bytes` and
//! [`MAX_HEADERS`] fields (`431`), strict body framing ([`framing`]), no `CONNECT` or `TRACE`
//! (`405`), an origin-form target (or absolute-form, whose authority must be the Host), exactly
//! one Host. The result says how the body is framed, whether the connection stays open after
//! the exchange, and whether the client waits for `100 Continue`.

use httparse::Header;

use super::error::{Refusal, RequestError};
use super::framing::{self, is, Coding, Framing, Length};
use super::{list_has, Limits, Version, MAX_HEADERS};

/// The result of parsing a buffer that may hold only the start of a head.
#[derive(Debug)]
pub enum Parsed<T> {
    Complete(T),
    /// More bytes are needed (and the buffer is still within the head limit).
    Partial,
}

/// A valid request head, borrowing the client's bytes.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    /// The request target as the client sent it.
    pub target: &'b str,
    /// What the shard gets as its target: the path and query (for an absolute-form target,
    /// what follows the authority; [`RequestHead::write_origin`] adds a missing `/`).
    pub origin: &'b str,
    pub version: Version,
    pub headers: &'h [Header<'b>],
    /// The Host kansas routes on and the shard gets: the one Host field, or the absolute-form
    /// target's authority.
    pub host: &'b [u8],
    /// Whether `host` came from an absolute-form target (the request may have no Host field).
    pub host_from_target: bool,
    pub framing: Framing,
    /// Whether the connection may carry another request after this exchange.
    pub keep_alive: bool,
    /// An HTTP/1.1 request with a body and `Expect: 100-continue`: kansas answers
    /// `100 Continue` itself when it starts reading the body.
    pub expect_continue: bool,
    /// Bytes of the buffer the head took.
    pub head_len: usize,
}

impl RequestHead<'_, '_> {
    /// Writes the origin-form target the shard gets.
    pub fn write_origin(&self, out: &mut Vec<u8>) {
        if !self.origin.starts_with('/') {
            out.push(b'/');
        }
        out.extend_from_slice(self.origin.as_bytes());
    }
}

/// Parses and validates the request head at the start of `buf`, using `storage` for its
/// fields (at least [`MAX_HEADERS`] long).
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    storage: &'h mut [Header<'b>],
    limits: &Limits,
) -> Result<Parsed<RequestHead<'h, 'b>>, Refusal> {
    let storage_len = storage.len().min(MAX_HEADERS);
    let mut req = httparse::Request::new(&mut storage[..storage_len]);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > limits.max_head_bytes => {
            return Err(Refusal::closing(RequestError::HeadTooLarge))
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head_bytes => {
            return Err(Refusal::closing(RequestError::HeadTooLarge))
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(Refusal::closing(syntax(e))),
    };
    let httparse::Request {
        method,
        path,
        version,
        headers,
    } = req;
    let (Some(method), Some(target), Some(version)) = (method, path, version) else {
        return Err(Refusal::closing(RequestError::Malformed(
            "incomplete request line",
        )));
    };
    let version = match version {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(Refusal::closing(RequestError::Version)),
    };
    let headers: &'h [Header<'b>] = headers;
    let framing = body_framing(headers, version, limits).map_err(Refusal::closing)?;
    let keep_alive = keep_alive(headers, version);
    let after_framing = |error: RequestError| Refusal {
        error,
        close: error.breaks_framing() || framing != Framing::Empty || !keep_alive,
    };
    if method == "CONNECT" || method == "TRACE" {
        return Err(after_framing(RequestError::MethodNotAllowed));
    }
    let (origin, authority) = target_form(target).map_err(after_framing)?;
    let (host, host_from_target) = host(headers, authority).map_err(after_framing)?;
    let expect_continue = version == Version::Http11
        && framing != Framing::Empty
        && framing != Framing::Length(0)
        && headers
            .iter()
            .any(|h| is(h, "expect") && h.value.eq_ignore_ascii_case(b"100-continue"));
    Ok(Parsed::Complete(RequestHead {
        method,
        target,
        origin,
        version,
        headers,
        host,
        host_from_target,
        framing,
        keep_alive,
        expect_continue,
        head_len,
    }))
}

/// The refusal for an `httparse` error.
fn syntax(e: httparse::Error) -> RequestError {
    match e {
        httparse::Error::Version => RequestError::Version,
        httparse::Error::TooManyHeaders => RequestError::TooManyHeaders,
        httparse::Error::HeaderName => RequestError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => RequestError::Malformed("invalid header value"),
        httparse::Error::NewLine => RequestError::Malformed("invalid line ending"),
        httparse::Error::Token => RequestError::Malformed("invalid token in the request line"),
        httparse::Error::Status => RequestError::Malformed("invalid status"),
    }
}

/// The request body's framing (RFC 9112 §6.1–6.3), within the body limit.
pub fn body_framing(
    headers: &[Header<'_>],
    version: Version,
    limits: &Limits,
) -> Result<Framing, RequestError> {
    let coding = framing::transfer_coding(headers);
    let length = framing::content_length(headers);
    if coding != Coding::Absent && version == Version::Http10 {
        return Err(RequestError::TransferEncodingInHttp10);
    }
    match (coding, length) {
        (Coding::Absent, Length::Absent) => Ok(Framing::Empty),
        (Coding::Absent, Length::Value(n)) if n > limits.max_body_bytes => {
            Err(RequestError::BodyTooLarge)
        }
        (Coding::Absent, Length::Value(n)) => Ok(Framing::Length(n)),
        (Coding::Absent, Length::Bad) => Err(RequestError::BadContentLength),
        (Coding::Absent, Length::Repeated) => Err(RequestError::RepeatedContentLength),
        (_, Length::Value(_) | Length::Bad | Length::Repeated) => {
            Err(RequestError::LengthAndChunked)
        }
        (Coding::Chunked, Length::Absent) => Ok(Framing::Chunked),
        (Coding::Unknown, _) => Err(RequestError::UnknownCoding),
        (Coding::Unsupported, _) => Err(RequestError::UnsupportedCoding),
        (Coding::ChunkedNotLast, _) => Err(RequestError::ChunkedNotLast),
        (Coding::Empty, _) => Err(RequestError::EmptyCoding),
    }
}

/// Whether the connection stays open after this exchange: HTTP/1.1 unless `Connection: close`;
/// HTTP/1.0 only with `Connection: keep-alive` (and no `close`).
pub fn keep_alive(headers: &[Header<'_>], version: Version) -> bool {
    let mut close = false;
    let mut keep = false;
    for h in headers.iter().filter(|h| is(h, "connection")) {
        close |= list_has(h.value, "close");
        keep |= list_has(h.value, "keep-alive");
    }
    !close && (version == Version::Http11 || keep)
}

/// The origin the shard gets and, for an absolute-form target, its authority. Origin-form
/// (`/path?query`) is what nginx sends; absolute-form (`http://host/path`) is accepted as RFC
/// 9112 §3.2.2 requires of servers; asterisk-form (`*`) and authority-form (`host:port`) are
/// refused, as is an absolute-form target with user info or no host, and any target with a
/// fragment.
fn target_form(target: &str) -> Result<(&str, Option<&str>), RequestError> {
    if target.contains('#') {
        // A request target has no fragment (RFC 9112 §3.2).
        return Err(RequestError::TargetForm);
    }
    if target.starts_with('/') {
        return Ok((target, None));
    }
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|s| {
            target.len() >= s.len()
                && target.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
        })
        .map(|s| s.len())
        .ok_or(RequestError::TargetForm)?;
    let rest = &target[scheme_len..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains('@') {
        return Err(RequestError::BadAbsoluteTarget);
    }
    Ok((&rest[end..], Some(authority)))
}

/// The Host kansas routes on: exactly one Host field (equal, case-insensitively, to the
/// target's authority when the target is absolute-form), or the authority when there is none.
fn host<'b>(
    headers: &[Header<'b>],
    authority: Option<&'b str>,
) -> Result<(&'b [u8], bool), RequestError> {
    let mut hosts = headers.iter().filter(|h| is(h, "host"));
    match (hosts.next(), hosts.next(), authority) {
        (Some(_), Some(_), _) => Err(RequestError::DuplicateHost),
        (None, _, Some(a)) => Ok((a.as_bytes(), true)),
        (None, _, None) => Err(RequestError::MissingHost),
        (Some(h), None, Some(a)) if !h.value.eq_ignore_ascii_case(a.as_bytes()) => {
            Err(RequestError::HostMismatch)
        }
        (Some(h), None, _) => Ok((h.value, false)),
    }
}
