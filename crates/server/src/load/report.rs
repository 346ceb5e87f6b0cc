//! What a load run measured, and how it is printed: a table for people, JSON for
//! scripts. Pure: the run collects [`Sample`]s and counters, this turns them into numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// CPU time of one process over the run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    /// What the process is.
    pub process: String,
    /// CPU seconds (user + system) used during the run.
    pub cpu_s: f64,
    /// CPU milliseconds per completed order.
    pub cpu_ms_per_order: f64,
}

/// Latency from posting an order to learning it reached its end state, milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (sorted here).
    pub fn of(samples: &mut [Duration]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| ms(samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]);
        let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
        Latency {
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: ms(samples[samples.len() - 1]),
            mean_ms: mean,
        }
    }
}

/// The result of `waybill load`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `closed loop, 16 clients` or `open loop, 50 orders/s, month-end`.
    pub mode: String,
    /// Where Waybill ran: `child process`, on which log.
    pub target: String,
    /// How the doubles answered.
    pub doubles: String,
    /// Orders the run meant to place.
    pub orders_planned: usize,
    /// Orders posted to ingestion and accepted.
    pub orders_posted: u64,
    /// Orders that reached `completed`.
    pub completed: u64,
    /// Orders that ended otherwise, by end state (backordered, cancelled, on-hold).
    pub ended_otherwise: BTreeMap<String, u64>,
    /// Orders that failed, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Wall time from the first post to the last completion, seconds.
    pub elapsed_s: f64,
    /// Completed orders per second of `elapsed_s`.
    pub completions_per_s: f64,
    /// Post → end state, over every order that ended.
    pub latency: Latency,
    /// Most orders in flight at once.
    pub max_in_flight: u64,
    /// CPU of each process.
    pub cpu: Vec<ProcessCpu>,
}

impl Report {
    /// Every planned order completed, none failed.
    pub fn all_completed(&self) -> bool {
        self.completed == self.orders_planned as u64 && self.errors.is_empty() && self.ended_otherwise.is_empty()
    }

    /// The table people read.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<22} {v}");
        };
        row("mode", self.mode.clone());
        row("waybill", self.target.clone());
        row("doubles", self.doubles.clone());
        row(
            "orders completed",
            format!("{} of {} ({} posted)", self.completed, self.orders_planned, self.orders_posted),
        );
        if !self.ended_otherwise.is_empty() {
            row("ended otherwise", join(&self.ended_otherwise));
        }
        row("errors", if self.errors.is_empty() { "none".into() } else { join(&self.errors) });
        row("elapsed", format!("{:.1} s", self.elapsed_s));
        row("completions/s", format!("{:.1}", self.completions_per_s));
        let l = &self.latency;
        row(
            "latency (post → end)",
            format!(
                "p50 {:.0} ms · p95 {:.0} ms · p99 {:.0} ms · max {:.0} ms",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
            ),
        );
        row("max in flight", self.max_in_flight.to_string());
        for c in &self.cpu {
            row("cpu", format!("{:.2} ms/order  ({:.1} s)  {}", c.cpu_ms_per_order, c.cpu_s, c.process));
        }
        format!("waybill load\n{out}")
    }
}

fn join(m: &BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut s: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let l = Latency::of(&mut s);
        assert_eq!((l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms), (50.0, 95.0, 99.0, 100.0));
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(Latency::of(&mut []), Latency::default());
        assert_eq!(Latency::of(&mut [Duration::from_millis(7)]).p99_ms, 7.0);
    }
}
