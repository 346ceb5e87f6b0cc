//! The dashboard's view of the live metrics: the node's Prometheus exposition, scraped in
//! process every few seconds and kept as a short history of samples. The charts are drawn
//! from these samples, so the dashboard shows exactly the figures `/metrics` exports and
//! the alerts fire on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Renders the node's metrics as Prometheus text (refreshing its gauges first).
pub type Scrape = Arc<dyn Fn() -> String + Send + Sync>;

/// One series value: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Metric name (with `_sum`, `_count`, `_bucket` for histogram parts).
    pub name: String,
    /// Labels, as exported.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// The metrics at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the epoch.
    pub at: i64,
    /// Every series.
    pub points: Vec<Point>,
}

impl Sample {
    /// The sum of series `name` whose labels include every pair of `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.points
            .iter()
            .filter(|p| p.name == name && with.iter().all(|(k, v)| p.labels.iter().any(|(a, b)| a == k && b == v)))
            .map(|p| p.value)
            .sum()
    }

    /// The values of label `label` that series `name` has, sorted.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .points
            .iter()
            .filter(|p| p.name == name)
            .filter_map(|p| p.labels.iter().find(|(k, _)| k == label).map(|(_, v)| v.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Parses Prometheus text exposition (format 0.0.4); lines it cannot read are skipped.
pub fn parse(text: &str, at: i64) -> Sample {
    let mut points = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find('}') {
            Some(close) if line[..close].contains('{') => (&line[..=close], &line[close + 1..]),
            _ => match line.split_once(' ') {
                Some((s, r)) => (s, r),
                None => continue,
            },
        };
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        points.push(Point { name: name.to_string(), labels, value });
    }
    Sample { at, points }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, r)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = r.char_indices();
        let mut end = r.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((k.trim_start_matches(',').trim().to_string(), value));
        rest = &r[end..];
    }
    out
}

/// The last samples, oldest first.
pub struct Samples {
    keep: usize,
    ring: Mutex<VecDeque<Sample>>,
    scrape: Mutex<Option<(Scrape, Instant)>>,
}

impl std::fmt::Debug for Samples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Samples").field("keep", &self.keep).finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Samples {
    /// Keeps the last `keep` samples.
    pub fn new(keep: usize) -> Self {
        Samples { keep, ring: Mutex::new(VecDeque::new()), scrape: Mutex::new(None) }
    }

    /// Adds `s`, dropping the oldest beyond `keep`.
    pub fn push(&self, s: Sample) {
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        r.push_back(s);
        while r.len() > self.keep {
            r.pop_front();
        }
    }

    /// The samples, oldest first.
    pub fn all(&self) -> Vec<Sample> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Scrapes now unless the last scrape is younger than `fresh`, so a page shows the
    /// current figures without scraping on every request.
    pub fn refresh(&self, fresh: Duration) {
        let mut s = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((scrape, last)) = s.as_mut()
            && last.elapsed() >= fresh
        {
            *last = Instant::now();
            let text = scrape();
            self.push(parse(&text, now_secs()));
        }
    }
}

/// Samples `scrape` every `every` until `stop`.
pub fn spawn(
    samples: Arc<Samples>,
    scrape: Scrape,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    *samples.scrape.lock().unwrap_or_else(|p| p.into_inner()) = Some((scrape, Instant::now() - every));
    std::thread::Builder::new().name("web-samples".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            samples.refresh(every);
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_exposition_format() {
        let text = "# HELP waybill_postings_held Held.\n# TYPE waybill_postings_held gauge\n\
                    waybill_postings_held{document=\"invoice\"} 3\n\
                    waybill_postings_held{document=\"credit_note\"} 1\n\
                    waybill_exceptions_open{category=\"pick-overdue\",x=\"a\\\"b\"} 2\n\
                    waybill_order_sync_delay_seconds_sum 1.5\n\
                    waybill_order_sync_delay_seconds_count 6\n\
                    garbage line\n";
        let s = parse(text, 7);
        assert_eq!(s.at, 7);
        assert_eq!(s.sum("waybill_postings_held", &[]), 4.0);
        assert_eq!(s.sum("waybill_postings_held", &[("document", "invoice")]), 3.0);
        assert_eq!(s.sum("waybill_exceptions_open", &[("x", "a\"b")]), 2.0);
        assert_eq!(s.sum("waybill_order_sync_delay_seconds_count", &[]), 6.0);
        assert_eq!(s.label_values("waybill_postings_held", "document"), vec!["credit_note", "invoice"]);
    }

    #[test]
    fn keeps_the_last_samples() {
        let s = Samples::new(2);
        for at in 0..5 {
            s.push(Sample { at, points: vec![] });
        }
        assert_eq!(s.all().iter().map(|x| x.at).collect::<Vec<_>>(), vec![3, 4]);
    }
}
