//! A shard that answers every request head with exactly the bytes a test gives (a malformed
//! response, say; the test may change them between requests), then closes the connection; it
//! counts the request heads it read and keeps their request lines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The longest request head read; a longer one is dropped unanswered.
const MAX_HEAD: usize = 64 << 10;

/// A running raw shard; stops when dropped.
pub struct RawShard {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

/// What the shard answers, and what it has read.
#[derive(Default)]
struct Seen {
    answer: Mutex<Vec<u8>>,
    requests: AtomicUsize,
    lines: Mutex<Vec<String>>,
}

impl RawShard {
    /// Answers every request head (read up to its blank line; a body is not read) with `answer`.
    pub async fn start(answer: Vec<u8>) -> RawShard {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen {
            answer: Mutex::new(answer),
            ..Seen::default()
        });
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = shared.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                    let line = String::from_utf8_lossy(line).into_owned();
                    seen.lines.lock().unwrap().push(line);
                    let answer = seen.answer.lock().unwrap().clone();
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        RawShard { addr, seen, task }
    }

    /// What it answers from now on.
    pub fn set_answer(&self, answer: Vec<u8>) {
        *self.seen.answer.lock().unwrap() = answer;
    }

    /// Request heads read so far.
    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// The request line of every head read so far.
    pub fn request_lines(&self) -> Vec<String> {
        self.seen.lines.lock().unwrap().clone()
    }
}

impl Drop for RawShard {
    fn drop(&mut self) {
        self.task.abort();
    }
}
