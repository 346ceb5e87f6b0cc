//! The circuit breaker of one target. Pure: every method takes the time.
//!
//! Closed, it lets every call through and counts consecutive failures of the target
//! ([`crate::Failure::counts_against_target`]); at `threshold` it opens. Open, no call
//! starts until `cool_down` has passed; then it is half-open and lets exactly one probe
//! through. The probe's success closes it; its failure opens it again for another
//! `cool_down`. While it is open nothing is dropped: commands wait in their topic.
//!
//! It also keeps the outage's start (the first failure of the run that opened it), which
//! the connector reports as `TARGET_UNAVAILABLE` once the outage is longer than
//! configured.

use std::time::{Duration, Instant};

/// Breaker state, as exported in `waybill_connector_breaker_state` (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls flow.
    Closed,
    /// No calls until the cool-down ends.
    Open,
    /// One probe is allowed.
    HalfOpen,
}

impl State {
    /// The gauge value.
    pub fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
        }
    }
}

/// What the breaker says about starting a call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Go ahead.
    Go,
    /// Go ahead as the half-open probe; report its outcome.
    Probe,
    /// Not now; ask again after this long.
    Wait(Duration),
}

/// A circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    consecutive: u32,
    state: State,
    reopen_at: Option<Instant>,
    probing: bool,
    first_failure: Option<Instant>,
    opened: u64,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures; probes every `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cool_down,
            consecutive: 0,
            state: State::Closed,
            reopen_at: None,
            probing: false,
            first_failure: None,
            opened: 0,
        }
    }

    /// The state at `now` (an open breaker whose cool-down ended reads half-open).
    pub fn state(&self, now: Instant) -> State {
        match (self.state, self.reopen_at) {
            (State::Open, Some(at)) if now >= at => State::HalfOpen,
            (s, _) => s,
        }
    }

    /// How many times it opened.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// When the current run of failures began, if the target is failing.
    pub fn failing_since(&self) -> Option<Instant> {
        self.first_failure
    }

    /// May a call start now?
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.state(now) {
            State::Closed => Permit::Go,
            State::Open => Permit::Wait(self.reopen_at.map_or(self.cool_down, |at| at - now)),
            State::HalfOpen if self.probing => Permit::Wait(self.cool_down.min(Duration::from_millis(200))),
            State::HalfOpen => {
                self.state = State::HalfOpen;
                self.probing = true;
                Permit::Probe
            }
        }
    }

    /// The target answered (even with a business refusal). Returns how long the outage
    /// lasted when this success ends one.
    pub fn success(&mut self, now: Instant) -> Option<Duration> {
        let outage = self.first_failure.take().map(|t| now.saturating_duration_since(t));
        self.consecutive = 0;
        self.state = State::Closed;
        self.reopen_at = None;
        self.probing = false;
        outage
    }

    /// The target failed a call. Returns `true` when this failure opened the breaker.
    pub fn failure(&mut self, now: Instant) -> bool {
        self.first_failure.get_or_insert(now);
        self.consecutive = self.consecutive.saturating_add(1);
        let reopen = self.probing || (self.state == State::Closed && self.consecutive >= self.threshold);
        self.probing = false;
        if reopen {
            let was_open = self.state != State::Closed;
            self.state = State::Open;
            self.reopen_at = Some(now + self.cool_down);
            if !was_open {
                self.opened += 1;
                return true;
            }
        }
        false
    }

    /// A probe ended without telling anything about the target (a throttled answer):
    /// let the next call probe again.
    pub fn release_probe(&mut self) {
        self.probing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_once_and_closes_on_success() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(5);
        let mut b = Breaker::new(3, cool);
        assert_eq!(b.permit(t0), Permit::Go);
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert!(b.failure(t0), "the third consecutive failure opens it");
        assert_eq!(b.opened(), 1);
        assert_eq!(b.permit(t0 + Duration::from_secs(1)), Permit::Wait(Duration::from_secs(4)));
        let t1 = t0 + cool;
        assert_eq!(b.state(t1), State::HalfOpen);
        assert_eq!(b.permit(t1), Permit::Probe);
        assert!(matches!(b.permit(t1), Permit::Wait(_)), "one probe at a time");
        assert!(!b.failure(t1), "a failed probe re-opens without counting a new opening");
        assert_eq!(b.opened(), 1);
        assert!(matches!(b.permit(t1 + Duration::from_secs(1)), Permit::Wait(_)));
        let t2 = t1 + cool;
        assert_eq!(b.permit(t2), Permit::Probe);
        assert_eq!(b.success(t2), Some(t2 - t0), "the outage is measured from its first failure");
        assert_eq!(b.state(t2), State::Closed);
        assert_eq!(b.permit(t2), Permit::Go);
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.failure(t0);
        b.success(t0);
        assert!(!b.failure(t0), "not consecutive");
        assert_eq!(b.state(t0), State::Closed);
    }
}
