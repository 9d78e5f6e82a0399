//! A token bucket: `burst` tokens at most, refilled at `per_second`. The agent's request limits
//! and the door's per-source connection limits (`door.rs`) both count with it.

use std::time::Instant;

/// A refill rate and a capacity, in tokens (one token: one request, one connection).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// A bucket's tokens as of `at`; time is passed in, so tests need no clock.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A bucket holding `rate.burst` tokens at `now`.
    pub fn full(rate: Rate, now: Instant) -> Self {
        Bucket {
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate.per_second).min(rate.burst);
        self.at = now;
    }

    /// Take one token at `now`; false (nothing taken) if there is less than one.
    pub fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Take `cost` tokens at `now`, going into debt if there are fewer: a penalty (a failed
    /// handshake) that delays what the source may do next. The debt is capped at one burst.
    pub fn charge(&mut self, rate: Rate, cost: f64, now: Instant) {
        self.refill(rate, now);
        self.tokens = (self.tokens - cost).max(-rate.burst);
    }

    /// Would the bucket be full at `now`? (Then forgetting it changes nothing.)
    pub fn is_full_at(&self, rate: Rate, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + dt * rate.per_second >= rate.burst
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let rate = Rate {
            per_second: 2.0,
            burst: 3.0,
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        assert!((0..3).all(|_| b.take(rate, t0)));
        assert!(!b.take(rate, t0));
        assert!(b.take(rate, t0 + Duration::from_millis(500)));
        assert!(!b.take(rate, t0 + Duration::from_millis(500)));
        b.charge(rate, 10.0, t0 + Duration::from_millis(500));
        // In debt by one burst: 3 tokens to repay (1.5 s) before the next one (0.5 s, and a
        // margin for floating point).
        assert!(!b.take(rate, t0 + Duration::from_millis(2400)));
        assert!(b.take(rate, t0 + Duration::from_millis(2550)));
        assert!(b.is_full_at(rate, t0 + Duration::from_secs(10)));
    }
}
