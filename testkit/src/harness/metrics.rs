//! Reading kansas's Prometheus metrics in tests: the text of `/metrics` on the admin listener
//! (from async code or from plain threads) and the value of one series in it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::{blocking_get, get};

/// The admin listener's `/metrics` text.
pub async fn scrape(admin: SocketAddr) -> String {
    let r = get(admin, "localhost", "/metrics", &[]).await;
    assert_eq!(r.status, 200, "/metrics on {admin}");
    String::from_utf8(r.body).expect("metrics are UTF-8")
}

/// [`scrape`] from synchronous code (also inside a runtime: it runs on its own thread).
pub fn scrape_blocking(admin: SocketAddr) -> String {
    let r = blocking_get(admin, "localhost", "/metrics");
    assert_eq!(r.status, 200, "/metrics on {admin}");
    String::from_utf8(r.body).expect("metrics are UTF-8")
}

/// The value of one series, `name{labels}` exactly as exposed; 0 when absent (Prometheus
/// counters and gauges that were never touched may not be exposed).
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let v = l.strip_prefix(series)?.strip_prefix(' ')?;
            v.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

/// Polls `series` until it equals `want` or 10 s pass; returns the last value seen.
pub async fn wait_value(admin: SocketAddr, series: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = value(&scrape(admin).await, series);
        if v == want || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
