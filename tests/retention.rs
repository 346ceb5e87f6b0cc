//! Retiring finished flows over a real log, end to end: on the embedded log and on a
//! Kafka-protocol broker (Tansu), where a retired key's tombstone is a null value on the
//! compacted snapshot topic. A coordinator with snapshots on and a retention of 10 days
//! retires the finished orders at a tick 11 days on; then a fresh replica restores from
//! the snapshot (generation, then tombstones) to exactly the working orders and writes
//! nothing, and the projections rebuilt from the log list the working orders only. The
//! retirements are counted in `waybill_flows_retired_total`, which `/metrics` renders.
//!
//! Then the embedded log's own retention, with the rules a node derives from its config
//! (the inbound, command and dead-letter retention of `[topics]`, compressed to zero
//! here): it deletes the inputs the coordinator has read and the commands, copying forward
//! whatever journal records share their segments, and after a restart the journal is
//! whole, a fresh replica still restores from the snapshot and the projections still
//! rebuild from the journal.

#[path = "../crates/saga/tests/fixtures.rs"]
mod fixtures;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fixtures::*;
use waybill_domain::{InboundEvent, System, Timestamp, topic};
use waybill_log::{AppendBatch, EventLog, Record};
use waybill_projection::ProjectionStore;
use waybill_projection::runner::Projector;
use waybill_saga::Policy;
use waybill_saga::coordinator::{Coordinator, CoordinatorConfig};
use waybill_saga::store::StateStore;

const PARTITIONS: u32 = 2;
const DAY: f64 = 86_400.0;
const FINISHED: usize = 6;
const WORKING: usize = 3;

fn append(log: &dyn EventLog, e: &InboundEvent) {
    let system = match e.meta.source.system {
        System::Odoo => System::Odoo,
        System::Carrier => System::Carrier,
        System::Finance => System::Finance,
        _ => System::Wms,
    };
    let r =
        Record::keyed(topic::inbound(system), e.meta.correlation_key.clone(), waybill_schema::encode_event(e).unwrap());
    log.append(AppendBatch { records: vec![r], positions: vec![] }).unwrap();
}

fn coordinator(log: &Arc<dyn EventLog>, state: &Path) -> Coordinator {
    Coordinator::new(
        log.clone(),
        StateStore::open(state).unwrap(),
        Arc::new(catalog()),
        Policy::default(),
        CoordinatorConfig {
            snapshots: true,
            retire_after: Some(std::time::Duration::from_secs(10 * 86_400)),
            ..CoordinatorConfig::default()
        },
    )
}

fn drain(c: &Coordinator, now: Timestamp) {
    for p in 0..PARTITIONS as i32 {
        c.drain_partition(p, now).unwrap();
    }
}

/// Every flow a state store holds: (key, finished).
fn held(state: &Path) -> Vec<(String, bool)> {
    let store = StateStore::open(state).unwrap();
    let mut out = Vec::new();
    for p in 0..PARTITIONS as i32 {
        for f in store.scan_encoded(p).unwrap() {
            let f = f.unwrap();
            out.push((f.key, f.finished));
        }
    }
    out.sort();
    out
}

fn end(log: &dyn EventLog, t: &str) -> i64 {
    (0..PARTITIONS as i32).map(|p| log.end_offset(t, p).unwrap()).sum()
}

/// `waybill_flows_retired_total` as `/metrics` renders it (the process's recorder).
fn retired_metric() -> f64 {
    let text = waybill_server::observe::recorder().render();
    let name = waybill_telemetry::metrics::FLOWS_RETIRED;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .unwrap_or_else(|| panic!("{name} is not rendered:\n{text}"))
}

fn run(log: Arc<dyn EventLog>, dir: &Path) {
    // The recorder `/metrics` renders, installed before anything is counted.
    let _ = waybill_server::observe::recorder();
    waybill_server::node::ensure_topics(log.as_ref(), PARTITIONS).unwrap();
    let name = |i: usize| format!("SO{i:03}");
    for i in 0..FINISHED + WORKING {
        let steps = if i < FINISHED { 8 } else { 3 };
        for e in order_to_invoice(&name(i)).into_iter().take(steps) {
            append(log.as_ref(), &at_now(e));
        }
    }
    let later = Timestamp::now().plus_secs(11.0 * DAY);
    {
        let a = coordinator(&log, &dir.join("a"));
        drain(&a, later);
        assert_eq!(a.stats().retired.load(Ordering::Relaxed), FINISHED as u64);
    }
    // Other tests of this binary may count theirs in the same process.
    assert!(retired_metric() >= FINISHED as f64, "the retirements are counted on /metrics");
    let working: Vec<(String, bool)> = (FINISHED..FINISHED + WORKING).map(|i| (name(i), false)).collect();
    assert_eq!(held(&dir.join("a")), working, "the retiring replica keeps the working orders only");
    let tombstones: usize = (0..PARTITIONS as i32)
        .map(|p| log.read(topic::SNAPSHOTS, p, 0, 100_000).unwrap().iter().filter(|r| r.value.is_empty()).count())
        .sum();
    assert_eq!(tombstones, FINISHED, "a tombstone (null value) per retired key");

    // A fresh replica: from the snapshot, to the same flows, writing nothing.
    let journal_end = end(log.as_ref(), topic::JOURNAL);
    {
        let b = coordinator(&log, &dir.join("b"));
        drain(&b, later);
        assert!(b.stats().restored_from_snapshot.load(Ordering::Relaxed) > 0, "restored from the snapshot");
        assert_eq!(b.stats().restored.load(Ordering::Relaxed), 0, "no journal record the snapshot covers is read");
        assert_eq!(b.stats().retired.load(Ordering::Relaxed), 0, "nothing is retired twice");
    }
    assert_eq!(held(&dir.join("b")), working);
    assert_eq!(end(log.as_ref(), topic::JOURNAL), journal_end, "the replica wrote no journal record");
    assert_eq!(end(log.as_ref(), topic::DLQ), 0);

    // The projections rebuilt from the log forget the retired orders.
    let store = Arc::new(ProjectionStore::open(dir.join("projections")).unwrap());
    Projector::new(log.clone(), store.clone()).rebuild().unwrap();
    let listed: Vec<String> = store.orders(None, 100).unwrap().into_iter().map(|o| o.order_ref).collect();
    assert_eq!(listed, working.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
    assert_eq!(store.order_counts_by_status().unwrap().iter().map(|(_, n)| n).sum::<u64>(), WORKING as u64);
    assert!(store.order(&name(0)).unwrap().is_none());
}

#[test]
fn finished_orders_are_retired_on_the_embedded_log() {
    use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
    let dir = tempfile::tempdir().unwrap();
    let log =
        EmbeddedLog::open(&dir.path().join("log"), EmbeddedOptions { fsync: FsyncPolicy::Never, ..Default::default() })
            .unwrap();
    run(Arc::new(log), dir.path());
}

#[test]
fn the_embedded_log_deletes_what_its_readers_have_passed_and_keeps_what_restores_need() {
    use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
    let dir = tempfile::tempdir().unwrap();
    let _ = waybill_server::observe::recorder();
    let cfg = waybill_server::config::Config::default();
    let mut retention = waybill_server::backend::embedded_retention(&cfg);
    let named: Vec<&str> = retention.iter().map(|r| r.topics.as_str()).collect();
    for t in [topic::JOURNAL, topic::CONTROL, topic::AUDIT, topic::CONNECT_STATE] {
        assert!(!named.contains(&t), "{t} is kept for good: {named:?}");
    }
    for r in &mut retention {
        r.keep = std::time::Duration::ZERO;
    }
    let options = EmbeddedOptions { fsync: FsyncPolicy::Never, segment_bytes: 16 * 1024, retention };
    let open = || Arc::new(EmbeddedLog::open(&dir.path().join("log"), options.clone()).unwrap());
    let embedded = open();
    let log: Arc<dyn EventLog> = embedded.clone();
    waybill_server::node::ensure_topics(log.as_ref(), PARTITIONS).unwrap();
    let name = |i: usize| format!("SO{i:03}");
    let (finished, working) = (40, 10);
    for i in 0..finished + working {
        let steps = if i < finished { 8 } else { 3 };
        for e in order_to_invoice(&name(i)).into_iter().take(steps) {
            append(log.as_ref(), &at_now(e));
        }
    }
    let later = Timestamp::now().plus_secs(11.0 * DAY);
    drain(&coordinator(&log, &dir.path().join("a")), later);
    let journal: Vec<Vec<u8>> = (0..PARTITIONS as i32)
        .flat_map(|p| log.read(topic::JOURNAL, p, 0, 100_000).unwrap().into_iter().map(|r| r.value))
        .collect();
    let inbound = topic::inbound(System::Odoo);
    for p in 0..PARTITIONS as i32 {
        let generation = log.committed(waybill_saga::snapshot::READER_GROUP, topic::SNAPSHOTS, p).unwrap();
        assert_eq!(generation, Some(0), "the snapshot's reader position is where its generation begins");
    }

    let report = waybill_server::log_retention::pass(&embedded).unwrap();
    assert!(report.segments_deleted > 0 && report.records_expired > 0, "{report:?}");
    // Whether a deleted segment also held journal records (copied forward) depends on
    // where the segments happened to roll; the log's own tests cover copying for certain.
    for p in 0..PARTITIONS as i32 {
        let start = embedded.start_offset(&inbound, p).unwrap();
        let read = log.committed("waybill-coordinator", &inbound, p).unwrap().unwrap();
        assert!(start > 0 && start <= read, "inputs go once read, and no further: start {start}, read {read}");
        assert_eq!(embedded.start_offset(topic::JOURNAL, p).unwrap(), 0, "the journal is kept");
    }
    // No other test of this binary runs a pass, so the counters hold this one's figures.
    let text = waybill_server::observe::recorder().render();
    for (name, counted) in [
        (waybill_telemetry::metrics::LOG_SEGMENTS_DELETED, report.segments_deleted),
        (waybill_telemetry::metrics::LOG_RECORDS_EXPIRED, report.records_expired),
        (waybill_telemetry::metrics::LOG_COPIED_BYTES, report.bytes_copied),
    ] {
        let value = text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()));
        assert_eq!(value, Some(counted as f64), "{name} is rendered on /metrics with what the pass did:\n{text}");
    }

    // After a restart, on what is left: the same journal, a fresh replica restores from
    // the snapshot, and the projections rebuild from the journal.
    drop(log);
    drop(embedded);
    let log: Arc<dyn EventLog> = open();
    let again: Vec<Vec<u8>> = (0..PARTITIONS as i32)
        .flat_map(|p| log.read(topic::JOURNAL, p, 0, 100_000).unwrap().into_iter().map(|r| r.value))
        .collect();
    assert_eq!(again, journal, "every journal record survives, in order");
    {
        let b = coordinator(&log, &dir.path().join("b"));
        drain(&b, later);
        assert!(b.stats().restored_from_snapshot.load(Ordering::Relaxed) > 0, "restored from the snapshot");
        assert_eq!(b.stats().restored.load(Ordering::Relaxed), 0, "no journal record the snapshot covers is read");
    }
    let working_held: Vec<(String, bool)> = (finished..finished + working).map(|i| (name(i), false)).collect();
    assert_eq!(held(&dir.path().join("b")), working_held);
    let store = Arc::new(ProjectionStore::open(dir.path().join("projections")).unwrap());
    Projector::new(log.clone(), store.clone()).rebuild().unwrap();
    let listed: Vec<String> = store.orders(None, 100).unwrap().into_iter().map(|o| o.order_ref).collect();
    assert_eq!(listed, working_held.into_iter().map(|(k, _)| k).collect::<Vec<_>>());
}

#[cfg(feature = "kafka")]
#[path = "support/tansu.rs"]
mod tansu;

#[cfg(feature = "kafka")]
#[test]
fn finished_orders_are_retired_on_kafka_with_null_tombstones() {
    use waybill_log::kafka::{KafkaLog, KafkaOptions};
    let broker = tansu::Broker::start();
    let mut o = KafkaOptions::new(broker.addr.clone());
    o.client_id = "waybill-retention-test".into();
    // Tansu's ListOffsets(latest) is exact only with one record per batch
    // (crates/log/tests/kafka_conformance.rs says why).
    o.properties.insert("producer.batch.num.messages".into(), "1".into());
    let log: Arc<dyn EventLog> = Arc::new(KafkaLog::connect(o).expect("connect to the test broker"));
    let dir = tempfile::tempdir().unwrap();
    run(log, dir.path());
}
