//! The coordinator: the I/O shell around [`crate::flow::step`].
//!
//! One worker per owned partition (single writer per saga, DESIGN.md invariant 4). Each
//! turn it reads a batch from every inbound topic and `waybill.control` at its positions,
//! decodes, steps the order's sagas, fires due timers, and appends in ONE batch: journal
//! events, commands, dead letters, a journal [`Checkpoint`] naming the new input
//! positions, and the consumer positions. Only then does it store the changed states.
//!
//! On start (or when it gains a partition) it restores: states from the store, then the
//! journal from the offset the store covers — the journal is the changelog, and its last
//! checkpoint is the resume point. A store that is behind or empty (a fresh machine)
//! therefore converges on exactly the state the journal describes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use waybill_domain::event::ReplayRequest;
use waybill_domain::journal::{Checkpoint, InputPosition};
use waybill_domain::{EventBody, ExceptionCategory, InboundEvent, JournalBody, SagaKind, Timestamp, topic};
use waybill_log::{AppendBatch, EventLog, Header, Position, Record, StoredRecord};
use waybill_schema::JournalRecord;
use waybill_telemetry::metrics as names;
use waybill_telemetry::{SPAN_TARGET, TraceHeaders};

use crate::catalog::Catalog;
use crate::decision::{Cause, DeadLetter, DeadLetterKind};
use crate::flow::{self, Env, OrderFlow, ReplayRecord, Step};
use crate::policy::Policy;
use crate::store::{PartitionMark, StateStore};
use crate::{Error, Result};

/// Header names written by the coordinator.
pub mod headers {
    /// Idempotency key of a command.
    pub const IDEMPOTENCY_KEY: &str = "waybill.idempotency-key";
    /// Saga id of a journal event or command.
    pub const SAGA_ID: &str = "waybill.saga-id";
    /// Why a record is in the dead-letter topic.
    pub const DLQ_REASON: &str = "waybill.dlq.reason";
    /// `decode`, `unknown-schema` or `rule`.
    pub const DLQ_KIND: &str = "waybill.dlq.kind";
    /// Topic the dead letter was read from.
    pub const DLQ_TOPIC: &str = "waybill.dlq.topic";
    /// Partition the dead letter was read from.
    pub const DLQ_PARTITION: &str = "waybill.dlq.partition";
    /// Offset the dead letter was read from.
    pub const DLQ_OFFSET: &str = "waybill.dlq.offset";
}

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Consumer group name under which input positions are stored.
    pub group: String,
    /// Most records read per input topic per turn.
    pub max_batch: usize,
    /// How long an idle worker waits for input before checking timers again.
    pub idle_wait: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig { group: "waybill-coordinator".into(), max_batch: 512, idle_wait: Duration::from_millis(50) }
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
            let did = self.turn(&mut w, Timestamp::now())?;
            self.stats.beat(p);
            if did == 0 {
                self.save(&mut w)?;
                self.wait_for_input(&w);
            }
        }
        self.save(&mut w)?;
        self.store.flush()
    }

    /// Processes partition `p` until every input topic is drained and no timer is due;
    /// returns the number of inputs processed. For tests and tools.
    pub fn drain_partition(&self, p: i32, now: Timestamp) -> Result<u64> {
        let mut w = self.restore(p)?;
        let mut total = 0;
        loop {
            let did = self.turn(&mut w, now)?;
            if did == 0 {
                self.save(&mut w)?;
                return Ok(total);
            }
            total += did as u64;
        }
    }

    fn wait_for_input(&self, w: &Worker) {
        let positions: Vec<(&str, i32, i64)> =
            self.inputs.iter().map(|t| (t.as_str(), w.partition, w.positions.get(t).copied().unwrap_or(0))).collect();
        let wait = match w.timers.first() {
            Some((due, _)) => {
                let until = due.micros_since(Timestamp::now()).max(0) as u64;
                self.config.idle_wait.min(Duration::from_micros(until))
            }
            None => self.config.idle_wait,
        };
        let _ = self.log.wait_any(&positions, wait);
    }

    /// Rebuilds the worker of partition `p` from the store and the journal.
    fn restore(&self, p: i32) -> Result<Worker> {
        let started = Instant::now();
        let mark = self.store.mark(p)?;
        let mut flows: HashMap<String, OrderFlow> =
            self.store.unfinished(p)?.into_iter().map(|f| (f.key.clone(), f)).collect();
        let mut positions: BTreeMap<String, i64> = mark.positions.iter().map(|x| (x.topic.clone(), x.offset)).collect();
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut next = mark.journal_next;
        let end = self.log.end_offset(topic::JOURNAL, p)?;
        let mut replayed = 0u64;
        // Journal events count only once a checkpoint follows them: after a crash on a
        // backend without atomic batches, the events of the last batch may be in the log
        // while some of its commands are not. Those inputs are processed again (from the
        // last checkpoint's positions), which writes the same records under the same ids.
        let mut uncommitted: Vec<waybill_domain::JournalEvent> = Vec::new();
        while next < end {
            let records = self.log.read(topic::JOURNAL, p, next, 4096)?;
            if records.is_empty() {
                break;
            }
            for r in &records {
                next = r.offset + 1;
                replayed += 1;
                match waybill_schema::decode_journal_record(&r.value) {
                    Ok(JournalRecord::Event(e)) => uncommitted.push(e),
                    Ok(JournalRecord::Checkpoint(c)) => {
                        for e in uncommitted.drain(..) {
                            let key = e.meta.correlation_key.clone();
                            let flow = match flows.get_mut(&key) {
                                Some(f) => f,
                                None => {
                                    let f = self.store.load(p, &key)?.unwrap_or_else(|| OrderFlow::new(key.clone()));
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
        if !uncommitted.is_empty() {
            tracing::warn!(
                waybill.partition = p,
                events = uncommitted.len(),
                "journal events after the last checkpoint (a batch cut short by a crash); their inputs are processed again"
            );
        }
        let mark = PartitionMark { journal_next: next, positions: to_positions(p, &positions) };
        self.store.save(p, dirty.iter().filter_map(|k| flows.get(k)), &mark)?;
        flows.retain(|_, f| !f.is_finished());
        let timers = flows.values().filter_map(|f| f.next_deadline().map(|d| (d, f.key.clone()))).collect();
        self.stats.restored.fetch_add(replayed, Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        metrics::counter!(names::RESTORE_RECORDS).increment(replayed);
        metrics::histogram!(names::RESTORE_DURATION).record(secs);
        tracing::info!(
            waybill.partition = p,
            journal.replayed = replayed,
            journal.next = next,
            sagas.active = flows.len(),
            elapsed_ms = (secs * 1000.0) as u64,
            rate_per_s = if secs > 0.0 { (replayed as f64 / secs) as u64 } else { 0 },
            "partition restored"
        );
        Ok(Worker {
            partition: p,
            flows,
            positions,
            timers,
            journal_next: next,
            dirty: BTreeSet::new(),
            mark,
            saved_at: Instant::now(),
            lag_asked_at: None,
        })
    }

    /// One turn: read, decide, append, store. Returns the number of inputs and timers handled.
    fn turn(&self, w: &mut Worker, now: Timestamp) -> Result<usize> {
        let p = w.partition;
        let mut out = Outputs { partition: p, ..Outputs::default() };
        let mut handled = 0usize;
        let env = Env { catalog: &self.catalog, policy: &self.policy };
        let started = Instant::now();
        let mut batches = Vec::with_capacity(self.inputs.len());
        for t in &self.inputs {
            let from = w.positions.get(t).copied().unwrap_or(0);
            batches.push(self.read_batch(t, p, from)?);
        }
        for (t, r) in merge_by_time(&self.inputs, &batches) {
            handled += 1;
            out.consumed.push((t.to_string(), r.timestamp_ms));
            w.positions.insert(t.to_string(), r.offset + 1);
            self.handle(w, r, now, &env, &mut out)?;
        }
        // Timers that are due.
        while let Some((due, key)) = w.timers.first().cloned() {
            if due > now {
                break;
            }
            w.timers.pop_first();
            let Some(flow) = w.flows.get_mut(&key) else { continue };
            if flow.next_deadline() != Some(due) {
                continue; // stale timer: the saga moved on
            }
            let cause = Cause { id: format!("timer:{key}@{}", due.0), input: None, at: now };
            let step = flow::tick(flow, &cause);
            out.observe(flow, &step, now, now);
            handled += 1;
            out.add(&key, step, None, None)?;
        }
        if handled == 0 {
            return Ok(0);
        }
        let p = w.partition;
        let consumed = std::mem::take(&mut out.consumed);
        let observations = std::mem::take(&mut out.observations);
        let produced: Vec<String> = out.records.iter().map(|r| r.topic.clone()).collect();
        self.commit(w, out, now)?;
        // Everything above is durable: count it.
        let now_ms = now.0 / 1000;
        let latency = metrics::histogram!(names::PROCESSING_LATENCY);
        let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
        for (t, ts) in &consumed {
            *per_topic.entry(t.as_str()).or_default() += 1;
            latency.record((now_ms - ts).max(0) as f64 / 1000.0);
        }
        for (t, n) in per_topic {
            metrics::counter!(names::RECORDS_CONSUMED, "topic" => t.to_string()).increment(n);
        }
        let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
        for t in &produced {
            *per_topic.entry(t.as_str()).or_default() += 1;
        }
        for (t, n) in per_topic {
            metrics::counter!(names::RECORDS_PRODUCED, "topic" => t.to_string()).increment(n);
        }
        for o in observations {
            o.emit();
        }
        // Consumer lag. An input whose batch was not full was read up to the end the log
        // knew of, so its lag needs no question to the log; a full one (a backlog) asks
        // for the end offset, at most once per LAG_REFRESH.
        let ask = batches.iter().any(|b| b.full) && w.lag_asked_at.is_none_or(|at| at.elapsed() >= LAG_REFRESH);
        if ask {
            w.lag_asked_at = Some(Instant::now());
        }
        for (t, b) in self.inputs.iter().zip(&batches) {
            let pos = w.positions.get(t).copied().unwrap_or(0);
            let end = match b.records.last() {
                _ if b.full && !ask => continue,
                _ if b.full => self.log.end_offset(t, p)?,
                Some(last) => last.offset + 1,
                None => pos,
            };
            metrics::gauge!(names::CONSUMER_LAG, "topic" => t.clone(), "partition" => p.to_string())
                .set((end - pos).max(0) as f64);
        }
        metrics::histogram!(names::BATCH_DURATION).record(started.elapsed().as_secs_f64());
        Ok(handled)
    }

    /// Reads up to `max_batch` records; a full batch is completed to the end of its last
    /// millisecond, so that every record of the topic up to the batch's last timestamp
    /// has been read (see [`merge_by_time`]). Returns the records and whether the topic
    /// may hold more.
    fn read_batch(&self, t: &str, p: i32, from: i64) -> Result<Batch> {
        let max = self.config.max_batch;
        let mut records = self.log.read(t, p, from, max)?;
        let full = records.len() >= max;
        while let Some(last) = records.last().filter(|_| full && records.len() < 8 * max) {
            let (next, ts) = (last.offset + 1, last.timestamp_ms);
            let more = self.log.read(t, p, next, max)?;
            let same = more.iter().take_while(|r| r.timestamp_ms == ts).count();
            let done = same < more.len() || more.is_empty();
            records.extend(more.into_iter().take(same));
            if done {
                break;
            }
        }
        Ok(Batch { records, full })
    }

    fn handle(&self, w: &mut Worker, r: &StoredRecord, now: Timestamp, env: &Env<'_>, out: &mut Outputs) -> Result<()> {
        self.stats.inputs.fetch_add(1, Ordering::Relaxed);
        // One span per inbound record, continuing the trace of whoever wrote it. Without an
        // exporter the span is disabled at its call site: no field below is evaluated. With
        // one, the attributes are recorded only once the span is known to be sampled, so a
        // record left out by the sampler costs no attribute formatting or copying.
        // A record whose trace was left out upstream gets no span at all (the sampler
        // follows the parent, so it would be dropped anyway): the cheapest span is none.
        let span = if !tracing::enabled!(target: SPAN_TARGET, tracing::Level::INFO)
            || waybill_telemetry::unsampled_upstream(r.headers.iter().map(|h| (h.key.as_str(), h.value.as_slice())))
        {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                target: SPAN_TARGET,
                "process",
                otel.name = span_name(&r.topic).as_ref(),
                otel.kind = "consumer",
                messaging.system = tracing::field::Empty,
                messaging.operation.type = tracing::field::Empty,
                messaging.operation.name = tracing::field::Empty,
                messaging.destination.name = tracing::field::Empty,
                messaging.destination.partition.id = tracing::field::Empty,
                messaging.consumer.group.name = tracing::field::Empty,
                messaging.kafka.message.key = tracing::field::Empty,
                messaging.kafka.offset = tracing::field::Empty,
                messaging.message.id = tracing::field::Empty,
                waybill.event.type = tracing::field::Empty,
                waybill.order.ref = tracing::field::Empty,
                waybill.saga.id = tracing::field::Empty,
                waybill.saga.kind = tracing::field::Empty,
            )
        };
        let headers = || r.headers.iter().map(|h| (h.key.as_str(), h.value.as_slice()));
        waybill_telemetry::continue_trace(&span, headers());
        let _entered = span.enter();
        // Every record written for this input carries this span's context (or, when
        // nothing is exported, the input's own, passed through).
        let trace = waybill_telemetry::outgoing(&span, headers());
        let sampled = !span.is_disabled() && trace.as_ref().is_some_and(TraceHeaders::sampled);
        if sampled {
            span.record("messaging.system", "kafka");
            span.record("messaging.operation.type", "process");
            span.record("messaging.operation.name", "process");
            span.record("messaging.destination.name", r.topic.as_str());
            span.record("messaging.destination.partition.id", r.partition.to_string());
            span.record("messaging.consumer.group.name", self.config.group.as_str());
            span.record("messaging.kafka.message.key", String::from_utf8_lossy(&r.key).as_ref());
            span.record("messaging.kafka.offset", r.offset);
        }
        let event: InboundEvent = match waybill_schema::decode_event(&r.value) {
            Ok(e) => e,
            Err(e) => {
                let kind = if matches!(e, waybill_schema::Error::UnknownSchemaId { .. }) {
                    DeadLetterKind::UnknownSchema
                } else {
                    DeadLetterKind::Decode
                };
                out.dead_letter(r, &DeadLetter { kind, reason: e.to_string() });
                return Ok(());
            }
        };
        // Who may send what (control events only from waybill.control, each business
        // event only from its system of record): the same rule ingestion applies.
        if let Some(channel) = crate::admission::Channel::of_topic(&r.topic)
            && let Err(refusal) = crate::admission::admit(&event, channel, &self.policy.ownership)
        {
            if let Some((system, name)) = refusal.ownership {
                out.observations.push(Observation::OwnershipViolation(system, name));
            }
            out.dead_letter(r, &refusal.dead_letter);
            return Ok(());
        }
        let key = event.meta.correlation_key.clone();
        let home = waybill_log::partition_for(key.as_bytes(), self.log.partitions(&r.topic)?);
        if home != w.partition {
            let reason = format!(
                "event {} for order {key:?} arrived on partition {} but that order belongs to partition {home}; producers must key inbound records by the order name (record key {:?})",
                event.meta.event_id,
                w.partition,
                String::from_utf8_lossy(&r.key)
            );
            out.dead_letter(r, &DeadLetter { kind: DeadLetterKind::Rule, reason });
            return Ok(());
        }
        let replayed = match &event.body {
            EventBody::SagaReplayRequested(req) => Some(self.load_replay(w, req)?),
            _ => None,
        };
        let flow = w.flow(&self.store, &key)?;
        let cause = Cause {
            id: event.meta.event_id.clone(),
            input: Some(InputPosition { topic: r.topic.clone(), partition: r.partition, offset: r.offset }),
            at: now,
        };
        let step = match (&event.body, replayed) {
            (EventBody::SagaReplayRequested(req), Some(records)) => {
                flow::replay(flow, &event.meta.event_id, req, &records, env, &cause)
            }
            _ => flow::step(flow, &event, env, &cause),
        };
        if sampled {
            record_saga(&span, &event, &step);
        }
        out.observe(flow, &step, now, event.meta.occurred_at);
        out.add(&key, step, Some(r), trace.as_ref())
    }

    /// Reads the records a replay names. Only records of this partition's inbound topics
    /// that the worker has consumed already are replayed (anything later is still ahead
    /// of it and will be processed in order); the log is immutable, so a replay decided
    /// again after a crash reads the same records.
    fn load_replay(&self, w: &Worker, req: &ReplayRequest) -> Result<Vec<ReplayRecord>> {
        let inbound: Vec<String> = topic::INBOUND_SYSTEMS.iter().map(|s| topic::inbound(*s)).collect();
        let mut out = Vec::with_capacity(req.inputs.len());
        for i in &req.inputs {
            let consumed = w.positions.get(&i.topic).copied().unwrap_or(0);
            let event = if !inbound.contains(&i.topic) {
                Err(format!("{} is not an inbound topic; only inbound events are replayed", i.topic))
            } else if i.partition != w.partition {
                Err(format!(
                    "the record is on partition {}, but order {} is on partition {}",
                    i.partition, req.order_ref, w.partition
                ))
            } else if i.offset >= consumed {
                Err("not consumed yet; it will be processed in order".to_string())
            } else {
                match self.log.read(&i.topic, i.partition, i.offset, 1)?.into_iter().find(|r| r.offset == i.offset) {
                    None => Err("no record at this offset (removed by retention?)".to_string()),
                    Some(r) => waybill_schema::decode_event(&r.value).map_err(|e| e.to_string()),
                }
            };
            out.push(ReplayRecord { input: i.clone(), event });
        }
        Ok(out)
    }

    fn commit(&self, w: &mut Worker, out: Outputs, now: Timestamp) -> Result<()> {
        let p = w.partition;
        let mut records = out.records;
        let positions = to_positions(p, &w.positions);
        let checkpoint = Checkpoint { partition: p, positions: positions.clone(), at: now };
        let value = waybill_schema::encode_checkpoint(&checkpoint)
            .map_err(|e| Error::Encode { what: "checkpoint".into(), reason: e.to_string() })?;
        let checkpoint =
            Record { topic: topic::JOURNAL.into(), partition: Some(p), key: Vec::new(), headers: Vec::new(), value };
        // The checkpoint says "every output of these inputs is in the log". A backend
        // whose batches are not atomic (Kafka without transactions) may store a batch's
        // records in any order and only some of them before a crash, so the outputs go
        // first and the checkpoint only once every one of them is acknowledged; restore
        // ignores journal events after the last checkpoint and processes their inputs
        // again, writing the same records under the same ids.
        if !self.log.capabilities().atomic_batches && !records.is_empty() {
            self.log.append(AppendBatch { records: std::mem::take(&mut records), positions: Vec::new() })?;
        }
        records.push(checkpoint);
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
        for key in &out.changed {
            if let Some(due) = w.flows.get(key).and_then(OrderFlow::next_deadline) {
                w.timers.insert((due, key.clone()));
            }
        }
        w.dirty.extend(out.changed);
        // The state store is a cache of the journal: under load it is written every few
        // hundred milliseconds rather than every turn (restore folds the journal from the
        // mark it holds), and always before the worker goes idle.
        if w.dirty.len() >= SAVE_EVERY_FLOWS || w.saved_at.elapsed() >= SAVE_EVERY {
            self.save(w)?;
        }
        Ok(())
    }

    /// Writes the changed flows and the partition's mark in one batch, then lets finished
    /// flows leave memory.
    fn save(&self, w: &mut Worker) -> Result<()> {
        w.saved_at = Instant::now();
        if w.dirty.is_empty() {
            return Ok(());
        }
        let dirty = std::mem::take(&mut w.dirty);
        self.store.save(w.partition, dirty.iter().filter_map(|k| w.flows.get(k)), &w.mark)?;
        for key in dirty {
            if w.flows.get(&key).is_some_and(OrderFlow::is_finished) {
                w.flows.remove(&key);
            }
        }
        Ok(())
    }
}

/// The span name of processing a record of `topic` (`<topic> process`, as the messaging
/// conventions say), without formatting it for the topics Waybill reads.
fn span_name(topic: &str) -> std::borrow::Cow<'static, str> {
    const KNOWN: [(&str, &str); 6] = [
        (topic::CONTROL, "waybill.control process"),
        ("waybill.inbound.odoo", "waybill.inbound.odoo process"),
        ("waybill.inbound.wms", "waybill.inbound.wms process"),
        ("waybill.inbound.carrier", "waybill.inbound.carrier process"),
        ("waybill.inbound.finance", "waybill.inbound.finance process"),
        ("waybill.inbound.bank", "waybill.inbound.bank process"),
    ];
    match KNOWN.iter().find(|(t, _)| *t == topic) {
        Some((_, name)) => std::borrow::Cow::Borrowed(name),
        None => std::borrow::Cow::Owned(format!("{topic} process")),
    }
}

/// Fills the Waybill attributes of an inbound record's span once its saga is known: the
/// saga the step wrote to (the first one, when an event touches several), else the saga
/// a command was issued for.
fn record_saga(span: &tracing::Span, event: &InboundEvent, step: &Step) {
    span.record("messaging.message.id", event.meta.event_id.as_str());
    span.record("waybill.event.type", event.body.name());
    span.record("waybill.order.ref", event.meta.correlation_key.as_str());
    let saga = step
        .journal
        .first()
        .map(|e| e.meta.saga_id.as_str())
        .or_else(|| step.commands.first().map(|c| c.meta.saga_id.as_str()));
    if let Some(id) = saga {
        span.record("waybill.saga.id", id);
        span.record("waybill.saga.kind", id.split_once(':').map_or(id, |(kind, _)| kind));
    }
}

/// Records read from one topic in a turn.
#[derive(Debug, Default)]
struct Batch {
    records: Vec<StoredRecord>,
    /// The topic may hold more records after these.
    full: bool,
}

/// Interleaves the batches read from each input topic in append-time order, so that a
/// backlog spread over several topics is processed in the order the systems wrote it
/// (a carrier's booking after the warehouse's goods issue it answers), never topic by
/// topic. Within a topic, offset order is kept whatever the clock did; records appended
/// in the same millisecond go in topic order (Odoo, warehouse, carrier, finance, bank,
/// control), which is the order the business flows through them.
///
/// A full batch ends on a millisecond boundary but may have more records after it;
/// records of other topics appended later than its last one are left for the next
/// turn, so nothing overtakes records that were not read yet. The full batch with the
/// earliest last record is always processed whole, so every turn makes progress.
fn merge_by_time<'a>(topics: &'a [String], batches: &'a [Batch]) -> Vec<(&'a str, &'a StoredRecord)> {
    let horizon = batches.iter().filter(|b| b.full).filter_map(|b| b.records.last()).map(|r| r.timestamp_ms).min();
    let mut next = vec![0usize; batches.len()];
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.records.len()).sum());
    loop {
        let mut pick: Option<(i64, usize)> = None;
        for (i, b) in batches.iter().enumerate() {
            let Some(r) = b.records.get(next[i]) else { continue };
            if horizon.is_some_and(|h| r.timestamp_ms > h) {
                continue;
            }
            if pick.is_none_or(|(ts, _)| r.timestamp_ms < ts) {
                pick = Some((r.timestamp_ms, i));
            }
        }
        let Some((_, i)) = pick else { return out };
        out.push((topics[i].as_str(), &batches[i].records[next[i]]));
        next[i] += 1;
    }
}

fn to_positions(partition: i32, positions: &BTreeMap<String, i64>) -> Vec<InputPosition> {
    positions.iter().map(|(t, o)| InputPosition { topic: t.clone(), partition, offset: *o }).collect()
}

/// The in-memory side of one owned partition.
#[derive(Debug)]
struct Worker {
    partition: i32,
    flows: HashMap<String, OrderFlow>,
    positions: BTreeMap<String, i64>,
    timers: BTreeSet<(Timestamp, String)>,
    journal_next: i64,
    /// Flows changed since the last save.
    dirty: BTreeSet<String>,
    /// What the next save records as covered.
    mark: PartitionMark,
    saved_at: Instant,
    /// When the consumer lag of a backlogged input was last asked of the log.
    lag_asked_at: Option<Instant>,
}

/// Ask the log for the end offsets of backlogged inputs (for the lag gauge) at most this
/// often: on Kafka each is a round trip to the broker.
const LAG_REFRESH: Duration = Duration::from_secs(1);

/// Save the state store at least this often under load...
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// ...or once this many flows changed.
const SAVE_EVERY_FLOWS: usize = 2048;

impl Worker {
    fn flow(&mut self, store: &StateStore, key: &str) -> Result<&mut OrderFlow> {
        if !self.flows.contains_key(key) {
            let f = store.load(self.partition, key)?.unwrap_or_else(|| OrderFlow::new(key));
            self.flows.insert(key.to_string(), f);
        }
        Ok(self.flows.get_mut(key).expect("inserted above"))
    }
}

/// Records accumulated during a turn.
#[derive(Debug, Default)]
struct Outputs {
    partition: i32,
    records: Vec<Record>,
    consumed: Vec<(String, i64)>,
    observations: Vec<Observation>,
    changed: BTreeSet<String>,
    journal_events: u64,
    commands: u64,
    dead_letters: u64,
}

/// A business fact worth a metric, noted during a turn and emitted once it is durable.
#[derive(Debug)]
enum Observation {
    Started(SagaKind),
    Completed(SagaKind),
    Failed(SagaKind),
    Stage(&'static str, f64),
    Mismatch,
    DeadLetter(&'static str),
    OwnershipViolation(waybill_domain::System, &'static str),
    SyncDelay(f64),
}

impl Observation {
    fn emit(self) {
        let kind = |k: SagaKind| k.prefix();
        match self {
            Observation::Started(k) => metrics::counter!(names::SAGAS_STARTED, "kind" => kind(k)).increment(1),
            Observation::Completed(k) => metrics::counter!(names::SAGAS_COMPLETED, "kind" => kind(k)).increment(1),
            Observation::Failed(k) => metrics::counter!(names::SAGAS_FAILED, "kind" => kind(k)).increment(1),
            Observation::Stage(stage, secs) => {
                metrics::histogram!(names::STAGE_DURATION, "stage" => stage).record(secs)
            }
            Observation::Mismatch => metrics::counter!(names::STOCK_MISMATCHES).increment(1),
            Observation::DeadLetter(k) => metrics::counter!(names::DEAD_LETTERS, "kind" => k).increment(1),
            Observation::OwnershipViolation(system, event) => {
                metrics::counter!(names::OWNERSHIP_VIOLATIONS, "system" => system.as_str(), "event" => event)
                    .increment(1)
            }
            Observation::SyncDelay(secs) => metrics::histogram!(names::ORDER_SYNC_DELAY).record(secs),
        }
    }
}

fn secs_between(later: Timestamp, earlier: Timestamp) -> f64 {
    later.micros_since(earlier).max(0) as f64 / 1e6
}

impl Outputs {
    /// Notes the business metrics of a step (emitted after the append).
    fn observe(&mut self, flow: &OrderFlow, step: &Step, now: Timestamp, occurred_at: Timestamp) {
        if !step.journal.is_empty() {
            self.observations.push(Observation::SyncDelay(secs_between(now, occurred_at)));
        }
        for e in &step.journal {
            let kind = e.meta.kind;
            match &e.body {
                JournalBody::OrderAccepted(_) | JournalBody::InvoiceDrafted(_) | JournalBody::ReturnOpened(_) => {
                    self.observations.push(Observation::Started(kind));
                }
                JournalBody::Completed(_) => self.observations.push(Observation::Completed(kind)),
                JournalBody::Cancelled(_) | JournalBody::PostingRejected(_) | JournalBody::FinanceRefused(_) => {
                    self.observations.push(Observation::Failed(kind));
                }
                JournalBody::ShipmentRecorded(_) => {
                    if let Some(accepted) = flow.fulfillment.accepted_at {
                        self.observations
                            .push(Observation::Stage("release_to_goods_issue", secs_between(e.meta.at, accepted)));
                    }
                }
                JournalBody::InvoiceRecorded(_) => {
                    let shipment = e.meta.saga_id.strip_prefix("s2i:").unwrap_or_default();
                    if let Some(issued) = flow.fulfillment.shipments.get(shipment).and_then(|s| s.recorded_at) {
                        self.observations
                            .push(Observation::Stage("goods_issue_to_invoice_posted", secs_between(e.meta.at, issued)));
                    }
                }
                JournalBody::ExceptionRaised(x)
                    if matches!(x.category, ExceptionCategory::PickMismatch | ExceptionCategory::ReturnMismatch) =>
                {
                    self.observations.push(Observation::Mismatch);
                }
                _ => {}
            }
        }
    }

    fn add(&mut self, key: &str, step: Step, input: Option<&StoredRecord>, trace: Option<&TraceHeaders>) -> Result<()> {
        if let (Some(dl), Some(r)) = (&step.dead_letter, input) {
            self.dead_letter(r, dl);
        }
        if step.journal.is_empty() && step.commands.is_empty() {
            return Ok(());
        }
        self.changed.insert(key.to_string());
        for e in &step.journal {
            let value = waybill_schema::encode_journal(e).map_err(|err| Error::Encode {
                what: format!("journal event {}", e.meta.event_id()),
                reason: err.to_string(),
            })?;
            let mut headers = vec![Header { key: headers::SAGA_ID.into(), value: e.meta.saga_id.clone().into_bytes() }];
            with_trace(&mut headers, trace);
            self.records.push(Record {
                topic: topic::JOURNAL.into(),
                partition: Some(self.partition),
                key: key.as_bytes().to_vec(),
                headers,
                value,
            });
            self.journal_events += 1;
        }
        for c in &step.commands {
            let value = waybill_schema::encode_command(c).map_err(|err| Error::Encode {
                what: format!("command {}", c.meta.idempotency_key),
                reason: err.to_string(),
            })?;
            let mut headers = vec![
                Header { key: headers::IDEMPOTENCY_KEY.into(), value: c.meta.idempotency_key.clone().into_bytes() },
                Header { key: headers::SAGA_ID.into(), value: c.meta.saga_id.clone().into_bytes() },
            ];
            with_trace(&mut headers, trace);
            self.records.push(Record {
                topic: topic::commands(c.meta.target),
                partition: None,
                key: key.as_bytes().to_vec(),
                headers,
                value,
            });
            self.commands += 1;
        }
        Ok(())
    }

    fn dead_letter(&mut self, r: &StoredRecord, dl: &DeadLetter) {
        // The dead letter keeps the input's headers, trace context included, so a replay
        // continues the trace of the original producer.
        tracing::warn!(
            messaging.source = %r.topic,
            waybill.partition = r.partition,
            waybill.offset = r.offset,
            kind = dl.kind.as_str(),
            reason = %dl.reason,
            "input sent to the dead-letter topic"
        );
        let mut headers = r.headers.clone();
        headers.push(Header { key: headers::DLQ_REASON.into(), value: dl.reason.clone().into_bytes() });
        headers.push(Header { key: headers::DLQ_KIND.into(), value: dl.kind.as_str().as_bytes().to_vec() });
        headers.push(Header { key: headers::DLQ_TOPIC.into(), value: r.topic.clone().into_bytes() });
        headers.push(Header { key: headers::DLQ_PARTITION.into(), value: r.partition.to_string().into_bytes() });
        headers.push(Header { key: headers::DLQ_OFFSET.into(), value: r.offset.to_string().into_bytes() });
        self.records.push(Record {
            topic: topic::DLQ.into(),
            partition: None,
            key: r.key.clone(),
            headers,
            value: r.value.clone(),
        });
        self.dead_letters += 1;
        self.observations.push(Observation::DeadLetter(dl.kind.as_str()));
    }
}

/// Adds the W3C trace context headers, when there is a context to carry.
fn with_trace(headers: &mut Vec<Header>, trace: Option<&TraceHeaders>) {
    if let Some(t) = trace {
        headers.extend(t.pairs().map(|(k, v)| Header { key: k.into(), value: v }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, offset: i64, ts: i64) -> StoredRecord {
        StoredRecord {
            topic: topic.into(),
            partition: 0,
            offset,
            timestamp_ms: ts,
            key: vec![],
            headers: vec![],
            value: vec![],
        }
    }

    #[test]
    fn span_names_of_the_inputs_need_no_formatting() {
        for t in topic::coordinator_inputs() {
            let name = span_name(&t);
            assert!(matches!(name, std::borrow::Cow::Borrowed(_)), "{t}");
            assert_eq!(name, format!("{t} process"));
        }
        assert_eq!(span_name("other"), "other process");
    }

    #[test]
    fn backlog_over_several_topics_is_merged_in_append_order() {
        let topics = vec!["wms".to_string(), "carrier".to_string()];
        let batches = vec![
            Batch { records: vec![rec("wms", 0, 10), rec("wms", 1, 30)], full: false },
            Batch { records: vec![rec("carrier", 0, 20), rec("carrier", 1, 40)], full: false },
        ];
        let order: Vec<(String, i64)> =
            merge_by_time(&topics, &batches).into_iter().map(|(t, r)| (t.to_string(), r.timestamp_ms)).collect();
        assert_eq!(order, [("wms".into(), 10), ("carrier".into(), 20), ("wms".into(), 30), ("carrier".into(), 40)]);
    }

    #[test]
    fn nothing_overtakes_the_unread_rest_of_a_full_batch() {
        let topics = vec!["wms".to_string(), "carrier".to_string()];
        // wms came back full, ending at ts 20: its next records (not read yet) may be older than
        // the carrier's record at 25, so that one waits.
        let batches = vec![
            Batch { records: vec![rec("wms", 0, 10), rec("wms", 1, 20)], full: true },
            Batch { records: vec![rec("carrier", 0, 15), rec("carrier", 1, 25)], full: false },
        ];
        let got: Vec<i64> = merge_by_time(&topics, &batches).into_iter().map(|(_, r)| r.timestamp_ms).collect();
        assert_eq!(got, [10, 15, 20]);
    }

    #[test]
    fn offset_order_within_a_topic_survives_a_clock_step_back() {
        let topics = vec!["wms".to_string()];
        let batches = vec![Batch { records: vec![rec("wms", 0, 50), rec("wms", 1, 40)], full: false }];
        let got: Vec<i64> = merge_by_time(&topics, &batches).into_iter().map(|(_, r)| r.offset).collect();
        assert_eq!(got, [0, 1]);
    }
}
