//! One target system as the connector sees it: its throttle, its breaker, its outage and
//! its figures. Command delivery and the poller of the same connector share it, so a
//! poll counts against the same rate and an open breaker stops both.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use waybill_telemetry::metrics as names;

use crate::breaker::{Breaker, Permit};
use crate::error::Failure;
use crate::throttle::TokenBucket;

/// Limits of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Calls per second (0: unlimited).
    pub rate: f64,
    /// Calls allowed at once after a quiet spell.
    pub burst: u32,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before it probes.
    pub breaker_cool_down: Duration,
    /// How long a target may fail before `TARGET_UNAVAILABLE` is raised.
    pub unavailable_after: Duration,
}

/// An outage to report, or its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The target has failed for longer than `unavailable_after`, since `since` ago.
    Began {
        /// How long ago the first failure of the outage was.
        ago: Duration,
    },
    /// The target answered again after failing for `lasted`.
    Ended {
        /// How long it failed.
        lasted: Duration,
        /// How long ago the outage began.
        ago: Duration,
    },
}

#[derive(Debug)]
struct Inner {
    bucket: TokenBucket,
    breaker: Breaker,
    /// An outage was reported and not yet ended.
    reported: bool,
    /// An outage ended that was reported; to tell the saga.
    ended: Option<(Duration, Instant)>,
    last_failure: Option<String>,
}

/// Figures of one connector, for the demo's summary (the same as its metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls made.
    pub requests: AtomicU64,
    /// Retries scheduled.
    pub retries: AtomicU64,
    /// Times calls were held back (bucket or 429).
    pub throttled: AtomicU64,
    /// Times the breaker opened.
    pub breaker_opens: AtomicU64,
    /// Commands whose outcome is durable.
    pub delivered: AtomicU64,
    /// Commands reported failed (refused or out of attempts).
    pub failed: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

impl Stats {
    fn observe(&self, latency: Duration) {
        let mut l = self.latencies_us.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: the most recent 100k calls are enough for a p99.
        if l.len() >= 100_000 {
            l.drain(..50_000);
        }
        l.push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
    }

    /// The latency quantile `q` (0..=1) of recent calls.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let mut l = self.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if l.is_empty() {
            return None;
        }
        l.sort_unstable();
        let i = ((l.len() as f64 - 1.0) * q).round() as usize;
        Some(Duration::from_micros(u64::from(l[i])))
    }
}

/// The gate every call to one target passes.
#[derive(Debug)]
pub struct Target {
    name: String,
    limits: Limits,
    inner: Mutex<Inner>,
    stats: Stats,
}

/// Leave to call: `probe` when the call is the half-open breaker's probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The call is the breaker's probe.
    pub probe: bool,
}

impl Target {
    /// A target called `name` (the connector's name, the metrics' `target` label).
    pub fn new(name: &str, limits: Limits) -> Self {
        let now = Instant::now();
        metrics::gauge!(names::CONNECTOR_BREAKER_STATE, "target" => name.to_string()).set(0.0);
        Target {
            name: name.to_string(),
            inner: Mutex::new(Inner {
                bucket: TokenBucket::new(limits.rate, limits.burst, now),
                breaker: Breaker::new(limits.breaker_threshold, limits.breaker_cool_down),
                reported: false,
                ended: None,
                last_failure: None,
            }),
            limits,
            stats: Stats::default(),
        }
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Figures.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a call start now? The breaker is asked first, so a closed target costs no
    /// token; `Err` says how long to wait and whether the bucket was the reason.
    pub fn admit(&self, now: Instant) -> Result<Admission, (Duration, bool)> {
        let mut inner = self.lock();
        let probe = match inner.breaker.permit(now) {
            Permit::Go => false,
            Permit::Probe => true,
            Permit::Wait(d) => return Err((d, false)),
        };
        match inner.bucket.try_take(now) {
            Ok(()) => {
                if probe {
                    metrics::gauge!(names::CONNECTOR_BREAKER_STATE, "target" => self.name.clone()).set(2.0);
                }
                Ok(Admission { probe })
            }
            Err(wait) => {
                if probe {
                    inner.breaker.release_probe();
                }
                Err((wait, true))
            }
        }
    }

    /// Counts a hold-back by the bucket (once per wait, by the caller).
    pub fn held_back(&self) {
        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::CONNECTOR_THROTTLED, "target" => self.name.clone(), "cause" => "bucket").increment(1);
    }

    /// Records a call's outcome: metrics, the breaker, `Retry-After`.
    pub fn record(&self, now: Instant, latency: Duration, outcome: Result<(), &Failure>) {
        let label = match outcome {
            Ok(()) => "ok",
            Err(f) => f.outcome(),
        };
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.observe(latency);
        metrics::counter!(names::CONNECTOR_REQUESTS, "target" => self.name.clone(), "outcome" => label).increment(1);
        metrics::histogram!(names::CONNECTOR_LATENCY, "target" => self.name.clone()).record(latency.as_secs_f64());
        let mut inner = self.lock();
        match outcome {
            Err(f) if f.counts_against_target() => {
                inner.last_failure = Some(f.reason().to_string());
                if inner.breaker.failure(now) {
                    self.stats.breaker_opens.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(names::CONNECTOR_BREAKER_OPENS, "target" => self.name.clone()).increment(1);
                    tracing::warn!(waybill.connector = %self.name, reason = %f.reason(), "target failing; circuit breaker opened, commands wait in their topic");
                }
            }
            Err(Failure::Unavailable { retry_after, throttled: true, .. }) => {
                inner.breaker.release_probe();
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(names::CONNECTOR_THROTTLED, "target" => self.name.clone(), "cause" => "target")
                    .increment(1);
                inner.bucket.pause_until(now + retry_after.unwrap_or(Duration::from_secs(1)));
            }
            _ => {
                if let Some(lasted) = inner.breaker.success(now) {
                    tracing::info!(waybill.connector = %self.name, after_ms = lasted.as_millis() as u64, "target answers again");
                    if inner.reported {
                        inner.reported = false;
                        inner.ended = Some((lasted, now - lasted));
                    }
                }
            }
        }
        if let Err(Failure::Unavailable { retry_after: Some(d), throttled: false, .. }) = outcome {
            inner.bucket.pause_until(now + *d);
        }
        let state = inner.breaker.state(now);
        metrics::gauge!(names::CONNECTOR_BREAKER_STATE, "target" => self.name.clone()).set(state.gauge());
    }

    /// An outage to report now, if any: its beginning once it is longer than
    /// `unavailable_after`, and its end once after a reported beginning.
    pub fn outage(&self, now: Instant) -> Option<(Outage, String)> {
        let mut inner = self.lock();
        if let Some((lasted, began)) = inner.ended.take() {
            return Some((Outage::Ended { lasted, ago: now.saturating_duration_since(began) }, String::new()));
        }
        let since = inner.breaker.failing_since()?;
        let ago = now.saturating_duration_since(since);
        if !inner.reported && ago >= self.limits.unavailable_after {
            inner.reported = true;
            return Some((Outage::Began { ago }, inner.last_failure.clone().unwrap_or_default()));
        }
        None
    }

    /// A reported outage the caller could not write down: report it again next time.
    pub fn unreport(&self, outage: Outage) {
        let mut inner = self.lock();
        match outage {
            Outage::Began { .. } => inner.reported = false,
            Outage::Ended { lasted, ago } => inner.ended = Some((lasted, Instant::now() - ago)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            rate: 0.0,
            burst: 1,
            breaker_threshold: 2,
            breaker_cool_down: Duration::from_secs(1),
            unavailable_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn an_outage_is_reported_once_past_its_threshold_and_its_end_once() {
        let t = Target::new("test", limits());
        let t0 = Instant::now();
        let down = Failure::Unavailable { reason: "connection refused".into(), retry_after: None, throttled: false };
        t.record(t0, Duration::ZERO, Err(&down));
        t.record(t0, Duration::ZERO, Err(&down));
        assert!(t.admit(t0).is_err(), "open");
        assert_eq!(t.outage(t0 + Duration::from_secs(5)), None, "not yet long enough");
        let (o, reason) = t.outage(t0 + Duration::from_secs(10)).unwrap();
        assert!(matches!(o, Outage::Began { ago } if ago == Duration::from_secs(10)));
        assert_eq!(reason, "connection refused");
        assert_eq!(t.outage(t0 + Duration::from_secs(11)), None, "once");
        let t1 = t0 + Duration::from_secs(20);
        assert!(t.admit(t1).unwrap().probe);
        t.record(t1, Duration::ZERO, Ok(()));
        assert!(matches!(t.outage(t1), Some((Outage::Ended { lasted, .. }, _)) if lasted == Duration::from_secs(20)));
        assert_eq!(t.outage(t1), None);
        assert_eq!(t.stats().breaker_opens.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_short_blip_is_not_reported() {
        let t = Target::new("test", limits());
        let t0 = Instant::now();
        let down = Failure::Unavailable { reason: "reset".into(), retry_after: None, throttled: false };
        t.record(t0, Duration::ZERO, Err(&down));
        t.record(t0 + Duration::from_secs(1), Duration::ZERO, Ok(()));
        assert_eq!(t.outage(t0 + Duration::from_secs(30)), None);
    }
}
