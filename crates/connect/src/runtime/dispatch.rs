//! The dispatcher: reads the owned partitions ahead, queues the commands, and appends
//! finished deliveries' outcomes together with the command positions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use waybill_domain::event::TargetOutage;
use waybill_domain::topic::{self, headers};
use waybill_domain::{EventBody, EventMeta, InboundEvent, SourceRef, System, Timestamp};
use waybill_log::{AppendBatch, EventLog, Header, Position, Record, StoredRecord};
use waybill_telemetry::TraceHeaders;
use waybill_telemetry::metrics as names;

use super::{ConnectorConfig, Done, Item, Shared};
use crate::queue::Lane;
use crate::target::{Outage, Target};

/// Per-partition reading state.
#[derive(Debug, Default)]
pub(super) struct Part {
    /// Next offset to read.
    read: i64,
    /// Offsets read whose outcome is not durable yet, with the command's append time (ms).
    pending: BTreeMap<i64, i64>,
    /// Offsets delivered whose outcome is being appended.
    delivered: BTreeSet<i64>,
    /// The position stored last.
    stored: i64,
}

pub(super) struct Dispatcher {
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
    pub(super) fn new(
        cfg: ConnectorConfig,
        log: Arc<dyn EventLog>,
        target: Arc<Target>,
        shared: Arc<Shared>,
        done: mpsc::Receiver<Done>,
    ) -> Self {
        Dispatcher {
            topic: topic::commands(cfg.system),
            group: cfg.group(),
            cfg,
            log,
            target,
            shared,
            done,
            parts: BTreeMap::new(),
            finished: Vec::new(),
            outages: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
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
