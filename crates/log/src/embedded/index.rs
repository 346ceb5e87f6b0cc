//! The in-memory index readers see: topics, each partition's records by offset, stored
//! positions, the segments and what retention needs to know of each.
//!
//! Every change to it goes through the methods here, so that an entry's segment, its
//! segment's live bytes and the segment's offset ends move together whether the change
//! comes from an append, from recovery, from a log start moving or from a record being
//! copied forward (recovery builds its partitions apart and counts them in at the end).

use std::collections::HashMap;
use std::sync::Arc;

use super::Segment;
use super::format::{Checkpoint, CheckpointTopic};
use crate::{Error, Offset, Result};

/// Where a record's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Segment id: index into [`State::segments`].
    pub(crate) segment: u32,
    /// Length of the record's bytes.
    pub(crate) len: u32,
    /// Byte position within the segment file.
    pub(crate) pos: u64,
}

/// One partition's records.
#[derive(Debug, Clone, Default)]
pub(crate) struct Partition {
    /// Offset of `entries[0]`: the log start. Records before it were deleted by
    /// retention.
    pub(crate) start: Offset,
    /// Entry `i` is the record with offset `start + i`.
    pub(crate) entries: Vec<Entry>,
}

impl Partition {
    /// The offset the next record appended gets.
    pub(crate) fn next(&self) -> Offset {
        self.start + self.entries.len() as i64
    }

    /// The entry of `offset`, if it is between the log start and the end.
    pub(crate) fn get(&self, offset: Offset) -> Option<&Entry> {
        usize::try_from(offset - self.start).ok().and_then(|i| self.entries.get(i))
    }
}

/// A topic and its partitions' indexes.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: String,
    pub(crate) partitions: Vec<Partition>,
}

/// What retention needs to know of one segment.
#[derive(Debug, Default)]
pub(crate) struct SegmentInfo {
    /// Newest timestamp of a record placed in the segment (ms since the epoch).
    pub(crate) newest_ms: i64,
    /// Per (topic id, partition) with records in the segment: one past the highest
    /// offset among them.
    pub(crate) ends: HashMap<(u32, i32), Offset>,
    /// Bytes of records whose index entry points into the segment.
    pub(crate) live: u64,
    /// Bytes in the file, once the writer has moved past it.
    pub(crate) len: u64,
    /// The segment starts with a checkpoint frame, so the segments before it can go.
    pub(crate) checkpointed: bool,
    /// Bytes of that checkpoint frame.
    pub(crate) head: u64,
}

/// What readers see: only fully written batches.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Indexed by segment id (creation order, counted from this process's open); `None`
    /// once retention deleted the segment.
    pub(crate) segments: Vec<Option<Arc<Segment>>>,
    /// Per segment id.
    pub(crate) info: Vec<SegmentInfo>,
    /// Indexed by topic id (creation order).
    pub(crate) topics: Vec<Topic>,
    pub(crate) by_name: HashMap<String, u32>,
    /// group → (topic id, partition) → next offset.
    pub(crate) committed: HashMap<String, HashMap<(u32, i32), Offset>>,
}

impl State {
    pub(crate) fn topic(&self, topic: &str) -> Result<(u32, &Topic)> {
        match self.by_name.get(topic) {
            Some(&id) => Ok((id, &self.topics[id as usize])),
            None => Err(Error::UnknownTopic { topic: topic.to_owned() }),
        }
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Result<(u32, &Topic, &Partition)> {
        let (id, t) = self.topic(topic)?;
        match usize::try_from(partition).ok().and_then(|p| t.partitions.get(p)) {
            Some(part) => Ok((id, t, part)),
            None => Err(Error::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: t.partitions.len() as u32,
            }),
        }
    }

    /// The partition of a (topic id, partition) pair read from a frame.
    pub(crate) fn partition_mut(&mut self, topic: u32, partition: i32) -> std::result::Result<&mut Partition, String> {
        let t = self.topics.get_mut(topic as usize).ok_or_else(|| format!("topic id {topic} was never created"))?;
        let n = t.partitions.len();
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get_mut(p))
            .ok_or_else(|| format!("topic {:?} has {n} partitions, not partition {partition}", t.name))
    }

    /// Adds a segment; returns its id.
    pub(crate) fn add_segment(&mut self, segment: Arc<Segment>, checkpointed: bool) -> u32 {
        self.segments.push(Some(segment));
        self.info.push(SegmentInfo { checkpointed, ..SegmentInfo::default() });
        (self.segments.len() - 1) as u32
    }

    /// Creates a topic with empty partitions.
    pub(crate) fn add_topic(&mut self, name: &str, partitions: u32) {
        let id = self.topics.len() as u32;
        self.topics.push(Topic { name: name.to_owned(), partitions: vec![Partition::default(); partitions as usize] });
        self.by_name.insert(name.to_owned(), id);
    }

    /// Stores a group's position; a negative one forgets it (`EmbeddedLog::forget_group`).
    pub(crate) fn set_committed(&mut self, group: &str, topic: u32, partition: i32, next: Offset) {
        if next < 0 {
            if let Some(m) = self.committed.get_mut(group) {
                m.remove(&(topic, partition));
                if m.is_empty() {
                    self.committed.remove(group);
                }
            }
            return;
        }
        match self.committed.get_mut(group) {
            Some(m) => {
                m.insert((topic, partition), next);
            }
            None => {
                self.committed.insert(group.to_owned(), HashMap::from([((topic, partition), next)]));
            }
        }
    }

    /// Notes that a record of (topic, partition) at `offset`, stamped `timestamp_ms`, of
    /// `len` bytes now lives in `segment`.
    fn count_in(&mut self, segment: u32, topic: u32, partition: i32, offset: Offset, timestamp_ms: i64, len: u32) {
        let info = &mut self.info[segment as usize];
        info.live += u64::from(len);
        info.newest_ms = info.newest_ms.max(timestamp_ms);
        let end = info.ends.entry((topic, partition)).or_insert(0);
        *end = (*end).max(offset + 1);
    }

    fn count_out(&mut self, e: Entry) {
        if let Some(info) = self.info.get_mut(e.segment as usize) {
            info.live -= u64::from(e.len);
        }
    }

    /// Appends the next record of a partition.
    pub(crate) fn push(&mut self, topic: u32, partition: i32, e: Entry, timestamp_ms: i64) {
        let part = &mut self.topics[topic as usize].partitions[partition as usize];
        let offset = part.next();
        part.entries.push(e);
        self.count_in(e.segment, topic, partition, offset, timestamp_ms, e.len);
    }

    /// Points `offset` at a copy of its record; a copy of a record before the log start
    /// is ignored. Fails if the offset is at or past the partition's end.
    pub(crate) fn relocate(
        &mut self,
        topic: u32,
        partition: i32,
        offset: Offset,
        e: Entry,
        timestamp_ms: i64,
    ) -> std::result::Result<(), String> {
        let part = self.partition_mut(topic, partition)?;
        if offset < part.start {
            return Ok(());
        }
        let next = part.next();
        let Some(slot) = part.entries.get_mut((offset - part.start) as usize) else {
            return Err(format!(
                "a copied record of topic id {topic} partition {partition} has offset {offset}, \
                 past the partition's end {next}"
            ));
        };
        let old = std::mem::replace(slot, e);
        self.count_out(old);
        self.count_in(e.segment, topic, partition, offset, timestamp_ms, e.len);
        Ok(())
    }

    /// Moves a partition's log start forward to `start` (never back, never past its
    /// end); returns how many records left the index.
    pub(crate) fn trim(&mut self, topic: u32, partition: i32, start: Offset) -> u64 {
        let part = &mut self.topics[topic as usize].partitions[partition as usize];
        let to = start.min(part.next());
        if to <= part.start {
            return 0;
        }
        let n = (to - part.start) as usize;
        let gone: Vec<Entry> = part.entries.drain(..n).collect();
        part.start = to;
        if part.entries.capacity() > 2 * part.entries.len() + 1024 {
            part.entries.shrink_to(part.entries.len() * 3 / 2);
        }
        for e in &gone {
            self.count_out(*e);
        }
        n as u64
    }

    /// Everything a checkpoint frame records: topics, log starts and next offsets (from
    /// `next`, which knows frames written but not yet published), and `positions`.
    pub(crate) fn checkpoint(
        &self,
        next: impl Fn(u32, i32, &Partition) -> Offset,
        positions: Vec<(String, u32, i32, Offset)>,
    ) -> Checkpoint {
        let topics = self
            .topics
            .iter()
            .enumerate()
            .map(|(id, t)| CheckpointTopic {
                id: id as u32,
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(p, part)| (part.start, next(id as u32, p as i32, part)))
                    .collect(),
            })
            .collect();
        Checkpoint { topics, positions }
    }

    /// The stored positions as a list.
    pub(crate) fn positions(&self) -> Vec<(String, u32, i32, Offset)> {
        let mut out: Vec<_> =
            self.committed.iter().flat_map(|(g, m)| m.iter().map(move |(&(t, p), &n)| (g.clone(), t, p, n))).collect();
        out.sort();
        out
    }

    /// Drops a deleted segment; its entries must all have moved or left.
    pub(crate) fn remove_segment(&mut self, id: u32) {
        self.segments[id as usize] = None;
        self.info[id as usize] = SegmentInfo::default();
    }
}
