//! The embedded log's retention, applied by a node every `[log] retention_check_secs`:
//! records past their topic's `[topics]` retention that every reader has passed, the
//! snapshots' superseded generations, and the segment files they leave mostly dead
//! (`waybill_log::embedded`'s `retention` module says how).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use waybill_log::embedded::{EmbeddedLog, RetentionReport};
use waybill_telemetry::metrics as names;

/// One pass: applies the retention, counts what it did, and logs it when it did anything.
pub fn pass(log: &EmbeddedLog) -> waybill_log::Result<RetentionReport> {
    let r = log.enforce_retention()?;
    metrics::counter!(names::LOG_RECORDS_EXPIRED).increment(r.records_expired);
    metrics::counter!(names::LOG_SEGMENTS_DELETED).increment(r.segments_deleted);
    metrics::counter!(names::LOG_COPIED_BYTES).increment(r.bytes_copied);
    if r.records_expired > 0 || r.segments_deleted > 0 {
        tracing::info!(
            records_expired = r.records_expired,
            segments_deleted = r.segments_deleted,
            bytes_deleted = r.bytes_deleted,
            records_copied_forward = r.records_copied,
            bytes_copied_forward = r.bytes_copied,
            segments_left = r.segments,
            bytes_left = r.bytes,
            "embedded log retention: expired records and mostly-dead segments deleted"
        );
    }
    // One line per reader, however many partitions it holds back.
    let mut by_group: std::collections::BTreeMap<&str, (u64, Vec<String>)> = Default::default();
    for h in &r.held_back {
        let (records, partitions) = by_group.entry(h.group.as_str()).or_default();
        *records += h.records;
        partitions.push(format!("{}/{}", h.topic, h.partition));
    }
    for (group, (records, partitions)) in by_group {
        tracing::info!(
            group,
            records,
            partitions = partitions.join(" "),
            "embedded log retention: a reader has not read expired records, so they are kept \
             (`waybill log forget-group` forgets a reader removed for good)"
        );
    }
    Ok(r)
}

/// Runs a pass every `every` until `stop`.
pub fn run(log: Arc<EmbeddedLog>, every: Duration, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            pass(&log)?;
            next = Instant::now() + every;
        }
        std::thread::sleep(Duration::from_millis(100).min(every));
    }
    Ok(())
}
