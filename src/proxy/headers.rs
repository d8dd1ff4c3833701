//! Header rules between client and shard: hop-by-hop headers (RFC 9110 §7.6.1, plus any named in
//! `Connection`) are removed in both directions, `X-Forwarded-For` gets the client address
//! appended, and every request carries an `X-Request-Id` (the client's if sane, else a new one).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

// The rules' one source: the engine's framing core (`h1`), which this hyper path will give
// way to.
use crate::h1::forward::{is_sane_request_id, HOP_BY_HOP};

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Removes hop-by-hop headers, including every header named in `Connection`.
///
/// Most requests and answers carry none of them, so one pass over the names decides whether
/// anything needs removing (cheaper than nine lookups).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        // Host is never hop-by-hop: the shard must see the Host kansas routed on.
        for name in named.into_iter().filter(|n| n != header::HOST) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the client's address to `X-Forwarded-For` (creating it when absent).
pub fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        // Several X-Forwarded-For lines are folded into the one written here.
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
}

/// The request's id: the client's `X-Request-Id` when it is 1–200 visible ASCII characters,
/// otherwise a new random 128-bit id in hex.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        if is_sane_request_id(v.as_bytes()) {
            return v.clone();
        }
    }
    new_request_id()
}

/// A fresh random request id (32 lower-case hex digits).
pub fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&new_request_id_bytes()).expect("hex digits are a valid header value")
}

/// [`new_request_id`] as bytes (both engines make their ids here).
pub fn new_request_id_bytes() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut id = [0u8; 32];
    for digit in id.iter_mut().rev() {
        *digit = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_standard_and_named_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("host", HeaderValue::from_static("chat.example.com"));
        h.insert("cookie", HeaderValue::from_static("a=b"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["host", "cookie"]);
    }

    #[test]
    fn appends_forwarded_for() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "10.0.0.1".parse().unwrap());
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        append_forwarded_for(&mut h, "::1".parse().unwrap());
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, ::1");
    }

    #[test]
    fn keeps_sane_request_ids_only() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        h.insert(
            X_REQUEST_ID.clone(),
            HeaderValue::from_str(&"x".repeat(201)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 32);
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
