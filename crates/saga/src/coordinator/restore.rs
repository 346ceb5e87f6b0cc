//! Restoring a partition: states from the store (or, when the store is empty or further
//! behind than the snapshot's size, from the partition's snapshot), then the journal from
//! the offset they cover. The journal is the changelog of saga state and its last checkpoint is
//! the resume point, so a store that is behind or empty (a fresh machine) converges on
//! exactly the state the journal describes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use waybill_domain::journal::Checkpoint;
use waybill_domain::topic;
use waybill_domain::{JournalBody, JournalEvent};
use waybill_schema::JournalRecord;
use waybill_telemetry::metrics as names;

use super::{Coordinator, Worker, to_positions};
use crate::registry::AnyFlow;
use crate::snapshot::{SnapshotMark, Snapshots};
use crate::store::PartitionMark;
use crate::{Error, Result};

/// Journal events read since the last checkpoint of a partition, held until the
/// checkpoint that covers them. Pure: the restore loop feeds it records in offset order.
///
/// A journal event counts only once a checkpoint names it: on a backend without atomic
/// batches a crash can leave a batch's journal events in the log without its commands or
/// its checkpoint. Those inputs are decided again after the restore (from the last
/// checkpoint's positions), and the re-run batch's checkpoint names its own journal
/// range, so the remains of the cut batch are discarded however far back a later
/// restore starts.
#[derive(Debug, Default)]
pub(crate) struct Held {
    events: Vec<(i64, JournalEvent)>,
}

impl Held {
    /// Holds the journal event read at `offset`.
    pub(crate) fn event(&mut self, offset: i64, event: JournalEvent) {
        self.events.push((offset, event));
    }

    /// A checkpoint was read: returns the held events it covers, in offset order, and
    /// the number it discards (the remains of a batch cut short).
    pub(crate) fn checkpoint(&mut self, c: &Checkpoint) -> (Vec<JournalEvent>, usize) {
        let held = std::mem::take(&mut self.events);
        let total = held.len();
        let covered: Vec<JournalEvent> = held.into_iter().filter(|(o, _)| c.covers(*o)).map(|(_, e)| e).collect();
        let discarded = total - covered.len();
        (covered, discarded)
    }

    /// Events still waiting for a checkpoint.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}

impl Coordinator {
    /// Rebuilds the worker of partition `p` from the store and the journal.
    pub(super) fn restore(&self, p: i32) -> Result<Worker> {
        let started = Instant::now();
        let mut mark = self.store.mark(p)?;
        let (mut snapshot, from_snapshot) = self.restore_snapshot(p, &mut mark)?;
        let mut flows: HashMap<String, AnyFlow> =
            self.store.unfinished(p)?.into_iter().map(|f| (f.key().to_string(), f)).collect();
        let mut positions: BTreeMap<String, i64> = mark.positions.iter().map(|x| (x.topic.clone(), x.offset)).collect();
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut retired: BTreeSet<String> = BTreeSet::new();
        let mut next = mark.journal_next;
        let end = self.log.end_offset(topic::JOURNAL, p)?;
        let mut replayed = 0u64;
        let mut discarded = 0usize;
        let mut held = Held::default();
        while next < end {
            let records = self.log.read(topic::JOURNAL, p, next, 4096)?;
            if records.is_empty() {
                break;
            }
            for r in &records {
                next = r.offset + 1;
                replayed += 1;
                match waybill_schema::decode_journal_record(&r.value) {
                    Ok(JournalRecord::Event(e)) => held.event(r.offset, e),
                    Ok(JournalRecord::Checkpoint(c)) => {
                        let (covered, cut) = held.checkpoint(&c);
                        discarded += cut;
                        for e in covered {
                            let key = e.meta.correlation_key.clone();
                            if let JournalBody::FlowRetired(_) = &e.body {
                                // The incarnation ends here: the flow is forgotten, and
                                // a later event of the key begins a new one.
                                flows.remove(&key);
                                dirty.remove(&key);
                                retired.insert(key);
                                continue;
                            }
                            let flow = match flows.get_mut(&key) {
                                Some(f) => f,
                                None => {
                                    let stored =
                                        if retired.contains(&key) { None } else { self.store.load_any(p, &key)? };
                                    let f = stored.unwrap_or_else(|| AnyFlow::new(&key));
                                    flows.entry(key.clone()).or_insert(f)
                                }
                            };
                            flow.apply(&e);
                            dirty.insert(key);
                        }
                        for pos in c.positions {
                            positions.insert(pos.topic, pos.offset);
                        }
                    }
                    Err(e) => {
                        return Err(Error::Journal {
                            topic: r.topic.clone(),
                            partition: p,
                            offset: r.offset,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        if discarded > 0 {
            tracing::warn!(
                waybill.partition = p,
                events = discarded,
                "journal events no checkpoint covers (a batch cut short by a crash) were discarded; their inputs were decided again"
            );
        }
        if held.len() > 0 {
            tracing::warn!(
                waybill.partition = p,
                events = held.len(),
                "journal events after the last checkpoint (a batch cut short by a crash); their inputs are processed again"
            );
        }
        let mark = PartitionMark { journal_next: next, positions: to_positions(p, &positions) };
        self.persist(p, &retired, dirty.iter().filter_map(|k| flows.get(k)), &mark, &mut snapshot)?;
        flows.retain(|_, f| !f.is_finished());
        let timers = flows.values().filter_map(|f| f.next_deadline().map(|d| (d, f.key().to_string()))).collect();
        self.stats.restored.fetch_add(replayed, Ordering::Relaxed);
        self.stats.restored_from_snapshot.fetch_add(from_snapshot, Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        metrics::counter!(names::RESTORE_RECORDS).increment(replayed);
        metrics::histogram!(names::RESTORE_DURATION).record(secs);
        tracing::info!(
            waybill.partition = p,
            snapshot.flows = from_snapshot,
            journal.replayed = replayed,
            journal.next = next,
            sagas.active = flows.len(),
            elapsed_ms = (secs * 1000.0) as u64,
            rate_per_s = if secs > 0.0 { (replayed as f64 / secs) as u64 } else { 0 },
            "partition restored"
        );
        let mut w = Worker {
            partition: p,
            flows,
            positions,
            timers,
            tick_pending: false,
            journal_next: next,
            dirty: BTreeSet::new(),
            retired: BTreeSet::new(),
            retire_due: None,
            mark,
            snapshot,
            saved_at: Instant::now(),
            lag_asked_at: None,
        };
        self.schedule_retirement(&mut w)?;
        Ok(w)
    }
}

impl Coordinator {
    /// With snapshots on: the partition's last snapshot mark, after loading the snapshot
    /// into the store when the store is empty or further behind the snapshot than the
    /// snapshot is large (`mark` then becomes the snapshot's). Returns the mark to carry
    /// on from (`None`: a new generation is due, because the topic has none or the store
    /// holds states it lacks) and the flow records loaded.
    fn restore_snapshot(&self, p: i32, mark: &mut PartitionMark) -> Result<(Option<SnapshotMark>, u64)> {
        if !self.config.snapshots {
            return Ok((None, 0));
        }
        let snapshots = Snapshots::new(self.log.as_ref());
        let Some(snap) = snapshots.last_mark(p)? else { return Ok((None, 0)) };
        let local = mark.journal_next;
        if local > snap.journal_next {
            // The store holds states the topic lacks (written while snapshots were off):
            // the topic is not trusted until a new generation covers them.
            return Ok((None, 0));
        }
        let behind = (snap.journal_next - local) as u64;
        if local == 0 && snap.journal_next > 0 || behind > snap.records() {
            let loaded = snapshots.load_into(p, &snap, &self.store)?;
            *mark = snap.partition_mark();
            return Ok((Some(snap), loaded));
        }
        Ok((Some(snap), 0))
    }
}

#[cfg(test)]
mod tests {
    use waybill_domain::journal::{Empty, JournalMeta};
    use waybill_domain::{JournalBody, SagaKind, Timestamp};

    use super::*;

    fn event(seq: i64) -> JournalEvent {
        JournalEvent {
            meta: JournalMeta {
                saga_id: "o2f:SO1".into(),
                kind: SagaKind::OrderToFulfillment,
                seq,
                correlation_key: "SO1".into(),
                caused_by: format!("e{seq}"),
                input: None,
                at: Timestamp(seq),
            },
            body: JournalBody::Completed(Empty {}),
        }
    }

    fn checkpoint(range: Option<(i64, i64)>) -> Checkpoint {
        Checkpoint {
            partition: 0,
            positions: Vec::new(),
            at: Timestamp(0),
            journal_from: range.map(|r| r.0),
            journal_until: range.map(|r| r.1),
        }
    }

    #[test]
    fn events_of_a_batch_cut_short_are_discarded_at_the_next_checkpoint() {
        let mut held = Held::default();
        // offsets 10..12: a batch cut short; 13..14: the batch decided again.
        for (offset, seq) in [(10, 6), (11, 7), (13, 6), (14, 7)] {
            held.event(offset, event(seq));
        }
        let (covered, discarded) = held.checkpoint(&checkpoint(Some((13, 15))));
        assert_eq!(covered.iter().map(|e| e.meta.seq).collect::<Vec<_>>(), [6, 7]);
        assert_eq!(discarded, 2);
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn a_checkpoint_without_a_range_covers_everything_since_the_previous_one() {
        let mut held = Held::default();
        held.event(3, event(1));
        held.event(4, event(2));
        let (covered, discarded) = held.checkpoint(&checkpoint(None));
        assert_eq!((covered.len(), discarded), (2, 0));
    }

    #[test]
    fn an_empty_range_covers_nothing() {
        let mut held = Held::default();
        held.event(3, event(1));
        let (covered, discarded) = held.checkpoint(&checkpoint(Some((5, 5))));
        assert_eq!((covered.len(), discarded), (0, 1));
    }
}
