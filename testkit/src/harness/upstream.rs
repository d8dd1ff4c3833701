//! A small upstream server standing in for a shard in routing and proxy tests. It answers with
//! a JSON echo of what it received (`{"shard","method","path","headers","body_len"}`), plus:
//! `/slow?ms=N` answers after N ms; `/stream` sends one chunk, then waits for the test to call
//! [`Upstream::release`] before the second; `/stream-abort` sends one chunk, waits for the
//! release, then fails mid-body (the connection is cut).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Request counters shared with the connection tasks.
#[derive(Clone)]
struct Counts {
    heads: Arc<AtomicUsize>,
    bodies: Arc<AtomicUsize>,
}

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    bodies: Arc<AtomicUsize>,
    release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let counts = Counts {
            heads: requests.clone(),
            bodies: bodies.clone(),
        };
        let (n, r, rel) = (name.to_string(), counts, release.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (n, r, rel) = (n.clone(), r.clone(), rel.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, n.clone(), r.clone(), rel.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            name: name.to_string(),
            addr,
            requests,
            bodies,
            release,
            task,
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests whose body was received completely.
    pub fn complete_bodies(&self) -> usize {
        self.bodies.load(Ordering::SeqCst)
    }

    /// Lets a held `/stream` answer send its second chunk.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    name: String,
    count: Counts,
    release: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    count.heads.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/stream" || path == "/stream-abort" {
        let abort = path == "/stream-abort";
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(2);
        tokio::spawn(async move {
            let first = Frame::data(Bytes::from_static(b"first\n"));
            let _ = tx.send(Ok(first)).await;
            release.notified().await;
            let last = if abort {
                Err("upstream dies mid-answer".into())
            } else {
                Ok(Frame::data(Bytes::from_static(b"second\n")))
            };
            let _ = tx.send(last).await;
        });
        let stream = tokio_stream_from(rx);
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))));
    }
    if path == "/slow" {
        let ms: u64 = query
            .strip_prefix("ms=")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let method = req.method().to_string();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    let body_len = match req.into_body().collect().await {
        Ok(b) => {
            count.bodies.fetch_add(1, Ordering::SeqCst);
            b.to_bytes().len()
        }
        Err(_) => 0,
    };
    let json = serde_json::json!({
        "shard": name, "method": method, "path": path, "query": query,
        "headers": headers, "body_len": body_len,
    });
    let resp = Response::builder()
        .header("content-type", "application/json")
        .header("connection", "keep-alive, x-upstream-private")
        .header("x-upstream-private", "secret")
        .header("keep-alive", "timeout=30")
        .header("x-upstream-public", "visible")
        .body(BodyExt::boxed(
            http_body_util::Full::new(Bytes::from(json.to_string())).map_err(|e| match e {}),
        ))
        .unwrap();
    Ok(resp)
}

/// Adapts an mpsc receiver into a `Stream` of frames.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, BoxError>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
