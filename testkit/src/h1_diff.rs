//! The two engines of the HTTP/1 differential test (issue 13, `tests/h1_vs_hyper.rs`): a
//! client's bytes (one or more pipelined requests) run through `kansas::h1::pipeline` and
//! through hyper's HTTP/1 server (over an in-memory duplex, with the settings of today's proxy
//! listener), each giving one [`Verdict`] per request in order, so the test can compare them.
//! A verdict is "accepted" with what matters of the request (method, origin-form target, Host,
//! the end-to-end fields, the decoded body) or "refused" with the status when known. Framing
//! fields (`Content-Length`, `Transfer-Encoding`), hop-by-hop fields and the fields kansas adds
//! (`X-Forwarded-For`, `X-Request-Id`) are left out: kansas rewrites them by design.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kansas::h1::pipeline::{forward_requests, Exchange};
use kansas::h1::{Limits, MAX_HEADERS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::h1_corpus::{CLIENT, NEW_ID};

/// What one engine made of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted(Accepted),
    /// Refused, with the status answered when the engine gave one.
    Refused(Option<u16>),
}

/// What matters of an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub method: String,
    /// The origin-form target (an absolute-form target's path and query).
    pub target: String,
    /// The Host, lowercased: the Host field, or an absolute-form target's authority.
    pub host: Option<String>,
    /// The end-to-end fields, names lowercased, sorted.
    pub fields: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Accepted(a) => write!(
                f,
                "accepted {} {} host={:?} fields={:?} body={:?}",
                a.method,
                a.target,
                a.host,
                a.fields
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>(),
                String::from_utf8_lossy(&a.body)
            ),
            Verdict::Refused(Some(status)) => write!(f, "refused {status}"),
            Verdict::Refused(None) => write!(f, "refused (connection closed)"),
        }
    }
}

/// Fields left out of the comparison besides the hop-by-hop ones
/// ([`kansas::h1::forward::HOP_BY_HOP`]): framing, and the ones kansas writes itself.
const NOT_COMPARED: &[&str] = &[
    "content-length",
    "expect",
    "x-forwarded-for",
    "x-request-id",
    "host",
];

/// The end-to-end fields of `fields`: not in [`NOT_COMPARED`], not named in a `Connection`
/// field; names lowercased, sorted.
fn end_to_end(fields: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    let listed: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out: Vec<(String, Vec<u8>)> = fields
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
        .filter(|(n, _)| {
            !NOT_COMPARED.contains(&n.as_str())
                && !kansas::h1::forward::HOP_BY_HOP.contains(&n.as_str())
                && !listed.contains(n)
        })
        .collect();
    out.sort();
    out
}

/// kansas's verdicts: `kansas::h1::pipeline::forward_requests`, each forwarded head read back.
pub fn kansas_verdicts(input: &[u8], limits: &Limits) -> Vec<Verdict> {
    let (exchanges, _) = forward_requests(input, limits, CLIENT, NEW_ID);
    exchanges
        .into_iter()
        .map(|x| match x {
            Exchange::Forwarded { bytes, body, .. } => {
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS + 4];
                let mut req = httparse::Request::new(&mut storage);
                req.parse(&bytes).expect("kansas forwards a valid head");
                let fields: Vec<_> = req.headers.iter().map(|h| (h.name, h.value)).collect();
                let host = fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("host"))
                    .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase());
                Verdict::Accepted(Accepted {
                    method: req.method.unwrap_or_default().to_string(),
                    target: req.path.unwrap_or_default().to_string(),
                    host,
                    fields: end_to_end(&fields),
                    body,
                })
            }
            Exchange::Refused { refusal, .. } => Verdict::Refused(Some(refusal.status())),
        })
        .collect()
}

/// How long (on the test's paused clock) a connection may sit with nothing to do before the
/// run ends: every byte given has then been read and answered, or is a request left incomplete.
const QUIET: Duration = Duration::from_secs(3600);

/// hyper's verdicts: `input` written to hyper's HTTP/1 server over `tokio::io::duplex`, with
/// the proxy listener's settings (`max_header_size`, keep-alive; 100 fields; no half-close;
/// the header-read timeout is left out: time is not a verdict) and its body limit
/// (a `Content-Length` over it refused at once, a longer chunked body cut by `Limited`, as
/// `src/proxy/forward.rs`). The service records each request and answers `200`.
/// Must run on a runtime with a paused clock (the run ends when the connection goes quiet).
pub async fn hyper_verdicts(input: &[u8], limits: &Limits) -> Vec<Verdict> {
    let records = Arc::new(Mutex::new(Vec::new()));
    let seen = records.clone();
    let max_body = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    let service = service_fn(move |req: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            // The proxy refuses a Content-Length over the limit before reading the body.
            let too_large = body
                .size_hint()
                .exact()
                .is_some_and(|n| n > max_body as u64);
            let collected = if too_large {
                None
            } else {
                Some(Limited::new(body, max_body).collect().await)
            };
            let verdict = match collected {
                None => Verdict::Refused(Some(413)),
                Some(Ok(body)) => Verdict::Accepted(accepted(&parts, body.to_bytes().to_vec())),
                Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    Verdict::Refused(Some(413))
                }
                Some(Err(_)) => Verdict::Refused(None),
            };
            let ok = matches!(verdict, Verdict::Accepted(_));
            seen.lock().unwrap().push(verdict);
            if ok {
                Ok(Response::new(Empty::<Bytes>::new()))
            } else {
                Err("refused body")
            }
        }
    });
    let (client, server) = tokio::io::duplex(input.len() + 65_536);
    let mut builder = http1::Builder::new();
    builder
        .max_header_size(limits.max_head_bytes)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(server), service);
    let (mut read, mut write) = tokio::io::split(client);
    write
        .write_all(input)
        .await
        .expect("the duplex holds the input");
    let serve = async { tokio::time::timeout(QUIET, conn).await };
    let answers = async {
        let mut out = Vec::new();
        let _ = read.read_to_end(&mut out).await;
        out
    };
    let (served, answers) = tokio::join!(serve, answers);
    let mut verdicts = std::mem::take(&mut *records.lock().unwrap());
    let accepted = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Accepted(_)))
        .count();
    if verdicts.len() > accepted {
        return verdicts; // a body refused: the connection closed there
    }
    // hyper answers a head it refuses itself (400, 414, 431) after the accepted ones.
    let statuses = final_statuses(&answers);
    if let Some(&status) = statuses.get(accepted) {
        verdicts.push(Verdict::Refused(Some(status)));
    } else if matches!(served, Ok(Err(_))) {
        verdicts.push(Verdict::Refused(None));
    }
    verdicts
}

/// What matters of a request hyper accepted.
fn accepted(parts: &http::request::Parts, body: Vec<u8>) -> Accepted {
    let fields: Vec<_> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let host = parts
        .headers
        .get(http::header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .or_else(|| {
            parts
                .uri
                .authority()
                .map(|a| a.as_str().to_ascii_lowercase())
        });
    let target = match parts.uri.path_and_query() {
        // An absolute-form target's empty path is `/` (RFC 9112 §3.2.2).
        Some(pq) if !pq.as_str().starts_with('/') && parts.uri.authority().is_some() => {
            format!("/{}", pq.as_str())
        }
        Some(pq) => pq.as_str().to_string(),
        None => parts.uri.to_string(),
    };
    Accepted {
        method: parts.method.as_str().to_string(),
        target,
        host,
        fields: end_to_end(&fields),
        body,
    }
}

/// The statuses of the final (non-1xx) responses in hyper's answers, in order.
fn final_statuses(mut answers: &[u8]) -> Vec<u16> {
    let mut statuses = Vec::new();
    loop {
        let mut storage = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut storage);
        let Ok(httparse::Status::Complete(n)) = resp.parse(answers) else {
            return statuses;
        };
        let status = resp.code.unwrap_or(0);
        let length: usize = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .unwrap_or(0);
        if status >= 200 {
            statuses.push(status);
        }
        answers = &answers[(n + length).min(answers.len())..];
    }
}
