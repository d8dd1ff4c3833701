//! How a message's body is delimited (RFC 9112 §6): the `Content-Length` and
//! `Transfer-Encoding` fields read once, strictly, for requests and responses alike. Only
//! `chunked` alone is accepted as a transfer coding; a `Content-Length` must be one field of
//! digits that fits 64 bits, never repeated (not even with the same value), never beside a
//! `Transfer-Encoding`. Each message has one [`Framing`], and kansas always writes the framing
//! header it forwards itself: the client's or shard's own framing fields are never copied.

use httparse::Header;

use super::list_items;

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (a request without framing fields; a response to HEAD, a 204 or a 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// What the `Content-Length` fields say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Absent,
    Value(u64),
    /// Not 1*DIGIT, or over 64 bits.
    Bad,
    /// More than one field (or a comma list: that is not digits, so [`Length::Bad`]).
    Repeated,
}

/// What the `Transfer-Encoding` fields say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Absent,
    /// `chunked`, alone.
    Chunked,
    /// A coding that is not registered (`xchunked`, `"chunked"`, `chunked;q=1`, `identity`).
    Unknown,
    /// `chunked` not the final coding, or twice, or no `chunked` at all.
    ChunkedNotLast,
    /// Registered codings before a final `chunked` (`gzip, chunked`): not forwarded.
    Unsupported,
    /// An empty list element (`chunked,`, `, chunked`, an empty value).
    Empty,
}

/// Transfer codings in the IANA registry that kansas recognizes (and refuses, but `chunked`).
const KNOWN_CODINGS: [&str; 6] = [
    "chunked",
    "compress",
    "deflate",
    "gzip",
    "x-compress",
    "x-gzip",
];

/// Whether a field is named `name` (case-insensitively).
pub(crate) fn is(header: &Header<'_>, name: &str) -> bool {
    header.name.eq_ignore_ascii_case(name)
}

/// The `Content-Length` fields of a head.
pub fn content_length(headers: &[Header<'_>]) -> Length {
    let mut found = Length::Absent;
    for h in headers.iter().filter(|h| is(h, "content-length")) {
        found = match (found, parse_length(h.value)) {
            (_, None) | (Length::Bad, _) => Length::Bad,
            (Length::Absent, Some(n)) => Length::Value(n),
            _ => Length::Repeated,
        };
    }
    found
}

/// A `Content-Length` value: 1 to 20 ASCII digits (leading zeros allowed) that fit a `u64`;
/// no sign, no hex, no spaces inside, no list.
pub fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The `Transfer-Encoding` fields of a head, all fields' elements taken as one list.
pub fn transfer_coding(headers: &[Header<'_>]) -> Coding {
    let mut fields = headers
        .iter()
        .filter(|h| is(h, "transfer-encoding"))
        .peekable();
    if fields.peek().is_none() {
        return Coding::Absent;
    }
    let (mut count, mut chunked, mut last_chunked) = (0usize, 0usize, false);
    for item in fields.flat_map(|h| list_items(h.value)) {
        if item.is_empty() {
            return Coding::Empty;
        }
        if !KNOWN_CODINGS
            .iter()
            .any(|k| item.eq_ignore_ascii_case(k.as_bytes()))
        {
            return Coding::Unknown;
        }
        last_chunked = item.eq_ignore_ascii_case(b"chunked");
        if last_chunked {
            chunked += 1;
        }
        count += 1;
        if count > 16 {
            // Nobody needs more; a bound on the work a hostile list can cause.
            return Coding::Unsupported;
        }
    }
    match (last_chunked, chunked, count) {
        (true, 1, 1) => Coding::Chunked,
        (true, 1, _) => Coding::Unsupported,
        _ => Coding::ChunkedNotLast,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a [u8]) -> Header<'a> {
        Header { name, value }
    }

    #[test]
    fn lengths() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"007"), Some(7));
        assert_eq!(parse_length(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b"18446744073709551616"[..],
            b"+5",
            b"-1",
            b"0x5",
            b"5 5",
            b"",
            b"5,5",
        ] {
            assert_eq!(parse_length(bad), None, "{:?}", bad);
        }
        let two = [h("Content-Length", b"5"), h("content-length", b"5")];
        assert_eq!(content_length(&two), Length::Repeated);
        let bad = [h("Content-Length", b"5"), h("content-length", b"x")];
        assert_eq!(content_length(&bad), Length::Bad);
    }

    #[test]
    fn codings() {
        let one = |v: &'static [u8]| transfer_coding(&[h("Transfer-Encoding", v)]);
        assert_eq!(one(b"chunked"), Coding::Chunked);
        assert_eq!(one(b"CHUNKED"), Coding::Chunked);
        assert_eq!(one(b"xchunked"), Coding::Unknown);
        assert_eq!(one(b"chunked, identity"), Coding::Unknown);
        assert_eq!(one(b"chunked, gzip"), Coding::ChunkedNotLast);
        assert_eq!(one(b"chunked, chunked"), Coding::ChunkedNotLast);
        assert_eq!(one(b"gzip"), Coding::ChunkedNotLast);
        assert_eq!(one(b"gzip, chunked"), Coding::Unsupported);
        assert_eq!(one(b"chunked,"), Coding::Empty);
        let two = [
            h("Transfer-Encoding", b"chunked"),
            h("Transfer-Encoding", b"chunked"),
        ];
        assert_eq!(transfer_coding(&two), Coding::ChunkedNotLast);
        assert_eq!(transfer_coding(&[]), Coding::Absent);
    }
}
