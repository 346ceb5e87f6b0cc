//! Retry delays: exponential backoff with jitter, so many commands failing together do
//! not retry in lockstep (AWS's "full jitter", kept above half the step so a retry is
//! never immediate).

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `attempt + 1` (`attempt` starts at 1): uniformly in
    /// `[step/2, step]` with `step = min(max, base × 2^(attempt-1))`.
    pub fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        let step = self.base.saturating_mul(1 << shift).min(self.max);
        let half = step / 2;
        half + Duration::from_nanos(rng.u64(0..=(step - half).as_nanos() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(2) };
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..12 {
            let step = Duration::from_millis(100 * (1 << (attempt - 1).min(20))).min(Duration::from_secs(2));
            let d = b.delay(attempt, &mut rng);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?} not in [{:?}, {step:?}]", step / 2);
        }
        let spread: std::collections::BTreeSet<_> = (0..20).map(|_| b.delay(5, &mut rng)).collect();
        assert!(spread.len() > 10, "jittered");
    }
}
