//! One turn of a partition's worker: read a batch from every input topic, merge them in
//! append order, decide each record (a timer tick fires the timers due by its time),
//! then hand the outputs to `commit`; and the ticks themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

use waybill_domain::event::{ReplayRequest, TimerTick};
use waybill_domain::journal::InputPosition;
use waybill_domain::{EventBody, InboundEvent, Timestamp, topic};
use waybill_log::{AppendBatch, Record, StoredRecord};
use waybill_telemetry::metrics as names;
use waybill_telemetry::{SPAN_TARGET, TraceHeaders};

use super::merge::{Batch, merge_by_time};
use super::outputs::{Observation, Outputs};
use super::{Coordinator, LAG_REFRESH, Worker};
use crate::decision::{Cause, DeadLetter, DeadLetterKind};
use crate::flow::{Env, ReplayRecord, Step};
use crate::{Error, Result};

impl Coordinator {
    /// One turn: read, decide, append, store. Returns the number of inputs handled.
    ///
    /// Decisions take their time from the log (an inbound record's append time, a
    /// tick's time), never from the clock, so deciding the same inputs again after a
    /// crash, in batches cut at other points, decides the same. The clock is read only
    /// for metrics and for the checkpoint's `at`.
    pub(super) fn turn(&self, w: &mut Worker) -> Result<usize> {
        let p = w.partition;
        let mut out = Outputs { partition: p, ..Outputs::default() };
        let mut handled = 0usize;
        let env = Env::new(&self.catalog, &self.policy);
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
            self.handle(w, r, &env, &mut out)?;
        }
        if handled == 0 {
            return Ok(0);
        }
        let p = w.partition;
        let consumed = std::mem::take(&mut out.consumed);
        let observations = std::mem::take(&mut out.observations);
        let produced: Vec<String> = out.records.iter().map(|r| r.topic.clone()).collect();
        self.commit(w, out)?;
        // Everything above is durable: count it.
        let now_ms = Timestamp::now().0 / 1000;
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
    pub(super) fn read_batch(&self, t: &str, p: i32, from: i64) -> Result<Batch> {
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

    fn handle(&self, w: &mut Worker, r: &StoredRecord, env: &Env<'_>, out: &mut Outputs) -> Result<()> {
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
                let kind = DeadLetterKind::of_decode_error(&e);
                out.dead_letter(r, &DeadLetter { kind, reason: e.to_string() });
                return Ok(());
            }
        };
        // Who may send what (control events and ticks only from waybill.control, each
        // business event only from its system of record): the rule ingestion applies too.
        if let Some(channel) = crate::admission::Channel::of_topic(&r.topic)
            && let Err(refusal) = crate::admission::admit(&event, channel, &self.policy.ownership)
        {
            if let Some((system, name)) = refusal.ownership {
                out.observations.push(Observation::OwnershipViolation(system, name));
            }
            out.dead_letter(r, &refusal.dead_letter);
            return Ok(());
        }
        if let EventBody::TimerTick(tick) = &event.body {
            return self.on_tick(w, r, &event, tick, out);
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
        // The time of the decision is the record's append time: a logged input, the same
        // whenever the record is decided again.
        let cause = Cause {
            id: event.meta.event_id.clone(),
            input: Some(InputPosition { topic: r.topic.clone(), partition: r.partition, offset: r.offset }),
            at: Timestamp(r.timestamp_ms.saturating_mul(1000)),
        };
        if let Some(reason) = self.too_old_for_a_new_flow(flow, &event, cause.at) {
            out.dead_letter(r, &DeadLetter { kind: DeadLetterKind::Rule, reason });
            // The key still holds nothing: keep no empty flow for it in memory.
            w.flows.remove(&key);
            return Ok(());
        }
        let step = match (&event.body, replayed) {
            (EventBody::SagaReplayRequested(req), Some(records)) => {
                flow.replay(&event.meta.event_id, req, &records, env, &cause)
            }
            _ => flow.step(&event, env, &cause),
        };
        if sampled {
            record_saga(&span, &event, &step);
        }
        out.observe(flow, &step, Timestamp::now(), event.meta.occurred_at);
        let due = flow.next_deadline();
        out.add(&key, step, Some(r), trace.as_ref())?;
        // A tick later in this turn must see the deadline this step set.
        if let Some(due) = due {
            w.timers.insert((due, key));
        }
        Ok(())
    }

    /// A tick read at its place among the partition's inputs: fires every timer due at
    /// or before its time, in (due, order) order, with the tick's time as the time of
    /// each decision. A tick anywhere but this partition of `waybill.control` (where
    /// only coordinators write them) is a dead letter and fires nothing.
    fn on_tick(
        &self,
        w: &mut Worker,
        r: &StoredRecord,
        event: &InboundEvent,
        tick: &TimerTick,
        out: &mut Outputs,
    ) -> Result<()> {
        if r.topic != topic::CONTROL {
            let reason = format!(
                "TimerTick {} (claimed source {}) was read from {}; timer ticks are the coordinator's own records and are acted on only from {}, so it fired no timer",
                event.meta.event_id,
                event.meta.source,
                r.topic,
                topic::CONTROL
            );
            out.dead_letter(r, &DeadLetter { kind: DeadLetterKind::Forbidden, reason });
            return Ok(());
        }
        if tick.partition != w.partition {
            let reason = format!(
                "TimerTick {} names partition {} but was read from partition {} of {}; a coordinator writes its ticks to its own partition, so it fired no timer",
                event.meta.event_id, tick.partition, w.partition, r.topic
            );
            out.dead_letter(r, &DeadLetter { kind: DeadLetterKind::Rule, reason });
            return Ok(());
        }
        w.tick_pending = false;
        let input = InputPosition { topic: r.topic.clone(), partition: r.partition, offset: r.offset };
        for (due, key) in due_timers(&mut w.timers, tick.at) {
            let Some(flow) = w.flows.get_mut(&key) else { continue };
            if flow.next_deadline() != Some(due) {
                continue; // stale timer: the saga moved on
            }
            let cause = Cause { id: format!("timer:{key}@{}", due.0), input: Some(input.clone()), at: tick.at };
            let step = flow.tick(&Env::new(&self.catalog, &self.policy), &cause);
            let wall = Timestamp::now();
            out.observe(flow, &step, wall, wall);
            let next = flow.next_deadline();
            out.add(&key, step, None, None)?;
            if let Some(next) = next {
                w.timers.insert((next, key));
            }
        }
        self.retire_due(w, tick.at, &input, out)
    }

    /// Appends a tick to this partition of `waybill.control` when the earliest timer is
    /// due by `now` (the clock; a test's time in `drain_partition`) and no tick written
    /// earlier is still unread. Returns whether it wrote one.
    ///
    /// The tick is appended on its own: it is an input like any other, and the timers
    /// fire when it is consumed, in order with the partition's other inputs.
    pub(super) fn tick_if_due(&self, w: &mut Worker, now: Timestamp) -> Result<bool> {
        if w.tick_pending || w.next_due().is_none_or(|due| due > now) {
            return Ok(false);
        }
        let p = w.partition;
        let event = TimerTick::event(p, now);
        let key = event.meta.correlation_key.clone();
        let value = waybill_schema::encode_event(&event).map_err(|e| Error::Encode {
            what: format!("timer tick {}", event.meta.event_id),
            reason: e.to_string(),
        })?;
        let record = Record {
            topic: topic::CONTROL.into(),
            partition: Some(p),
            key: key.into_bytes(),
            headers: Vec::new(),
            value,
        };
        self.log.append(AppendBatch { records: vec![record], positions: Vec::new() })?;
        w.tick_pending = true;
        Ok(true)
    }

    /// Reads the records a replay names. Only records of this partition's inbound topics
    /// that the worker has consumed already are replayed (anything later is still ahead
    /// of it and will be processed in order); the log is immutable, so a replay decided
    /// again after a crash reads the same records.
    pub(super) fn load_replay(&self, w: &Worker, req: &ReplayRequest) -> Result<Vec<ReplayRecord>> {
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
}

/// Takes the timers due at or before `at` out of `timers`, in (due, order key) order.
fn due_timers(timers: &mut BTreeSet<(Timestamp, String)>, at: Timestamp) -> Vec<(Timestamp, String)> {
    let later = timers.split_off(&(Timestamp(at.0.saturating_add(1)), String::new()));
    std::mem::replace(timers, later).into_iter().collect()
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_tick_takes_the_timers_due_by_its_time_in_due_then_key_order() {
        let mut timers: BTreeSet<(Timestamp, String)> =
            [(Timestamp(30), "SO2"), (Timestamp(10), "SO9"), (Timestamp(30), "SO1"), (Timestamp(31), "SO0")]
                .into_iter()
                .map(|(t, k)| (t, k.to_string()))
                .collect();
        let due: Vec<(i64, String)> =
            due_timers(&mut timers, Timestamp(30)).into_iter().map(|(t, k)| (t.0, k)).collect();
        assert_eq!(due, [(10, "SO9".to_string()), (30, "SO1".to_string()), (30, "SO2".to_string())]);
        assert_eq!(timers.len(), 1, "the timer due after the tick stays");
    }
}
