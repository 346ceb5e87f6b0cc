//! The coordinator over the embedded log: a backlog spread over several inbound topics
//! (an outage, a bulk import) is processed in the order the systems wrote it, and a
//! state store that is deleted is rebuilt from the journal to the same state.

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

fn order_events(order: &str) -> Vec<InboundEvent> {
    let sh = format!("{order}-SH");
    vec![
        released(order, vec![line(1, "PLAIN", "Units", 2)]),
        reserved(order, &[(1, 2, 0)]),
        accepted(order),
        pick(order, &format!("{order}-P"), vec![picked(1, "PLAIN", 2)], true),
        issued(order, &sh, &[(1, "PLAIN", 2)]),
        booked(order, &sh),
        delivered(order, &sh),
    ]
}

fn coordinator(log: &Arc<dyn EventLog>, state: &std::path::Path, max_batch: usize) -> Coordinator {
    Coordinator::new(
        log.clone(),
        StateStore::open(state).unwrap(),
        Arc::new(catalog()),
        Policy::default(),
        CoordinatorConfig { max_batch, ..CoordinatorConfig::default() },
    )
}

fn count(log: &dyn EventLog, t: &str) -> i64 {
    (0..PARTITIONS as i32).map(|p| log.end_offset(t, p).unwrap()).sum()
}

/// Sagas with a `Completed` event in the journal (a copy written again after a crash
/// counts once, as every reader of the journal drops it).
fn completed_sagas(log: &dyn EventLog) -> usize {
    let mut done = std::collections::BTreeSet::new();
    for p in 0..PARTITIONS as i32 {
        for r in log.read(topic::JOURNAL, p, 0, 1_000_000).unwrap() {
            if let Ok(waybill_schema::JournalRecord::Event(e)) = waybill_schema::decode_journal_record(&r.value)
                && matches!(e.body, JournalBody::Completed(_))
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
    let orders: Vec<Vec<InboundEvent>> = (0..60).map(|i| order_events(&format!("SO{i:03}"))).collect();
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
        for e in order_events(&format!("SO{i:03}")).into_iter().take(4) {
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
        for e in order_events(&format!("SO{i:03}")).into_iter().skip(4) {
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
        for e in order_events(order) {
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
