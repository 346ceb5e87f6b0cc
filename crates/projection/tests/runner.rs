//! The projector against a log: catch-up, rebuild, undecodable records, the run loop,
//! and rebuild speed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use waybill_domain::journal::Checkpoint;
use waybill_domain::{Timestamp, topic};
use waybill_log::{AppendBatch, EventLog, Record};
use waybill_projection::runner::{Projector, ProjectorOptions};
use waybill_projection::{Input, OrderStatus, Positioned, ProjectionStore, dlq_header};

/// The log record the coordinator would have written for `p`.
fn record_of(p: &Positioned) -> Record {
    let pos = &p.position;
    let value = match &p.input {
        Input::Journal(e) => waybill_schema::encode_journal(e).unwrap(),
        Input::Command(c) => waybill_schema::encode_command(c).unwrap(),
        Input::Skip => waybill_schema::encode_checkpoint(&Checkpoint {
            partition: pos.partition,
            positions: Vec::new(),
            at: Timestamp(0),
            journal_from: None,
            journal_until: None,
        })
        .unwrap(),
        Input::DeadLetter(d) => {
            let o = d.origin.clone().unwrap();
            let mut r =
                Record::keyed(&pos.topic, d.key.clone().unwrap_or_default(), b"\x00\x00\x00\x00\x4dnot avro".to_vec())
                    .with_header(dlq_header::REASON, d.reason.clone())
                    .with_header(dlq_header::TOPIC, o.topic)
                    .with_header(dlq_header::PARTITION, o.partition.to_string())
                    .with_header(dlq_header::OFFSET, o.offset.to_string())
                    .with_header(dlq_header::KIND, d.kind.clone());
            r.partition = Some(pos.partition);
            return r;
        }
    };
    let mut r = Record::keyed(&pos.topic, Vec::new(), value);
    r.partition = Some(pos.partition);
    r
}

/// Appends the records in batches of up to 500, keeping their offsets.
fn write(log: &dyn EventLog, records: &[Positioned]) {
    for chunk in records.chunks(500) {
        log.append(AppendBatch { records: chunk.iter().map(record_of).collect(), positions: Vec::new() }).unwrap();
    }
}

fn projector(log: Arc<dyn EventLog>, dir: &tempfile::TempDir, name: &str, batch_size: usize) -> Projector {
    let store = Arc::new(ProjectionStore::open(dir.path().join(name)).unwrap());
    Projector::new(log, store).with_options(ProjectorOptions {
        batch_size,
        commit_records: batch_size * 5,
        poll_interval: Duration::from_millis(20),
        flush_interval: Duration::from_millis(50),
    })
}

#[test]
fn catch_up_and_rebuild_give_the_same_bytes() {
    let log: Arc<dyn EventLog> = Arc::new(MemLog::default());
    create_topics(log.as_ref());
    let s = scenario(60);
    write(log.as_ref(), &interleaved(&s, 9));
    let dir = tempfile::tempdir().unwrap();

    let p = projector(log.clone(), &dir, "a", 1000);
    assert_eq!(p.catch_up().unwrap(), s.len());
    assert_eq!(p.catch_up().unwrap(), 0, "nothing new");
    let caught_up = p.store().dump().unwrap();
    let o = p.store().order("SO00001").unwrap().expect("order projected");
    assert_eq!(o.status, OrderStatus::Completed);
    // Orders 6, 12, … 60 repeat a journal event and a command; 9, 18, … 54 a dead letter.
    assert_eq!(p.stats().duplicates.load(Ordering::Relaxed), 2 * 10 + 6);

    assert_eq!(p.rebuild().unwrap(), s.len());
    assert_eq!(p.store().dump().unwrap(), caught_up, "rebuild is byte-identical");

    let q = projector(log.clone(), &dir, "b", 7);
    q.catch_up().unwrap();
    assert_eq!(q.store().dump().unwrap(), caught_up, "small batches, same bytes");
}

#[test]
fn undecodable_records_are_counted_and_passed_over() {
    let log: Arc<dyn EventLog> = Arc::new(MemLog::default());
    create_topics(log.as_ref());
    let mut s = Scenario::default();
    for e in fulfillment(1) {
        s.journal(e);
    }
    let p0 = s.partitions.keys().next().unwrap().1;
    s.push(topic::JOURNAL, p0, Input::Skip); // the coordinator's checkpoint of the batch
    write(log.as_ref(), &s.sequential());
    let garbage = |t: &str, p: i32| {
        let mut r = Record::keyed(t, Vec::new(), b"garbage".to_vec());
        r.partition = Some(p);
        r
    };
    let wms = topic::commands(waybill_domain::System::Wms);
    // An undecodable journal record waits, like any, for the checkpoint after it.
    let checkpoint = record_of(&Positioned::new(topic::JOURNAL, p0, 0, Input::Skip));
    log.append(AppendBatch {
        records: vec![garbage(topic::JOURNAL, p0), checkpoint, garbage(&wms, 1)],
        positions: Vec::new(),
    })
    .unwrap();
    // A good record after the bad one is still applied.
    let more = fulfillment(2);
    let mut s2 = Scenario::default();
    for e in more {
        s2.journal(e);
    }
    let p2 = s2.partitions.keys().next().unwrap().1;
    s2.push(topic::JOURNAL, p2, Input::Skip);
    let end = log.end_offset(topic::JOURNAL, p2).unwrap();
    let shifted: Vec<Positioned> = s2
        .sequential()
        .into_iter()
        .map(|mut p| {
            p.position.offset += end;
            p
        })
        .collect();
    write(log.as_ref(), &shifted);

    let dir = tempfile::tempdir().unwrap();
    let p = projector(log.clone(), &dir, "a", 1000);
    p.catch_up().unwrap();
    assert_eq!(p.stats().undecodable.load(Ordering::Relaxed), 2);
    assert_eq!(p.store().checkpoint(&wms, 1).unwrap(), Some(1), "checkpoint moved past the bad command");
    assert_eq!(p.store().checkpoint(topic::JOURNAL, p0).unwrap(), Some(log.end_offset(topic::JOURNAL, p0).unwrap()));
    assert!(p.store().order("SO00002").unwrap().is_some(), "records after the bad one are applied");
}

#[test]
fn run_follows_the_log_until_stopped() {
    let log: Arc<dyn EventLog> = Arc::new(MemLog::default());
    create_topics(log.as_ref());
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(projector(log.clone(), &dir, "a", 100));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (p, stop) = (p.clone(), stop.clone());
        std::thread::spawn(move || p.run(&stop))
    };
    let s = scenario(5);
    write(log.as_ref(), &s.sequential());
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.store().order("SO00005").unwrap().is_none_or(|o| o.open_exceptions == 0) {
        assert!(Instant::now() < deadline, "the projector did not pick up the records");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap().unwrap();
    assert!(p.store().exceptions(true, None).unwrap().iter().any(|x| x.exception_id == "o2f:SO00005/stock-shortage/1"));
}

#[test]
fn a_store_ahead_of_the_log_asks_for_a_rebuild() {
    let log: Arc<dyn EventLog> = Arc::new(MemLog::default());
    create_topics(log.as_ref());
    let s = scenario(3);
    let dir = tempfile::tempdir().unwrap();
    let p = projector(log.clone(), &dir, "a", 1000);
    // The store has applied records the (new, empty) log does not have.
    p.store().apply(&s.sequential()).unwrap();
    let err = p.catch_up().unwrap_err();
    assert!(err.to_string().contains("rebuild"), "{err}");
    p.rebuild().unwrap();
    assert!(p.store().order("SO00001").unwrap().is_none());
}

#[test]
fn rebuilds_from_the_embedded_log() {
    use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(
        EmbeddedLog::open(&dir.path().join("log"), EmbeddedOptions { fsync: FsyncPolicy::Never, ..Default::default() })
            .unwrap(),
    );
    create_topics(log.as_ref());
    let s = scenario(40);
    write(log.as_ref(), &interleaved(&s, 3));
    let p = projector(log.clone(), &dir, "a", 1000);
    p.catch_up().unwrap();
    let first = p.store().dump().unwrap();
    // Deleting the sled directory and starting again gives the same state (invariant 1).
    let q = projector(log.clone(), &dir, "b", 33);
    q.rebuild().unwrap();
    assert_eq!(q.store().dump().unwrap(), first);
    assert_eq!(q.store().order_counts_by_status().unwrap().iter().map(|(_, n)| n).sum::<u64>(), 40);
}

/// Invariant 2 for the projector: journal events wait for the checkpoint that covers
/// them; the remains of a batch cut short (no checkpoint names them) are never projected,
/// and the projector's own position stays before events it still holds.
#[test]
fn journal_events_wait_for_their_checkpoint_and_a_cut_batch_is_never_projected() {
    let log: Arc<dyn EventLog> = Arc::new(MemLog::default());
    create_topics(log.as_ref());
    let part = waybill_log::partition_for(order_ref(1).as_bytes(), JOURNAL_PARTITIONS);
    let same: Vec<usize> =
        (2..200).filter(|n| waybill_log::partition_for(order_ref(*n).as_bytes(), JOURNAL_PARTITIONS) == part).collect();
    let (cut_order, rerun_order) = (same[0], same[1]);
    let journal = |events: Vec<waybill_domain::JournalEvent>| -> Vec<Record> {
        events
            .iter()
            .map(|e| {
                let mut r = Record::keyed(topic::JOURNAL, Vec::new(), waybill_schema::encode_journal(e).unwrap());
                r.partition = Some(part);
                r
            })
            .collect()
    };
    let checkpoint = |range: Option<(i64, i64)>| {
        let c = Checkpoint {
            partition: part,
            positions: Vec::new(),
            at: Timestamp(0),
            journal_from: range.map(|r| r.0),
            journal_until: range.map(|r| r.1),
        };
        let mut r = Record::keyed(topic::JOURNAL, Vec::new(), waybill_schema::encode_checkpoint(&c).unwrap());
        r.partition = Some(part);
        r
    };
    let append = |records: Vec<Record>| {
        log.append(AppendBatch { records, positions: Vec::new() }).unwrap();
    };
    // A complete batch, then one cut short after its journal events.
    let first = journal(fulfillment(1));
    let n1 = first.len() as i64;
    append(first);
    append(vec![checkpoint(Some((0, n1)))]);
    let cut = journal(fulfillment(cut_order));
    let n_cut = cut.len() as i64;
    append(cut);

    let dir = tempfile::tempdir().unwrap();
    let p = projector(log.clone(), &dir, "a", 3);
    p.catch_up().unwrap();
    assert!(p.store().order(&order_ref(1)).unwrap().is_some(), "a checkpointed batch is projected");
    assert!(p.store().order(&order_ref(cut_order)).unwrap().is_none(), "events without a checkpoint wait");
    assert_eq!(
        p.store().checkpoint(topic::JOURNAL, part).unwrap(),
        Some(n1 + 1),
        "the projector's position stays before the events it holds"
    );
    assert_eq!(p.catch_up().unwrap(), 0, "held events are not read again");

    // The batch is decided again (here: differently) and checkpointed with its range.
    let rerun = journal(fulfillment(rerun_order));
    let from = n1 + 1 + n_cut;
    let until = from + rerun.len() as i64;
    append(rerun);
    append(vec![checkpoint(Some((from, until)))]);
    p.catch_up().unwrap();
    assert!(p.store().order(&order_ref(rerun_order)).unwrap().is_some());
    assert!(p.store().order(&order_ref(cut_order)).unwrap().is_none(), "the cut batch is discarded");
    assert_eq!(p.stats().uncovered.load(Ordering::Relaxed), n_cut as u64);
    assert_eq!(p.store().checkpoint(topic::JOURNAL, part).unwrap(), Some(until + 1));

    // A rebuild from offset 0 discards them too.
    let caught_up = p.store().dump().unwrap();
    p.rebuild().unwrap();
    assert_eq!(p.store().dump().unwrap(), caught_up, "rebuild gives the same bytes");
    assert!(p.store().order(&order_ref(cut_order)).unwrap().is_none());
}
