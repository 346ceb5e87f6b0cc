//! The delivery queue of one connector: commands in key order, critical before bulk.
//!
//! A command becomes *ready* only when every earlier command of its key (same partition,
//! same record key) has been delivered, so a target sees each order's commands in the
//! order the sagas issued them. Among ready commands, workers take the critical lane
//! first and, within a lane, the oldest first; a command waiting to be retried is not
//! ready before its `not_before`. Pure: the time is passed in.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Priority lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// Reservations, releases, goods issue, invoices, payments: never queued behind bulk.
    Critical,
    /// Master-data refresh, reports, polling and reconciliation reads.
    Bulk,
}

impl Lane {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Critical => "critical",
            Lane::Bulk => "bulk",
        }
    }
}

/// A queued item with its place.
#[derive(Debug)]
pub struct Job<T> {
    /// Partition of the command topic.
    pub partition: i32,
    /// Offset of the command record.
    pub offset: i64,
    /// Record key (the order).
    pub key: Vec<u8>,
    /// Lane.
    pub lane: Lane,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this instant (a retry's backoff).
    pub not_before: Option<Instant>,
    /// The work itself.
    pub item: T,
    seq: u64,
}

/// What [`Queue::take`] found.
#[derive(Debug)]
pub enum Take<T> {
    /// A job to run now.
    Job(Job<T>),
    /// Jobs are ready later; ask again after this long.
    Wait(Duration),
    /// Nothing ready and nothing waiting for a time.
    Empty,
}

type KeyId = (i32, Vec<u8>);

/// The queue.
#[derive(Debug)]
pub struct Queue<T> {
    seq: u64,
    /// Ready jobs by (lane, seq).
    ready: BTreeMap<(Lane, u64), Job<T>>,
    /// Jobs waiting behind an earlier one of their key.
    behind: HashMap<KeyId, VecDeque<Job<T>>>,
    /// Keys with a job ready or in flight.
    busy: HashSet<KeyId>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue { seq: 0, ready: BTreeMap::new(), behind: HashMap::new(), busy: HashSet::new() }
    }
}

impl<T> Queue<T> {
    /// Jobs queued or in flight (not yet [`Queue::done`]).
    pub fn len(&self) -> usize {
        self.ready.len() + self.behind.values().map(VecDeque::len).sum::<usize>()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a ready job could start now (ignoring backoff).
    pub fn has_ready(&self, now: Instant) -> bool {
        self.ready.values().any(|j| j.not_before.is_none_or(|t| t <= now))
    }

    /// Queues a new command behind the earlier ones of its key.
    pub fn push(&mut self, partition: i32, offset: i64, key: Vec<u8>, lane: Lane, item: T) {
        let seq = self.seq;
        self.seq += 1;
        let job = Job { partition, offset, key, lane, attempts: 0, not_before: None, item, seq };
        let id = (partition, job.key.clone());
        if self.busy.contains(&id) {
            self.behind.entry(id).or_default().push_back(job);
        } else {
            self.busy.insert(id);
            self.ready.insert((lane, seq), job);
        }
    }

    /// The best job to run at `now`: critical before bulk, oldest first, not before its
    /// backoff. The job's key stays busy until [`Queue::done`] or [`Queue::retry`].
    pub fn take(&mut self, now: Instant) -> Take<T> {
        let mut earliest: Option<Instant> = None;
        let mut pick = None;
        for (slot, job) in &self.ready {
            match job.not_before {
                Some(t) if t > now => earliest = Some(earliest.map_or(t, |e| e.min(t))),
                _ => {
                    pick = Some(*slot);
                    break;
                }
            }
        }
        match (pick, earliest) {
            (Some(slot), _) => Take::Job(self.ready.remove(&slot).expect("slot found above")),
            (None, Some(t)) => Take::Wait(t - now),
            (None, None) => Take::Empty,
        }
    }

    /// Puts a taken job back, not to run before `not_before`; it keeps its place.
    pub fn retry(&mut self, mut job: Job<T>, not_before: Instant) {
        job.not_before = Some(not_before);
        self.ready.insert((job.lane, job.seq), job);
    }

    /// A taken job is finished: the next command of its key becomes ready.
    pub fn done(&mut self, partition: i32, key: &[u8]) {
        let id = (partition, key.to_vec());
        match self.behind.get_mut(&id).and_then(VecDeque::pop_front) {
            Some(next) => {
                if self.behind.get(&id).is_some_and(VecDeque::is_empty) {
                    self.behind.remove(&id);
                }
                self.ready.insert((next.lane, next.seq), next);
            }
            None => {
                self.busy.remove(&id);
            }
        }
    }

    /// Drops every job of `partition` (it was revoked); returns how many.
    pub fn drop_partition(&mut self, partition: i32) -> usize {
        let before = self.len();
        self.ready.retain(|_, j| j.partition != partition);
        self.behind.retain(|(p, _), _| *p != partition);
        self.busy.retain(|(p, _)| *p != partition);
        before - self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take<T>(q: &mut Queue<T>, now: Instant) -> Job<T> {
        match q.take(now) {
            Take::Job(j) => j,
            other => panic!("expected a job, got {}", if matches!(other, Take::Empty) { "nothing" } else { "a wait" }),
        }
    }

    #[test]
    fn one_key_is_delivered_in_order_and_critical_overtakes_bulk() {
        let now = Instant::now();
        let mut q = Queue::default();
        for i in 0..5 {
            q.push(0, i, format!("bulk{i}").into_bytes(), Lane::Bulk, i);
        }
        q.push(0, 5, b"SO1".to_vec(), Lane::Critical, 5);
        q.push(0, 6, b"SO1".to_vec(), Lane::Critical, 6);
        let first = take(&mut q, now);
        assert_eq!(first.item, 5, "the critical command goes before the bulk backlog");
        let second = take(&mut q, now);
        assert_eq!(second.item, 0, "the next command of SO1 waits for the first: the oldest bulk goes");
        q.done(0, b"SO1");
        assert_eq!(take(&mut q, now).item, 6);
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn a_retry_keeps_its_key_busy_and_waits_for_its_backoff() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.push(0, 0, b"A".to_vec(), Lane::Critical, "a1");
        q.push(0, 1, b"A".to_vec(), Lane::Critical, "a2");
        let a1 = take(&mut q, now);
        q.retry(a1, now + Duration::from_secs(1));
        assert!(matches!(q.take(now), Take::Wait(d) if d == Duration::from_secs(1)), "a2 may not overtake a1");
        let a1 = take(&mut q, now + Duration::from_secs(1));
        assert_eq!(a1.item, "a1");
        q.done(0, b"A");
        assert_eq!(take(&mut q, now).item, "a2");
        q.done(0, b"A");
        assert!(matches!(q.take(now), Take::Empty));
        assert!(q.is_empty());
    }

    #[test]
    fn a_revoked_partition_is_forgotten() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.push(0, 0, b"A".to_vec(), Lane::Critical, 1);
        q.push(1, 0, b"B".to_vec(), Lane::Critical, 2);
        q.push(1, 1, b"B".to_vec(), Lane::Critical, 3);
        assert_eq!(q.drop_partition(1), 2);
        assert_eq!(take(&mut q, now).item, 1);
    }
}
