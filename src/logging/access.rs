//! The per-request access line, written without going through `tracing`'s generic field
//! machinery: the same bytes `tracing-subscriber` writes for the event (text or JSON, as
//! configured; the tests compare the two), formatted straight into a reusable buffer. It was the
//! largest single user-space cost of a proxied request. With colours on (a terminal), or before
//! [`super::init`], the line goes through `tracing` instead.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;

use super::ACCESS_TARGET;

/// How access lines are written, fixed by [`super::init`]: `None` means through `tracing`.
static DIRECT: OnceLock<Option<LogFormat>> = OnceLock::new();

/// Called once by [`super::init`].
pub(super) fn configure(format: LogFormat, ansi: bool) {
    let _ = DIRECT.set((!ansi).then_some(format));
}

/// One request, as logged.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub realm: &'a str,
    pub shard: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub request_id: &'a str,
}

/// Logs the access line at `INFO` with target [`ACCESS_TARGET`] (subject to the level filter).
pub fn log(a: &Access<'_>) {
    if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
        return;
    }
    let Some(Some(format)) = DIRECT.get() else {
        through_tracing(a);
        return;
    };
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.clear();
        format_line(&mut line, *format, SystemTime::now(), a);
        let _ = super::LineSink { batched: true }.write_all(line.as_bytes());
    });
}

/// The access event through `tracing` (what [`format_line`] reproduces).
fn through_tracing(a: &Access<'_>) {
    tracing::info!(
        target: ACCESS_TARGET,
        method = %a.method,
        path = %a.path,
        realm = a.realm,
        shard = a.shard,
        status = a.status,
        duration_ms = a.duration_ms,
        request_id = a.request_id,
    );
}

/// The line exactly as `tracing-subscriber` formats the event (`method` and `path` are
/// recorded with `%`, the other strings as `&str`).
fn format_line(out: &mut String, format: LogFormat, now: SystemTime, a: &Access<'_>) {
    match format {
        LogFormat::Text => {
            timestamp(out, now);
            let _ = write!(
                out,
                "  INFO {ACCESS_TARGET}: method={} path={} realm={:?} shard={:?} status={} duration_ms={:?} request_id={:?}",
                a.method, a.path, a.realm, a.shard, a.status, a.duration_ms, a.request_id
            );
        }
        LogFormat::Json => {
            out.push_str("{\"timestamp\":\"");
            timestamp(out, now);
            out.push_str("\",\"level\":\"INFO\"");
            for (key, value) in [
                ("method", a.method),
                ("path", a.path),
                ("realm", a.realm),
                ("shard", a.shard),
            ] {
                let _ = write!(out, ",\"{key}\":");
                json_string(out, value);
            }
            let _ = write!(out, ",\"status\":{},\"duration_ms\":", a.status);
            out.push_str(&serde_json::Value::from(a.duration_ms).to_string());
            out.push_str(",\"request_id\":");
            json_string(out, a.request_id);
            let _ = write!(out, ",\"target\":\"{ACCESS_TARGET}\"}}");
        }
    }
    out.push('\n');
}

fn json_string(out: &mut String, s: &str) {
    // serde_json's escaping, as tracing-subscriber's JSON formatter uses.
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` in UTC, as `tracing-subscriber`'s `SystemTime` timer.
fn timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_micros()
    );
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Captures what a real `tracing-subscriber` writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    /// The line `tracing-subscriber` writes for the event, configured as `super::init` does.
    fn reference(format: LogFormat, a: &Access<'_>) -> String {
        let capture = Capture::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_ansi(false);
        let emit = || through_tracing(a);
        match format {
            LogFormat::Text => {
                tracing::subscriber::with_default(builder.with_target(true).finish(), emit)
            }
            LogFormat::Json => tracing::subscriber::with_default(
                builder
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .finish(),
                emit,
            ),
        }
        let line = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        line
    }

    /// Replaces the timestamp (the first 27 characters of its field) so lines compare.
    fn without_time(line: &str) -> String {
        let at = line.find("20").expect("a timestamp");
        format!("{}<time>{}", &line[..at], &line[at + 27..])
    }

    #[test]
    fn same_bytes_as_tracing_subscriber() {
        let cases = [
            Access {
                method: "GET",
                path: "/json/events",
                realm: "chat.example.com",
                shard: "tornado-9800",
                status: 200,
                duration_ms: 0.380_196_000_000_000_03,
                request_id: "6d68e1b8410968696d40032d5c8cc104",
            },
            Access {
                method: "DELETE",
                path: "/js%22on/ev\"ents\\x",
                realm: "-",
                shard: "",
                status: 502,
                duration_ms: 1.0,
                request_id: "a\"b\\c\u{7f}é",
            },
            Access {
                method: "POST",
                path: "/api/v1/events",
                realm: "r\tx",
                shard: "s",
                status: 0,
                duration_ms: 12_345.5,
                request_id: "-",
            },
        ];
        for format in [LogFormat::Text, LogFormat::Json] {
            for a in &cases {
                let mut ours = String::new();
                format_line(&mut ours, format, SystemTime::now(), a);
                assert_eq!(
                    without_time(&ours),
                    without_time(&reference(format, a)),
                    "{format:?}"
                );
            }
        }
    }

    #[test]
    fn timestamps_match_tracing_subscriber() {
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::time::{FormatTime, SystemTime as Timer};
        // tracing-subscriber formats the current time only, so compare against it now, and
        // check the calendar over a wide range of days against known dates.
        let mut theirs = String::new();
        Timer.format_time(&mut Writer::new(&mut theirs)).unwrap();
        let mut ours = String::new();
        timestamp(&mut ours, SystemTime::now());
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours[..16], theirs[..16], "same minute");
        for (secs, text) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (1_795_000_000, "2026-11-18T11:06:40.000000Z"),
            (4_102_444_799, "2099-12-31T23:59:59.000000Z"),
            (4_107_542_400, "2100-03-01T00:00:00.000000Z"),
        ] {
            let mut s = String::new();
            timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(s, text);
        }
        let mut s = String::new();
        timestamp(
            &mut s,
            UNIX_EPOCH + Duration::from_micros(1_500_000_000_123_456),
        );
        assert_eq!(s, "2017-07-14T02:40:00.123456Z");
    }
}
