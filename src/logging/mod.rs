//! Log set-up: `tracing` to standard output, as text for people or one JSON object per line for
//! log pipelines. `RUST_LOG`, when set, overrides the configured level.
//!
//! Access lines (one per request) are batched: they collect in a bounded buffer that is written
//! out within [`FLUSH_EVERY`], when it fills, before any other line (so order is kept), and by
//! [`flush`] at exit. Every other line is written at once. Writes are whole lines of at most
//! `PIPE_BUF` bytes, so the master's and the worker's lines never interleave mid-line on a
//! shared pipe.

use std::io::{IsTerminal, Write};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub mod access;
pub mod throttle;

/// The target of the per-request access line.
pub const ACCESS_TARGET: &str = "kansas::access";
/// Longest an access line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Buffered bytes that trigger an immediate write.
const FLUSH_AT: usize = 16 * 1024;
/// Largest single write: atomic on a pipe (POSIX `PIPE_BUF`).
const PIPE_BUF: usize = 4096;

/// Lines not yet written, and a signal for the flusher thread when the buffer stops being empty.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static NOT_EMPTY: Condvar = Condvar::new();

/// Installs the global subscriber. Safe to call once per process; later calls do nothing.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stdout().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Output)
        .with_ansi(ansi);
    let installed = match format {
        LogFormat::Text => builder.with_target(true).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if installed.is_ok() {
        access::configure(format, ansi);
        let _ = std::thread::Builder::new()
            .name("kansas-log".into())
            .spawn(flusher);
    }
}

/// Writes out every buffered line. Call before the process exits.
pub fn flush() {
    write_out(&mut lock());
}

fn lock() -> MutexGuard<'static, Vec<u8>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sleeps until a line is buffered, lets the batch gather for up to [`FLUSH_EVERY`], writes it.
fn flusher() {
    loop {
        let mut pending = lock();
        while pending.is_empty() {
            pending = NOT_EMPTY.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        drop(pending);
        std::thread::sleep(FLUSH_EVERY);
        flush();
    }
}

/// Writes the buffer to standard output in whole-line chunks of at most `PIPE_BUF` bytes (a
/// longer line goes alone). A failed write drops what is left: logging never blocks serving.
fn write_out(pending: &mut Vec<u8>) {
    let mut out = std::io::stdout().lock();
    let mut rest = &pending[..];
    while !rest.is_empty() {
        let window = &rest[..rest.len().min(PIPE_BUF)];
        let end = match window.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1),
        };
        if out.write_all(&rest[..end]).is_err() {
            break;
        }
        rest = &rest[end..];
    }
    let _ = out.flush();
    pending.clear();
    if pending.capacity() > 4 * FLUSH_AT {
        pending.shrink_to(FLUSH_AT);
    }
}

/// The subscriber's writer factory: access lines are batched, everything else is not.
struct Output;

impl<'a> MakeWriter<'a> for Output {
    type Writer = LineSink;

    fn make_writer(&'a self) -> LineSink {
        LineSink { batched: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineSink {
        LineSink {
            batched: meta.target() == ACCESS_TARGET,
        }
    }
}

/// Receives one formatted line (tracing writes each event with a single `write_all`).
struct LineSink {
    batched: bool,
}

impl Write for LineSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut pending = lock();
        let was_empty = pending.is_empty();
        pending.extend_from_slice(buf);
        if !self.batched || pending.len() >= FLUSH_AT {
            write_out(&mut pending);
        } else if was_empty {
            NOT_EMPTY.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
