//! One HTTP/1.1 connection (a simulated client's, or a publisher lane's): opened lazily
//! (optionally from a chosen source address, so thousands of clients are not limited by one
//! address's ephemeral ports), reused while the server keeps it alive, and every failure
//! classified the way the report counts it.

use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

/// Largest answer body read.
const MAX_BODY: usize = 16 << 20;

/// How a request failed, as counted in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    ConnectRefused,
    ConnectError,
    Reset,
    Closed,
    Timeout,
    Other,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::ConnectRefused => "connect_refused",
            Failure::ConnectError => "connect_error",
            Failure::Reset => "reset",
            Failure::Closed => "closed",
            Failure::Timeout => "timeout",
            Failure::Other => "other",
        }
    }
}

/// A complete answer.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// A lazily (re)connected client connection.
pub struct Conn {
    target: SocketAddr,
    source: Option<IpAddr>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(target: SocketAddr, source: Option<IpAddr>) -> Conn {
        Conn {
            target,
            source,
            sender: None,
        }
    }

    /// Forgets the connection (one with a request abandoned mid-way cannot be reused).
    pub fn reset(&mut self) {
        self.sender = None;
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let socket = if self.target.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|_| Failure::ConnectError)?;
        if let Some(ip) = self.source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|_| Failure::ConnectError)?;
        }
        let stream = socket
            .connect(self.target)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::ConnectionRefused => Failure::ConnectRefused,
                io::ErrorKind::TimedOut => Failure::Timeout,
                _ => Failure::ConnectError,
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| classify(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends one request and reads the whole answer, within `timeout`.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        match tokio::time::timeout(timeout, self.send_inner(req)).await {
            Ok(r) => {
                if r.is_err() {
                    self.sender = None;
                }
                r
            }
            Err(_) => {
                self.sender = None;
                Err(Failure::Timeout)
            }
        }
    }

    async fn send_inner(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, Failure> {
        // Reuse the connection only while the server keeps it open.
        if let Some(s) = &mut self.sender {
            if s.is_closed() || s.ready().await.is_err() {
                self.sender = None;
            }
        }
        let sender = match &mut self.sender {
            Some(s) => s,
            None => {
                let s = self.connect().await?;
                self.sender.insert(s)
            }
        };
        let resp = sender.send_request(req).await.map_err(|e| classify(&e))?;
        let status = resp.status();
        let keep = !resp
            .headers()
            .get(http::header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| classify_boxed(&*e))?
            .to_bytes();
        if !keep {
            self.sender = None;
        }
        Ok(Answer { status, body })
    }
}

fn classify(e: &hyper::Error) -> Failure {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        // Peer closed before or during the answer; a reset shows up as an io error below.
        if let Some(f) = io_failure(e) {
            return f;
        }
        return Failure::Closed;
    }
    io_failure(e).unwrap_or(Failure::Other)
}

fn classify_boxed(e: &(dyn StdError + Send + Sync + 'static)) -> Failure {
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        return classify(h);
    }
    io_failure(e).unwrap_or(Failure::Other)
}

fn io_failure(e: &(dyn StdError + 'static)) -> Option<Failure> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(ioe) = err.downcast_ref::<io::Error>() {
            return Some(match ioe.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Failure::Reset,
                io::ErrorKind::UnexpectedEof => Failure::Closed,
                io::ErrorKind::ConnectionRefused => Failure::ConnectRefused,
                io::ErrorKind::TimedOut => Failure::Timeout,
                _ => Failure::Other,
            });
        }
        source = err.source();
    }
    None
}
