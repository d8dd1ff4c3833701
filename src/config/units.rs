//! Human-friendly durations as operators type them on the command line (`--every 5m`,
//! `--drain-for 2h`): `60s`, `2m`, `1h`, `500ms`, or a bare number of seconds. The daemon's own
//! parser; the load-test harness borrows it.

use std::time::Duration;

/// A text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration (try 60s, 2m, 500ms)")]
pub struct BadDuration(pub String);

/// `60s`, `2m`, `1h`, `500ms`, or a bare number of seconds (fractions allowed, not negative).
pub fn duration(s: &str) -> Result<Duration, BadDuration> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => {
            Duration::try_from_secs_f64(v * mult).map_err(|_| BadDuration(s.to_string()))
        }
        _ => Err(BadDuration(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_refuses_the_rest() {
        assert_eq!(duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration(" 1.5 ").unwrap(), Duration::from_millis(1500));
        for bad in ["soon", "-1s", "NaN", "inf", "", "1e300h"] {
            assert_eq!(
                duration(bad).unwrap_err().to_string(),
                format!("{:?} is not a duration (try 60s, 2m, 500ms)", bad.trim())
            );
        }
    }
}
