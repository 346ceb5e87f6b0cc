//! Reconciliation runs: what Waybill believes, read from its projections, against what
//! the warehouse system holds, read through its connector — on a schedule
//! (`[reconcile] schedule`, cron in a time zone) and on demand (`waybill reconcile stock`,
//! gRPC `Reconcile`).
//!
//! A run is a thin shell around the pure [`waybill_saga::reconcile::run::plan`]: it reads
//! both sides, reads again a settle interval later when anything is to be logged, appends
//! one `StockObserved` per product whose observation can change something (to
//! `waybill.control`, keyed `recon:stock:<sku>`: Waybill's own measurement, which no
//! producer can send; the reconciliation saga decides from it), writes its report as JSON under `<data_dir>/reconcile/`, and sets the
//! `waybill_reconciliation_*` metrics. Event ids are `reconcile:<run id>:<sku>` and a run id
//! names its window, so two replicas firing the same window log the same records, which
//! the saga takes once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use waybill_connect::stock::StockReader;
use waybill_domain::reconcile::{Movements, stock_key};
use waybill_domain::topic::{self, headers};
use waybill_domain::{EventBody, EventMeta, InboundEvent, Qty, SourceRef, System, Timestamp};
use waybill_log::{AppendBatch, EventLog, Record};
use waybill_projection::ProjectionStore;
use waybill_saga::reconcile::Baseline;
use waybill_saga::reconcile::run::{self, Report, Standing, StockReading};
use waybill_telemetry::metrics as names;

pub use waybill_saga::schedule::Schedule;

/// `[reconcile]`: when runs fire and how they compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    /// Cron schedule of stock runs (5 fields, or 6 with seconds first); empty: on demand
    /// only.
    pub schedule: String,
    /// IANA time zone the schedule is read in (`Europe/Berlin`); empty is UTC.
    pub time_zone: String,
    /// The `[connectors.<name>]` of the warehouse system, whose `stock_url` is read.
    pub connector: String,
    /// A difference up to this many units is not a finding.
    pub tolerance: f64,
    /// Time between a run's two readings, milliseconds: a product that moved in between
    /// is left for the next run.
    pub settle_ms: u64,
    /// How long a run may take to read the warehouse, seconds.
    pub timeout_secs: u64,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            schedule: String::new(),
            time_zone: String::new(),
            connector: "wms".into(),
            tolerance: 0.0,
            settle_ms: 2000,
            timeout_secs: 120,
        }
    }
}

impl ReconcileSettings {
    /// The schedule, when one is set; an error names the bad field.
    pub fn schedule(&self) -> Result<Option<Schedule>, String> {
        if self.schedule.trim().is_empty() {
            return Ok(None);
        }
        Schedule::parse(&self.schedule, &self.time_zone).map(Some).map_err(|e| format!("reconcile.schedule: {e}"))
    }

    fn tolerance(&self) -> Qty {
        Qty((self.tolerance.abs() * 1000.0).round() as i64)
    }
}

/// One reading of both sides, by SKU.
type Readings = BTreeMap<String, StockReading>;

/// Runs stock reconciliations: one at a time.
#[derive(Debug)]
pub struct StockJob {
    reader: StockReader,
    projections: Arc<ProjectionStore>,
    log: Arc<dyn EventLog>,
    settings: ReconcileSettings,
    reports: PathBuf,
    running: Mutex<()>,
}

impl StockJob {
    /// A job reading the warehouse through `reader`, writing reports under `reports`.
    pub fn new(
        reader: StockReader,
        projections: Arc<ProjectionStore>,
        log: Arc<dyn EventLog>,
        settings: ReconcileSettings,
        reports: PathBuf,
    ) -> Self {
        StockJob { reader, projections, log, settings, reports, running: Mutex::new(()) }
    }

    /// One run for `window` (its scheduled time, or now on demand).
    pub fn run(&self, window: Timestamp) -> Result<Report, String> {
        let _one = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.run_locked(window);
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::counter!(names::RECONCILIATION_RUNS, "kind" => "stock", "outcome" => outcome).increment(1);
        if let Err(e) = &result {
            tracing::warn!(error = %e, "stock reconciliation failed; nothing was logged");
        }
        result
    }

    fn run_locked(&self, window: Timestamp) -> Result<Report, String> {
        let run_id = run_id(window);
        let tolerance = self.settings.tolerance();
        let deadline = Instant::now() + Duration::from_secs(self.settings.timeout_secs.max(1));
        let (first, standing) = self.read(deadline)?;
        let (second, standing) = if run::needs_second_reading(tolerance, &first, &standing) {
            std::thread::sleep(Duration::from_millis(self.settings.settle_ms));
            self.read(deadline)?
        } else {
            (first.clone(), standing)
        };
        let (observed, report) = run::plan(&run_id, window, tolerance, &first, &second, &standing);
        let records = observed
            .into_iter()
            .map(|o| {
                let key = stock_key(&o.sku);
                let event = InboundEvent {
                    meta: EventMeta {
                        event_id: format!("reconcile:{run_id}:{}", o.sku),
                        source: SourceRef::new(System::Waybill, o.sku.clone()),
                        correlation_key: key.clone(),
                        occurred_at: Timestamp::now(),
                        actor: Some("waybill-reconcile".into()),
                    },
                    body: EventBody::StockObserved(o),
                };
                let value = waybill_schema::encode_event(&event).map_err(|e| e.to_string())?;
                Ok(Record::keyed(topic::CONTROL, key.into_bytes(), value)
                    .with_header(headers::EVENT_ID, event.meta.event_id.into_bytes()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if !records.is_empty() {
            let n = records.len() as u64;
            self.log
                .append(AppendBatch { records, positions: Vec::new() })
                .map_err(|e| format!("appending the run's observations: {e}"))?;
            metrics::counter!(names::RECORDS_PRODUCED, "topic" => topic::CONTROL).increment(n);
        }
        self.write_report(&report)?;
        metrics::gauge!(names::RECONCILIATION_MISMATCHES, "kind" => "stock").set(report.findings.len() as f64);
        metrics::gauge!(names::RECONCILIATION_LAST_RUN, "kind" => "stock").set(Timestamp::now().0 as f64 / 1e6);
        tracing::info!(
            waybill.reconcile.run = %report.run_id, compared = report.compared, findings = report.findings.len(),
            closed = report.closed.len(), unsettled = report.unsettled.len(), "stock reconciliation run"
        );
        Ok(report)
    }

    /// Both sides, and where each product's reconciliation stands.
    #[allow(clippy::type_complexity)]
    fn read(&self, deadline: Instant) -> Result<(BTreeMap<String, StockReading>, BTreeMap<String, Standing>), String> {
        let items = self
            .reader
            .read_all(deadline)
            .map_err(|f| format!("reading the warehouse's stock through connector {}: {f}", self.settings.connector))?;
        let mut readings = Readings::new();
        for i in items {
            readings.insert(
                i.sku,
                StockReading {
                    on_hand: i.on_hand,
                    wms_last_movement: i.last_movement,
                    journaled: Movements::default(),
                    journal_last_movement: None,
                },
            );
        }
        let projection_error = |e: waybill_projection::Error| format!("reading the projections: {e}");
        for m in self.projections.movements_all().map_err(projection_error)? {
            let r = readings.entry(m.sku).or_insert(StockReading {
                on_hand: Qty::ZERO,
                wms_last_movement: None,
                journaled: Movements::default(),
                journal_last_movement: None,
            });
            r.journaled = m.movements;
            r.journal_last_movement = m.last_movement;
        }
        let standing = self
            .projections
            .stock_checks()
            .map_err(projection_error)?
            .into_iter()
            .map(|c| {
                let baseline = c.baseline.map(|(on_hand, net)| Baseline { on_hand, net });
                (c.sku.clone(), Standing { baseline, open: c.is_open() })
            })
            .collect();
        Ok((readings, standing))
    }

    fn write_report(&self, report: &Report) -> Result<(), String> {
        std::fs::create_dir_all(&self.reports)
            .map_err(|e| format!("creating the reports directory {}: {e}", self.reports.display()))?;
        let path = self.reports.join(format!("{}.json", report.run_id));
        let json = serde_json::to_vec_pretty(report).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("writing the report {}: {e}", path.display()))
    }
}

impl waybill_control::Reconciler for StockJob {
    fn reconcile(&self, kind: &str) -> waybill_control::Result<(Report, PathBuf)> {
        if kind != "stock" {
            return Err(waybill_control::Error::InvalidArgument(format!(
                "reconciliation kind {kind:?} is not run by Waybill; run `stock` (each product's on-hand at the warehouse system against what Waybill journaled)"
            )));
        }
        // On demand, the run is its own window, to the microsecond: two runs asked for
        // within one second are two runs (their observations must not look like
        // redeliveries of each other's).
        let report = self.run(Timestamp::now()).map_err(waybill_control::Error::Unavailable)?;
        let path = self.reports.join(format!("{}.json", report.run_id));
        Ok((report, path))
    }
}

/// `stock-20261201T090000Z`: a run names its window (UTC; a window that is not a whole
/// second, an on-demand run's, keeps its microseconds: `stock-20261201T090000.123456Z`).
pub fn run_id(window: Timestamp) -> String {
    let c = window.civil();
    let micros = window.0.rem_euclid(1_000_000);
    let fraction = if micros == 0 { String::new() } else { format!(".{micros:06}") };
    format!("stock-{:04}{:02}{:02}T{:02}{:02}{:02}{fraction}Z", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

/// Fires `job` at each time of `schedule` while `leads` says this node runs the
/// schedules (it owns partition 0), until `stop`.
pub fn run_schedule(schedule: Schedule, job: Arc<StockJob>, leads: impl Fn() -> bool, stop: Arc<AtomicBool>) {
    tracing::info!(schedule = %schedule.describe(), "stock reconciliation scheduled");
    let now = || jiff::Timestamp::from_microsecond(Timestamp::now().0).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let mut after = now();
    while !stop.load(Ordering::Relaxed) {
        let Some(next) = schedule.next_after(after) else {
            tracing::warn!(schedule = %schedule.describe(), "the reconciliation schedule never fires again");
            return;
        };
        while now() < next {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let left = next.duration_since(now()).unsigned_abs();
            std::thread::sleep(left.min(Duration::from_millis(200)));
        }
        after = next;
        if leads() {
            let _ = job.run(Timestamp(next.as_microsecond()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_window_names_its_second_and_an_on_demand_run_its_microsecond() {
        let t = Timestamp::from_civil(waybill_domain::Civil {
            year: 2026,
            month: 12,
            day: 1,
            hour: 9,
            minute: 0,
            second: 0,
        });
        assert_eq!(run_id(t), "stock-20261201T090000Z");
        assert_eq!(run_id(Timestamp(t.0 + 123_456)), "stock-20261201T090000.123456Z");
        assert_ne!(run_id(Timestamp(t.0 + 1)), run_id(Timestamp(t.0 + 2)));
    }
}
