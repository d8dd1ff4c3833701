//! Reading one request head from a client socket, holding no buffer while the client is idle:
//! wait for `readable()`, borrow a buffer from the thread's pool, `try_read` while bytes come,
//! and give the buffer back before waiting again. A head split over many reads is kept between
//! reads in an exact-size `carry` box (bounded by the head limit), not in a pool buffer. A
//! complete head is parsed once, in place, by [`crate::h1::request::parse`] and handed to the
//! caller's closure while the buffer is still borrowed (the caller routes and writes the
//! forwarded head synchronously, then the buffer goes back); the bytes after it (a body's
//! start, or a pipelined next request) are kept in the carry only until they are used. A head
//! over the limit, or malformed, is the `h1` refusal; the header timeout is the caller's.

use std::io;

use httparse::Header;
use tokio::net::TcpStream;

use super::pool;
use crate::h1::request::{self, Parsed, RequestHead};
use crate::h1::{Limits, Refusal, MAX_HEADERS};

/// Why no head was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client closed the connection between requests (the normal end of keep-alive).
    #[error("client closed the connection")]
    Closed,
    /// The client closed the connection in the middle of a head.
    #[error("client closed the connection in the middle of a request head")]
    ClosedMidHead,
    /// The head is refused (answer with its status; close when it says so).
    #[error("request head refused: {}", .0.error)]
    Refused(Refusal),
    #[error("reading the request head: {0}")]
    Io(#[from] io::Error),
}

/// One client connection's reading side between requests: only the bytes read but not yet
/// used (none, nearly always).
#[derive(Debug, Default)]
pub struct HeadReader {
    carry: Option<Box<[u8]>>,
    /// The carry is the start of a head already parsed as incomplete (not parsed again until
    /// more bytes come).
    partial: bool,
}

impl HeadReader {
    pub fn new() -> HeadReader {
        HeadReader::default()
    }

    /// Bytes read from the client and not yet used.
    pub fn pending(&self) -> usize {
        self.carry.as_ref().map_or(0, |c| c.len())
    }

    /// Takes the bytes read and not yet used (a body's start, for the caller to forward).
    pub fn take_pending(&mut self) -> Option<Box<[u8]>> {
        self.carry.take()
    }

    /// Gives back bytes read past a body's end (the start of a pipelined request): they are
    /// read before the socket again.
    pub fn put_back(&mut self, rest: &[u8]) {
        self.keep(rest, false);
    }

    /// Reads the next request head from `stream` and gives it, parsed, to `on_head`; the
    /// bytes after the head stay pending. `on_head` runs while the buffer is borrowed: it
    /// must not block. The wait uses the stream's `poll_read_ready` (one waker slot per
    /// stream): the caller must not wait for this stream's read readiness elsewhere meanwhile.
    pub async fn next<T>(
        &mut self,
        stream: &TcpStream,
        limits: &Limits,
        on_head: impl FnOnce(&RequestHead<'_, '_>) -> T,
    ) -> Result<T, ReadError> {
        let mut on_head = Some(on_head);
        if self.carry.is_some() {
            if let Some(t) = self.fill(stream, limits, &mut on_head)? {
                return Ok(t);
            }
        }
        loop {
            // The socket's own readiness slot: no waiter stored in the caller's task (a
            // `readable()` future would add ~100 bytes to every idle connection's task).
            super::readable(stream).await?;
            if let Some(t) = self.fill(stream, limits, &mut on_head)? {
                return Ok(t);
            }
        }
    }

    /// Borrows a buffer, puts the pending bytes in it, reads what is there, and parses: the
    /// closure's result for a complete head, `None` when the socket has no more for now (the
    /// bytes so far pending again, the buffer given back).
    fn fill<T, F>(
        &mut self,
        stream: &TcpStream,
        limits: &Limits,
        on_head: &mut Option<F>,
    ) -> Result<Option<T>, ReadError>
    where
        F: FnOnce(&RequestHead<'_, '_>) -> T,
    {
        let carried = self.carry.take();
        let mut buf = pool::take(carried.as_ref().map_or(0, |c| c.len()));
        let mut fresh = 0;
        if let Some(c) = carried {
            buf.extend_from_slice(&c);
            fresh = if self.partial { 0 } else { buf.len() };
        }
        let result = loop {
            if fresh > 0 {
                let new = &buf[buf.len() - fresh..];
                if new.contains(&b'\n') || buf.len() >= limits.max_head_bytes {
                    match parse_and_hand(&buf, limits, on_head) {
                        Ok(Some((t, used))) => {
                            self.keep(&buf[used..], false);
                            break Ok(Some(t));
                        }
                        Ok(None) => {}
                        Err(refusal) => break Err(ReadError::Refused(refusal)),
                    }
                }
            }
            if buf.len() == buf.capacity() {
                buf = grow(buf, limits.max_head_bytes);
            }
            match super::read_some(stream, &mut buf) {
                Ok(0) if buf.is_empty() => break Err(ReadError::Closed),
                Ok(0) => break Err(ReadError::ClosedMidHead),
                Ok(n) => fresh = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.keep(&buf, true);
                    break Ok(None);
                }
                Err(e) => break Err(ReadError::Io(e)),
            }
        };
        pool::give(buf);
        result
    }

    /// Keeps `rest` pending (nothing when it is empty); `partial` when it is an incomplete
    /// head already parsed.
    fn keep(&mut self, rest: &[u8], partial: bool) {
        self.carry = (!rest.is_empty()).then(|| rest.into());
        self.partial = partial;
    }
}

/// Moves a full buffer's bytes into a larger one from the pool: the head limit's size (the
/// large class when the pool is sized to it), so the parse refuses a head at the limit before
/// this is needed again.
fn grow(small: Vec<u8>, max_head_bytes: usize) -> Vec<u8> {
    let mut large = pool::take(max_head_bytes.max(small.capacity() * 2));
    large.extend_from_slice(&small);
    pool::give(small);
    large
}

/// Parses the head at the start of `buf`; for a complete one, runs the closure and returns its
/// result and the head's length. The field storage lives only in this synchronous frame.
fn parse_and_hand<T, F>(
    buf: &[u8],
    limits: &Limits,
    on_head: &mut Option<F>,
) -> Result<Option<(T, usize)>, Refusal>
where
    F: FnOnce(&RequestHead<'_, '_>) -> T,
{
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let storage: &mut [Header<'_>] = &mut storage;
    match request::parse(buf, storage, limits)? {
        Parsed::Partial => Ok(None),
        Parsed::Complete(head) => {
            let f = on_head.take().expect("a head is handed over once");
            let used = head.head_len;
            Ok(Some((f(&head), used)))
        }
    }
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
