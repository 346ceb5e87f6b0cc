//! The coordinator: the I/O shell around [`crate::flow::step`].
//!
//! One worker per owned partition (single writer per saga, DESIGN.md invariant 4). Each
//! turn (`turn`) it reads a batch from every inbound topic and `waybill.control`
//! at its positions, merges them in append order (`merge`), decodes, steps the
//! order's sagas, and fires the timers due by each timer tick it reads; then
//! (`commit`) it appends the journal events, commands and dead letters
//! (`outputs`), a journal [`Checkpoint`](waybill_domain::journal::Checkpoint)
//! naming the new input positions and the batch's journal range, and the consumer
//! positions. Only then does it store the changed states.
//!
//! Decisions are a function of logged inputs only: an inbound record is decided at its
//! append time, and a timer fires when the coordinator reads a `TimerTick` it appended
//! to its own partition of `waybill.control` once the clock passed the earliest
//! deadline. A re-run after a crash, with batches cut at other points, decides the same.
//!
//! On start (or when it gains a partition) it restores (`restore`): states from
//! the store — or, when the store is empty or further behind, from the partition's
//! snapshot ([`crate::snapshot`]) — then the journal from the offset they cover: the
//! journal is the changelog, and its last checkpoint is the resume point. A store that is behind or
//! empty (a fresh machine) therefore converges on exactly the state the journal
//! describes; journal events no checkpoint covers are discarded.

mod commit;
mod merge;
mod outputs;
mod restore;
mod retire;
mod turn;

pub use outputs::headers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use waybill_domain::journal::InputPosition;
use waybill_domain::{Timestamp, topic};
use waybill_log::EventLog;
use waybill_telemetry::metrics as names;

use crate::Result;
use crate::catalog::Catalog;
use crate::policy::Policy;
use crate::registry::AnyFlow;
use crate::snapshot::SnapshotMark;
use crate::store::{PartitionMark, StateStore};

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Consumer group name under which input positions are stored.
    pub group: String,
    /// Most records read per input topic per turn.
    pub max_batch: usize,
    /// How long an idle worker waits for input before checking timers again.
    pub idle_wait: Duration,
    /// Keep saga state snapshots on `waybill.snapshots` (which must exist), and restore
    /// from them when the local store is empty or further behind ([`crate::snapshot`]).
    /// A node on Kafka does (`[coordinator] snapshots` decides); off by default for tests
    /// and tools that build a coordinator over a log without that topic.
    pub snapshots: bool,
    /// Retire a finished flow once this long has passed, in logged time, since it last
    /// changed (`None`: keep every flow). See `retire` for what retiring means and
    /// what becomes of a later input for the key.
    pub retire_after: Option<Duration>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            group: "waybill-coordinator".into(),
            max_batch: 512,
            idle_wait: Duration::from_millis(50),
            snapshots: false,
            retire_after: None,
        }
    }
}

/// Counters a running coordinator exposes (summed over partitions).
#[derive(Debug, Default)]
pub struct Stats {
    /// Inbound records consumed.
    pub inputs: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Journal events written.
    pub journal_events: AtomicU64,
    /// Commands written.
    pub commands: AtomicU64,
    /// Batches appended.
    pub batches: AtomicU64,
    /// Journal records replayed during restore.
    pub restored: AtomicU64,
    /// Flow states loaded from the snapshot topic during restore.
    pub restored_from_snapshot: AtomicU64,
    /// Finished flows retired once their retention passed.
    pub retired: AtomicU64,
    /// When each owned partition's worker last completed a turn (busy or idle).
    pub heartbeats: std::sync::Mutex<BTreeMap<i32, Instant>>,
    /// The partitions this process owns: every partition on the embedded log, the ones
    /// the consumer group assigned on Kafka.
    pub owned: std::sync::Mutex<BTreeSet<i32>>,
}

impl Stats {
    /// `p` is now this process's to work on.
    pub fn own(&self, p: i32) {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).insert(p);
        metrics::gauge!(names::PARTITIONS_OWNED).set(self.owned().len() as f64);
    }

    /// `p` went to another process: forget its heartbeat.
    pub fn release(&self, p: i32) {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).remove(&p);
        self.heartbeats.lock().unwrap_or_else(|e| e.into_inner()).remove(&p);
        metrics::gauge!(names::PARTITIONS_OWNED).set(self.owned().len() as f64);
    }

    /// The partitions owned now, ascending.
    pub fn owned(&self) -> Vec<i32> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect()
    }

    fn beat(&self, p: i32) {
        self.heartbeats.lock().unwrap_or_else(|e| e.into_inner()).insert(p, Instant::now());
    }

    /// Partitions whose worker has not completed a turn within `threshold`.
    pub fn stuck(&self, threshold: Duration) -> Vec<i32> {
        let beats = self.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        beats.iter().filter(|(_, at)| at.elapsed() > threshold).map(|(p, _)| *p).collect()
    }
}

/// The coordinator of a set of partitions.
#[derive(Debug)]
pub struct Coordinator {
    log: Arc<dyn EventLog>,
    store: StateStore,
    catalog: Arc<Catalog>,
    policy: Policy,
    config: CoordinatorConfig,
    inputs: Vec<String>,
    stats: Arc<Stats>,
}

impl Coordinator {
    /// A coordinator over `log`, keeping state in `store`.
    pub fn new(
        log: Arc<dyn EventLog>,
        store: StateStore,
        catalog: Arc<Catalog>,
        policy: Policy,
        config: CoordinatorConfig,
    ) -> Self {
        Coordinator {
            log,
            store,
            catalog,
            policy,
            config,
            inputs: topic::coordinator_inputs(),
            stats: Arc::new(Stats::default()),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Processes partition `p` until `stop` is set. Restores first.
    pub fn run_partition(&self, p: i32, stop: &AtomicBool) -> Result<()> {
        let mut w = self.restore(p)?;
        while !stop.load(Ordering::Relaxed) {
            let did = self.turn(&mut w)?;
            let ticked = self.tick_if_due(&mut w, Timestamp::now())?;
            self.stats.beat(p);
            if did == 0 && !ticked {
                self.save(&mut w)?;
                self.wait_for_input(&w);
            }
        }
        self.save(&mut w)?;
        self.store.flush()
    }

    /// Processes partition `p` until every input topic is drained and no timer is due by
    /// `now` (which stands in for the clock: a timer due by it gets a tick, and the tick
    /// fires it); returns the number of inputs processed, ticks included. For tests and
    /// tools.
    pub fn drain_partition(&self, p: i32, now: Timestamp) -> Result<u64> {
        let mut w = self.restore(p)?;
        let mut total = 0;
        loop {
            let did = self.turn(&mut w)?;
            let ticked = self.tick_if_due(&mut w, now)?;
            if did == 0 && !ticked {
                self.save(&mut w)?;
                // The save may have scheduled a retirement that is due by `now`.
                if self.tick_if_due(&mut w, now)? {
                    continue;
                }
                return Ok(total);
            }
            total += did as u64;
        }
    }

    fn wait_for_input(&self, w: &Worker) {
        let positions: Vec<(&str, i32, i64)> =
            self.inputs.iter().map(|t| (t.as_str(), w.partition, w.positions.get(t).copied().unwrap_or(0))).collect();
        let wait = match w.next_due() {
            Some(due) => {
                let until = due.micros_since(Timestamp::now()).max(0) as u64;
                self.config.idle_wait.min(Duration::from_micros(until))
            }
            None => self.config.idle_wait,
        };
        let _ = self.log.wait_any(&positions, wait);
    }
}

fn to_positions(partition: i32, positions: &BTreeMap<String, i64>) -> Vec<InputPosition> {
    positions.iter().map(|(t, o)| InputPosition { topic: t.clone(), partition, offset: *o }).collect()
}

/// The in-memory side of one owned partition.
#[derive(Debug)]
struct Worker {
    partition: i32,
    flows: HashMap<String, AnyFlow>,
    positions: BTreeMap<String, i64>,
    /// Pending deadlines by (due, order key), updated right after every step.
    timers: BTreeSet<(Timestamp, String)>,
    /// A tick was appended and not read back yet (no second one is written meanwhile).
    tick_pending: bool,
    journal_next: i64,
    /// Flows changed since the last save.
    dirty: BTreeSet<String>,
    /// Flows retired since the last save: the save deletes them; a later input for the
    /// key starts a new flow instead of loading the stored one.
    retired: BTreeSet<String>,
    /// When the next retirement is due (`None`: retention off, or nothing finished).
    retire_due: Option<Timestamp>,
    /// What the next save records as covered.
    mark: PartitionMark,
    /// The last snapshot mark written (`None`: snapshots off, or no generation yet).
    snapshot: Option<SnapshotMark>,
    saved_at: Instant,
    /// When the consumer lag of a backlogged input was last asked of the log.
    lag_asked_at: Option<Instant>,
}

impl Worker {
    /// When the worker next has something due: a timer, or a retirement.
    fn next_due(&self) -> Option<Timestamp> {
        let timer = self.timers.first().map(|(due, _)| *due);
        match (timer, self.retire_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Ask the log for the end offsets of backlogged inputs (for the lag gauge) at most this
/// often: on Kafka each is a round trip to the broker.
const LAG_REFRESH: Duration = Duration::from_secs(1);

/// Save the state store at least this often under load...
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// ...or once this many flows changed.
const SAVE_EVERY_FLOWS: usize = 2048;

impl Worker {
    fn flow(&mut self, store: &StateStore, key: &str) -> Result<&mut AnyFlow> {
        if !self.flows.contains_key(key) {
            // A key retired since the last save is still in the store: it starts afresh.
            let stored = if self.retired.contains(key) { None } else { store.load_any(self.partition, key)? };
            let f = stored.unwrap_or_else(|| AnyFlow::new(key));
            self.flows.insert(key.to_string(), f);
        }
        Ok(self.flows.get_mut(key).expect("inserted above"))
    }
}
