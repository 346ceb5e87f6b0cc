//! Per-system limits on ingestion: body size and a token-bucket rate.
//!
//! The rate limit protects the log and the coordinator from one misbehaving system (a
//! webhook stuck in a retry loop); it is an admission decision at the edge, so it may use
//! the wall clock — nothing it decides is written to the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One system's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Sustained posts per second; 0 means unlimited.
    pub rate_per_sec: f64,
    /// Posts allowed at once above the sustained rate.
    pub burst: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets, one per system.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<&'static str, Bucket>>,
}

impl RateLimiter {
    /// Takes one token from `system`'s bucket at `now`; `Err` with how long until the
    /// next token when the bucket is empty.
    pub(crate) fn take(&self, system: &'static str, limits: &Limits, now: Instant) -> Result<(), Duration> {
        if limits.rate_per_sec <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(limits.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(system).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limits.rate_per_sec).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - b.tokens) / limits.rate_per_sec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limits = Limits { max_body_bytes: 1, rate_per_sec: 2.0, burst: 3 };
        let r = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.take("wms", &limits, t0).is_ok());
        }
        let wait = r.take("wms", &limits, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Another system has its own bucket.
        assert!(r.take("odoo", &limits, t0).is_ok());
        // Half a second later one token is back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(r.take("wms", &limits, t1).is_ok());
        assert!(r.take("wms", &limits, t1).is_err());
        // Unlimited.
        let open = Limits { rate_per_sec: 0.0, ..limits };
        assert!((0..100).all(|_| r.take("bank", &open, t1).is_ok()));
    }
}
