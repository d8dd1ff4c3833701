//! A token bucket: `rate` tokens per second, at most `burst` saved up. It paces the release of
//! parked requests so a freshly restarted Tornado is not shock-loaded. Uses tokio's clock, so
//! tests run it with a paused clock.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket that starts full.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` > 0 tokens per second, `burst` >= 1.
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        TokenBucket {
            rate,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let gained = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + gained).min(self.burst);
        self.last = now;
    }

    /// Waits until a token is available and takes it.
    pub async fn take(&mut self) {
        loop {
            self.refill();
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - self.tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10.0, 5);
        for _ in 0..5 {
            b.take().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..20 {
            b.take().await;
        }
        // 20 more at 10/s take 2 s.
        let took = start.elapsed().as_secs_f64();
        assert!((took - 2.0).abs() < 0.01, "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_only_up_to_the_burst() {
        let mut b = TokenBucket::new(100.0, 3);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        for _ in 0..3 {
            b.take().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        b.take().await;
        assert!((start.elapsed().as_secs_f64() - 0.01).abs() < 0.001);
    }
}
