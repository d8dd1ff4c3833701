//! The checks validation applies to single values, each against its entry in the defaults
//! table ([`super::defaults`]): a bad value is recorded as a [`Problem`] with its key path and
//! replaced by the default, so validation goes on and reports every problem at once.

use std::net::SocketAddr;
use std::time::Duration;

use super::defaults::{Count, Real, Secs};
use super::Problem;

/// Collects problems while values are checked.
#[derive(Default)]
pub(super) struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn addr(&mut self, key: &str, value: Option<&str>, default: &str) -> SocketAddr {
        let text = value.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.add(key, format!("{text:?} is not an IP address and port"));
            default.parse().expect("default address parses")
        })
    }

    pub fn count(&mut self, spec: Count, value: Option<i64>) -> i64 {
        let (min, max) = (spec.min, spec.max);
        let v = value.unwrap_or(spec.default);
        if v < min || v > max {
            self.add(
                spec.key,
                format!("must be between {min} and {max} (got {v})"),
            );
            return spec.default;
        }
        v
    }

    /// Seconds; 0 is allowed where it turns the setting off (`spec.zero_off`).
    pub fn secs(&mut self, spec: Secs, value: Option<f64>) -> Duration {
        if spec.zero_off && value == Some(0.0) {
            return Duration::ZERO;
        }
        let v = value.unwrap_or(spec.default);
        if !v.is_finite() || v <= 0.0 || v > spec.max {
            self.add(
                spec.key,
                format!(
                    "must be a number of seconds > 0 and <= {} (got {v})",
                    spec.max
                ),
            );
            return spec.default_duration();
        }
        Duration::from_secs_f64(v)
    }

    pub fn real(&mut self, spec: Real, value: Option<f64>) -> f64 {
        let v = value.unwrap_or(spec.default);
        if !v.is_finite() || v <= 0.0 || v > spec.max {
            self.add(
                spec.key,
                format!("must be a number > 0 and <= {} (got {v})", spec.max),
            );
            return spec.default;
        }
        v
    }
}
