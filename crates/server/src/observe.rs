//! Metrics and health over plain HTTP on their own port: `/metrics` (Prometheus text
//! format), `/healthz` (the process answers) and `/readyz` (the log is reachable and
//! no partition is stuck). Gauges that describe state rather than events — held
//! postings, open exceptions, store sizes, partition health — are computed when scraped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use waybill_domain::journal::DocumentKind;
use waybill_domain::{Timestamp, topic};
use waybill_log::EventLog;
use waybill_projection::ProjectionStore;
use waybill_saga::coordinator::Stats;
use waybill_telemetry::metrics::{self as names, Kind};

/// The process-wide Prometheus recorder (installed once, shared by every node of the
/// process), with every metric described.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0])
                .expect("static buckets are valid")
                .install_recorder()
                .unwrap_or_else(|e| {
                    // Another recorder is installed (an embedding program's): keep ours
                    // local so /metrics still renders what Waybill records through it.
                    tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics shows Waybill's own registry only");
                    PrometheusBuilder::new().build_recorder().handle()
                });
            for m in names::ALL {
                match m.kind {
                    Kind::Counter => metrics::describe_counter!(m.name, m.help),
                    Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
                    Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
                }
            }
            handle
        })
        .clone()
}

/// What `/metrics` and `/readyz` look at.
#[derive(Debug, Clone)]
pub struct Health {
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// Coordinator counters and heartbeats.
    pub stats: Arc<Stats>,
    /// Read models.
    pub projections: Arc<ProjectionStore>,
    /// Data directory (for store sizes).
    pub data_dir: PathBuf,
    /// Partitions owned.
    pub partitions: u32,
    /// A partition whose worker has not completed a turn for this long is stuck.
    pub stuck_after: Duration,
    /// The Kafka log, when the node runs on Kafka (transaction counts).
    #[cfg(feature = "kafka")]
    pub kafka: Option<Arc<waybill_log::kafka::KafkaLog>>,
}

impl Health {
    /// Reasons the node is not ready; empty when ready.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = self.log.end_offset(topic::JOURNAL, 0) {
            out.push(format!("event log unreachable: {e}"));
        }
        let stuck = self.stats.stuck(self.stuck_after);
        if !stuck.is_empty() {
            out.push(format!("partitions {stuck:?} have not been processed for {} s", self.stuck_after.as_secs()));
        }
        let owned = self.stats.owned();
        let beats = self.stats.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        let started = owned.iter().filter(|p| beats.contains_key(p)).count();
        if started < owned.len() {
            out.push(format!("{started} of the {} partitions this node owns restored so far", owned.len()));
        }
        out
    }

    /// The metrics as Prometheus text, gauges refreshed first (what `/metrics` serves).
    pub fn scrape(&self) -> String {
        self.refresh_gauges();
        recorder().render()
    }

    fn refresh_gauges(&self) {
        #[cfg(feature = "kafka")]
        if let Some(k) = &self.kafka
            && k.options().transactions
        {
            let (commits, aborts) = k.transaction_outcomes();
            metrics::counter!(names::TRANSACTIONS, "outcome" => "commit").absolute(commits);
            metrics::counter!(names::TRANSACTIONS, "outcome" => "abort").absolute(aborts);
        }
        let stuck = self.stats.stuck(self.stuck_after);
        // A partition another replica owns is not stuck here.
        for p in 0..self.partitions as i32 {
            let ok = if stuck.contains(&p) { 0.0 } else { 1.0 };
            metrics::gauge!(names::PARTITION_HEALTHY, "partition" => p.to_string()).set(ok);
        }
        for (store, dir) in [("log", "log"), ("state", "state"), ("projections", "projections")] {
            metrics::gauge!(names::STORE_SIZE, "store" => store).set(dir_size(&self.data_dir.join(dir)) as f64);
        }
        if let Ok(counts) = self.projections.exception_counts_by_category() {
            for (category, n) in counts {
                metrics::gauge!(names::EXCEPTIONS_OPEN, "category" => category.as_str()).set(n as f64);
            }
        }
        // From the posting-age index alone (no order is read): the document is the
        // posting id's prefix (`DocumentKind::of_posting`), the oldest is the index's
        // first entry.
        let now = Timestamp::now();
        let (mut invoices, mut credit_notes, mut vendor_bills, mut oldest) = (0u64, 0u64, 0u64, 0.0f64);
        for hit in self.projections.postings_by_age("held", None) {
            let Ok((held_at, posting_id, _)) = hit else { break };
            if oldest == 0.0 {
                oldest = now.micros_since(Timestamp(held_at)).max(0) as f64 / 1e6;
            }
            match DocumentKind::of_posting(&posting_id) {
                Some(DocumentKind::CreditNote) => credit_notes += 1,
                Some(DocumentKind::VendorBill) => vendor_bills += 1,
                _ => invoices += 1,
            }
        }
        metrics::gauge!(names::POSTINGS_HELD, "document" => "invoice").set(invoices as f64);
        metrics::gauge!(names::POSTINGS_HELD, "document" => "credit_note").set(credit_notes as f64);
        metrics::gauge!(names::POSTINGS_HELD, "document" => "vendor_bill").set(vendor_bills as f64);
        metrics::gauge!(names::POSTINGS_OLDEST_AGE).set(oldest);
    }
}

impl waybill_control::ReadinessCheck for Health {
    fn problems(&self) -> Vec<String> {
        Health::problems(self)
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn metrics_page(State((health, handle)): State<(Arc<Health>, PrometheusHandle)>) -> impl IntoResponse {
    let h = health.clone();
    let _ = tokio::task::spawn_blocking(move || h.refresh_gauges()).await;
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}

async fn ready(State((health, _)): State<(Arc<Health>, PrometheusHandle)>) -> impl IntoResponse {
    let h = health.clone();
    let problems = tokio::task::spawn_blocking(move || h.problems()).await.unwrap_or_else(|e| vec![e.to_string()]);
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", problems.join("; ")))
    }
}

/// The routes of the metrics port.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state((health, recorder()))
}
