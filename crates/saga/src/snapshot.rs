//! Saga state snapshots on `waybill.snapshots`: the coordinator's changelog of flow
//! states, so a replica that has never owned a partition (an empty volume, a new pod)
//! restores from the latest states plus the journal after them, not from the whole
//! journal.
//!
//! The topic is co-partitioned with the journal and written only by the partition's
//! owner. Every save of the state store appends first, in one batch (Confluent Avro,
//! `schemas/waybill.snapshot/`):
//! - each changed flow, a `FlowState`: key = correlation key, the flow's state exactly as
//!   the store keeps it ([`Encoded`]) and whether its sagas all ended;
//! - a **mark**, a `SnapshotMark` (key [`MARK_KEY`]): the journal offset the states
//!   cover, the input positions of its last checkpoint, and where the current
//!   **generation** begins.
//!
//! A generation is every stored flow of the partition written again, followed by its mark
//! (`generation_from` = the offset of its first record). The first one makes the topic
//! whole. On a log that does not compact (the embedded log) the worker starts another
//! when the changes written since the last one outnumber the flows it held, so reading a
//! partition's snapshot from the last generation costs at most about twice the stored
//! flows, however long the history. On Kafka the topic is compacted (the latest state of
//! each key), which bounds both what a restore reads and the disk, so no further
//! generation is written. Reading from the generation start is correct either way,
//! because every stored key was written at or after it.
//!
//! On a log that does not compact, each mark's batch also stores a position for
//! [`READER_GROUP`] at the generation's start: nothing before it is read again, so the
//! embedded log's retention may delete it (and deletes nothing of the topic before that
//! position exists).
//!
//! The mark is trusted only when it names a generation: a topic written by a replica
//! that enabled snapshots after its store already held flows starts with a generation, so
//! the snapshot never claims to cover states it lacks. A save appends to the topic before
//! it writes the local store, so the topic is never behind the store; a save cut short
//! (flows without their mark) leaves states newer than the last mark, which the restore
//! may take: the journal folded after the mark skips events a state already has (every
//! saga drops a sequence number it has seen).

use waybill_domain::journal::InputPosition;
use waybill_domain::{Timestamp, topic};
use waybill_log::{AppendBatch, EventLog, Position, Record, StoredRecord};

use crate::registry::AnyFlow;
use crate::store::{Encoded, PartitionMark, StateStore};
use crate::{Error, Result};

/// The consumer group whose stored position in a partition of `waybill.snapshots` is where
/// its current generation begins: a restore never reads before it.
pub const READER_GROUP: &str = "waybill-snapshots";

/// Key of a mark record (no correlation key starts with a NUL byte).
pub const MARK_KEY: &[u8] = b"\0mark";

/// Records per append when a generation is written or a snapshot is loaded.
const CHUNK: usize = 4096;
/// Records the mark is looked for in at once, from the end of the partition backwards.
const TAIL: i64 = 256;
/// A generation is started once the changes written since the last one reach this many,
/// even if the partition holds fewer flows.
const MIN_GENERATION: u64 = 4096;

/// What a mark record says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotMark {
    /// Next journal offset not folded into the states before this mark.
    pub journal_next: i64,
    /// Input positions of the last checkpoint folded in.
    pub positions: Vec<InputPosition>,
    /// Offset of the first record of the current generation.
    pub generation_from: i64,
    /// Flows the current generation wrote.
    pub generation_flows: u64,
    /// Flow records written since the generation (this mark's own save included).
    pub since_generation: u64,
}

impl SnapshotMark {
    /// The state store's mark for the same point.
    pub fn partition_mark(&self) -> PartitionMark {
        PartitionMark { journal_next: self.journal_next, positions: self.positions.clone() }
    }

    /// Records a restore reads from the generation's start (about).
    pub fn records(&self) -> u64 {
        self.generation_flows + self.since_generation
    }

    /// Whether the changes since the generation call for a new one.
    pub fn generation_due(&self) -> bool {
        self.since_generation >= self.generation_flows.max(MIN_GENERATION)
    }
}

fn flow_record(p: i32, f: &Encoded) -> Result<Record> {
    // A retired key is a tombstone: an empty value (Kafka's null), which compaction
    // removes with the key.
    let value = if f.retired {
        Vec::new()
    } else {
        waybill_schema::snapshot::encode_flow_state(&f.key, f.finished, &f.bytes, f.finished_at.map(|t| t.0))
            .map_err(|e| Error::Encode { what: format!("snapshot of {}", f.key), reason: e.to_string() })?
    };
    Ok(Record {
        topic: topic::SNAPSHOTS.into(),
        partition: Some(p),
        key: f.key.as_bytes().to_vec(),
        headers: Vec::new(),
        value,
    })
}

fn mark_record(p: i32, mark: &SnapshotMark) -> Result<Record> {
    let value = waybill_schema::Registry::embedded()
        .encode_record(waybill_schema::snapshot::SNAPSHOT_MARK, mark)
        .map_err(|e| Error::Encode { what: "snapshot mark".into(), reason: e.to_string() })?;
    Ok(Record {
        topic: topic::SNAPSHOTS.into(),
        partition: Some(p),
        key: MARK_KEY.to_vec(),
        headers: Vec::new(),
        value,
    })
}

fn unreadable(p: i32, r: &StoredRecord, e: impl std::fmt::Display) -> Error {
    Error::Snapshot { partition: p, offset: r.offset, reason: e.to_string() }
}

fn decode_mark(p: i32, r: &StoredRecord) -> Result<SnapshotMark> {
    waybill_schema::Registry::embedded().decode_record(&r.value).map_err(|e| unreadable(p, r, e))
}

fn decode_flow(p: i32, r: &StoredRecord) -> Result<Encoded> {
    if r.value.is_empty() {
        // A tombstone: the store finds the key's entry in its finished index from the
        // state it holds (loaded earlier in this load).
        return Ok(Encoded::retired(&String::from_utf8_lossy(&r.key)));
    }
    let f = waybill_schema::snapshot::decode_flow_state(&r.value).map_err(|e| unreadable(p, r, e))?;
    let mut finished_at = f.finished_at.map(Timestamp);
    if f.finished && finished_at.is_none() {
        // Written before the record said when (FlowState v1): the state does.
        finished_at = AnyFlow::decode(&f.key, &f.state).ok().and_then(|flow| flow.finished_at());
    }
    Ok(Encoded { key: f.key, bytes: f.state, finished: f.finished, finished_at, retired: false })
}

/// The snapshot topic of one log.
#[derive(Debug, Clone, Copy)]
pub struct Snapshots<'a> {
    log: &'a dyn EventLog,
}

impl<'a> Snapshots<'a> {
    /// The snapshots of `log` (the topic must exist).
    pub fn new(log: &'a dyn EventLog) -> Self {
        Snapshots { log }
    }

    /// The last mark of partition `p` that names a generation, or `None` when the
    /// partition has none (never written, or written without a generation yet).
    pub fn last_mark(&self, p: i32) -> Result<Option<SnapshotMark>> {
        let end = self.log.end_offset(topic::SNAPSHOTS, p)?;
        let mut until = end;
        while until > 0 {
            let from = (until - TAIL).max(0);
            let mut found = None;
            let mut next = from;
            while next < until {
                let records = self.log.read(topic::SNAPSHOTS, p, next, TAIL as usize)?;
                let Some(last) = records.last() else { break };
                next = last.offset + 1;
                for r in records.iter().filter(|r| r.offset < until) {
                    if r.key == MARK_KEY {
                        found = Some(decode_mark(p, r)?);
                    }
                }
            }
            if found.is_some() {
                return Ok(found);
            }
            until = from;
        }
        Ok(None)
    }

    /// Appends one save: the changed flows, then the mark. Returns the mark written.
    pub fn append_save(
        &self,
        p: i32,
        flows: &[Encoded],
        last: &SnapshotMark,
        mark: &PartitionMark,
    ) -> Result<SnapshotMark> {
        let next = SnapshotMark {
            journal_next: mark.journal_next,
            positions: mark.positions.clone(),
            generation_from: last.generation_from,
            generation_flows: last.generation_flows,
            since_generation: last.since_generation + flows.len() as u64,
        };
        let mut records = flows.iter().map(|f| flow_record(p, f)).collect::<Result<Vec<_>>>()?;
        records.push(mark_record(p, &next)?);
        self.log.append(AppendBatch { records, positions: self.read_from(p, &next) })?;
        Ok(next)
    }

    /// Writes a new generation: every flow the store holds for `p` (which must be saved
    /// up to `mark`), in chunks, then the mark naming where it began.
    pub fn append_generation(&self, p: i32, store: &StateStore, mark: &PartitionMark) -> Result<SnapshotMark> {
        // The partition has one writer (its owner), so the generation begins at the end
        // the log reports now (on Kafka at or before its first record, which is as good).
        let generation_from = self.log.end_offset(topic::SNAPSHOTS, p)?;
        let mut flows = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK);
        for f in store.scan_encoded(p)? {
            chunk.push(flow_record(p, &f?)?);
            flows += 1;
            if chunk.len() == CHUNK {
                self.log.append(AppendBatch { records: std::mem::take(&mut chunk), positions: Vec::new() })?;
            }
        }
        let next = SnapshotMark {
            journal_next: mark.journal_next,
            positions: mark.positions.clone(),
            generation_from,
            generation_flows: flows,
            since_generation: 0,
        };
        chunk.push(mark_record(p, &next)?);
        self.log.append(AppendBatch { records: chunk, positions: self.read_from(p, &next) })?;
        Ok(next)
    }

    /// The position stored with a mark: where a restore starts reading, on a log whose
    /// retention needs to be told (one that does not compact).
    fn read_from(&self, p: i32, mark: &SnapshotMark) -> Vec<Position> {
        if self.log.capabilities().compacts {
            return Vec::new();
        }
        vec![Position {
            group: READER_GROUP.to_owned(),
            topic: topic::SNAPSHOTS.to_owned(),
            partition: p,
            next_offset: mark.generation_from,
        }]
    }

    /// Replaces what `store` holds for `p` with the snapshot from `mark`'s generation to
    /// the end of the partition (later states win), and sets the store's mark to `mark`.
    /// Returns the flow records read. The store's mark is written last, so a load cut
    /// short leaves a store that the next restore sees as empty and loads again.
    pub fn load_into(&self, p: i32, mark: &SnapshotMark, store: &StateStore) -> Result<u64> {
        store.drop_partition(p)?;
        let end = self.log.end_offset(topic::SNAPSHOTS, p)?;
        let mut next = mark.generation_from;
        let mut read = 0u64;
        while next < end {
            let records = self.log.read(topic::SNAPSHOTS, p, next, CHUNK)?;
            let Some(last) = records.last() else { break };
            next = last.offset + 1;
            let flows =
                records.iter().filter(|r| r.key != MARK_KEY).map(|r| decode_flow(p, r)).collect::<Result<Vec<_>>>()?;
            read += flows.len() as u64;
            store.save_encoded(p, &flows, None)?;
        }
        store.save_encoded(p, &[], Some(&mark.partition_mark()))?;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(generation_flows: u64, since_generation: u64) -> SnapshotMark {
        SnapshotMark { journal_next: 1, positions: Vec::new(), generation_from: 0, generation_flows, since_generation }
    }

    #[test]
    fn a_generation_is_due_once_the_changes_since_the_last_outnumber_its_flows() {
        assert!(!mark(100_000, 99_999).generation_due());
        assert!(mark(100_000, 100_000).generation_due());
        // A small partition is not written again every few saves.
        assert!(!mark(10, 4_000).generation_due());
        assert!(mark(10, MIN_GENERATION).generation_due());
        // What a restore reads stays within about twice what the partition holds.
        assert_eq!(mark(100_000, 99_999).records(), 199_999);
    }
}
