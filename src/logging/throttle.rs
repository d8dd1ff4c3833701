//! Rate-limited log lines for conditions that can repeat thousands of times a second (kansas out
//! of file descriptors, an accept that keeps failing, a flood of ignored signals): the first occurrence is logged at once,
//! later ones at most once per interval, each line saying how many went unlogged since the last.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One rate limit for one kind of log line.
pub struct Throttle {
    interval: Duration,
    start: Instant,
    /// When (in ms since `start`) the next line may be logged.
    next_ms: AtomicU64,
    /// Occurrences not logged since the last line.
    suppressed: AtomicU64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Records one occurrence; `Some(unlogged)` when this one should be logged (with the number
    /// of occurrences not logged since the previous line), `None` when it is to be counted only.
    pub fn tick(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let due = now >= next;
        let won = due
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.interval.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if won {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_occurrence_is_logged_then_counted_until_the_interval_passes() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.tick(), Some(0));
        let logged = (0..1000).filter(|_| t.tick().is_some()).count();
        assert_eq!(logged, 0);
        t.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(
            t.tick(),
            Some(1000),
            "the next line says how many went unlogged"
        );
    }
}
