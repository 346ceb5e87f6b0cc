//! The coordinator over the embedded log: a backlog spread over several inbound topics
//! (an outage, a bulk import) is processed in the order the systems wrote it, and a
//! state store that is deleted is rebuilt from the journal to the same state.

mod fixtures;

use std::sync::Arc;

use fixtures::*;
use waybill_domain::{InboundEvent, JournalBody, System, Timestamp, topic};
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
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

fn completed_sagas(log: &dyn EventLog) -> usize {
    let mut n = 0;
    for p in 0..PARTITIONS as i32 {
        for r in log.read(topic::JOURNAL, p, 0, 1_000_000).unwrap() {
            if let Ok(waybill_schema::JournalRecord::Event(e)) = waybill_schema::decode_journal_record(&r.value)
                && matches!(e.body, JournalBody::Completed(_))
            {
                n += 1;
            }
        }
    }
    n
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
