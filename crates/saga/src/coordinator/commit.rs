//! Making a turn durable: its outputs and the journal checkpoint that completes them,
//! then (every few hundred milliseconds, and before the worker goes idle) the state store.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use waybill_domain::journal::Checkpoint;
use waybill_domain::{Timestamp, topic};
use waybill_log::{AppendBatch, Position, Record};

use super::outputs::Outputs;
use super::{Coordinator, SAVE_EVERY, SAVE_EVERY_FLOWS, Worker, to_positions};
use crate::registry::AnyFlow;
use crate::snapshot::{SnapshotMark, Snapshots};
use crate::store::{Encoded, PartitionMark};
use crate::{Error, Result};

impl Coordinator {
    /// Appends a turn's outputs and the journal checkpoint that completes them, moves
    /// the consumer positions, and notes what the state store must save.
    pub(super) fn commit(&self, w: &mut Worker, out: Outputs) -> Result<()> {
        let p = w.partition;
        let mut records = out.records;
        let positions = to_positions(p, &w.positions);
        // The checkpoint says "every output of these inputs is in the log, and these are
        // the batch's journal events". A backend whose batches are not atomic (Kafka
        // without transactions) may store a batch's records in any order and only some
        // of them before a crash, so the outputs go first and the checkpoint only once
        // every one of them is acknowledged, naming the journal offsets they got. Every
        // reader discards journal events no checkpoint covers; the inputs of a batch cut
        // short are decided again, writing the same records under the same ids. On an
        // atomic backend the checkpoint travels in the same batch as its events, so it
        // names no range: "since the previous checkpoint" is exactly its batch.
        let mut range = (None, None);
        if !self.log.capabilities().atomic_batches {
            let (mut from, mut until) = (w.journal_next, w.journal_next);
            if !records.is_empty() {
                let journal: Vec<bool> = records.iter().map(|r| r.topic == topic::JOURNAL).collect();
                let appended =
                    self.log.append(AppendBatch { records: std::mem::take(&mut records), positions: Vec::new() })?;
                let offsets: Vec<i64> =
                    appended.iter().zip(&journal).filter(|(_, j)| **j).map(|(a, _)| a.offset).collect();
                if let (Some(first), Some(last)) = (offsets.first(), offsets.last()) {
                    (from, until) = (*first, last + 1);
                }
            }
            range = (Some(from), Some(until));
        }
        let checkpoint = Checkpoint {
            partition: p,
            positions: positions.clone(),
            at: Timestamp::now(),
            journal_from: range.0,
            journal_until: range.1,
        };
        let value = waybill_schema::encode_checkpoint(&checkpoint)
            .map_err(|e| Error::Encode { what: "checkpoint".into(), reason: e.to_string() })?;
        records.push(Record {
            topic: topic::JOURNAL.into(),
            partition: Some(p),
            key: Vec::new(),
            headers: Vec::new(),
            value,
        });
        let commits = positions
            .iter()
            .map(|x| Position {
                group: self.config.group.clone(),
                topic: x.topic.clone(),
                partition: p,
                next_offset: x.offset,
            })
            .collect();
        let appended = self.log.append(AppendBatch { records, positions: commits })?;
        let last_journal = appended.last().map(|a| a.offset).unwrap_or(w.journal_next - 1);
        w.journal_next = last_journal + 1;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.journal_events.fetch_add(out.journal_events, Ordering::Relaxed);
        self.stats.commands.fetch_add(out.commands, Ordering::Relaxed);
        self.stats.dead_letters.fetch_add(out.dead_letters, Ordering::Relaxed);

        w.mark = PartitionMark { journal_next: w.journal_next, positions };
        w.dirty.extend(out.changed);
        // The state store is a cache of the journal: under load it is written every few
        // hundred milliseconds rather than every turn (restore folds the journal from the
        // mark it holds), and always before the worker goes idle.
        if w.dirty.len() >= SAVE_EVERY_FLOWS || w.saved_at.elapsed() >= SAVE_EVERY {
            self.save(w)?;
        }
        Ok(())
    }

    /// Writes the changed flows and the partition's mark (to the snapshot topic, then
    /// the store), then lets finished flows leave memory.
    pub(super) fn save(&self, w: &mut Worker) -> Result<()> {
        w.saved_at = Instant::now();
        if w.dirty.is_empty() && w.retired.is_empty() {
            return Ok(());
        }
        let dirty = std::mem::take(&mut w.dirty);
        let retired = std::mem::take(&mut w.retired);
        self.persist(w.partition, &retired, dirty.iter().filter_map(|k| w.flows.get(k)), &w.mark, &mut w.snapshot)?;
        for key in dirty {
            if w.flows.get(&key).is_some_and(AnyFlow::is_finished) {
                w.flows.remove(&key);
            }
        }
        self.schedule_retirement(w)
    }

    /// Forgets the `retired` keys and encodes `flows` once and stores them under `mark`
    /// (a key retired and begun again is forgotten, then stored anew). With snapshots on,
    /// the same bytes go to the snapshot topic first (so it is never behind the store),
    /// a tombstone for each retired key, and a new generation is written when the topic
    /// has none yet or, on a log that does not compact, when the changes since the last
    /// one call for it.
    pub(super) fn persist<'a>(
        &self,
        p: i32,
        retired: &BTreeSet<String>,
        flows: impl Iterator<Item = &'a AnyFlow>,
        mark: &PartitionMark,
        snapshot: &mut Option<SnapshotMark>,
    ) -> Result<()> {
        let flows = retired
            .iter()
            .map(|k| Ok(Encoded::retired(k)))
            .chain(flows.map(Encoded::of))
            .collect::<Result<Vec<_>>>()?;
        let flows = flows.as_slice();
        if !self.config.snapshots {
            return self.store.save_encoded(p, flows, Some(mark));
        }
        let snapshots = Snapshots::new(self.log.as_ref());
        if let Some(last) = snapshot.as_mut()
            && !(flows.is_empty() && last.journal_next == mark.journal_next)
        {
            *last = snapshots.append_save(p, flows, last, mark)?;
        }
        self.store.save_encoded(p, flows, Some(mark))?;
        // A compacting log (Kafka) keeps the latest state of each key by itself: after
        // the first generation, which makes the topic whole, no other is needed.
        let compacts = self.log.capabilities().compacts;
        if snapshot.as_ref().is_none_or(|s| !compacts && s.generation_due()) {
            let started = Instant::now();
            let next = snapshots.append_generation(p, &self.store, mark)?;
            tracing::info!(
                waybill.partition = p,
                snapshot.flows = next.generation_flows,
                snapshot.from = next.generation_from,
                journal.next = next.journal_next,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "saga state snapshot generation written"
            );
            *snapshot = Some(next);
        }
        Ok(())
    }
}
