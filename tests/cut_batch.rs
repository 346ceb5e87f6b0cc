//! Exactly-once effect when a batch is cut short (DESIGN.md invariant 2), on the embedded
//! log behind a test double without atomic batches and on a real Kafka-protocol broker
//! (Tansu, Kafka without transactions).
//!
//! The cut run: a coordinator with small batches crashes in the middle of an append,
//! after the batch's journal events and commands reached the log but before its
//! checkpoint. More input arrives; a pick deadline passes; a second coordinator with
//! other batch boundaries re-runs from the last checkpoint. Then a coordinator with an
//! empty state store restores from the start of the journal (through the remains of the
//! cut batch), and the projections are rebuilt from the log. The saga states, the read
//! models and the commands must equal those of a run where nothing was cut, and no
//! idempotency key may appear with two different bodies.
//!
//! Input records carry their append time in a header that the test double reports as
//! the record's time, so the two runs (two logs) see the same times.

#[path = "../crates/saga/tests/fixtures.rs"]
mod fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use fixtures::*;
use waybill_domain::{ExceptionCategory, InboundEvent, System, Timestamp, topic};
use waybill_log::testing::faults::{Cut, CutShort};
use waybill_log::{AppendBatch, EventLog, Record};
use waybill_projection::ProjectionStore;
use waybill_projection::runner::Projector;
use waybill_saga::coordinator::{Coordinator, CoordinatorConfig};
use waybill_saga::store::StateStore;
use waybill_saga::{OrderFlow, Policy};

const PARTITIONS: u32 = 2;
/// The header the test double reads record times from.
const TIME: &str = "test.append-time-ms";

/// Everything a user could notice of one run.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Saga state per order, as the live coordinator left it.
    live: BTreeMap<String, OrderFlow>,
    /// Saga state per order, restored from the journal into an empty store.
    restored: BTreeMap<String, OrderFlow>,
    /// The read models rebuilt from the log (without log positions, which differ by
    /// construction: the cut run's log holds the remains of the cut batch).
    projections: Vec<String>,
    /// Every distinct command written, by idempotency key.
    commands: BTreeMap<String, BTreeSet<String>>,
}

fn orders() -> Vec<String> {
    (1..=8).map(|i| format!("SO{i:03}")).collect()
}

/// Before the crash: every order released, reserved and accepted by the warehouse (which
/// starts its pick deadline); the first three are also picked and shipped.
fn first_inputs() -> Vec<InboundEvent> {
    let mut v = Vec::new();
    for (i, o) in orders().iter().enumerate() {
        v.push(released(o, vec![line(1, "PLAIN", "Units", 2)]));
        v.push(reserved(o, &[(1, 2, 0)]));
        v.push(accepted(o));
        if i < 3 {
            v.push(pick(o, &format!("{o}-P"), vec![picked(1, "PLAIN", 2)], true));
            v.push(issued(o, &format!("{o}-SH"), &[(1, "PLAIN", 2)]));
        }
    }
    v
}

/// After the crash, before the re-run: two more orders are picked (before their
/// deadline), the shipped ones are booked with a carrier.
fn later_inputs() -> Vec<InboundEvent> {
    let o = orders();
    let mut v = vec![
        pick(&o[3], &format!("{}-P", o[3]), vec![picked(1, "PLAIN", 2)], true),
        pick(&o[4], &format!("{}-P", o[4]), vec![picked(1, "PLAIN", 2)], true),
    ];
    for s in &o[..3] {
        v.push(booked(s, &format!("{s}-SH")));
    }
    v
}

fn create_topics(log: &dyn EventLog) {
    let mut topics = topic::coordinator_inputs();
    topics.push(topic::JOURNAL.into());
    topics.push(topic::DLQ.into());
    topics.extend(topic::command_topics());
    for t in topics {
        log.ensure_topic(&t, PARTITIONS).unwrap();
    }
}

/// Appends inbound events one record at a time, the n-th stamped `base_ms + n`.
fn append(log: &dyn EventLog, events: &[InboundEvent], base_ms: i64, first: i64) {
    for (n, e) in events.iter().enumerate() {
        let t = match e.meta.source.system {
            System::Odoo => topic::inbound(System::Odoo),
            System::Carrier => topic::inbound(System::Carrier),
            _ => topic::inbound(System::Wms),
        };
        let r = Record::keyed(t, e.meta.correlation_key.clone(), waybill_schema::encode_event(e).unwrap())
            .with_header(TIME, (base_ms + first + n as i64).to_string());
        log.append(AppendBatch { records: vec![r], positions: vec![] }).unwrap();
    }
}

fn coordinator(log: &Arc<dyn EventLog>, state: &Path, max_batch: usize) -> Coordinator {
    Coordinator::new(
        log.clone(),
        StateStore::open(state).unwrap(),
        Arc::new(catalog()),
        Policy::default(),
        CoordinatorConfig { max_batch, ..CoordinatorConfig::default() },
    )
}

fn states(dir: &Path) -> BTreeMap<String, OrderFlow> {
    let store = StateStore::open(dir).unwrap();
    let mut out = BTreeMap::new();
    for o in orders() {
        let p = waybill_log::partition_for(o.as_bytes(), PARTITIONS);
        out.insert(o.clone(), store.load(p, &o).unwrap().unwrap_or_else(|| panic!("{o} has a state")));
    }
    out
}

fn projections(store: &ProjectionStore) -> Vec<String> {
    let mut v = Vec::new();
    for o in store.orders(None, 1000).unwrap() {
        v.push(format!("{o:?}"));
        for mut t in store.timeline(&o.order_ref).unwrap() {
            (t.partition, t.offset) = (0, 0);
            v.push(format!("{t:?}"));
        }
    }
    v.extend(store.postings(None).unwrap().iter().map(|p| format!("{p:?}")));
    v.extend(store.exceptions(false, None).unwrap().iter().map(|x| format!("{x:?}")));
    v.extend(store.stock_all().unwrap().iter().map(|s| format!("{s:?}")));
    v.push(format!("{:?}", store.order_counts_by_status().unwrap()));
    v.push(format!("{:?}", store.exception_counts_by_category().unwrap()));
    v
}

fn commands(log: &dyn EventLog) -> BTreeMap<String, BTreeSet<String>> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in topic::command_topics() {
        for p in 0..PARTITIONS as i32 {
            let (mut next, end) = (0, log.end_offset(&t, p).unwrap());
            while next < end {
                let records = log.read(&t, p, next, 1000).unwrap();
                let Some(last) = records.last() else { break };
                next = last.offset + 1;
                for r in records {
                    let c = waybill_schema::decode_command(&r.value).unwrap();
                    keys.entry(c.meta.idempotency_key.clone()).or_default().insert(format!("{c:?}"));
                }
            }
        }
    }
    keys
}

fn count(log: &dyn EventLog, t: &str) -> i64 {
    (0..PARTITIONS as i32).map(|p| log.end_offset(t, p).unwrap()).sum()
}

/// One run over `inner`; `cut` cuts the first batch that carries commands.
fn run(inner: Arc<dyn EventLog>, dir: &Path, base_ms: i64, cut: bool) -> Outcome {
    create_topics(inner.as_ref());
    let double = Arc::new(CutShort::new(inner).with_time_header(TIME));
    let log: Arc<dyn EventLog> = double.clone();
    if cut {
        // After the batch's journal events and commands, before its checkpoint.
        double.arm(Cut {
            when: Box::new(|b| b.records.iter().any(|r| r.topic.starts_with("waybill.commands."))),
            keep: Box::new(|r| r.topic == topic::JOURNAL || r.topic.starts_with("waybill.commands.")),
        });
    }
    let first = first_inputs();
    append(log.as_ref(), &first, base_ms, 0);
    // Decisions take their time from the records; `now` only says which timers are due.
    let before_deadline = Timestamp(base_ms * 1000);
    let after_deadline = Timestamp((base_ms + 24 * 3600 * 1000) * 1000);
    {
        let a = coordinator(&log, &dir.join("live"), 3);
        for p in 0..PARTITIONS as i32 {
            let drained = a.drain_partition(p, before_deadline);
            assert!(cut || drained.is_ok(), "an uncut run does not fail: {drained:?}");
        }
    }
    assert_eq!(double.cuts(), u64::from(cut), "the cut run was cut short once");
    append(log.as_ref(), &later_inputs(), base_ms, first.len() as i64);
    {
        // The re-run: other batch boundaries (small ones in the cut run, so the tick it
        // writes once the deadline has passed lands among inputs it has not read yet).
        let b = coordinator(&log, &dir.join("live"), if cut { 2 } else { 64 });
        for p in 0..PARTITIONS as i32 {
            b.drain_partition(p, after_deadline).unwrap();
        }
    }
    {
        let c = coordinator(&log, &dir.join("restored"), 512);
        for p in 0..PARTITIONS as i32 {
            c.drain_partition(p, after_deadline).unwrap();
        }
    }
    assert_eq!(count(log.as_ref(), topic::DLQ), 0, "nothing is dead-lettered");
    let store = Arc::new(ProjectionStore::open(dir.join("projections")).unwrap());
    let projector = Projector::new(log.clone(), store.clone());
    projector.rebuild().unwrap();
    if cut {
        assert!(projector.stats().uncovered.load(std::sync::atomic::Ordering::Relaxed) > 0, "the cut batch was seen");
    }
    Outcome {
        live: states(&dir.join("live")),
        restored: states(&dir.join("restored")),
        projections: projections(&store),
        commands: commands(log.as_ref()),
    }
}

fn check(uncut: &Outcome, cut: &Outcome) {
    let overdue = |o: &Outcome| {
        o.live
            .values()
            .filter(|f| f.fulfillment.book.open_exceptions.values().any(|c| *c == ExceptionCategory::PickOverdue))
            .count()
    };
    assert_eq!(overdue(uncut), 3, "the three orders never picked are overdue: {:#?}", uncut.live);
    for (key, bodies) in &cut.commands {
        assert_eq!(bodies.len(), 1, "idempotency key {key} was written with different bodies: {bodies:#?}");
    }
    assert_eq!(cut.live, uncut.live, "live saga state equals the uncut run's");
    assert_eq!(cut.restored, uncut.restored, "state restored from an empty store equals the uncut run's");
    assert_eq!(cut.restored, cut.live, "restore reproduces the live state");
    assert_eq!(cut.projections, uncut.projections, "rebuilt projections equal the uncut run's");
    assert_eq!(cut.commands, uncut.commands, "the same commands, under the same keys");
}

fn base_ms() -> i64 {
    // Ten days ago: every input is older than the ticks the coordinators write.
    Timestamp::now().0 / 1000 - 10 * 24 * 3600 * 1000
}

fn embedded(dir: &Path) -> Arc<dyn EventLog> {
    use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
    Arc::new(
        EmbeddedLog::open(&dir.join("log"), EmbeddedOptions { fsync: FsyncPolicy::Never, ..Default::default() })
            .unwrap(),
    )
}

#[test]
fn a_batch_cut_short_on_the_embedded_double_has_exactly_once_effect() {
    let base = base_ms();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let uncut = run(embedded(a.path()), a.path(), base, false);
    let cut = run(embedded(b.path()), b.path(), base, true);
    check(&uncut, &cut);
}

#[cfg(feature = "kafka")]
#[path = "support/tansu.rs"]
mod tansu;

#[cfg(feature = "kafka")]
mod kafka {
    use waybill_log::kafka::{KafkaLog, KafkaOptions};

    use super::tansu::Broker;
    use super::*;

    impl Broker {
        fn log(&self) -> Arc<dyn EventLog> {
            let mut o = KafkaOptions::new(self.addr.clone());
            o.client_id = "waybill-cut-batch-test".into();
            // Tansu's ListOffsets(latest) is exact only with one record per batch
            // (crates/log/tests/kafka_conformance.rs says why).
            o.properties.insert("producer.batch.num.messages".into(), "1".into());
            Arc::new(KafkaLog::connect(o).expect("connect to the test broker"))
        }
    }

    #[test]
    fn a_batch_cut_short_on_kafka_has_exactly_once_effect() {
        let base = base_ms();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let uncut = {
            let broker = Broker::start();
            run(broker.log(), a.path(), base, false)
        };
        let cut = {
            let broker = Broker::start();
            run(broker.log(), b.path(), base, true)
        };
        check(&uncut, &cut);
    }
}
