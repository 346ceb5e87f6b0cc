//! A worker: takes the best ready command once the target admits a call, delivers it
//! through the adapter, and hands the outcome to the dispatcher (or schedules a retry).

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use waybill_domain::event::CommandFailed;
use waybill_domain::topic;
use waybill_domain::{EventBody, EventMeta, InboundEvent, SourceRef, Timestamp};
use waybill_telemetry::SPAN_TARGET;
use waybill_telemetry::metrics as names;

use super::{ConnectorConfig, Done, Item, Shared};
use crate::queue::{Job, Take};
use crate::target::Target;
use crate::{Adapter, Call, Failure};

pub(super) struct Worker {
    cfg: ConnectorConfig,
    adapter: Arc<dyn Adapter>,
    target: Arc<Target>,
    shared: Arc<Shared>,
    done: mpsc::Sender<Done>,
    rng: fastrand::Rng,
}

impl Worker {
    pub(super) fn new(
        cfg: ConnectorConfig,
        adapter: Arc<dyn Adapter>,
        target: Arc<Target>,
        shared: Arc<Shared>,
        done: mpsc::Sender<Done>,
        rng: fastrand::Rng,
    ) -> Self {
        Worker { cfg, adapter, target, shared, done, rng }
    }

    pub(super) fn run(mut self) {
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
        let result = self.adapter.deliver(
            cmd,
            Call {
                encoded: &job.item.encoded,
                trace: trace.as_ref(),
                attempt: job.attempts,
                throttle: Some(&self.target),
            },
        );
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
