//! A whole buffer through the core, as the engine will run it on a socket: every pipelined
//! request in a client's bytes parsed, refused or forwarded (head and body) in order until the
//! bytes run out, a refusal closes, or the client asked to close; and a shard's bytes turned
//! into what the client gets. The conformance corpus, the differential test and the fuzz
//! target all drive the core through these two functions, so what they prove is what runs.

use std::net::IpAddr;

use super::chunked::{encode_chunk, ChunkError, Decoder, Step, LAST_CHUNK};
use super::error::{Refusal, RequestError, ResponseError};
use super::forward::{client_request_id, write_request_head};
use super::request::{self, Parsed};
use super::response::{self, ToClient};
use super::{Framing, Limits, MAX_HEADERS};

/// What happened to one request of a client's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// Forwarded: the bytes the shard got (head and body as forwarded), the decoded body, and
    /// whether kansas answered `100 Continue` first.
    Forwarded {
        bytes: Vec<u8>,
        body: Vec<u8>,
        continued: bool,
    },
    /// Refused with this answer; if the head was already forwarded (a bad chunk, a body over
    /// the limit), what the shard got before the request was cut off.
    Refused { refusal: Refusal, sent: Vec<u8> },
}

/// How a client's buffer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte used; the connection waits for the next request.
    Idle,
    /// In the middle of a head or body: more bytes are needed.
    Incomplete,
    /// The connection closes (the client asked, HTTP/1.0, or a refusal that closes); any
    /// bytes after are never read.
    Close,
}

/// Runs every request in `input` through the core: `client` is the peer address, and
/// `new_id` the request id given to requests without a sane one of their own.
pub fn forward_requests(
    input: &[u8],
    limits: &Limits,
    client: IpAddr,
    new_id: &[u8],
) -> (Vec<Exchange>, End) {
    let mut exchanges = Vec::new();
    let mut at = 0;
    loop {
        if at == input.len() {
            return (exchanges, End::Idle);
        }
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = match request::parse(&input[at..], &mut storage, limits) {
            Ok(Parsed::Complete(head)) => head,
            Ok(Parsed::Partial) => return (exchanges, End::Incomplete),
            Err(refusal) => {
                let sent = Vec::new();
                exchanges.push(Exchange::Refused { refusal, sent });
                if refusal.close {
                    return (exchanges, End::Close);
                }
                // Only a head without a body is refused without closing: skip that head.
                at += head_len(&input[at..], limits);
                continue;
            }
        };
        let mut bytes = Vec::with_capacity(head.head_len + 64);
        let id = client_request_id(head.headers).unwrap_or(new_id);
        write_request_head(&head, client, id, &mut bytes);
        let (keep_alive, continued, framing) =
            (head.keep_alive, head.expect_continue, head.framing);
        at += head.head_len;
        let (used, body) = match forward_body(&input[at..], framing, limits, &mut bytes) {
            Ok(got) => got,
            Err(BodyEnd::Incomplete) => return (exchanges, End::Incomplete),
            Err(BodyEnd::Refused(error)) => {
                let refusal = Refusal::closing(error);
                exchanges.push(Exchange::Refused {
                    refusal,
                    sent: bytes,
                });
                return (exchanges, End::Close);
            }
        };
        at += used;
        exchanges.push(Exchange::Forwarded {
            bytes,
            body,
            continued,
        });
        if !keep_alive {
            return (exchanges, End::Close);
        }
    }
}

/// The length of a head already parsed once (a refusal that does not close).
fn head_len(input: &[u8], limits: &Limits) -> usize {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(input) {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_head_bytes => n,
        _ => input.len(),
    }
}

/// Why a body did not end.
enum BodyEnd<E> {
    Incomplete,
    Refused(E),
}

/// Forwards a body framed by `framing` from the start of `input`, appending what the other
/// side gets to `out`; returns the bytes used and the decoded body.
fn forward_body(
    input: &[u8],
    framing: Framing,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(usize, Vec<u8>), BodyEnd<RequestError>> {
    match framing {
        Framing::Empty => Ok((0, Vec::new())),
        Framing::Length(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            out.extend_from_slice(&input[..n.min(input.len())]);
            if input.len() < n {
                return Err(BodyEnd::Incomplete);
            }
            Ok((n, input[..n].to_vec()))
        }
        Framing::Chunked => {
            let mut decoder = Decoder::new(limits.max_body_bytes, limits.max_trailer_bytes);
            dechunk(input, &mut decoder, out, true).map_err(|e| match e {
                BodyEnd::Incomplete => BodyEnd::Incomplete,
                BodyEnd::Refused(ChunkError::TooLarge) => {
                    BodyEnd::Refused(RequestError::BodyTooLarge)
                }
                BodyEnd::Refused(ChunkError::Syntax(what)) => {
                    BodyEnd::Refused(RequestError::BadChunk(what))
                }
            })
        }
        Framing::UntilClose => {
            out.extend_from_slice(input);
            Ok((input.len(), input.to_vec()))
        }
    }
}

/// Decodes a chunked body from `input`, writing it to `out` re-chunked (`rechunk`) or raw.
fn dechunk(
    input: &[u8],
    decoder: &mut Decoder,
    out: &mut Vec<u8>,
    rechunk: bool,
) -> Result<(usize, Vec<u8>), BodyEnd<ChunkError>> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        match decoder.decode(&input[at..]).map_err(BodyEnd::Refused)? {
            (used, Step::Data(data)) => {
                at += used;
                body.extend_from_slice(data);
                if rechunk {
                    encode_chunk(data, out);
                } else {
                    out.extend_from_slice(data);
                }
            }
            (used, Step::Done) => {
                if rechunk {
                    out.extend_from_slice(LAST_CHUNK);
                }
                return Ok((at + used, body));
            }
            (_, Step::NeedMore) => return Err(BodyEnd::Incomplete),
        }
    }
}

/// What the client gets for a shard's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// The bytes written to the client (head and body).
    pub client: Vec<u8>,
    /// The response was refused: before its head was relayed the client gets `502`; after,
    /// its connection is cut.
    pub error: Option<ResponseError>,
    /// The shard's bytes ended in the middle of the response (more are needed).
    pub incomplete: bool,
    /// Whether the client connection stays open after.
    pub client_keep_alive: bool,
    /// Whether the shard connection can be used again (a complete, persistent response with
    /// nothing after it).
    pub shard_reusable: bool,
}

/// Turns a shard's whole answer (`input` ends where the shard closed, for a close-delimited
/// body) into the client's bytes.
pub fn relay_response(input: &[u8], limits: &Limits, to_head: bool, to: &ToClient<'_>) -> Relayed {
    let mut r = Relayed {
        client: Vec::new(),
        error: None,
        incomplete: false,
        client_keep_alive: false,
        shard_reusable: false,
    };
    let mut at = 0;
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = loop {
        match response::parse(&input[at..], &mut storage, limits, to_head) {
            Ok(response::Parsed::Interim(n)) => at += n,
            Ok(response::Parsed::Complete(head)) => break head,
            Ok(response::Parsed::Partial) => {
                r.incomplete = true;
                return r;
            }
            Err(e) => {
                r.error = Some(e);
                return r;
            }
        }
    };
    let to_client = response::write_client_head(&head, to, &mut r.client);
    let rest = &input[at + head.head_len..];
    let rechunk = to_client.framing == Framing::Chunked;
    let body = match head.framing {
        Framing::Chunked => {
            let mut decoder = Decoder::new(u64::MAX, limits.max_trailer_bytes);
            dechunk(rest, &mut decoder, &mut r.client, rechunk).map(|(used, _)| used)
        }
        Framing::UntilClose if rechunk => {
            encode_chunk(rest, &mut r.client);
            r.client.extend_from_slice(LAST_CHUNK);
            Ok(rest.len())
        }
        framing => forward_body(rest, framing, limits, &mut r.client)
            .map(|(used, _)| used)
            .map_err(|_| BodyEnd::Incomplete),
    };
    match body {
        Ok(used) => {
            r.client_keep_alive = to_client.keep_alive;
            r.shard_reusable = head.shard_keep_alive && used == rest.len();
        }
        Err(BodyEnd::Incomplete) => r.incomplete = true,
        Err(BodyEnd::Refused(ChunkError::Syntax(what))) => {
            r.error = Some(ResponseError::BadChunk(what))
        }
        Err(BodyEnd::Refused(ChunkError::TooLarge)) => {
            r.error = Some(ResponseError::BadChunk("too large"))
        }
    }
    r
}
