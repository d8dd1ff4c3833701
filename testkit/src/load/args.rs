//! Parsing of kansas-load's human-friendly arguments: durations (`60s`, `2m`, `500ms`), rates
//! (`500/s`, `30000/m`), targets (`http://127.0.0.1:9799` or `127.0.0.1:9799`), allowances
//! (`http_502=3`), and source-address counts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// `60s`, `2m`, `1h`, `500ms`, or a bare number of seconds: the daemon's parser
/// ([`kansas::config::duration`]), with its message as the error.
pub fn duration(s: &str) -> Result<Duration, String> {
    kansas::config::duration(s).map_err(|e| e.to_string())
}

/// Events per second from `500/s`, `30000/m` or a bare number.
pub fn rate(s: &str) -> Result<f64, String> {
    let (num, per) = match s.split_once('/') {
        Some((n, unit)) => (n, duration(&format!("1{unit}"))?.as_secs_f64()),
        None => (s, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v / per),
        _ => Err(format!("{s:?} is not a rate (try 500/s)")),
    }
}

/// `http://host:port[/]` or `host:port`, resolved to one address.
pub fn target(s: &str) -> Result<SocketAddr, String> {
    let rest = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    if rest.contains('/') || s.starts_with("https://") {
        return Err(format!("{s:?}: give http://host:port (no path, no TLS)"));
    }
    rest.to_socket_addrs()
        .map_err(|e| format!("{s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// `KIND=N`.
pub fn allowance(s: &str) -> Result<(String, u64), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: give KIND=N, e.g. http_502=3 or any=10"))?;
    let n = v
        .parse()
        .map_err(|_| format!("{s:?}: {v:?} is not a count"))?;
    Ok((k.trim().to_string(), n))
}

/// The first `n` loopback addresses 127.0.0.1, 127.0.0.2, ...
pub fn loopback_sources(n: usize) -> Result<Vec<IpAddr>, String> {
    if n > 65_000 {
        return Err(format!("--sources {n}: at most 65000"));
    }
    Ok((1..=n as u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x7f00_0000u32 + i)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(duration("soon").is_err());
        assert_eq!(rate("500/s").unwrap(), 500.0);
        assert_eq!(rate("600/m").unwrap(), 10.0);
        assert_eq!(rate("7").unwrap(), 7.0);
        assert!(rate("x/s").is_err());
        assert_eq!(target("http://127.0.0.1:9799").unwrap().port(), 9799);
        assert_eq!(target("127.0.0.1:9799/").unwrap().port(), 9799);
        assert!(target("http://127.0.0.1:9799/json").is_err());
        assert_eq!(allowance("http_502=3").unwrap(), ("http_502".into(), 3));
        assert!(allowance("http_502").is_err());
        assert_eq!(loopback_sources(2).unwrap()[1].to_string(), "127.0.0.2");
    }
}
