//! A client's request body: read whole (a DELETE's small form, to find its `queue_id`) or
//! streamed to the shard as it arrives ([`Streamed`]). Framed by its length or by the
//! incremental chunked decoder (re-chunked for the shard, trailers dropped); bounded by
//! `proxy.max_body_bytes` and, between reads, by `timeouts.client_header_secs`. The bytes read
//! with the head come first; bytes past the body's end (a pipelined request) go back to the
//! head reader. `100 Continue` is sent when the client waits for it. A buffer is borrowed only
//! while bytes move.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::framed::Left;
use super::head::HeadReader;
use super::pool;
use super::Engine;
use crate::error::ProxyError;
use crate::h1::chunked::{ChunkError, LAST_CHUNK};
use crate::h1::Framing;

/// A client's body being read.
pub struct Streamed<'c> {
    client: &'c TcpStream,
    reader: &'c mut HeadReader,
    left: Left,
    /// `100 Continue` still to send before the first read from the socket.
    expect_continue: bool,
    started: bool,
    /// How the shard gets it.
    pub framing: Framing,
}

impl<'c> Streamed<'c> {
    /// The body framed by `framing` (not [`Framing::Empty`]), `limit` bytes at most.
    pub fn new(
        client: &'c TcpStream,
        reader: &'c mut HeadReader,
        framing: Framing,
        limit: u64,
        expect_continue: bool,
    ) -> Streamed<'c> {
        let left = Left::new(framing, limit, 8_192);
        Streamed {
            client,
            reader,
            left,
            expect_continue,
            started: false,
            framing,
        }
    }

    /// Whether any of it was read (it cannot be sent again then).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the whole body was read (the client connection can carry another request).
    pub fn is_done(&self) -> bool {
        self.left.is_done()
    }

    /// Reads the rest whole (at most `limit` bytes, checked by the framing).
    pub async fn read_whole(&mut self, engine: &Engine) -> Result<Vec<u8>, ProxyError> {
        let mut body = Vec::new();
        while !self.is_done() {
            self.next(engine, &mut body, false).await?;
        }
        Ok(body)
    }

    /// Streams the rest to `up` (re-chunked when chunked). A client failure is its error kind;
    /// the shard's is `UpstreamClosed`.
    pub async fn send(&mut self, engine: &Engine, up: &mut TcpStream) -> Result<(), super::Stop> {
        let chunked = self.framing == Framing::Chunked;
        while !self.is_done() {
            let mut out = pool::take(pool::SMALL);
            let read = self.next(engine, &mut out, chunked).await;
            let written = match read {
                Ok(()) if self.is_done() && chunked => {
                    out.extend_from_slice(LAST_CHUNK);
                    up.write_all(&out).await
                }
                Ok(()) => up.write_all(&out).await,
                Err(e) => {
                    pool::give(out);
                    return Err(e.into());
                }
            };
            pool::give(out);
            if written.is_err() {
                return Err(ProxyError::UpstreamClosed.into());
            }
        }
        Ok(())
    }

    /// Appends the body bytes of one read (chunk-encoded when `encode`) to `out`.
    async fn next(
        &mut self,
        engine: &Engine,
        out: &mut Vec<u8>,
        encode: bool,
    ) -> Result<(), ProxyError> {
        let input = match self.reader.take_pending() {
            Some(carried) => carried.into_vec(),
            None => self.read(engine).await?,
        };
        self.started = true;
        let used = self.decode(&input, out, encode)?;
        if used < input.len() {
            self.reader.put_back(&input[used..]);
        }
        if input.capacity() == pool::SMALL {
            pool::give(input);
        }
        Ok(())
    }

    /// One read from the socket into a borrowed buffer (given back by the caller).
    async fn read(&mut self, engine: &Engine) -> Result<Vec<u8>, ProxyError> {
        if std::mem::take(&mut self.expect_continue) {
            self.client
                .try_write(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(|_| ProxyError::ClientClosed)?;
        }
        let deadline = tokio::time::Instant::now() + engine.proxy.timeouts().client_header;
        loop {
            match tokio::time::timeout_at(deadline, super::readable(self.client)).await {
                Err(_) => return Err(ProxyError::BadRequestBody),
                Ok(Err(_)) => return Err(ProxyError::ClientClosed),
                Ok(Ok(())) => {}
            }
            let mut buf = pool::take(pool::SMALL);
            match super::read_some(self.client, &mut buf) {
                Ok(0) => {
                    pool::give(buf);
                    return Err(ProxyError::ClientClosed);
                }
                Ok(_) => return Ok(buf),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => pool::give(buf),
                Err(_) => {
                    pool::give(buf);
                    return Err(ProxyError::ClientClosed);
                }
            }
        }
    }

    /// Takes the body's bytes from `input` into `out`; returns how many bytes of `input` were
    /// the body's.
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        encode: bool,
    ) -> Result<usize, ProxyError> {
        self.left.take(input, out, encode).map_err(|e| match e {
            ChunkError::TooLarge => ProxyError::BodyTooLarge,
            ChunkError::Syntax(_) => ProxyError::BadRequestBody,
        })
    }
}
