//! Throttling per target: a token bucket (rate and burst) that also honours the target's
//! `Retry-After`. Pure: every method takes the time, so tests need no clock.
//!
//! The bucket starts full (`burst` tokens) and refills at `rate` tokens per second up to
//! `burst`, so in any window of `w` seconds at most `burst + rate × w` calls start.

use std::time::{Duration, Instant};

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket: `rate` calls per second (0 = unlimited), `burst` at once.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate, burst, tokens: burst, last: now, paused_until: None }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token if one is available at `now`; otherwise says how long until one is.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(until - now);
            }
            self.paused_until = None;
        }
        if self.rate <= 0.0 {
            return Ok(());
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// The target said `Retry-After`: no call starts before `until`, and the bucket is
    /// emptied so calls resume at the configured rate rather than in a burst.
    pub fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        self.tokens = 0.0;
        self.last = until.max(self.last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grants over a simulated span, then checks every window against the bucket's bound.
    #[test]
    fn no_window_sees_more_than_burst_plus_rate_times_its_length() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(20.0, 5, t0);
        let mut grants = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(3) {
            match b.try_take(now) {
                Ok(()) => grants.push(now),
                Err(wait) => now += wait.min(Duration::from_millis(7)),
            }
        }
        assert!(grants.len() >= 60 && grants.len() <= 66, "about 20/s for 3 s plus the burst: {}", grants.len());
        for (i, start) in grants.iter().enumerate() {
            for w in [0.1_f64, 0.5, 1.0] {
                let end = *start + Duration::from_secs_f64(w);
                let n = grants[i..].iter().take_while(|t| **t < end).count() as f64;
                assert!(n <= 5.0 + 20.0 * w + 1e-9, "{n} calls in a {w} s window");
            }
        }
    }

    #[test]
    fn retry_after_pauses_the_target_and_resumes_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 10, t0);
        b.pause_until(t0 + Duration::from_secs(2));
        assert_eq!(b.try_take(t0 + Duration::from_secs(1)), Err(Duration::from_secs(1)));
        let at = t0 + Duration::from_secs(2);
        assert!(b.try_take(at).is_err(), "emptied: no burst right after the pause");
        assert!(b.try_take(at + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 1, t0);
        assert!((0..1000).all(|_| b.try_take(t0).is_ok()));
    }
}
