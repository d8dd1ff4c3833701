//! The HTTP/1 framing core (`kansas::h1`, issue 13): mutated client requests (pipelined, with
//! every smuggling token spliced in) and mutated shard responses through `h1::pipeline`. No
//! panic, allocation bounded by the input's size, and the shard never gets a request the client
//! did not send: each forwarded exchange is exactly one request (forwarding its bytes again
//! gives one request, nothing left over), its request line is one of the client's, and its body
//! is the client's decoded body.

use std::net::{IpAddr, Ipv4Addr};

use kansas::h1::pipeline::{forward_requests, relay_response, End, Exchange};
use kansas::h1::response::ToClient;
use kansas::h1::{Limits, Version};
use proptest::prelude::*;

use crate::alloc::measure;
use crate::mutate::{apply, edits};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

const REQUESTS: &[&[u8]] = &[
    b"GET /json/events?queue_id=q HTTP/1.1\r\nHost: r.example.com\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    b"POST /json/messages HTTP/1.1\r\nHost: r.example.com\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: r.example.com\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: r.example.com\r\nTransfer-Encoding: chunked\r\n\r\n4;e=1\r\nWiki\r\n5\r\npedia\r\n0\r\nT: 1\r\n\r\nGET /3 HTTP/1.1\r\nHost: r.example.com\r\nConnection: close\r\n\r\n",
    b"GET http://r.example.com/a HTTP/1.0\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\nDELETE /q HTTP/1.0\r\nHost: r.example.com\r\nContent-Length: 3\r\n\r\nq=1",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: X-P\r\nX-P: 1\r\n\r\nto the end",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
];

/// What a fuzzer splices in: framing fields, smuggling patterns, line ends, odd bytes.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"\r\n\r\n",
    b" ",
    b"\t",
    b":",
    b"Content-Length: 0\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 18446744073709551616\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: xchunked\r\n",
    b"Transfer-Encoding: chunked, identity\r\n",
    b"Host: other.example.com\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive, Host\r\n",
    b"Expect: 100-continue\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b";ext=\"x\"",
    b"GET /smuggled HTTP/1.1\r\nHost: r.example.com\r\n\r\n",
    b" HTTP/1.0",
    b"HTTP/1.1 200 OK\r\n",
    b" folded\r\n",
];

fn limits() -> Limits {
    Limits {
        max_head_bytes: 8_192,
        max_body_bytes: 4_096,
        max_response_head_bytes: 8_192,
        max_trailer_bytes: 1_024,
    }
}

/// Whether `input` holds the request line `METHOD ORIGIN` (origin-form) or `METHOD http...`
/// with that path (absolute-form).
fn is_client_line(input: &[u8], method: &[u8], origin: &[u8]) -> bool {
    let contains = |parts: &[&[u8]]| {
        let needle = parts.concat();
        input.windows(needle.len()).any(|w| w == needle.as_slice())
    };
    contains(&[method, b" ", origin, b" "])
        || (contains(&[method, b" http"]) && (origin == b"/" || contains(&[origin, b" "])))
}

/// Checks one forwarded exchange: one request, the client's line, the client's body.
fn check_forwarded(input: &[u8], bytes: &[u8], body: &[u8]) -> Result<(), TestCaseError> {
    let (again, end) = forward_requests(bytes, &Limits::default(), CLIENT, b"id");
    prop_assert_eq!(
        end,
        End::Idle,
        "one whole request: {:?}",
        String::from_utf8_lossy(bytes)
    );
    prop_assert_eq!(again.len(), 1, "exactly one request");
    let Exchange::Forwarded { body: b2, .. } = &again[0] else {
        return Err(TestCaseError::fail(
            "the forwarded request is refused on re-reading",
        ));
    };
    prop_assert_eq!(b2.as_slice(), body, "the forwarded body is the client's");
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\r')
        .unwrap_or(bytes.len());
    let mut parts = bytes[..line_end].split(|&b| b == b' ');
    let (method, origin) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
    prop_assert!(
        is_client_line(input, method, origin),
        "a request line the client sent"
    );
    Ok(())
}

proptest! {
    #![proptest_config(crate::cases(256))]

    #[test]
    fn the_shard_only_gets_requests_the_client_sent(seed in 0..REQUESTS.len(), e in edits(8)) {
        let input = apply(REQUESTS[seed].to_vec(), &e, TOKENS);
        let ((exchanges, _), peak) =
            measure(|| forward_requests(&input, &limits(), CLIENT, b"generated"));
        prop_assert!(peak <= 64 * 1024 + 16 * input.len(), "allocated {peak} for {} bytes", input.len());
        for x in &exchanges {
            if let Exchange::Forwarded { bytes, body, .. } = x {
                check_forwarded(&input, bytes, body)?;
            }
        }
    }

    #[test]
    fn a_shard_response_is_relayed_whole_or_refused(
        seed in 0..RESPONSES.len(),
        e in edits(8),
        head in any::<bool>(),
        v10 in any::<bool>(),
    ) {
        let input = apply(RESPONSES[seed].to_vec(), &e, TOKENS);
        let to = ToClient {
            request_id: b"rid",
            version: if v10 { Version::Http10 } else { Version::Http11 },
            keep_alive: true,
        };
        let (r, peak) = measure(|| relay_response(&input, &limits(), head, &to));
        prop_assert!(peak <= 64 * 1024 + 16 * input.len(), "allocated {peak}");
        if r.error.is_none() && !r.client.is_empty() {
            // The client's bytes start with one valid head that kansas itself accepts.
            let mut storage = [httparse::EMPTY_HEADER; kansas::h1::MAX_HEADERS];
            let parsed = kansas::h1::response::parse(&r.client, &mut storage, &Limits::default(), head);
            prop_assert!(parsed.is_ok(), "{:?}", String::from_utf8_lossy(&r.client));
        }
    }
}
