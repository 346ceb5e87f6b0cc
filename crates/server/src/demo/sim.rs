//! The simulator of Odoo, the warehouse and the carrier. It publishes inbound events to
//! the log the way a system that speaks Kafka would, and answers Waybill's commands.
//!
//! It is crash-safe the same way Waybill is: every event it publishes carries a
//! deterministic event id (in the `waybill.event-id` header), its command positions are
//! stored with the events it appends, and on start it learns which events it already
//! published — so a restarted simulator neither loses nor repeats anything.
//!
//! It traces like a connector would: handling a command is a `<command topic> process`
//! span (kind consumer) continuing the command's `traceparent`, and the answer events it
//! publishes carry that span's context — so the warehouse's pick lands in the order's trace.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use waybill_domain::event::OrderCancelled;
use waybill_domain::{Command, EventBody, InboundEvent, System, Timestamp, topic};
use waybill_log::{AppendBatch, EventLog, Position, Record};
use waybill_telemetry::{SPAN_TARGET, TraceHeaders};

use super::answers::{World, event};
use super::purchasing;
use super::world::{self, Mix};
use crate::ingest::{EVENT_ID_HEADER, inbound_topic, record_for, with_trace};

/// Consumer group of the simulator's command positions.
pub const GROUP: &str = "demo-simulator";

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Orders to release.
    pub orders: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Orders released per second (0: as fast as possible).
    pub rate: f64,
    /// What goes wrong how often.
    pub mix: Mix,
    /// The pick timeout the orchestrator uses (late picks come 1.5 × later).
    pub pick_timeout: Duration,
}

/// Counters.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Orders released so far (including earlier runs).
    pub released: AtomicU64,
    /// Events published.
    pub events: AtomicU64,
    /// Undecodable records injected.
    pub bad_records: AtomicU64,
    /// Commands carried out.
    pub commands: AtomicU64,
    /// Commands seen a second time under an idempotency key already carried out.
    pub duplicate_commands: AtomicU64,
    /// Answers scheduled but not yet published, plus one while commands the simulator has
    /// not read yet remain (as at start-up, before its first pass over the command topics
    /// after a restart: the answers still owed then are not scheduled yet).
    pub pending: AtomicU64,
    /// Purchase orders placed.
    pub purchases: AtomicU64,
}

#[derive(Debug)]
// Nearly every payload is an event; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Payload {
    Event(InboundEvent),
    Bad { topic: String, key: String, bytes: Vec<u8> },
}

#[derive(Debug)]
struct Action {
    id: String,
    payload: Payload,
    /// The command this answers, as (topic, partition, offset).
    source: Option<(String, i32, i64)>,
    /// Trace context of the command's handling, for the answer's headers.
    trace: Option<TraceHeaders>,
}

/// The simulator.
#[derive(Debug)]
pub struct Simulator {
    log: Arc<dyn EventLog>,
    cfg: SimConfig,
    world: World,
    stats: Arc<SimStats>,
    start: Instant,
    emitted: HashSet<String>,
    applied: HashSet<String>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    actions: HashMap<u64, Action>,
    next_action: u64,
    positions: BTreeMap<(String, i32), i64>,
    pending: BTreeMap<(String, i32), BTreeMap<i64, u32>>,
    next_order: usize,
    /// Trace context of the command being answered; every answer scheduled meanwhile carries it.
    trace: Option<TraceHeaders>,
}

impl Simulator {
    /// A simulator over `log`; learns what it already published.
    pub fn new(log: Arc<dyn EventLog>, cfg: SimConfig) -> anyhow::Result<Self> {
        let mut emitted = HashSet::new();
        let mut topics = topic::coordinator_inputs();
        topics.retain(|t| t != topic::CONTROL);
        for t in &topics {
            for p in 0..log.partitions(t)? as i32 {
                let mut from = 0;
                loop {
                    let batch = log.read(t, p, from, 4096)?;
                    let Some(last) = batch.last() else { break };
                    from = last.offset + 1;
                    for r in &batch {
                        if let Some(id) = r.header(EVENT_ID_HEADER) {
                            emitted.insert(String::from_utf8_lossy(id).into_owned());
                        }
                    }
                }
            }
        }
        let mut positions = BTreeMap::new();
        for t in topic::command_topics() {
            for p in 0..log.partitions(&t)? as i32 {
                let at = log.committed(GROUP, &t, p)?.unwrap_or(0);
                positions.insert((t.clone(), p), at);
            }
        }
        let stats = Arc::new(SimStats::default());
        // Nothing read yet: answers may be owed that are not scheduled yet.
        stats.pending.store(1, Ordering::Relaxed);
        let released = (0..cfg.orders).filter(|i| emitted.contains(&release_id(*i))).count();
        stats.released.store(released as u64, Ordering::Relaxed);
        let world = World::new(cfg.seed, cfg.mix.clone(), cfg.pick_timeout);
        Ok(Simulator {
            log,
            cfg,
            world,
            stats,
            start: Instant::now(),
            emitted,
            applied: HashSet::new(),
            queue: BinaryHeap::new(),
            actions: HashMap::new(),
            next_action: 0,
            positions,
            pending: BTreeMap::new(),
            next_order: 0,
            trace: None,
        })
    }

    /// Counters.
    pub fn stats(&self) -> Arc<SimStats> {
        self.stats.clone()
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn schedule(&mut self, after_ms: u64, id: String, payload: Payload, source: Option<(String, i32, i64)>) {
        if self.emitted.contains(&id) {
            return;
        }
        if let Some(src) = &source {
            *self.pending.entry((src.0.clone(), src.1)).or_default().entry(src.2).or_default() += 1;
        }
        let n = self.next_action;
        self.next_action += 1;
        self.queue.push(Reverse((self.now_ms() + after_ms, n)));
        let trace = self.trace.clone();
        self.actions.insert(n, Action { id, payload, source, trace });
    }

    /// Runs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        let mut failing_since: Option<std::time::Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let mut busy = self.release_orders();
            // The simulated systems ride out an unreachable log as real ones would:
            // nothing they were about to send is dropped, they retry.
            let mut caught_up = false;
            let turn = self.read_commands().and_then(|(n, all_read)| {
                caught_up = all_read;
                Ok(n + self.emit_due()?)
            });
            match turn {
                Ok(n) => {
                    busy += n;
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            after_ms = since.elapsed().as_millis() as u64,
                            "simulator reaches the log again"
                        );
                    }
                }
                Err(e) => {
                    if failing_since.is_none() {
                        tracing::warn!(error = %format!("{e:#}"), "simulator cannot reach the log; retrying");
                        failing_since = Some(std::time::Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            self.stats.pending.store(self.actions.len() as u64 + u64::from(!caught_up), Ordering::Relaxed);
            if busy == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    }

    fn release_orders(&mut self) -> usize {
        let mut n = 0;
        let elapsed = self.start.elapsed().as_secs_f64();
        while self.next_order < self.cfg.orders && n < 256 {
            if self.cfg.rate > 0.0 && (self.next_order as f64) > elapsed * self.cfg.rate {
                break;
            }
            let i = self.next_order;
            self.next_order += 1;
            n += 1;
            let order = world::order(self.cfg.seed, i, &self.cfg.mix, Timestamp::now());
            let fate = world::fate(self.cfg.seed, i, &self.cfg.mix);
            let key = order.order_ref.clone();
            if !self.emitted.contains(&release_id(i)) {
                self.stats.released.fetch_add(1, Ordering::Relaxed);
            }
            self.schedule(
                0,
                release_id(i),
                Payload::Event(event(release_id(i), System::Odoo, &key, EventBody::OrderReleased(order))),
                None,
            );
            if let Some(ms) = fate.cancel_after_ms {
                let id = format!("odoo:cancel:{key}");
                let body = EventBody::OrderCancelled(OrderCancelled {
                    order_ref: key.clone(),
                    reason: "customer changed their mind".into(),
                });
                self.schedule(ms, id.clone(), Payload::Event(event(id, System::Odoo, &key, body)), None);
            }
            let every = self.cfg.mix.purchase_every;
            if every > 0 && i.is_multiple_of(every) {
                self.schedule_purchase(i / every);
            }
            if self.cfg.mix.bad_record_every > 0
                && i % self.cfg.mix.bad_record_every == self.cfg.mix.bad_record_every / 2
            {
                self.schedule_bad_records(i, &key);
            }
        }
        n
    }

    /// Purchase order `j` and what its supplier, warehouse and finance send.
    fn schedule_purchase(&mut self, j: usize) {
        let key = waybill_domain::purchase::correlation_key(&purchasing::po_ref(j));
        for s in purchasing::plan(self.cfg.seed, j, Timestamp::now()) {
            let e = event(s.id.clone(), s.system, &key, s.body);
            self.schedule(s.after_ms, s.id, Payload::Event(e), None);
        }
        self.stats.purchases.fetch_add(1, Ordering::Relaxed);
    }

    fn schedule_bad_records(&mut self, i: usize, key: &str) {
        for (id, topic, bytes) in bad_records(i, key) {
            self.schedule(5, id, Payload::Bad { topic, key: key.to_string(), bytes }, None);
            self.stats.bad_records.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads and answers the commands after the positions, at most a batch per partition;
    /// returns how many, and whether every partition was read to its end.
    fn read_commands(&mut self) -> anyhow::Result<(usize, bool)> {
        let mut n = 0;
        let mut all_read = true;
        let keys: Vec<(String, i32)> = self.positions.keys().cloned().collect();
        for (t, p) in keys {
            let from = self.positions[&(t.clone(), p)];
            let records = self.log.read(&t, p, from, 512)?;
            all_read &= records.len() < 512;
            for r in records {
                self.positions.insert((t.clone(), p), r.offset + 1);
                n += 1;
                let span = tracing::info_span!(
                    target: SPAN_TARGET,
                    "process",
                    otel.name = format!("{t} process"),
                    otel.kind = "consumer",
                    messaging.system = "kafka",
                    messaging.operation.type = "process",
                    messaging.operation.name = "process",
                    messaging.destination.name = t.as_str(),
                    messaging.destination.partition.id = p.to_string(),
                    messaging.consumer.group.name = GROUP,
                    messaging.kafka.message.key = String::from_utf8_lossy(&r.key).as_ref(),
                    messaging.kafka.offset = r.offset,
                    waybill.command.type = tracing::field::Empty,
                    waybill.command.idempotency_key = tracing::field::Empty,
                    waybill.saga.id = tracing::field::Empty,
                    waybill.order.ref = tracing::field::Empty,
                );
                let headers = || r.headers.iter().map(|h| (h.key.as_str(), h.value.as_slice()));
                waybill_telemetry::continue_trace(&span, headers());
                let _entered = span.enter();
                let cmd = match waybill_schema::decode_command(&r.value) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(topic = %t, partition = p, offset = r.offset, error = %e, "simulator cannot decode a command");
                        continue;
                    }
                };
                if !self.applied.insert(cmd.meta.idempotency_key.clone()) {
                    self.stats.duplicate_commands.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.stats.commands.fetch_add(1, Ordering::Relaxed);
                if !span.is_disabled() {
                    span.record("waybill.command.type", cmd.body.name());
                    span.record("waybill.command.idempotency_key", cmd.meta.idempotency_key.as_str());
                    span.record("waybill.saga.id", cmd.meta.saga_id.as_str());
                    span.record("waybill.order.ref", cmd.meta.correlation_key.as_str());
                }
                self.trace = waybill_telemetry::outgoing(&span, headers());
                self.answer(&cmd, (t.clone(), p, r.offset));
                self.trace = None;
            }
        }
        Ok((n, all_read))
    }

    fn answer(&mut self, cmd: &Command, src: (String, i32, i64)) {
        for p in self.world.answer(cmd) {
            let id = p.event.meta.event_id.clone();
            self.schedule(p.after_ms, id, Payload::Event(p.event), Some(src.clone()));
        }
    }

    fn emit_due(&mut self) -> anyhow::Result<usize> {
        let now = self.now_ms();
        let mut records = Vec::new();
        let mut done: Vec<Action> = Vec::new();
        while let Some(Reverse((due, n))) = self.queue.peek().copied() {
            if due > now || records.len() >= 512 {
                break;
            }
            self.queue.pop();
            let Some(action) = self.actions.remove(&n) else { continue };
            if !self.emitted.contains(&action.id) {
                let record = match &action.payload {
                    Payload::Event(e) => {
                        let value = waybill_schema::encode_event(e)?;
                        with_trace(record_for(&inbound_topic(e), e, value), action.trace.as_ref())
                    }
                    Payload::Bad { topic, key, bytes } => Record::keyed(topic.clone(), key.clone(), bytes.clone())
                        .with_header(EVENT_ID_HEADER, action.id.as_bytes().to_vec()),
                };
                records.push(record);
            }
            done.push(action);
        }
        if done.is_empty() {
            return Ok(0);
        }
        for a in &done {
            if let Some((t, p, o)) = &a.source
                && let Some(m) = self.pending.get_mut(&(t.clone(), *p))
                && let Some(c) = m.get_mut(o)
            {
                *c -= 1;
                if *c == 0 {
                    m.remove(o);
                }
            }
        }
        // A command's position is stored only once all its answers are out.
        let positions = self
            .positions
            .iter()
            .map(|((t, p), read)| {
                let next = self.pending.get(&(t.clone(), *p)).and_then(|m| m.keys().next().copied()).unwrap_or(*read);
                Position { group: GROUP.into(), topic: t.clone(), partition: *p, next_offset: next }
            })
            .collect();
        let n = records.len();
        if let Err(e) = self.log.append(AppendBatch { records, positions }) {
            // Put everything back, due now: the next turn sends it again (a record that
            // did reach the log is sent twice under the same event id and dropped).
            for a in done {
                if let Some((t, p, o)) = &a.source {
                    *self.pending.entry((t.clone(), *p)).or_default().entry(*o).or_insert(0) += 1;
                }
                let k = self.next_action;
                self.next_action += 1;
                self.queue.push(Reverse((now, k)));
                self.actions.insert(k, a);
            }
            return Err(e.into());
        }
        self.stats.events.fetch_add(n as u64, Ordering::Relaxed);
        for a in done {
            self.emitted.insert(a.id);
        }
        Ok(n.max(1))
    }
}

/// The two undecodable records injected with order `i` (key `key`), as (event id, topic,
/// bytes): half-written JSON sent to the warehouse's Avro topic, and Avro with a schema id
/// nobody knows (9999) on the carrier's.
pub fn bad_records(i: usize, key: &str) -> [(String, String, Vec<u8>); 2] {
    let garbage = format!("{{\"order\": \"{key}\", \"qty\": ").into_bytes();
    let mut unknown = vec![0u8, 0, 0, 0x27, 0x0f];
    unknown.extend_from_slice(b"\x02\x04ab");
    [
        (format!("bad:json:{i}"), topic::inbound(System::Wms), garbage),
        (format!("bad:schema:{i}"), topic::inbound(System::Carrier), unknown),
    ]
}

pub(crate) fn release_id(i: usize) -> String {
    format!("odoo:release:{}", world::order_ref(i))
}
