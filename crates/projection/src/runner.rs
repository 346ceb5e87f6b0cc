//! The thin shell around the store: reads `waybill.journal`, `waybill.commands.<system>`
//! and `waybill.dlq` through [`EventLog`] from each partition's checkpoint, decodes the
//! records and applies them in batches.
//!
//! A record that cannot be decoded does not stop the projector: it is counted, logged
//! with its topic, partition and offset, and passed over (its offset is still
//! checkpointed). The record stays in the log, so a rebuild with a fixed decoder picks it
//! up.
//!
//! Journal events are held until the coordinator's checkpoint that covers them is read
//! (DESIGN.md invariant 2): a batch cut short by a crash on a backend without atomic
//! batches leaves journal events that no checkpoint covers, and the batch decided again
//! may differ from them. Held events are applied with their checkpoint, uncovered ones
//! are discarded, and the projector's own position in a journal partition never passes
//! an event it still holds, so a restart or a rebuild reads it again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use waybill_domain::journal::Checkpoint;
use waybill_domain::{Command, topic};
use waybill_log::{EventLog, StoredRecord};
pub use waybill_schema::JournalRecord;

use crate::error::{Error, Result};
use crate::input::{DeadLetter, Input, Positioned};
use crate::store::ProjectionStore;

/// An error from a [`Decoder`]; its text becomes the log message.
pub type DecodeError = Box<dyn std::error::Error + Send + Sync>;

/// Turns record bytes of the internal topics into domain values.
pub trait Decoder: Send + Sync + std::fmt::Debug {
    /// Decodes a record of `waybill.journal`: a saga journal event, or a coordinator
    /// checkpoint (nothing to project, but it says which held events count).
    fn decode_journal(&self, value: &[u8]) -> Result<JournalRecord, DecodeError>;

    /// Decodes a record of a command topic.
    fn decode_command(&self, value: &[u8]) -> Result<Command, DecodeError>;
}

/// The Avro decoder of [`waybill_schema`] (Confluent-framed records, every schema version
/// in `schemas/`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SchemaDecoder;

impl Decoder for SchemaDecoder {
    fn decode_journal(&self, value: &[u8]) -> Result<JournalRecord, DecodeError> {
        Ok(waybill_schema::decode_journal_record(value)?)
    }

    fn decode_command(&self, value: &[u8]) -> Result<Command, DecodeError> {
        Ok(waybill_schema::decode_command(value)?)
    }
}

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopicKind {
    Journal,
    Command,
    DeadLetter,
}

/// Tuning of the [`Projector`].
#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// Records read from one partition per call to the log.
    pub batch_size: usize,
    /// Records applied in one sled batch while catching up (read round-robin from every
    /// partition). Larger batches rewrite each touched order once per batch rather than
    /// once per event, which is what makes a rebuild fast; the cost is memory for the
    /// decoded records and the touched views.
    pub commit_records: usize,
    /// How long [`Projector::run`] waits for new records before looking again.
    pub poll_interval: Duration,
    /// How often [`Projector::run`] flushes the store while records keep coming.
    pub flush_interval: Duration,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        ProjectorOptions {
            batch_size: 1000,
            commit_records: 50_000,
            poll_interval: Duration::from_millis(200),
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// Counters since the projector was created.
#[derive(Debug, Default)]
pub struct ProjectorStats {
    /// Records read from the log and handed to the store.
    pub records: AtomicU64,
    /// Records applied to the views.
    pub applied: AtomicU64,
    /// Duplicates dropped (journal events with an applied seq, repeated command keys).
    pub duplicates: AtomicU64,
    /// Records that could not be decoded and were passed over.
    pub undecodable: AtomicU64,
    /// Journal events no checkpoint covers (the remains of a batch cut short), discarded.
    pub uncovered: AtomicU64,
}

/// The journal records of one partition read since its last checkpoint, held until the
/// checkpoint that covers them.
#[derive(Debug, Default)]
struct Held {
    /// The store's checkpoint of the partition when holding began: the held records are
    /// exactly those from here to `next`.
    start: i64,
    /// The next offset to read.
    next: i64,
    /// Decoded records, in offset order.
    records: Vec<Positioned>,
}

/// A checkpoint was read: returns the held records it lets through, in offset order (the
/// journal events it covers, and undecodable records, which only move the position), and
/// the number of journal events it discards.
fn release(held: &mut Vec<Positioned>, checkpoint: &Checkpoint) -> (Vec<Positioned>, u64) {
    let mut uncovered = 0;
    let mut out = Vec::with_capacity(held.len());
    for r in held.drain(..) {
        match r.input {
            Input::Journal(_) if !checkpoint.covers(r.position.offset) => uncovered += 1,
            _ => out.push(r),
        }
    }
    (out, uncovered)
}

/// Keeps a [`ProjectionStore`] up to date with the log.
#[derive(Debug)]
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Arc<ProjectionStore>,
    decoder: Arc<dyn Decoder>,
    options: ProjectorOptions,
    stats: ProjectorStats,
    /// Per journal partition: records read but not yet covered by a checkpoint.
    held: Mutex<HashMap<i32, Held>>,
}

impl Projector {
    /// A projector with the Avro [`SchemaDecoder`] and default options.
    pub fn new(log: Arc<dyn EventLog>, store: Arc<ProjectionStore>) -> Self {
        Self::with_decoder(log, store, Arc::new(SchemaDecoder))
    }

    /// A projector with another decoder.
    pub fn with_decoder(log: Arc<dyn EventLog>, store: Arc<ProjectionStore>, decoder: Arc<dyn Decoder>) -> Self {
        Projector {
            log,
            store,
            decoder,
            options: ProjectorOptions::default(),
            stats: ProjectorStats::default(),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: ProjectorOptions) -> Self {
        self.options = ProjectorOptions {
            batch_size: options.batch_size.max(1),
            commit_records: options.commit_records.max(1),
            ..options
        };
        self
    }

    /// The store it writes.
    pub fn store(&self) -> &Arc<ProjectionStore> {
        &self.store
    }

    /// Counters.
    pub fn stats(&self) -> &ProjectorStats {
        &self.stats
    }

    /// The topics it reads: the journal, every command topic, the dead-letter topic.
    pub fn topics() -> Vec<String> {
        let mut v = vec![topic::JOURNAL.to_string()];
        v.extend(topic::command_topics());
        v.push(topic::DLQ.to_string());
        v
    }

    fn kind_of(t: &str) -> TopicKind {
        if t == topic::JOURNAL {
            TopicKind::Journal
        } else if t == topic::DLQ {
            TopicKind::DeadLetter
        } else {
            TopicKind::Command
        }
    }

    /// Every (topic, partition) to read; topics that do not exist yet are left out.
    fn partitions(&self) -> Result<Vec<(String, i32)>> {
        let mut out = Vec::new();
        for t in Self::topics() {
            match self.log.partitions(&t) {
                Ok(n) => out.extend((0..n as i32).map(|p| (t.clone(), p))),
                Err(waybill_log::Error::UnknownTopic { .. }) => {
                    tracing::debug!(topic = %t, "topic does not exist yet; not projecting it");
                }
                Err(e) => return Err(Error::log(&t, -1, e)),
            }
        }
        Ok(out)
    }

    /// Decodes a record; for the journal, also the checkpoint it is.
    fn decode(&self, kind: TopicKind, r: &StoredRecord) -> (Positioned, Option<Checkpoint>) {
        let mut checkpoint = None;
        let input = match kind {
            TopicKind::Journal => match self.decoder.decode_journal(&r.value) {
                Ok(JournalRecord::Event(e)) => Input::Journal(e),
                Ok(JournalRecord::Checkpoint(c)) => {
                    checkpoint = Some(c);
                    Input::Skip
                }
                Err(e) => self.undecodable(r, &e),
            },
            TopicKind::Command => match self.decoder.decode_command(&r.value) {
                Ok(c) => Input::Command(c),
                Err(e) => self.undecodable(r, &e),
            },
            TopicKind::DeadLetter => Input::DeadLetter(DeadLetter::from_record(r)),
        };
        (Positioned::new(r.topic.clone(), r.partition, r.offset, input), checkpoint)
    }

    fn undecodable(&self, r: &StoredRecord, e: &DecodeError) -> Input {
        self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            topic = %r.topic, partition = r.partition, offset = r.offset, error = %e,
            "cannot decode a record of an internal topic; passing over it (it stays in the log: rebuild the projections after fixing the writer or the schemas)"
        );
        Input::Skip
    }

    /// Reads every partition from its checkpoint to the end it had when the call began,
    /// `batch_size` records at a time from each partition in turn, and applies them in
    /// sled batches of about `commit_records`. Journal records are held until the
    /// checkpoint that covers them (and kept for the next call when it is not written
    /// yet). Returns the number of records read that no earlier call had read.
    pub fn catch_up(&self) -> Result<usize> {
        struct Cursor {
            topic: String,
            partition: i32,
            kind: TopicKind,
            next: i64,
            end: i64,
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut cursors = Vec::new();
        for (t, p) in self.partitions()? {
            let end = self.log.end_offset(&t, p).map_err(|e| Error::log(&t, p, e))?;
            let mut next = self.store.checkpoint(&t, p)?.unwrap_or(0);
            if next > end {
                return Err(Error::CheckpointBeyondEnd { topic: t, partition: p, checkpoint: next, end });
            }
            if t == topic::JOURNAL {
                // Records held by an earlier call are read on from where it stopped.
                let h = held.entry(p).or_default();
                if h.start != next || h.next < next {
                    *h = Held { start: next, next, records: Vec::new() };
                }
                next = h.next;
            }
            if next < end {
                cursors.push(Cursor { kind: Self::kind_of(&t), topic: t, partition: p, next, end });
            }
        }
        let mut total = 0;
        let mut pending: Vec<Positioned> = Vec::new();
        while !cursors.is_empty() {
            for c in &mut cursors {
                let records = self
                    .log
                    .read(&c.topic, c.partition, c.next, self.options.batch_size)
                    .map_err(|e| Error::log(&c.topic, c.partition, e))?;
                match records.last() {
                    // Nothing readable below the end (e.g. transaction markers): done.
                    None => c.next = c.end,
                    Some(last) => c.next = last.offset + 1,
                }
                total += records.len();
                for r in records.iter().filter(|r| r.offset < c.end) {
                    let (positioned, checkpoint) = self.decode(c.kind, r);
                    if c.kind != TopicKind::Journal {
                        pending.push(positioned);
                        continue;
                    }
                    let h = held.get_mut(&c.partition).expect("every journal partition has an entry");
                    h.next = r.offset + 1;
                    h.records.push(positioned);
                    if let Some(checkpoint) = checkpoint {
                        let (covered, uncovered) = release(&mut h.records, &checkpoint);
                        if uncovered > 0 {
                            tracing::warn!(
                                partition = c.partition,
                                events = uncovered,
                                "journal events no checkpoint covers (a batch cut short by a crash); not projected"
                            );
                            self.stats.uncovered.fetch_add(uncovered, Ordering::Relaxed);
                        }
                        pending.extend(covered);
                        h.start = r.offset + 1;
                    }
                }
                if pending.len() >= self.options.commit_records {
                    self.commit(&mut pending)?;
                }
            }
            cursors.retain(|c| c.next < c.end);
        }
        self.commit(&mut pending)?;
        Ok(total)
    }

    fn commit(&self, pending: &mut Vec<Positioned>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let stats = self.store.apply(pending)?;
        self.stats.records.fetch_add(pending.len() as u64, Ordering::Relaxed);
        self.stats.applied.fetch_add(stats.applied as u64, Ordering::Relaxed);
        self.stats.duplicates.fetch_add(stats.duplicates as u64, Ordering::Relaxed);
        pending.clear();
        Ok(())
    }

    /// Catches up until `stop` is set, waiting up to `poll_interval` for new journal
    /// records between rounds; flushes every `flush_interval` and on the way out. An
    /// unavailable log is retried; other errors end the loop.
    pub fn run(&self, stop: &AtomicBool) -> Result<()> {
        let mut last_flush = Instant::now();
        let mut unflushed = false;
        while !stop.load(Ordering::Relaxed) {
            let n = match self.catch_up() {
                Ok(n) => n,
                Err(Error::Log { topic, partition, source: waybill_log::Error::Unavailable(reason) }) => {
                    tracing::warn!(topic = %topic, partition, reason = %reason, "event log unavailable; retrying");
                    std::thread::sleep(self.options.poll_interval);
                    continue;
                }
                Err(e) => return Err(e),
            };
            unflushed |= n > 0;
            if unflushed && last_flush.elapsed() >= self.options.flush_interval {
                self.store.flush()?;
                last_flush = Instant::now();
                unflushed = false;
            }
            if n == 0 {
                self.wait()?;
            }
        }
        self.store.flush()
    }

    /// Blocks until any partition of the topics it projects grows, or `poll_interval`
    /// passes — so a decision shows up in the read models as soon as it is written.
    fn wait(&self) -> Result<()> {
        let mut positions: Vec<(String, i32, i64)> = Vec::new();
        for t in Self::topics() {
            let Ok(n) = self.log.partitions(&t) else { continue };
            for p in 0..n as i32 {
                let mut from = self.store.checkpoint(&t, p)?.unwrap_or(0);
                if t == topic::JOURNAL {
                    // Held records were read already: wait for what follows them.
                    let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(h) = held.get(&p).filter(|h| h.start == from) {
                        from = h.next;
                    }
                }
                positions.push((t.clone(), p, from));
            }
        }
        if positions.is_empty() {
            std::thread::sleep(self.options.poll_interval);
            return Ok(());
        }
        let watched: Vec<(&str, i32, i64)> = positions.iter().map(|(t, p, o)| (t.as_str(), *p, *o)).collect();
        self.log.wait_any(&watched, self.options.poll_interval).map_err(|e| Error::log(topic::JOURNAL, 0, e))?;
        Ok(())
    }

    /// Clears the store and applies the whole log from offset 0, then flushes. Returns
    /// the number of records read.
    pub fn rebuild(&self) -> Result<usize> {
        let started = Instant::now();
        self.store.clear()?;
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let n = self.catch_up()?;
        self.store.flush()?;
        tracing::info!(
            records = n,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "projections rebuilt from the log"
        );
        Ok(n)
    }
}
