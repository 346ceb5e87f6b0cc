//! When the orders of an open-loop run arrive: a pure function of the order count, the
//! base rate and the scenario, so a run's arrivals can be printed and tested.

use std::time::Duration;

/// The shape of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// A fixed arrival rate throughout.
    Steady,
    /// Month-end: the base rate for the first 40% of the orders, a surge to 3× the base
    /// rate for the next 40%, then the base rate again for the last 20%.
    MonthEnd,
    /// A warehouse cutoff: the run is a working day of 8 hours (it lasts orders / rate
    /// seconds at the base rate); 30% of the day's orders arrive in its 10 minutes (1/48 of
    /// the run) that end at three quarters of the day, the other 70% evenly over the rest.
    /// At the cutoff orders arrive at 14.4× the base rate.
    Cutoff,
}

impl Scenario {
    /// The run as segments of (share of the orders, seconds), in order.
    fn segments(self, orders: usize, rate: f64) -> Vec<(f64, f64)> {
        let n = orders as f64;
        match self {
            Scenario::Steady => vec![(1.0, n / rate)],
            Scenario::MonthEnd => vec![(0.4, 0.4 * n / rate), (0.4, 0.4 * n / (3.0 * rate)), (0.2, 0.2 * n / rate)],
            Scenario::Cutoff => {
                let day = n / rate;
                let window = day / 48.0;
                let before = 0.75 * day - window;
                let after = 0.25 * day;
                // The 70% spread evenly over the time outside the window.
                let rest = before + after;
                vec![(0.7 * before / rest, before), (0.3, window), (0.7 * after / rest, after)]
            }
        }
    }
}

/// The arrival time of each of `orders` orders, from the start of the run, at a base
/// rate of `rate` orders/s shaped by `scenario`. Within a segment, arrivals are evenly
/// spaced.
pub fn arrivals(orders: usize, rate: f64, scenario: Scenario) -> Vec<Duration> {
    let mut out = Vec::with_capacity(orders);
    let mut start = 0.0;
    let mut assigned = 0usize;
    let segments = scenario.segments(orders, rate);
    let last = segments.len() - 1;
    for (k, (share, secs)) in segments.into_iter().enumerate() {
        let count = if k == last {
            orders - assigned
        } else {
            ((share * orders as f64).round() as usize).min(orders - assigned)
        };
        for i in 0..count {
            out.push(Duration::from_secs_f64(start + secs * i as f64 / count as f64));
        }
        assigned += count;
        start += secs;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_window(a: &[Duration], from: f64, to: f64) -> usize {
        a.iter().filter(|t| t.as_secs_f64() >= from && t.as_secs_f64() < to).count()
    }

    #[test]
    fn steady_is_evenly_spaced_at_the_rate() {
        let a = arrivals(100, 50.0, Scenario::Steady);
        assert_eq!(a.len(), 100);
        assert_eq!(a[1], Duration::from_millis(20));
        assert!((a[99].as_secs_f64() - 1.98).abs() < 1e-9);
    }

    #[test]
    fn month_end_surges_to_three_times_the_rate() {
        let a = arrivals(1000, 10.0, Scenario::MonthEnd);
        assert_eq!(a.len(), 1000);
        // 400 orders in 40 s, then 400 in 13.3 s, then 200 in 20 s.
        // (Segment edges are floating point: count just inside them.)
        assert_eq!(in_window(&a, 0.0, 40.0 - 1e-6), 400);
        assert_eq!(in_window(&a, 40.0 - 1e-6, 40.0 + 40.0 / 3.0 - 1e-6), 400);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!((a[999].as_secs_f64() - (40.0 + 40.0 / 3.0 + 20.0)).abs() < 0.2);
    }

    #[test]
    fn cutoff_brings_thirty_percent_in_a_forty_eighth_of_the_day() {
        let (n, rate) = (4800, 10.0); // a "day" of 480 s, the window 10 s ending at 360 s
        let a = arrivals(n, rate, Scenario::Cutoff);
        assert_eq!(a.len(), n);
        assert_eq!(in_window(&a, 350.0 - 1e-6, 360.0 - 1e-6), 1440, "30% in the 10 minutes of the day");
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(a[n - 1].as_secs_f64() < 480.0);
    }
}
