//! The head the shard gets, written in one pass over the client's parsed fields, copying their
//! names and values byte for byte, with the rules of `proxy::headers` (issue 15, item 5):
//! hop-by-hop fields (RFC 9110 §7.6.1: `Connection`, `Keep-Alive`, `Proxy-Connection`,
//! `Proxy-Authenticate`, `Proxy-Authorization`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`,
//! and every name listed in `Connection`) are dropped; `Host` is exactly the one kansas routed
//! on (never dropped, even when listed in `Connection`); `X-Forwarded-For` is the client's first
//! one with the client's address appended; `X-Request-Id` is set; the client's framing fields
//! and `Expect` are dropped and kansas writes the framing it forwards. The request line is the
//! client's method and origin-form target, always in HTTP/1.1.

use std::io::Write as _;
use std::net::IpAddr;

use httparse::Header;

use super::framing::{is, Framing};
use super::list_items;
use super::request::RequestHead;

/// Fields that describe one connection and never cross a proxy (RFC 9110 §7.6.1; also the
/// hyper path's list, `proxy::headers`).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Longest client-supplied request id kept as is.
const MAX_REQUEST_ID_LEN: usize = 200;

/// Whether the field is hop-by-hop: a standard one, or named in a `Connection` field (Host
/// never is: the shard must see the Host kansas routed on).
pub fn is_hop_by_hop(header: &Header<'_>, headers: &[Header<'_>]) -> bool {
    if HOP_BY_HOP.iter().any(|n| is(header, n)) {
        return true;
    }
    !is(header, "host")
        && headers
            .iter()
            .filter(|h| is(h, "connection"))
            .any(|c| list_items(c.value).any(|n| n.eq_ignore_ascii_case(header.name.as_bytes())))
}

/// Whether a client's `X-Request-Id` value is kept as is: 1–200 visible ASCII characters.
pub fn is_sane_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.iter().all(u8::is_ascii_graphic)
}

/// The client's request id: its first `X-Request-Id` when [`is_sane_request_id`]; `None`
/// means kansas makes one.
pub fn client_request_id<'b>(headers: &[Header<'b>]) -> Option<&'b [u8]> {
    let v = headers.iter().find(|h| is(h, "x-request-id"))?.value;
    is_sane_request_id(v).then_some(v)
}

/// Writes the head the shard gets for `head` into `out`: `client` is the client's address (for
/// `X-Forwarded-For`), `request_id` the id the request carries, and the body is forwarded with
/// `framing` (the client's: a length stays a length; chunked stays chunked, re-chunked).
pub fn write_request_head(
    head: &RequestHead<'_, '_>,
    client: IpAddr,
    request_id: &[u8],
    out: &mut Vec<u8>,
) {
    write_request_fields(head, client, request_id, out);
    write_framing(head.framing, out);
    out.extend_from_slice(b"\r\n");
}

/// [`write_request_head`] without the framing field and the empty line that ends the head:
/// the part the engine keeps to send again (a replay, a redirect, another shard), finished by
/// the caller with the framing of the body it sends then.
pub fn write_request_fields(
    head: &RequestHead<'_, '_>,
    client: IpAddr,
    request_id: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    head.write_origin(out);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if head.host_from_target {
        field(out, "Host", head.host);
    }
    let mut forwarded_for: Option<&[u8]> = None;
    let has_connection = head.headers.iter().any(|h| is(h, "connection"));
    for h in head.headers {
        let dropped = ["content-length", "expect", "x-request-id"]
            .iter()
            .any(|n| is(h, n))
            || (head.host_from_target && is(h, "host"))
            || (if has_connection {
                is_hop_by_hop(h, head.headers)
            } else {
                HOP_BY_HOP.iter().any(|n| is(h, n))
            });
        if dropped {
            continue;
        }
        if is(h, "x-forwarded-for") {
            forwarded_for.get_or_insert(h.value);
            continue;
        }
        field(out, h.name, h.value);
    }
    write_forwarded_for(forwarded_for, client, out);
    field(out, "X-Request-Id", request_id);
}

/// `X-Forwarded-For`: the client's first one (when it is text and not blank), then the
/// client's address; only the address otherwise.
fn write_forwarded_for(prev: Option<&[u8]>, client: IpAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(b"X-Forwarded-For: ");
    let text = |v: &&[u8]| v.iter().all(|&b| (0x20..0x7f).contains(&b) || b == b'\t');
    if let Some(prev) = prev.filter(text).filter(|v| !super::trim_ows(v).is_empty()) {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{client}\r\n");
}

/// The framing field for a body forwarded with `framing`.
pub fn write_framing(framing: Framing, out: &mut Vec<u8>) {
    match framing {
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty | Framing::UntilClose => {}
    }
}

/// One field line.
pub(crate) fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
