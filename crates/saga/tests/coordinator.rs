//! The coordinator over the embedded log: a backlog spread over several inbound topics
//! (an outage, a bulk import) is processed in the order the systems wrote it, a state
//! store that is deleted is rebuilt from the journal to the same state, and a fresh
//! replica restores from the saga state snapshots to the same state as from the journal.

mod fixtures;

use std::sync::Arc;

use fixtures::*;
use waybill_domain::{InboundEvent, JournalBody, System, Timestamp, topic};
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
use waybill_log::testing::faults::{Cut, CutShort};
use waybill_log::{AppendBatch, EventLog, Header, Record};
use waybill_saga::Policy;
use waybill_saga::coordinator::{Coordinator, CoordinatorConfig};
use waybill_saga::store::StateStore;

const PARTITIONS: u32 = 2;

fn open(dir: &std::path::Path) -> Arc<dyn EventLog> {
    let log = EmbeddedLog::open(&dir.join("log"), EmbeddedOptions { fsync: FsyncPolicy::Never, ..Default::default() })
        .unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log);
    let mut topics = topic::coordinator_inputs();
    topics.push(topic::JOURNAL.into());
    topics.push(topic::DLQ.into());
    topics.push(topic::SNAPSHOTS.into());
    topics.extend(topic::command_topics());
    for t in topics {
        log.ensure_topic(&t, PARTITIONS).unwrap();
    }
    log
}

fn append(log: &dyn EventLog, e: &InboundEvent) {
    let t = match e.meta.source.system {
        System::Odoo => topic::inbound(System::Odoo),
        System::Carrier => topic::inbound(System::Carrier),
        System::Finance => topic::inbound(System::Finance),
        _ => topic::inbound(System::Wms),
    };
    let r = Record {
        topic: t,
        partition: None,
        key: e.meta.correlation_key.clone().into_bytes(),
        headers: vec![Header { key: "waybill.event-id".into(), value: e.meta.event_id.clone().into_bytes() }],
        value: waybill_schema::encode_event(e).unwrap(),
    };
    log.append(AppendBatch { records: vec![r], positions: vec![] }).unwrap();
}

fn coordinator(log: &Arc<dyn EventLog>, state: &std::path::Path, max_batch: usize) -> Coordinator {
    coordinator_with(log, state, max_batch, false)
}

fn coordinator_with(
    log: &Arc<dyn EventLog>,
    state: &std::path::Path,
    max_batch: usize,
    snapshots: bool,
) -> Coordinator {
    coordinator_of(log, state, CoordinatorConfig { max_batch, snapshots, ..CoordinatorConfig::default() })
}

/// A coordinator over `log` with its state store in `state` (opened once a coordinator
/// that had it let go).
fn coordinator_of(log: &Arc<dyn EventLog>, state: &std::path::Path, config: CoordinatorConfig) -> Coordinator {
    Coordinator::new(log.clone(), open_store(state), Arc::new(catalog()), Policy::default(), config)
}

fn count(log: &dyn EventLog, t: &str) -> i64 {
    (0..PARTITIONS as i32).map(|p| log.end_offset(t, p).unwrap()).sum()
}

/// Order-to-fulfillment sagas with a `Completed` event in the journal (a copy written
/// again after a crash counts once, as every reader of the journal drops it).
fn completed_sagas(log: &dyn EventLog) -> usize {
    let mut done = std::collections::BTreeSet::new();
    for p in 0..PARTITIONS as i32 {
        for r in log.read(topic::JOURNAL, p, 0, 1_000_000).unwrap() {
            if let Ok(waybill_schema::JournalRecord::Event(e)) = waybill_schema::decode_journal_record(&r.value)
                && matches!(e.body, JournalBody::Completed(_))
                && e.meta.saga_id.starts_with("o2f:")
            {
                done.insert(e.meta.saga_id.clone());
            }
        }
    }
    done.len()
}

#[test]
fn a_backlog_across_topics_is_processed_in_causal_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // Every order's events are appended in causal order, interleaved across orders, and
    // only then does the coordinator start: the carrier topic holds bookings for
    // shipments whose goods issue sits deep in the warehouse topic.
    let orders: Vec<Vec<InboundEvent>> = (0..60).map(|i| order_to_invoice(&format!("SO{i:03}"))).collect();
    for step in 0..7 {
        for o in &orders {
            append(log.as_ref(), &o[step]);
        }
    }
    // Small batches make the topics' batches end at different points in time.
    let c = coordinator(&log, &dir.path().join("state"), 16);
    for p in 0..PARTITIONS as i32 {
        c.drain_partition(p, Timestamp(1)).unwrap();
    }
    assert_eq!(count(log.as_ref(), topic::DLQ), 0, "nothing is dead-lettered for arriving before its cause");
    assert_eq!(completed_sagas(log.as_ref()), 60);
}

#[test]
fn a_deleted_state_store_is_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..20 {
        for e in order_to_invoice(&format!("SO{i:03}")).into_iter().take(4) {
            append(log.as_ref(), &e);
        }
    }
    {
        let c = coordinator(&log, &dir.path().join("state"), 512);
        for p in 0..PARTITIONS as i32 {
            c.drain_partition(p, Timestamp(1)).unwrap();
        }
    }
    let commands_before = count(log.as_ref(), &topic::commands(System::Wms));
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    // The rest of every order arrives; a coordinator with an empty state directory
    // restores from the journal and carries on without repeating a command.
    for i in 0..20 {
        for e in order_to_invoice(&format!("SO{i:03}")).into_iter().skip(4) {
            append(log.as_ref(), &e);
        }
    }
    let c = coordinator(&log, &dir.path().join("state"), 512);
    for p in 0..PARTITIONS as i32 {
        c.drain_partition(p, Timestamp(1)).unwrap();
    }
    assert_eq!(count(log.as_ref(), &topic::commands(System::Wms)), commands_before, "no warehouse command repeated");
    assert_eq!(completed_sagas(log.as_ref()), 20);
    assert_eq!(count(log.as_ref(), topic::DLQ), 0);
}

/// A backend without atomic batches (Kafka without transactions) that "crashes" in the
/// middle of the next append carrying commands: the journal records of that batch reach
/// the log, its commands and checkpoint do not.
fn cut_short(inner: &Arc<dyn EventLog>) -> Arc<CutShort> {
    let cut = Arc::new(CutShort::new(inner.clone()));
    cut.arm(Cut {
        when: Box::new(|b| b.records.iter().any(|r| r.topic.starts_with("waybill.commands."))),
        keep: Box::new(|r| r.topic == topic::JOURNAL),
    });
    cut
}

/// Invariant 2 on a backend without atomic batches: a crash that leaves a batch's
/// journal events in the log without its commands loses no command. The next owner
/// (here with an empty state store) ignores journal events no checkpoint covers and
/// processes their inputs again, writing the missing commands under the same keys.
#[test]
fn journal_events_without_their_commands_are_not_taken_as_done() {
    let dir = tempfile::tempdir().unwrap();
    let inner = open(dir.path());
    let cut = cut_short(&inner);
    let log: Arc<dyn EventLog> = cut.clone();
    for order in ["SO1", "SO2", "SO3"] {
        for e in order_to_invoice(order) {
            append(inner.as_ref(), &e);
        }
    }
    let first = coordinator(&log, &dir.path().join("state-a"), 512);
    let now = Timestamp::now();
    for p in 0..PARTITIONS as i32 {
        let _ = first.drain_partition(p, now); // one partition's first batch is cut short
    }
    assert_eq!(cut.cuts(), 1, "a batch was cut short");

    let second = coordinator(&log, &dir.path().join("state-b"), 512);
    for p in 0..PARTITIONS as i32 {
        second.drain_partition(p, now).unwrap();
    }
    assert_eq!(completed_sagas(inner.as_ref()), 3, "every saga completes");
    let mut keys: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for t in topic::command_topics() {
        for p in 0..PARTITIONS as i32 {
            for r in inner.read(&t, p, 0, 1_000_000).unwrap() {
                let c = waybill_schema::decode_command(&r.value).unwrap();
                keys.entry(c.meta.idempotency_key.clone()).or_default().insert(format!("{:?}", c.body));
            }
        }
    }
    for order in ["SO1", "SO2", "SO3"] {
        assert!(
            keys.keys().any(|k| k.contains(order) && k.starts_with("release")),
            "the release command of {order} was written: {:?}",
            keys.keys().collect::<Vec<_>>()
        );
    }
    assert!(keys.values().all(|bodies| bodies.len() == 1), "one command per key");
}

/// Opens a state store a coordinator just let go of (sled's background thread may hold
/// its lock for a moment after the drop).
fn open_store(state: &std::path::Path) -> StateStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match StateStore::open(state) {
            Ok(s) => return s,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Every flow a state store holds, by partition and key, as stored: its state, whether
/// it is out of the working set, and when it finished.
#[allow(clippy::type_complexity)]
fn stored(state: &std::path::Path) -> std::collections::BTreeMap<(i32, String), (Vec<u8>, bool, Option<Timestamp>)> {
    let store = open_store(state);
    let mut out = std::collections::BTreeMap::new();
    for p in 0..PARTITIONS as i32 {
        for f in store.scan_encoded(p).unwrap() {
            let f = f.unwrap();
            out.insert((p, f.key), (f.bytes, f.finished, f.finished_at));
        }
    }
    out
}

fn drain(c: &Coordinator) {
    for p in 0..PARTITIONS as i32 {
        c.drain_partition(p, Timestamp(1)).unwrap();
    }
}

/// Orders `from..to`, the first `steps` events of each.
fn append_orders(log: &dyn EventLog, from: usize, to: usize, steps: std::ops::Range<usize>) {
    for i in from..to {
        for e in order_to_invoice(&format!("SO{i:03}")).into_iter().skip(steps.start).take(steps.len()) {
            append(log, &e);
        }
    }
}

/// A state store's index of finished flows: (partition, when, key).
fn finished_index(state: &std::path::Path) -> Vec<(i32, Timestamp, String)> {
    let store = open_store(state);
    let mut index = Vec::new();
    for p in 0..PARTITIONS as i32 {
        for e in store.finished_by(p, Timestamp(i64::MAX)) {
            let (at, key) = e.unwrap();
            index.push((p, at, key));
        }
    }
    index
}

/// The store a coordinator writes as it goes (new flows saved, working flows saved
/// again, flows finishing, across processes) holds exactly what a store rebuilt from the
/// journal holds: the same states, the same working set and the same index of finished
/// flows (which retirement trusts to name every finished flow once).
#[test]
fn the_store_kept_as_flows_begin_and_finish_is_the_store_the_journal_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_orders(log.as_ref(), 0, 20, 0..4); // begun, working
    drain(&coordinator(&log, &dir.path().join("state-a"), 512));
    append_orders(log.as_ref(), 20, 30, 0..8); // begun and finished before a save
    append_orders(log.as_ref(), 0, 10, 4..8); // working, then finished
    let c = coordinator(&log, &dir.path().join("state-a"), 512);
    drain(&c);
    append_orders(log.as_ref(), 30, 35, 0..2); // begun in the same process
    drain(&c);
    drop(c);
    assert_eq!(completed_sagas(log.as_ref()), 20);
    drain(&coordinator(&log, &dir.path().join("state-b"), 512));
    let (kept, kept_index) = (stored(&dir.path().join("state-a")), finished_index(&dir.path().join("state-a")));
    let (rebuilt, rebuilt_index) = (stored(&dir.path().join("state-b")), finished_index(&dir.path().join("state-b")));
    assert_eq!(kept.len(), 35);
    assert_eq!(kept.values().filter(|(_, finished, _)| *finished).count(), 20, "20 flows finished");
    assert_eq!(kept_index.len(), 20, "each finished flow is in the index once: {kept_index:?}");
    assert!(kept == rebuilt, "states kept as they went differ from the rebuilt ones");
    assert_eq!(kept_index, rebuilt_index);
}

/// A replica with an empty volume restores from the snapshot and the journal after its
/// mark, reads none of the journal the snapshot covers, holds exactly the states a
/// restore from the whole journal gives, and carries on without repeating a command.
#[test]
fn a_fresh_replica_restores_from_the_snapshot_to_the_state_the_journal_gives() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_orders(log.as_ref(), 0, 30, 0..8); // finished: history
    append_orders(log.as_ref(), 30, 50, 0..4); // live
    drain(&coordinator_with(&log, &dir.path().join("state-a"), 16, true));
    let journal_end: i64 = (0..PARTITIONS as i32).map(|p| log.end_offset(topic::JOURNAL, p).unwrap()).sum();
    assert!(journal_end > 0);

    // B: empty store, snapshots on. C: empty store, snapshots off (the whole journal).
    let b = coordinator_with(&log, &dir.path().join("state-b"), 512, true);
    drain(&b);
    assert_eq!(
        b.stats().restored.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no journal record the snapshot covers is read"
    );
    let c = coordinator(&log, &dir.path().join("state-c"), 512);
    drain(&c);
    assert_eq!(c.stats().restored.load(std::sync::atomic::Ordering::Relaxed) as i64, journal_end);
    drop((b, c));
    let from_snapshot = stored(&dir.path().join("state-b"));
    assert_eq!(from_snapshot.len(), 50, "finished and live flows are both restored");
    assert_eq!(from_snapshot.values().filter(|(_, finished, _)| *finished).count(), 30);
    assert_eq!(from_snapshot, stored(&dir.path().join("state-c")), "the same states as the whole journal gives");

    // The live orders finish on the replica restored from the snapshot.
    let commands_before = count(log.as_ref(), &topic::commands(System::Wms));
    append_orders(log.as_ref(), 30, 50, 4..8);
    drain(&coordinator_with(&log, &dir.path().join("state-b"), 512, true));
    assert_eq!(count(log.as_ref(), &topic::commands(System::Wms)), commands_before, "no warehouse command repeated");
    assert_eq!(completed_sagas(log.as_ref()), 50);
    assert_eq!(count(log.as_ref(), topic::DLQ), 0);
}

/// A save cut short on a backend without atomic batches leaves flow states on the
/// snapshot topic without the mark that closes them. A fresh replica takes the last mark,
/// the newer states after it and the journal from the mark, and ends where a restore
/// from the whole journal ends.
#[test]
fn a_snapshot_save_cut_short_restores_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let inner = open(dir.path());
    append_orders(inner.as_ref(), 0, 20, 0..7);
    drain(&coordinator_with(&inner, &dir.path().join("state-a"), 512, true));
    append_orders(inner.as_ref(), 20, 40, 0..5);
    let cut = Arc::new(CutShort::new(inner.clone()));
    cut.arm(Cut {
        when: Box::new(|b| b.records.iter().any(|r| r.topic == topic::SNAPSHOTS)),
        keep: Box::new(|r| r.topic == topic::SNAPSHOTS && r.key != waybill_saga::snapshot::MARK_KEY),
    });
    let log: Arc<dyn EventLog> = cut.clone();
    let a = coordinator_with(&log, &dir.path().join("state-a"), 512, true);
    let failed = (0..PARTITIONS as i32).filter(|p| a.drain_partition(*p, Timestamp(1)).is_err()).count();
    assert_eq!((cut.cuts(), failed), (1, 1), "one save was cut short");

    let b = coordinator_with(&inner, &dir.path().join("state-b"), 512, true);
    drain(&b);
    let c = coordinator(&inner, &dir.path().join("state-c"), 512);
    drain(&c);
    assert!(
        b.stats().restored.load(std::sync::atomic::Ordering::Relaxed)
            < c.stats().restored.load(std::sync::atomic::Ordering::Relaxed)
    );
    drop((a, b, c));
    assert_eq!(stored(&dir.path().join("state-b")), stored(&dir.path().join("state-c")));
}

/// A store that already held flows when snapshots were turned on: the topic is not
/// trusted until a generation has written every stored flow, so a fresh replica restored
/// from it lacks none.
#[test]
fn turning_snapshots_on_writes_a_generation_of_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_orders(log.as_ref(), 0, 20, 0..7);
    drain(&coordinator(&log, &dir.path().join("state-a"), 512));
    append_orders(log.as_ref(), 20, 25, 0..3);
    drain(&coordinator_with(&log, &dir.path().join("state-a"), 512, true));
    drain(&coordinator_with(&log, &dir.path().join("state-b"), 512, true));
    let restored = stored(&dir.path().join("state-b"));
    assert_eq!(restored.len(), 25);
    assert_eq!(restored, stored(&dir.path().join("state-a")));
}

const DAY: f64 = 86_400.0;

/// The retention of the retirement tests.
const RETENTION: std::time::Duration = std::time::Duration::from_secs(10 * 86_400);

fn retiring(log: &Arc<dyn EventLog>, state: &std::path::Path, snapshots: bool) -> Coordinator {
    coordinator_of(
        log,
        state,
        CoordinatorConfig { snapshots, retire_after: Some(RETENTION), ..CoordinatorConfig::default() },
    )
}

fn drain_at(c: &Coordinator, now: Timestamp) {
    for p in 0..PARTITIONS as i32 {
        c.drain_partition(p, now).unwrap();
    }
}

/// Orders `from..to`, the events `steps` of each, occurred now.
fn append_orders_now(log: &dyn EventLog, from: usize, to: usize, steps: std::ops::Range<usize>) {
    for i in from..to {
        for e in order_to_invoice(&format!("SO{i:03}")).into_iter().skip(steps.start).take(steps.len()) {
            append(log, &at_now(e));
        }
    }
}

/// Journal events of one kind, by correlation key, each (saga id, seq).
fn journaled(log: &dyn EventLog, name: &str) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS as i32 {
        for r in log.read(topic::JOURNAL, p, 0, 1_000_000).unwrap() {
            if let Ok(waybill_schema::JournalRecord::Event(e)) = waybill_schema::decode_journal_record(&r.value)
                && e.body.name() == name
            {
                out.push((e.meta.correlation_key, e.meta.saga_id, e.meta.seq));
            }
        }
    }
    out.sort();
    out
}

fn dead_letter_reasons(log: &dyn EventLog) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS as i32 {
        for r in log.read(topic::DLQ, p, 0, 1_000_000).unwrap() {
            out.push(String::from_utf8_lossy(r.header("waybill.dlq.reason").unwrap_or_default()).into_owned());
        }
    }
    out
}

/// With a retention of 10 days, finished flows are kept until a tick 10 days past their
/// last decision retires them: `FlowRetired` is journaled, the store forgets them and the
/// snapshot holds tombstones, while working flows stay. A fresh replica from the snapshot
/// and one from the whole journal hold exactly what the retiring replica holds.
#[test]
fn finished_flows_are_retired_once_their_retention_passes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_orders_now(log.as_ref(), 0, 12, 0..8); // finished
    append_orders_now(log.as_ref(), 12, 17, 0..4); // working
    let now = Timestamp::now();
    let a = retiring(&log, &dir.path().join("state-a"), true);
    drain_at(&a, now.plus_secs(DAY));
    assert_eq!(a.stats().retired.load(std::sync::atomic::Ordering::Relaxed), 0, "kept within the retention");
    drop(a);
    assert_eq!(stored(&dir.path().join("state-a")).len(), 17);

    let a = retiring(&log, &dir.path().join("state-a"), true);
    let ticks_before = count(log.as_ref(), topic::CONTROL);
    drain_at(&a, now.plus_secs(11.0 * DAY));
    assert_eq!(a.stats().retired.load(std::sync::atomic::Ordering::Relaxed), 12);
    // One tick per partition retires its flows; the retirement schedules no further one
    // (the flows it retired are not taken for due again before the save forgets them).
    let ticks = count(log.as_ref(), topic::CONTROL) - ticks_before;
    assert!(ticks <= PARTITIONS as i64, "{ticks} ticks for one retirement per partition");
    drop(a);
    let retired = journaled(log.as_ref(), "FlowRetired");
    assert_eq!(retired.len(), 12, "one FlowRetired per finished order: {retired:?}");
    assert!(retired.iter().all(|(k, saga, _)| saga == &format!("o2f:{k}")), "on the order's home saga");
    let kept = stored(&dir.path().join("state-a"));
    assert_eq!(kept.len(), 5, "the working orders stay: {:?}", kept.keys().collect::<Vec<_>>());
    assert!(kept.values().all(|(_, finished, _)| !finished));

    // A fresh replica from the snapshot (generation, then tombstones) and one from the
    // whole journal (folding FlowRetired) hold the same.
    drain_at(&retiring(&log, &dir.path().join("state-b"), true), now.plus_secs(11.0 * DAY));
    drain_at(&retiring(&log, &dir.path().join("state-c"), false), now.plus_secs(11.0 * DAY));
    assert_eq!(stored(&dir.path().join("state-b")), kept);
    assert_eq!(stored(&dir.path().join("state-c")), kept);
    let tombstones: usize = (0..PARTITIONS as i32)
        .map(|p| log.read(topic::SNAPSHOTS, p, 0, 1_000_000).unwrap().iter().filter(|r| r.value.is_empty()).count())
        .sum();
    assert_eq!(tombstones, 12, "a tombstone per retired key on the snapshot topic");
}

/// After retirement a key holds no state. A record for it that occurred more than the
/// retention before it was logged (a release replayed from Odoo) is refused with a
/// reason; one that occurred within it starts a new incarnation, its sagas' sequence
/// numbers from 1. A replica restored from the whole journal ends in the same state.
#[test]
fn a_late_input_for_a_retired_key_is_refused_when_old_and_starts_afresh_when_new() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_orders_now(log.as_ref(), 0, 3, 0..8);
    let now = Timestamp::now();
    let later = now.plus_secs(11.0 * DAY);
    let a = retiring(&log, &dir.path().join("state-a"), false);
    drain_at(&a, later);
    assert_eq!(a.stats().retired.load(std::sync::atomic::Ordering::Relaxed), 3);

    // SO000's release again, as it occurred 11 days ago; SO001 released anew today.
    let old = at(order_to_invoice("SO000").remove(0), now.plus_secs(-11.0 * DAY));
    append(log.as_ref(), &old);
    append(log.as_ref(), &at_now(order_to_invoice("SO001").remove(0)));
    drain_at(&a, later);
    drop(a);
    let reasons = dead_letter_reasons(log.as_ref());
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("retire_finished_after_days") && reasons[0].contains("SO000"),
        "the reason names the key and the setting: {}",
        reasons[0]
    );
    let accepted = journaled(log.as_ref(), "OrderAccepted");
    let so001: Vec<i64> = accepted.iter().filter(|(k, _, _)| k == "SO001").map(|(_, _, seq)| *seq).collect();
    assert_eq!(so001, [1, 1], "a new incarnation begins at seq 1");
    assert!(!accepted.iter().any(|(k, _, seq)| k == "SO000" && *seq > 1));
    let kept = stored(&dir.path().join("state-a"));
    assert_eq!(kept.keys().map(|(_, k)| k.as_str()).collect::<Vec<_>>(), ["SO001"]);
    drain_at(&retiring(&log, &dir.path().join("state-c"), false), later);
    assert_eq!(stored(&dir.path().join("state-c")), kept, "the journal gives the same state");
}

/// The header the time-stamping test double reads record times from.
const TIME: &str = "test.append-time-ms";

/// A log whose records carry their append time in [`TIME`] (so two logs see the same).
fn stamped(inner: &Arc<dyn EventLog>) -> Arc<dyn EventLog> {
    Arc::new(CutShort::new(inner.clone()).with_time_header(TIME))
}

/// Appends `e` to its system's inbound topic, as appended at `at`.
fn append_at(log: &dyn EventLog, e: &InboundEvent, at: Timestamp) {
    let system = match e.meta.source.system {
        System::Odoo | System::Carrier | System::Finance => e.meta.source.system,
        _ => System::Wms,
    };
    let r =
        Record::keyed(topic::inbound(system), e.meta.correlation_key.clone(), waybill_schema::encode_event(e).unwrap())
            .with_header(TIME, (at.0 / 1000).to_string());
    log.append(AppendBatch { records: vec![r], positions: vec![] }).unwrap();
}

/// A backlog of old records (appended 20 days before the partition's worker reads them,
/// as after a long outage) finishes flows already past their retention, before the
/// horizon the last retirement looked up to: they are still retired.
#[test]
fn a_backlog_that_finishes_flows_already_past_their_retention_is_retired() {
    let dir = tempfile::tempdir().unwrap();
    let inner = open(dir.path());
    let log = stamped(&inner);
    let now = Timestamp::now();
    let later = now.plus_secs(DAY);
    // A working order whose pick deadline passes: its tick runs a retirement that finds
    // nothing and looks up to `later` minus the retention.
    for e in order_to_invoice("SO900").into_iter().take(3) {
        append_at(log.as_ref(), &at_now(e), now);
    }
    let a = retiring(&log, &dir.path().join("state"), false);
    drain_at(&a, later);
    assert_eq!(a.stats().retired.load(std::sync::atomic::Ordering::Relaxed), 0);
    // The backlog: whole orders, appended 20 days ago.
    for i in 0..4 {
        for e in order_to_invoice(&format!("SO{i:03}")) {
            append_at(log.as_ref(), &at(e, now.plus_secs(-21.0 * DAY)), now.plus_secs(-20.0 * DAY));
        }
    }
    drain_at(&a, later);
    assert_eq!(a.stats().retired.load(std::sync::atomic::Ordering::Relaxed), 4, "the backlog's flows are retired");
}

/// Which flows a tick retires does not depend on where batches are cut: a tick read in
/// the same turn as the records that finished a flow (before it in the partition's order)
/// retires it exactly as when they were committed in earlier turns.
#[test]
fn a_tick_retires_the_same_flows_whatever_the_batch_boundaries() {
    let now = Timestamp::now();
    let retirements = |max_batch: usize| {
        let dir = tempfile::tempdir().unwrap();
        let inner = open(dir.path());
        let log = stamped(&inner);
        // Each record a millisecond after the one before: the partition's order is the
        // order they were written in, whichever topics they are on.
        let mut n = 0.0;
        for i in 0..6 {
            for e in order_to_invoice(&format!("SO{i:03}")) {
                n += 0.001;
                append_at(log.as_ref(), &at(e, now.plus_secs(-21.0 * DAY)), now.plus_secs(-20.0 * DAY + n));
            }
        }
        // A tick of each partition, logged after the backlog (as a coordinator writes it).
        for p in 0..PARTITIONS as i32 {
            let tick = waybill_domain::event::TimerTick::event(p, now);
            let r = Record {
                topic: topic::CONTROL.into(),
                partition: Some(p),
                key: tick.meta.correlation_key.clone().into_bytes(),
                headers: vec![Header { key: TIME.into(), value: (now.0 / 1000).to_string().into_bytes() }],
                value: waybill_schema::encode_event(&tick).unwrap(),
            };
            log.append(AppendBatch { records: vec![r], positions: vec![] }).unwrap();
        }
        let c = coordinator_of(
            &log,
            &dir.path().join("state"),
            CoordinatorConfig { max_batch, retire_after: Some(RETENTION), ..CoordinatorConfig::default() },
        );
        // `now` before any deadline of the backlog's flows would let the drain write ticks
        // of its own: the test's ticks are the only ones.
        for p in 0..PARTITIONS as i32 {
            c.drain_partition(p, now.plus_secs(-30.0 * DAY)).unwrap();
        }
        let mut out = Vec::new();
        for p in 0..PARTITIONS as i32 {
            for r in inner.read(topic::JOURNAL, p, 0, 1_000_000).unwrap() {
                if let Ok(waybill_schema::JournalRecord::Event(e)) = waybill_schema::decode_journal_record(&r.value)
                    && matches!(e.body, JournalBody::FlowRetired(_))
                {
                    out.push((e.meta.correlation_key, e.meta.caused_by, e.meta.at));
                }
            }
        }
        out.sort();
        out
    };
    let one_turn = retirements(512);
    assert_eq!(one_turn.len(), 6, "the tick retires every flow the backlog finished: {one_turn:?}");
    assert_eq!(retirements(1), one_turn, "the same retirements with one record per topic per turn");
}

/// A flow whose sagas all ended but that still has an open exception — goods issued after
/// the order was cancelled, which someone must get back — is not retired however old: it
/// waits for the exception to be resolved, and a change recorded while the flow is
/// retained moves its retention on.
#[test]
fn a_finished_flow_with_an_open_exception_is_not_retired() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for e in [
        released("SO1", vec![line(1, "PLAIN", "Units", 2)]),
        reserved("SO1", &[(1, 2, 0)]),
        cancelled("SO1"),
        issued("SO1", "SO1-SH", &[(1, "PLAIN", 2)]),
    ] {
        append(log.as_ref(), &at_now(e));
    }
    let a = retiring(&log, &dir.path().join("state"), false);
    drain_at(&a, Timestamp::now().plus_secs(30.0 * DAY));
    assert_eq!(a.stats().retired.load(std::sync::atomic::Ordering::Relaxed), 0, "kept while the exception is open");
    drop(a);
    let kept = stored(&dir.path().join("state"));
    assert_eq!(kept.len(), 1);
    assert!(journaled(log.as_ref(), "ExceptionRaised").iter().any(|(k, _, _)| k == "SO1"));
    assert!(journaled(log.as_ref(), "FlowRetired").is_empty());
}
