//! Shared helpers of the projection tests: the journal and command builders of
//! `waybill-test-util`, dead letters; a scenario of many orders spread over partitions;
//! ways to apply it; and a small in-memory [`EventLog`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use waybill_domain::journal::{ExceptionResolved, InputPosition};
use waybill_domain::{Command, JournalBody, JournalEvent, SagaKind, System, topic};
use waybill_log::{AppendBatch, Appended, Capabilities, EventLog, Offset, StoredRecord};
use waybill_projection::{DeadLetter, Input, Positioned, ProjectionStore};

pub use waybill_test_util::journal::*;

pub const JOURNAL_PARTITIONS: u32 = 3;
pub const COMMAND_PARTITIONS: u32 = 2;

pub fn dead_letter(order: Option<&str>, origin_offset: i64, reason: &str, minutes: i64) -> DeadLetter {
    DeadLetter {
        reason: reason.to_string(),
        kind: "decode".to_string(),
        origin: Some(InputPosition { topic: topic::inbound(System::Wms), partition: 0, offset: origin_offset }),
        key: order.map(str::to_string),
        subject: None,
        at: ts(minutes),
    }
}

/// Records per (topic, partition), in offset order.
#[derive(Debug, Default, Clone)]
pub struct Scenario {
    pub partitions: BTreeMap<(String, i32), Vec<Positioned>>,
}

impl Scenario {
    pub fn push(&mut self, topic: &str, partition: i32, input: Input) {
        let v = self.partitions.entry((topic.to_string(), partition)).or_default();
        let offset = v.len() as i64;
        v.push(Positioned::new(topic, partition, offset, input));
    }

    pub fn journal(&mut self, e: JournalEvent) {
        let p = waybill_log::partition_for(e.meta.correlation_key.as_bytes(), JOURNAL_PARTITIONS);
        self.push(topic::JOURNAL, p, Input::Journal(e));
    }

    pub fn command(&mut self, c: Command) {
        let p = waybill_log::partition_for(c.meta.correlation_key.as_bytes(), COMMAND_PARTITIONS);
        self.push(&topic::commands(c.meta.target), p, Input::Command(c));
    }

    pub fn len(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }

    /// Every record, partition after partition.
    pub fn sequential(&self) -> Vec<Positioned> {
        self.partitions.values().flatten().cloned().collect()
    }
}

/// `orders` orders with their journals and commands, journal checkpoints, a duplicate
/// journal event and a duplicate command (copies at later offsets, as after a crash),
/// dead letters (one of them twice, one resolved by a saga).
pub fn scenario(orders: usize) -> Scenario {
    let mut s = Scenario::default();
    for n in 1..=orders {
        let mut journal = fulfillment(n);
        if n % 4 == 1 {
            let o = order_ref(n);
            let next = journal.len() as i64 + 1;
            journal.push(ev(
                &o,
                SagaKind::OrderToFulfillment,
                next,
                n as i64 + 90,
                JournalBody::ExceptionResolved(ExceptionResolved {
                    exception_id: format!("dlq:waybill.inbound.wms:0:{n}"),
                    resolution: "replayed after the fix".to_string(),
                }),
            ));
        }
        let last = journal.last().cloned();
        for (i, e) in journal.into_iter().enumerate() {
            s.journal(e);
            if i % 4 == 3 {
                let p = waybill_log::partition_for(order_ref(n).as_bytes(), JOURNAL_PARTITIONS);
                s.push(topic::JOURNAL, p, Input::Skip); // a coordinator checkpoint
            }
        }
        let cmds = commands(n);
        let first = cmds[0].clone();
        for c in cmds {
            s.command(c);
        }
        if n % 6 == 0 {
            s.journal(last.expect("every order has a journal"));
            s.command(first);
        }
        if n % 4 == 1 || n % 9 == 0 {
            let o = order_ref(n);
            let d = dead_letter(
                Some(&o),
                n as i64,
                &format!("cannot decode PickConfirmed for {o}: missing field bin"),
                n as i64 + 5,
            );
            s.push(topic::DLQ, 0, Input::DeadLetter(d.clone()));
            if n % 9 == 0 {
                s.push(topic::DLQ, 0, Input::DeadLetter(d));
            }
        }
    }
    s.push(topic::DLQ, 0, Input::DeadLetter(dead_letter(None, 999_999, "unknown schema id 77", 0)));
    // The coordinator ends every batch with a checkpoint; readers hold journal events
    // until one covers them.
    for p in 0..JOURNAL_PARTITIONS as i32 {
        s.push(topic::JOURNAL, p, Input::Skip);
    }
    s
}

/// A small xorshift generator, so interleavings are reproducible without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The scenario's records in a random interleaving of partitions that keeps each
/// partition's offset order.
pub fn interleaved(s: &Scenario, seed: u64) -> Vec<Positioned> {
    let mut rng = Rng(seed | 1);
    let mut queues: Vec<std::collections::VecDeque<Positioned>> =
        s.partitions.values().map(|v| v.iter().cloned().collect()).collect();
    let mut out = Vec::with_capacity(s.len());
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..queues.len()).filter(|i| !queues[*i].is_empty()).collect();
        let q = &mut queues[live[rng.below(live.len())]];
        for _ in 0..=rng.below(5) {
            if let Some(p) = q.pop_front() {
                out.push(p);
            }
        }
    }
    out
}

/// Applies `records` in batches whose sizes are drawn from `sizes` in turn.
pub fn apply_in_batches(store: &ProjectionStore, records: &[Positioned], sizes: &[usize]) {
    let mut i = 0;
    let mut k = 0;
    while i < records.len() {
        let n = sizes[k % sizes.len()].max(1).min(records.len() - i);
        store.apply(&records[i..i + n]).expect("apply");
        i += n;
        k += 1;
    }
}

pub fn temp_store() -> (tempfile::TempDir, ProjectionStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ProjectionStore::open(dir.path().join("projection")).expect("open store");
    (dir, store)
}

/// An in-memory [`EventLog`] for runner tests.
#[derive(Debug, Default)]
pub struct MemLog {
    topics: Mutex<BTreeMap<String, Vec<Vec<StoredRecord>>>>,
}

impl EventLog for MemLog {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> waybill_log::Result<()> {
        let mut t = self.topics.lock().unwrap();
        let v = t.entry(topic.to_string()).or_insert_with(|| vec![Vec::new(); partitions as usize]);
        if v.len() != partitions as usize {
            return Err(waybill_log::Error::PartitionMismatch {
                topic: topic.to_string(),
                wanted: partitions,
                actual: v.len() as u32,
            });
        }
        Ok(())
    }

    fn partitions(&self, topic: &str) -> waybill_log::Result<u32> {
        let t = self.topics.lock().unwrap();
        t.get(topic)
            .map(|v| v.len() as u32)
            .ok_or_else(|| waybill_log::Error::UnknownTopic { topic: topic.to_string() })
    }

    fn append(&self, batch: AppendBatch) -> waybill_log::Result<Vec<Appended>> {
        let mut t = self.topics.lock().unwrap();
        let mut out = Vec::new();
        for r in batch.records {
            let parts =
                t.get_mut(&r.topic).ok_or_else(|| waybill_log::Error::UnknownTopic { topic: r.topic.clone() })?;
            let partition = r.partition.unwrap_or_else(|| waybill_log::partition_for(&r.key, parts.len() as u32));
            let part = &mut parts[partition as usize];
            let offset = part.len() as Offset;
            part.push(StoredRecord {
                topic: r.topic,
                partition,
                offset,
                timestamp_ms: 0,
                key: r.key,
                headers: r.headers,
                value: r.value,
            });
            out.push(Appended { partition, offset });
        }
        Ok(out)
    }

    fn read(&self, topic: &str, partition: i32, from: Offset, max: usize) -> waybill_log::Result<Vec<StoredRecord>> {
        let t = self.topics.lock().unwrap();
        let part = t
            .get(topic)
            .and_then(|v| v.get(partition as usize))
            .ok_or_else(|| waybill_log::Error::UnknownTopic { topic: topic.to_string() })?;
        let end = part.len() as Offset;
        if from > end {
            return Err(waybill_log::Error::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset: from,
                end,
            });
        }
        Ok(part[from as usize..].iter().take(max).cloned().collect())
    }

    fn end_offset(&self, topic: &str, partition: i32) -> waybill_log::Result<Offset> {
        let t = self.topics.lock().unwrap();
        t.get(topic)
            .and_then(|v| v.get(partition as usize))
            .map(|p| p.len() as Offset)
            .ok_or_else(|| waybill_log::Error::UnknownTopic { topic: topic.to_string() })
    }

    fn committed(&self, _group: &str, _topic: &str, _partition: i32) -> waybill_log::Result<Option<Offset>> {
        Ok(None)
    }

    fn wait_for(&self, topic: &str, partition: i32, _offset: Offset, timeout: Duration) -> waybill_log::Result<Offset> {
        std::thread::sleep(timeout.min(Duration::from_millis(5)));
        self.end_offset(topic, partition)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { atomic_batches: true, compacts: false }
    }

    fn flush(&self) -> waybill_log::Result<()> {
        Ok(())
    }
}

/// Creates Waybill's internal topics with the scenario's partition counts.
pub fn create_topics(log: &dyn EventLog) {
    log.ensure_topic(topic::JOURNAL, JOURNAL_PARTITIONS).unwrap();
    for t in topic::command_topics() {
        log.ensure_topic(&t, COMMAND_PARTITIONS).unwrap();
    }
    log.ensure_topic(topic::DLQ, 1).unwrap();
}
