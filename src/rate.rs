//! The one token bucket, time passed in (sans-IO): API request quotas ([`crate::throttle`]),
//! signaling message and connect quotas, the TURN bandwidth cap and GetMedia pacing all use it.

use std::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(0.0);
        Self { rate: rate.max(0.0), burst, tokens: burst, last: now }
    }

    /// A bucket for a TPS quota (burst = rate, at least one call).
    pub fn per_second(rate: f64, now: Instant) -> Self {
        Self::new(rate, rate.max(1.0), now)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Take `n` tokens if they are there; a refusal takes nothing.
    pub fn try_take(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Take `n` tokens whether or not they are there and return how long the caller must wait
    /// before using them (zero while the bucket covers them): a pacer. A take beyond what is
    /// saved leaves a debt that later takes wait off, so the long-run rate stays `rate`.
    pub fn take_paced(&mut self, n: f64, now: Instant) -> std::time::Duration {
        self.refill(now);
        self.tokens -= n;
        if self.tokens >= 0.0 || self.rate <= 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }

    /// Whether the bucket is full at `now` (an idle key can be forgotten).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_caps_at_burst_and_tolerates_time_going_backwards() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, 1500.0, t0);
        assert!(b.try_take(1500.0, t0));
        assert!(!b.try_take(1.0, t0));
        let later = t0 + Duration::from_secs(60);
        assert!(b.is_full(later));
        assert!(!b.try_take(1501.0, later));
        assert!(b.try_take(1500.0, t0), "an earlier instant neither refills nor panics");
        assert!(!b.try_take(1.0, t0));
    }
}
