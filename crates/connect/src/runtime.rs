//! The connector runtime: reads `waybill.commands.<system>`, delivers through the
//! adapter, writes outcomes back, and moves the command position only with them.
//!
//! Threads: one *dispatcher* per connector reads the owned partitions ahead (at most
//! `readahead` undelivered commands per partition), queues the commands ([`Queue`]),
//! collects finished deliveries and appends their outcome events together with the
//! command positions — one [`AppendBatch`], atomic on the embedded log. `concurrency`
//! *workers* take the best ready command once the target admits a call (breaker, then
//! token bucket), so a critical command that arrives while bulk ones wait for tokens goes
//! first.
//!
//! A command's position is the lowest offset whose outcome is not durable yet: after a
//! crash everything from there is delivered again, and the adapters' idempotency at the
//! target makes the repeat harmless (the answer events repeat with the same ids, which the
//! sagas drop).
//!
//! Failures: a refusal (the target understood and said no) or a transient error that used
//! up `max_attempts` becomes an outcome event — the adapter's business event for it
//! ([`Adapter::refusal`]) or `CommandFailed` — and the saga raises the exception. A target
//! that is unavailable is retried without limit: the commands wait in their topic while
//! the breaker is open, and an outage longer than `unavailable_after` is reported once as
//! `TargetUnavailable` (and `TargetRecovered` when it ends).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use waybill_domain::event::{CommandFailed, TargetOutage};
use waybill_domain::topic::{self, headers};
use waybill_domain::{Command, EventBody, EventMeta, InboundEvent, SourceRef, System, Timestamp};
use waybill_log::{AppendBatch, EventLog, Header, Position, Record, StoredRecord};
use waybill_telemetry::metrics as names;
use waybill_telemetry::{SPAN_TARGET, TraceHeaders};

use crate::backoff::Backoff;
use crate::queue::{Job, Lane, Queue, Take};
use crate::target::{Limits, Outage, Target};
use crate::{Adapter, Call, Failure};

/// Settings of one connector.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Its name (`[connectors.<name>]`), the metrics' `target` label.
    pub name: String,
    /// The system it delivers for: it reads `waybill.commands.<system>` and answers on
    /// `waybill.inbound.<system>`.
    pub system: System,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Throttle and breaker.
    pub limits: Limits,
    /// Attempts a command gets against transient errors before it is reported failed.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Commands (by name) that go in the bulk lane; every other command is critical.
    pub bulk: Vec<String>,
    /// Undelivered commands read ahead per partition.
    pub readahead: usize,
}

impl ConnectorConfig {
    /// The consumer group holding this connector's command positions.
    pub fn group(&self) -> String {
        format!("connector-{}", self.name)
    }
}

/// A connector, ready to start.
#[derive(Debug)]
pub struct Connector {
    cfg: ConnectorConfig,
    log: Arc<dyn EventLog>,
    adapter: Arc<dyn Adapter>,
    target: Arc<Target>,
}

/// A queued command.
#[derive(Debug)]
struct Item {
    command: Command,
    encoded: Vec<u8>,
    trace: Option<TraceHeaders>,
}

/// A finished delivery, for the dispatcher.
#[derive(Debug)]
struct Done {
    partition: i32,
    offset: i64,
    events: Vec<InboundEvent>,
    trace: Option<TraceHeaders>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue<Item>>,
    ready: Condvar,
    stop: AtomicBool,
    /// Partitions this node owns, as the group says.
    owned: Mutex<BTreeSet<i32>>,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue<Item>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running connector.
#[derive(Debug)]
pub struct Running {
    name: String,
    shared: Arc<Shared>,
    target: Arc<Target>,
    threads: Vec<JoinHandle<()>>,
}

impl Connector {
    /// A connector delivering `cfg.system`'s commands from `log` through `adapter`.
    pub fn new(cfg: ConnectorConfig, log: Arc<dyn EventLog>, adapter: Arc<dyn Adapter>) -> Self {
        let target = Arc::new(Target::new(&cfg.name, cfg.limits.clone()));
        Connector { cfg, log, adapter, target }
    }

    /// The target gate, shared with a poller of the same system.
    pub fn target(&self) -> Arc<Target> {
        self.target.clone()
    }

    /// Starts the dispatcher and the workers; no partition is owned until [`Running::assign`].
    pub fn start(self) -> std::io::Result<Running> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
            owned: Mutex::new(BTreeSet::new()),
        });
        let (tx, rx) = mpsc::channel::<Done>();
        let mut threads = Vec::new();
        for w in 0..self.cfg.concurrency.max(1) {
            let worker = Worker {
                cfg: self.cfg.clone(),
                adapter: self.adapter.clone(),
                target: self.target.clone(),
                shared: shared.clone(),
                done: tx.clone(),
                rng: fastrand::Rng::with_seed(w as u64 + 1),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("connector-{}-{w}", self.cfg.name))
                    .spawn(move || worker.run())?,
            );
        }
        drop(tx);
        let dispatcher = Dispatcher {
            topic: topic::commands(self.cfg.system),
            group: self.cfg.group(),
            cfg: self.cfg.clone(),
            log: self.log.clone(),
            target: self.target.clone(),
            shared: shared.clone(),
            done: rx,
            parts: BTreeMap::new(),
            finished: Vec::new(),
            outages: Vec::new(),
        };
        threads.push(
            std::thread::Builder::new().name(format!("connector-{}", self.cfg.name)).spawn(move || dispatcher.run())?,
        );
        Ok(Running { name: self.cfg.name, shared, target: self.target, threads })
    }
}

impl Running {
    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its target gate and figures.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// This node now owns `partitions` (added to what it owns).
    pub fn assign(&self, partitions: &[i32]) {
        self.shared.owned.lock().unwrap_or_else(|p| p.into_inner()).extend(partitions.iter().copied());
    }

    /// Whether this node owns `partition` of the command topic.
    pub fn owns(&self, partition: i32) -> bool {
        self.shared.owned.lock().unwrap_or_else(|p| p.into_inner()).contains(&partition)
    }

    /// This node no longer owns `partitions`: their queued commands are dropped (the new
    /// owner delivers them from the stored position).
    pub fn revoke(&self, partitions: &[i32]) {
        let mut owned = self.shared.owned.lock().unwrap_or_else(|p| p.into_inner());
        for p in partitions {
            owned.remove(p);
        }
    }

    /// Stops and waits for in-flight calls to end.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Per-partition reading state.
#[derive(Debug, Default)]
struct Part {
    /// Next offset to read.
    read: i64,
    /// Offsets read whose outcome is not durable yet, with the command's append time (ms).
    pending: BTreeMap<i64, i64>,
    /// Offsets delivered whose outcome is being appended.
    delivered: BTreeSet<i64>,
    /// The position stored last.
    stored: i64,
}

struct Dispatcher {
    topic: String,
    group: String,
    cfg: ConnectorConfig,
    log: Arc<dyn EventLog>,
    target: Arc<Target>,
    shared: Arc<Shared>,
    done: mpsc::Receiver<Done>,
    parts: BTreeMap<i32, Part>,
    /// Deliveries whose outcome is not appended yet (kept across a failed append).
    finished: Vec<Done>,
    /// Outage reports not appended yet.
    outages: Vec<(Outage, InboundEvent)>,
}

impl Dispatcher {
    fn run(mut self) {
        let mut failing: Option<Instant> = None;
        while !self.shared.stop.load(Ordering::Relaxed) {
            match self.turn() {
                Ok(busy) => {
                    if let Some(since) = failing.take() {
                        tracing::info!(waybill.connector = %self.cfg.name, after_ms = since.elapsed().as_millis() as u64, "connector reaches the log again");
                    }
                    if !busy {
                        // Wait for a delivery to finish, or poll the topic again shortly.
                        if let Ok(d) = self.done.recv_timeout(Duration::from_millis(20)) {
                            self.finished.push(d);
                        }
                    }
                }
                Err(e) => {
                    if failing.is_none() {
                        tracing::warn!(waybill.connector = %self.cfg.name, error = %e, "connector cannot reach the log; retrying");
                        failing = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// One turn: follow the assignment, read ahead, append what finished. Returns whether
    /// anything happened.
    fn turn(&mut self) -> waybill_log::Result<bool> {
        let mut busy = self.follow_assignment()?;
        busy |= self.read_ahead()?;
        while let Ok(d) = self.done.try_recv() {
            self.finished.push(d);
        }
        self.report_outage();
        busy |= self.append_outcomes()?;
        self.export_backlog();
        Ok(busy)
    }

    fn follow_assignment(&mut self) -> waybill_log::Result<bool> {
        let owned = self.shared.owned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut changed = false;
        let revoked: Vec<i32> = self.parts.keys().copied().filter(|p| !owned.contains(p)).collect();
        for p in revoked {
            self.parts.remove(&p);
            self.finished.retain(|d| d.partition != p);
            let dropped = self.shared.queue().drop_partition(p);
            tracing::info!(waybill.connector = %self.cfg.name, waybill.partition = p, dropped, "partition released");
            changed = true;
        }
        for p in owned {
            if self.parts.contains_key(&p) {
                continue;
            }
            let at = self.log.committed(&self.group, &self.topic, p)?.unwrap_or(0);
            tracing::info!(waybill.connector = %self.cfg.name, waybill.partition = p, from = at, "delivering partition");
            self.parts.insert(p, Part { read: at, stored: at, ..Part::default() });
            changed = true;
        }
        Ok(changed)
    }

    fn read_ahead(&mut self) -> waybill_log::Result<bool> {
        let mut read_any = false;
        let mut dead = Vec::new();
        for (&p, part) in self.parts.iter_mut() {
            let room = self.cfg.readahead.saturating_sub(part.pending.len());
            if room == 0 {
                continue;
            }
            let records = self.log.read(&self.topic, p, part.read, room)?;
            if records.is_empty() {
                continue;
            }
            read_any = true;
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            for r in records {
                part.read = r.offset + 1;
                match waybill_schema::decode_command(&r.value) {
                    Ok(command) => {
                        let lane = if self.cfg.bulk.iter().any(|b| b == command.body.name()) {
                            Lane::Bulk
                        } else {
                            Lane::Critical
                        };
                        let trace =
                            TraceHeaders::from_headers(r.headers.iter().map(|h| (h.key.as_str(), h.value.as_slice())));
                        part.pending.insert(r.offset, r.timestamp_ms);
                        queue.push(p, r.offset, r.key.clone(), lane, Item { command, encoded: r.value, trace });
                    }
                    Err(e) => {
                        // Written by a newer Waybill, or damaged: kept with the reason, never
                        // blocking the partition.
                        tracing::error!(waybill.connector = %self.cfg.name, waybill.partition = p, offset = r.offset, error = %e, "command cannot be decoded; dead-lettered");
                        part.pending.insert(r.offset, r.timestamp_ms);
                        part.delivered.insert(r.offset);
                        dead.push(dead_letter(&r, &e.to_string()));
                    }
                }
            }
            drop(queue);
            self.shared.ready.notify_all();
        }
        if !dead.is_empty() {
            let n = dead.len() as u64;
            self.log.append(AppendBatch { records: dead, positions: Vec::new() })?;
            metrics::counter!(names::DEAD_LETTERS, "kind" => "decode").increment(n);
        }
        Ok(read_any)
    }

    fn report_outage(&mut self) {
        if let Some((outage, reason)) = self.target.outage(Instant::now()) {
            self.outages.push((outage, outage_event(self.cfg.system, outage, &reason)));
        }
    }

    fn append_outcomes(&mut self) -> waybill_log::Result<bool> {
        // Offsets done without an outcome to write (dead letters) move the position too.
        let settled: Vec<i32> = self
            .parts
            .iter()
            .filter(|(_, part)| part.pending.keys().next().is_some_and(|o| part.delivered.contains(o)))
            .map(|(p, _)| *p)
            .collect();
        if self.finished.is_empty() && self.outages.is_empty() && settled.is_empty() {
            return Ok(false);
        }
        let mut records = Vec::new();
        for d in &self.finished {
            if let Some(part) = self.parts.get_mut(&d.partition) {
                part.delivered.insert(d.offset);
            }
            for e in &d.events {
                records.push(event_record(e, d.trace.as_ref())?);
            }
        }
        for (_, e) in &self.outages {
            records.push(event_record(e, None)?);
        }
        let mut positions = Vec::new();
        let mut next: HashMap<i32, i64> = HashMap::new();
        for (&p, part) in &self.parts {
            let first_open = part.pending.keys().find(|o| !part.delivered.contains(o)).copied().unwrap_or(part.read);
            if first_open != part.stored {
                positions.push(Position {
                    group: self.group.clone(),
                    topic: self.topic.clone(),
                    partition: p,
                    next_offset: first_open,
                });
                next.insert(p, first_open);
            }
        }
        if records.is_empty() && positions.is_empty() {
            self.finished.clear();
            return Ok(false);
        }
        let n = records.len() as u64;
        let delivered = self.finished.len() as u64;
        if let Err(e) = self.log.append(AppendBatch { records, positions }) {
            // Nothing lost: the outcomes stay here and go out with the next append.
            for (p, part) in self.parts.iter_mut() {
                for d in self.finished.iter().filter(|d| d.partition == *p) {
                    part.delivered.remove(&d.offset);
                }
            }
            return Err(e);
        }
        metrics::counter!(names::RECORDS_PRODUCED, "topic" => topic::inbound(self.cfg.system)).increment(n);
        self.target.stats().delivered.fetch_add(delivered, Ordering::Relaxed);
        self.finished.clear();
        self.outages.clear();
        for (p, at) in next {
            if let Some(part) = self.parts.get_mut(&p) {
                part.stored = at;
                let done: Vec<i64> = part.pending.range(..at).map(|(o, _)| *o).collect();
                for o in done {
                    part.pending.remove(&o);
                    part.delivered.remove(&o);
                }
            }
        }
        Ok(true)
    }

    fn export_backlog(&self) {
        let now_ms = Timestamp::now().0 / 1000;
        let mut undelivered = 0usize;
        let mut oldest: Option<i64> = None;
        for part in self.parts.values() {
            undelivered += part.pending.len();
            if let Some(t) = part.pending.iter().find(|(o, _)| !part.delivered.contains(o)).map(|(_, t)| *t) {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        let target = self.cfg.name.clone();
        metrics::gauge!(names::CONNECTOR_UNDELIVERED, "target" => target.clone()).set(undelivered as f64);
        let age = oldest.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
        metrics::gauge!(names::CONNECTOR_OLDEST_AGE, "target" => target).set(age);
    }
}

fn event_record(e: &InboundEvent, trace: Option<&TraceHeaders>) -> waybill_log::Result<Record> {
    let value = waybill_schema::encode_event(e).map_err(|x| waybill_log::Error::InvalidRequest {
        reason: format!("answer event {} does not encode: {x}", e.meta.event_id),
    })?;
    let mut r = Record::keyed(topic::inbound(e.meta.source.system), e.meta.correlation_key.as_bytes().to_vec(), value)
        .with_header(headers::EVENT_ID, e.meta.event_id.as_bytes().to_vec());
    if let Some(t) = trace {
        r.headers.extend(t.pairs().map(|(k, v)| Header { key: k.into(), value: v }));
    }
    Ok(r)
}

fn dead_letter(r: &StoredRecord, reason: &str) -> Record {
    let mut d = Record::keyed(topic::DLQ, r.key.clone(), r.value.clone());
    d.headers = vec![
        Header {
            key: headers::DLQ_REASON.into(),
            value: format!("connector cannot decode the command: {reason}").into_bytes(),
        },
        Header { key: headers::DLQ_KIND.into(), value: b"decode".to_vec() },
        Header { key: headers::DLQ_TOPIC.into(), value: r.topic.as_bytes().to_vec() },
        Header { key: headers::DLQ_PARTITION.into(), value: r.partition.to_string().into_bytes() },
        Header { key: headers::DLQ_OFFSET.into(), value: r.offset.to_string().into_bytes() },
    ];
    d
}

/// The event reporting an outage or its end; keyed `target:<system>`.
fn outage_event(system: System, outage: Outage, reason: &str) -> InboundEvent {
    let now = Timestamp::now();
    let (kind, ago, body) = match outage {
        Outage::Began { ago } => {
            let since = Timestamp(now.0 - ago.as_micros() as i64);
            let body = EventBody::TargetUnavailable(TargetOutage { target: system, since, reason: reason.to_string() });
            ("unavailable", ago, body)
        }
        Outage::Ended { lasted, ago } => {
            let since = Timestamp(now.0 - ago.as_micros() as i64);
            let reason = format!("answered again after {} s", lasted.as_secs());
            ("recovered", ago, EventBody::TargetRecovered(TargetOutage { target: system, since, reason }))
        }
    };
    let since_ms = (now.0 - ago.as_micros() as i64) / 1000;
    InboundEvent {
        meta: EventMeta {
            event_id: format!("{system}:{kind}:{since_ms}"),
            source: SourceRef::new(system, format!("{system}")),
            correlation_key: format!("target:{system}"),
            occurred_at: now,
            actor: None,
        },
        body,
    }
}

struct Worker {
    cfg: ConnectorConfig,
    adapter: Arc<dyn Adapter>,
    target: Arc<Target>,
    shared: Arc<Shared>,
    done: mpsc::Sender<Done>,
    rng: fastrand::Rng,
}

impl Worker {
    fn run(mut self) {
        while let Some(job) = self.next() {
            self.work(job);
        }
    }

    /// The next job once the target admits a call; `None` when stopping.
    fn next(&self) -> Option<Job<Item>> {
        let mut held_back = false;
        let mut queue = self.shared.queue();
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return None;
            }
            let now = Instant::now();
            if !queue.has_ready(now) {
                let wait = match queue.take(now) {
                    Take::Wait(d) => d.min(Duration::from_millis(100)),
                    Take::Job(j) => {
                        // has_ready said none: cannot happen, but put it back.
                        queue.retry(j, now);
                        Duration::from_millis(1)
                    }
                    Take::Empty => Duration::from_millis(100),
                };
                queue = self.shared.ready.wait_timeout(queue, wait).unwrap_or_else(|p| p.into_inner()).0;
                continue;
            }
            match self.target.admit(now) {
                Ok(_) => match queue.take(now) {
                    Take::Job(j) => return Some(j),
                    _ => continue,
                },
                Err((wait, bucket)) => {
                    if bucket && !held_back {
                        held_back = true;
                        self.target.held_back();
                    }
                    drop(queue);
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                    queue = self.shared.queue();
                }
            }
        }
    }

    fn work(&mut self, mut job: Job<Item>) {
        job.attempts += 1;
        let cmd = &job.item.command;
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "deliver",
            otel.name = format!("{} deliver", topic::commands(self.cfg.system)),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = topic::commands(self.cfg.system),
            messaging.destination.partition.id = job.partition.to_string(),
            messaging.consumer.group.name = self.cfg.group(),
            messaging.kafka.offset = job.offset,
            waybill.connector = self.cfg.name.as_str(),
            waybill.command.type = cmd.body.name(),
            waybill.command.idempotency_key = cmd.meta.idempotency_key.as_str(),
            waybill.saga.id = cmd.meta.saga_id.as_str(),
            waybill.order.ref = cmd.meta.correlation_key.as_str(),
            waybill.attempt = job.attempts,
        );
        if let Some(t) = &job.item.trace {
            let pairs: Vec<(&'static str, Vec<u8>)> = t.pairs().collect();
            waybill_telemetry::continue_trace(&span, pairs.iter().map(|(k, v)| (*k, v.as_slice())));
        }
        let _entered = span.enter();
        let trace = waybill_telemetry::inject(&span).or_else(|| job.item.trace.clone());
        let started = Instant::now();
        let result = self
            .adapter
            .deliver(cmd, Call { encoded: &job.item.encoded, trace: trace.as_ref(), attempt: job.attempts });
        let now = Instant::now();
        self.target.record(now, now - started, result.as_ref().map(|_| ()));
        let events = match result {
            Ok(events) => events,
            Err(f) => {
                let give_up =
                    matches!(f, Failure::Refused { .. }) || (f.uses_attempt() && job.attempts >= self.cfg.max_attempts);
                if !give_up {
                    let mut delay = self.cfg.backoff.delay(job.attempts, &mut self.rng);
                    if let Failure::Unavailable { retry_after: Some(d), .. } = &f {
                        delay = delay.max(*d);
                    }
                    if !f.uses_attempt() {
                        // An unavailable target does not use up the command's attempts.
                        job.attempts -= 1;
                    }
                    tracing::debug!(error = %f, retry_in_ms = delay.as_millis() as u64, "delivery failed; retrying");
                    self.target.stats().retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(names::CONNECTOR_RETRIES, "target" => self.cfg.name.clone()).increment(1);
                    self.shared.queue().retry(job, now + delay);
                    self.shared.ready.notify_one();
                    return;
                }
                tracing::warn!(error = %f, attempts = job.attempts, "command failed at the target; reported to its saga");
                self.target.stats().failed.fetch_add(1, Ordering::Relaxed);
                vec![self.failure_event(&job, &f)]
            }
        };
        let (partition, offset, key) = (job.partition, job.offset, job.key.clone());
        let _ = self.done.send(Done { partition, offset, events, trace });
        self.shared.queue().done(partition, &key);
        self.shared.ready.notify_one();
    }

    /// The outcome event of a command that failed for good: the adapter's business event,
    /// or `CommandFailed`. Its id names the command record, so a failure after an
    /// operator's retry (a new record) is reported again.
    fn failure_event(&self, job: &Job<Item>, f: &Failure) -> InboundEvent {
        let cmd = &job.item.command;
        let system = self.cfg.system;
        let reason = match f {
            Failure::Refused { reason } => reason.clone(),
            other => format!("gave up after {} attempts: {}", job.attempts, other.reason()),
        };
        let body = self.adapter.refusal(cmd, &reason).unwrap_or_else(|| {
            EventBody::CommandFailed(CommandFailed {
                saga_id: cmd.meta.saga_id.clone(),
                idempotency_key: cmd.meta.idempotency_key.clone(),
                command: cmd.body.name().to_string(),
                target: system,
                reason: reason.clone(),
                attempts: job.attempts as i32,
            })
        });
        InboundEvent {
            meta: EventMeta {
                event_id: format!(
                    "{system}:{}:{}@{}/{}",
                    body.name(),
                    cmd.meta.idempotency_key,
                    job.partition,
                    job.offset
                ),
                source: SourceRef::new(system, cmd.meta.idempotency_key.clone()),
                correlation_key: cmd.meta.correlation_key.clone(),
                occurred_at: Timestamp::now(),
                actor: None,
            },
            body,
        }
    }
}
