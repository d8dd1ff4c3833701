//! The record a request keeps once its head is read (`docs/engine.md` §3): the head the shard
//! gets, written once from the client's bytes (request line and fields, without the framing
//! field and the empty line, so a body read whole can be sent with its own length), and the few
//! facts the rest of the exchange needs (method, target, realm, queue id, request id, framing,
//! keep-alive). A parked or in-flight GET keeps only this; replay, the redirect hop, the other
//! resident shards and the reload DELETE are all written from it.

use std::net::IpAddr;
use std::time::Instant;

use crate::error::ProxyError;
use crate::h1::forward::{client_request_id, write_framing, write_request_fields};
use crate::h1::request::RequestHead;
use crate::h1::{Framing, Version};
use crate::routing::{normalize_host, HostError};

/// A request as the engine keeps it while it is forwarded (and parked, and replayed).
#[derive(Debug)]
pub struct Record {
    /// Request line and fields as the shard gets them (no framing field, no final empty line).
    head: Box<[u8]>,
    /// Where the method, the path and the query end within `head`'s request line.
    method_end: u16,
    path_end: u32,
    target_end: u32,
    /// The realm (the normalized Host), or why there is none.
    pub realm: Result<Box<str>, ProxyError>,
    /// The `queue_id` of the query string, if any.
    pub queue_id: Option<Box<str>>,
    pub request_id: Box<[u8]>,
    /// How the client frames its body.
    pub framing: Framing,
    pub version: Version,
    /// The client wants the connection kept open after the answer.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    pub started: Instant,
}

impl Record {
    /// The record for a parsed head from `client`, its forwarded head written through `scratch`
    /// (the thread's, left empty).
    pub fn new(head: &RequestHead<'_, '_>, client: IpAddr, scratch: &mut Vec<u8>) -> Record {
        let fresh;
        let request_id = match client_request_id(head.headers) {
            Some(id) => id,
            None => {
                fresh = crate::proxy::headers::new_request_id_bytes();
                &fresh[..]
            }
        };
        scratch.clear();
        write_request_fields(head, client, request_id, scratch);
        let method_end = head.method.len();
        let line_end = scratch
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(scratch.len());
        let target_end = line_end.saturating_sub(" HTTP/1.1".len());
        let target = &scratch[method_end + 1..target_end];
        let path_end = method_end
            + 1
            + target
                .iter()
                .position(|&b| b == b'?')
                .unwrap_or(target.len());
        let query = std::str::from_utf8(&scratch[path_end..target_end])
            .ok()
            .and_then(|q| q.strip_prefix('?'));
        let queue_id = crate::proxy::decide::queue_id(query).map(String::into_boxed_str);
        let realm = std::str::from_utf8(head.host)
            .map_err(|_| ProxyError::InvalidHost)
            .and_then(|h| {
                normalize_host(h).map_err(|e| match e {
                    HostError::Missing => ProxyError::MissingHost,
                    HostError::Invalid => ProxyError::InvalidHost,
                })
            })
            .map(String::into_boxed_str);
        let record = Record {
            head: scratch.as_slice().into(),
            method_end: method_end as u16,
            path_end: path_end as u32,
            target_end: target_end as u32,
            realm,
            queue_id,
            request_id: request_id.into(),
            framing: head.framing,
            version: head.version,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            started: Instant::now(),
        };
        scratch.clear();
        record
    }

    pub fn method(&self) -> &str {
        std::str::from_utf8(&self.head[..self.method_end as usize]).unwrap_or("-")
    }

    pub fn is_get(&self) -> bool {
        self.method() == "GET"
    }

    pub fn is_head(&self) -> bool {
        self.method() == "HEAD"
    }

    pub fn is_delete(&self) -> bool {
        self.method() == "DELETE"
    }

    /// The path of the target (no query).
    pub fn path(&self) -> &str {
        let start = self.method_end as usize + 1;
        std::str::from_utf8(&self.head[start..self.path_end as usize]).unwrap_or("-")
    }

    /// The query string, without its `?`.
    pub fn query(&self) -> Option<&str> {
        let q = &self.head[self.path_end as usize..self.target_end as usize];
        std::str::from_utf8(q.strip_prefix(b"?")?).ok()
    }

    /// A queue-creating GET: an events path, no `queue_id`, `dont_block=true`. Its answer is
    /// small and immediate, so kansas reads it to learn the new queue.
    pub fn is_registration(&self) -> bool {
        self.is_get()
            && self.queue_id.is_none()
            && matches!(self.path(), "/json/events" | "/api/v1/events")
            && form_urlencoded::parse(self.query().unwrap_or("").as_bytes())
                .any(|(k, v)| k == "dont_block" && v == "true")
    }

    /// The request id as text for the access line.
    pub fn request_id_str(&self) -> &str {
        std::str::from_utf8(&self.request_id).unwrap_or("-")
    }

    /// The head as the shard gets it, finished with `framing` for the body sent with it.
    pub fn write_head(&self, framing: Framing, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        write_framing(framing, out);
        out.extend_from_slice(b"\r\n");
    }

    /// The fields after the request line (each ending in CRLF).
    fn fields(&self) -> &[u8] {
        let line_end = self.target_end as usize + " HTTP/1.1\r\n".len();
        &self.head[line_end.min(self.head.len())..]
    }

    /// The head of the same request sent to another target (`X-Accel-Redirect`), finished.
    pub fn write_redirected_head(&self, target: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head[..self.method_end as usize]);
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        out.extend_from_slice(self.fields());
        out.extend_from_slice(b"\r\n");
    }

    /// The DELETE that frees `queue_id` on the shard a realm moved from: the request's path and
    /// fields (its credentials), `queue_id` in a form body as clients send it; finished, body
    /// included.
    pub fn write_reload_delete(&self, queue_id: &str, out: &mut Vec<u8>) {
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("queue_id", queue_id)
            .finish();
        out.extend_from_slice(b"DELETE ");
        out.extend_from_slice(self.path().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for line in self.fields().split_inclusive(|&b| b == b'\n') {
            let name_end = line.iter().position(|&b| b == b':').unwrap_or(0);
            if !line[..name_end].eq_ignore_ascii_case(b"content-type") {
                out.extend_from_slice(line);
            }
        }
        out.extend_from_slice(b"Content-Type: application/x-www-form-urlencoded\r\n");
        write_framing(Framing::Length(form.len() as u64), out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(form.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::request::{parse, Parsed};
    use crate::h1::{Limits, MAX_HEADERS};

    fn record(raw: &[u8]) -> Record {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(Parsed::Complete(head)) = parse(raw, &mut storage, &Limits::default()) else {
            panic!("not a head: {raw:?}")
        };
        Record::new(&head, "10.0.0.9".parse().unwrap(), &mut Vec::new())
    }

    #[test]
    fn a_poll_keeps_its_target_realm_and_queue() {
        let r = record(
            b"GET /json/events?queue_id=1:ab&last_event_id=4 HTTP/1.1\r\nHost: R.Example.com\r\n\
              Cookie: c=1\r\nX-Request-Id: id-7\r\n\r\n",
        );
        assert_eq!(r.method(), "GET");
        assert_eq!(r.path(), "/json/events");
        assert_eq!(r.query(), Some("queue_id=1:ab&last_event_id=4"));
        assert_eq!(r.queue_id.as_deref(), Some("1:ab"));
        assert_eq!(r.realm.as_deref(), Ok("r.example.com"));
        assert_eq!(r.request_id_str(), "id-7");
        assert!(!r.is_registration());
        let mut out = Vec::new();
        r.write_head(Framing::Empty, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /json/events?queue_id=1:ab&last_event_id=4 HTTP/1.1\r\nHost: R.Example.com\r\n\
             Cookie: c=1\r\nX-Forwarded-For: 10.0.0.9\r\nX-Request-Id: id-7\r\n\r\n"
        );
    }

    #[test]
    fn redirect_and_reload_delete_are_written_from_the_record() {
        let r = record(
            b"GET /json/events?queue_id=q1 HTTP/1.1\r\nHost: r.example.com\r\n\
              Content-Type: text/plain\r\nAuthorization: Basic eA==\r\n\r\n",
        );
        let mut out = Vec::new();
        r.write_redirected_head("/json/events?queue_id=q1&x=1", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text
            .starts_with("GET /json/events?queue_id=q1&x=1 HTTP/1.1\r\nHost: r.example.com\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let mut out = Vec::new();
        r.write_reload_delete("q1", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("DELETE /json/events HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("Authorization: Basic eA==\r\n"), "{text}");
        assert!(!text.contains("text/plain"), "{text}");
        assert!(
            text.ends_with("Content-Length: 11\r\n\r\nqueue_id=q1"),
            "{text}"
        );
    }

    #[test]
    fn registration_and_a_new_request_id() {
        let r = record(b"GET /api/v1/events?dont_block=true HTTP/1.1\r\nHost: r\r\n\r\n");
        assert!(r.is_registration());
        assert_eq!(r.request_id.len(), 32);
        let r = record(b"GET /json/events HTTP/1.1\r\nHost: a b\r\n\r\n");
        assert_eq!(r.realm, Err(ProxyError::InvalidHost));
    }
}
