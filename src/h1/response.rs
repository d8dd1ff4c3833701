//! A shard's response head: parsed with `httparse` and validated (issue 15, items 3 and 6): a
//! malformed head, more than [`MAX_HEADERS`] fields, a head over the limit, a status outside
//! 100–599, a `101`, both `Content-Length` and `Transfer-Encoding`, a bad or repeated
//! `Content-Length`, or a transfer coding other than `chunked` alone is a [`ResponseError`]: a
//! `502` for that request, never a shard outage. Other `1xx` answers are interim and dropped
//! (kansas answers `100 Continue` to its client itself). Answers to HEAD, `204` and `304` have
//! no body; without framing fields the body ends when the shard closes. Then the head the
//! client gets: hop-by-hop fields dropped, the request id set, and kansas's own framing (a
//! length stays a length; a chunked or close-delimited body is chunked to an HTTP/1.1 client
//! and close-delimited to an HTTP/1.0 one).

use std::io::Write as _;

use httparse::Header;

use super::error::ResponseError;
use super::forward::{field, is_hop_by_hop, write_framing};
use super::framing::{self, is, Coding, Framing, Length};
use super::{Limits, Version, MAX_HEADERS};

/// A shard's response head, borrowing the shard's bytes.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    pub status: u16,
    pub reason: &'b str,
    pub version: Version,
    pub headers: &'h [Header<'b>],
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// The shard's `Content-Length`, even where there is no body (HEAD, 304).
    pub declared_length: Option<u64>,
    /// Whether the shard connection can carry another request after this body.
    pub shard_keep_alive: bool,
    pub head_len: usize,
}

/// What is at the start of a shard's buffer.
#[derive(Debug)]
pub enum Parsed<T> {
    Complete(T),
    /// An interim `1xx` head of this many bytes: dropped; the final head follows.
    Interim(usize),
    Partial,
}

/// Parses and validates the response head at the start of `buf`; `to_head` says the request
/// was a HEAD.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    storage: &'h mut [Header<'b>],
    limits: &Limits,
    to_head: bool,
) -> Result<Parsed<ResponseHead<'h, 'b>>, ResponseError> {
    let storage_len = storage.len().min(MAX_HEADERS);
    let mut resp = httparse::Response::new(&mut storage[..storage_len]);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > limits.max_response_head_bytes => {
            return Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_response_head_bytes => {
            return Err(ResponseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
        Err(_) => return Err(ResponseError::Malformed("not an HTTP/1 response head")),
    };
    let httparse::Response {
        version,
        code,
        reason,
        headers,
    } = resp;
    let version = match version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(ResponseError::Malformed("version")),
    };
    let status = code.ok_or(ResponseError::Malformed("status"))?;
    match status {
        101 => return Err(ResponseError::Upgrade),
        100..=199 => return Ok(Parsed::Interim(head_len)),
        200..=599 => {}
        _ => return Err(ResponseError::BadStatus),
    }
    let headers: &'h [Header<'b>] = headers;
    let (framing, declared_length) = body_framing(headers, version, status, to_head)?;
    let persistent = super::request::keep_alive(headers, version);
    Ok(Parsed::Complete(ResponseHead {
        status,
        reason: reason.unwrap_or(""),
        version,
        headers,
        framing,
        declared_length,
        shard_keep_alive: persistent && framing != Framing::UntilClose,
        head_len,
    }))
}

/// The response body's framing (RFC 9112 §6.3), and the declared length.
fn body_framing(
    headers: &[Header<'_>],
    version: Version,
    status: u16,
    to_head: bool,
) -> Result<(Framing, Option<u64>), ResponseError> {
    let coding = framing::transfer_coding(headers);
    let length = match framing::content_length(headers) {
        Length::Absent => None,
        Length::Value(n) => Some(n),
        Length::Bad => return Err(ResponseError::BadContentLength),
        Length::Repeated => return Err(ResponseError::RepeatedContentLength),
    };
    let framing = match (coding, length) {
        (Coding::Absent, Some(n)) => Framing::Length(n),
        (Coding::Absent, None) => Framing::UntilClose,
        (_, Some(_)) => return Err(ResponseError::LengthAndChunked),
        (Coding::Chunked, None) if version == Version::Http11 => Framing::Chunked,
        _ => return Err(ResponseError::UnsupportedCoding),
    };
    if to_head || status == 204 || status == 304 {
        return Ok((Framing::Empty, length));
    }
    Ok((framing, length))
}

/// What the client's side of the exchange needs to know to get its head.
#[derive(Debug, Clone, Copy)]
pub struct ToClient<'a> {
    pub request_id: &'a [u8],
    /// The client request's version.
    pub version: Version,
    /// Whether the client connection may stay open (its request allowed it; kansas is not
    /// draining).
    pub keep_alive: bool,
}

/// How the client gets the body, and whether its connection stays open after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFraming {
    pub framing: Framing,
    pub keep_alive: bool,
}

/// Writes the head the client gets for the shard's `resp`.
pub fn write_client_head(
    resp: &ResponseHead<'_, '_>,
    to: &ToClient<'_>,
    out: &mut Vec<u8>,
) -> ClientFraming {
    let framing = match (resp.framing, to.version) {
        (Framing::Chunked | Framing::UntilClose, Version::Http11) => Framing::Chunked,
        (Framing::Chunked | Framing::UntilClose, Version::Http10) => Framing::UntilClose,
        (f, _) => f,
    };
    let keep_alive = to.keep_alive && framing != Framing::UntilClose;
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
    for h in resp.headers {
        let dropped = ["content-length", "x-request-id"].iter().any(|n| is(h, n))
            || is_hop_by_hop(h, resp.headers);
        if !dropped {
            field(out, h.name, h.value);
        }
    }
    field(out, "X-Request-Id", to.request_id);
    match (framing, resp.declared_length) {
        (Framing::Empty, Some(n)) if resp.status != 204 => {
            write_framing(Framing::Length(n), out);
        }
        (f, _) => write_framing(f, out),
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if to.version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    ClientFraming {
        framing,
        keep_alive,
    }
}
