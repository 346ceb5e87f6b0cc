//! What a turn writes: journal events, commands and dead letters with their headers,
//! and the business observations that become metrics once the batch is durable.

use std::collections::BTreeSet;

use waybill_domain::{ExceptionCategory, JournalBody, SagaKind, Timestamp, topic};
use waybill_log::{Header, Record, StoredRecord};
use waybill_telemetry::TraceHeaders;
use waybill_telemetry::metrics as names;

use crate::decision::DeadLetter;
use crate::flow::Step;
use crate::registry::AnyFlow;
use crate::saga::Lifecycle;
use crate::{Error, Result};

/// Header names written by the coordinator (they live with the topic names, so every
/// writer — ingestion, connectors — uses the same ones).
pub use waybill_domain::topic::headers;

/// Records accumulated during a turn.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    pub(super) partition: i32,
    pub(super) records: Vec<Record>,
    pub(super) consumed: Vec<(String, i64)>,
    pub(super) observations: Vec<Observation>,
    pub(super) changed: BTreeSet<String>,
    pub(super) journal_events: u64,
    pub(super) commands: u64,
    pub(super) dead_letters: u64,
}

/// A business fact worth a metric, noted during a turn and emitted once it is durable.
#[derive(Debug)]
pub(super) enum Observation {
    Started(SagaKind),
    Completed(SagaKind),
    Failed(SagaKind),
    Stage(&'static str, f64),
    Mismatch,
    DeadLetter(&'static str),
    OwnershipViolation(waybill_domain::System, &'static str),
    SyncDelay(f64),
    Retired,
}

impl Observation {
    pub(super) fn emit(self) {
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
            Observation::Retired => metrics::counter!(names::FLOWS_RETIRED).increment(1),
        }
    }
}

fn secs_between(later: Timestamp, earlier: Timestamp) -> f64 {
    later.micros_since(earlier).max(0) as f64 / 1e6
}

impl Outputs {
    /// Notes the business metrics of a step (emitted after the append).
    pub(super) fn observe(&mut self, flow: &AnyFlow, step: &Step, now: Timestamp, occurred_at: Timestamp) {
        if !step.journal.is_empty() {
            self.observations.push(Observation::SyncDelay(secs_between(now, occurred_at)));
        }
        for e in &step.journal {
            let kind = e.meta.kind;
            match flow.lifecycle(e) {
                Some(Lifecycle::Started) => self.observations.push(Observation::Started(kind)),
                Some(Lifecycle::Completed) => self.observations.push(Observation::Completed(kind)),
                Some(Lifecycle::Failed) => self.observations.push(Observation::Failed(kind)),
                None => {}
            }
            if let JournalBody::ExceptionRaised(x) = &e.body
                && matches!(x.category, ExceptionCategory::PickMismatch | ExceptionCategory::ReturnMismatch)
            {
                self.observations.push(Observation::Mismatch);
            }
            if let Some((stage, began)) = flow.stage(e) {
                self.observations.push(Observation::Stage(stage, secs_between(e.meta.at, began)));
            }
        }
    }

    pub(super) fn add(
        &mut self,
        key: &str,
        step: Step,
        input: Option<&StoredRecord>,
        trace: Option<&TraceHeaders>,
    ) -> Result<()> {
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

    pub(super) fn dead_letter(&mut self, r: &StoredRecord, dl: &DeadLetter) {
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
