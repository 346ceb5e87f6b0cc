//! Connectors: how Waybill's commands reach Odoo, the warehouse, the carrier and finance,
//! and how their answers come back.
//!
//! A connector owns the partitions of `waybill.commands.<system>` that its node owns and
//! delivers each command to its target through an [`Adapter`], in order per key
//! ([`queue`]). What the target answered goes back as inbound events on
//! `waybill.inbound.<system>` — the system's answer, or a failure the saga turns into an
//! exception in business terms — and the command's position moves only in the same append
//! as that outcome ([`runtime`]). A restart, SIGKILL included, delivers again from the
//! stored position; every adapter is idempotent at the target (the HTTP adapter sends the
//! command's `Idempotency-Key`; the Odoo adapter binds the key to the Odoo record and
//! re-reads before it creates anything), so nothing is created twice.
//!
//! Calls are throttled per target (token bucket, concurrency, two lanes so critical
//! commands never wait behind bulk work), retried with backoff and jitter when the target
//! says "not now", and stopped by a circuit breaker when it is down; an outage longer than
//! configured is reported once as `TARGET_UNAVAILABLE` ([`target`]).
//!
//! This crate does no business decisions: what a command means is the sagas' business,
//! what an answer means too. It must not read or write saga state or projections.

pub mod backoff;
pub mod breaker;
pub mod client;
mod error;
pub mod http;
pub mod odoo;
pub mod queue;
pub mod runtime;
pub mod secret;
pub mod stock;
pub mod target;
pub mod throttle;

pub use error::{Error, Failure, Result, classify_status, parse_retry_after};
pub use runtime::{Connector, ConnectorConfig, Running};

use waybill_domain::{Command, EventBody, EventMeta, InboundEvent, SourceRef, System, Timestamp};
use waybill_telemetry::TraceHeaders;

/// One call's context.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The command as it is in the log (Confluent Avro), for adapters that send it as is.
    pub encoded: &'a [u8],
    /// Trace context to send along (`traceparent`).
    pub trace: Option<&'a TraceHeaders>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The target's throttle, for adapters that make more than one HTTP request per
    /// command (Odoo): the runtime took the token of the first request when it admitted
    /// the delivery; every further request takes one with [`target::Target::wait_token`].
    pub throttle: Option<&'a target::Target>,
}

/// Carries commands out at one target system.
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// Carries out `command` and returns the target's answer as inbound events (none
    /// when the target answers later, through ingestion, or has nothing to say).
    ///
    /// Must be idempotent by `command.meta.idempotency_key`: delivering the same command
    /// again — after a crash, a timeout or an operator's retry — finds what an earlier
    /// attempt did and answers the same events (same ids), never doing it twice.
    fn deliver(&self, command: &Command, call: Call<'_>) -> Result<Vec<InboundEvent>, Failure>;

    /// What a refusal of `command` means in business terms, when this target has a
    /// business event for it (finance refusing an invoice is `InvoiceRejected`). `None`:
    /// the runtime reports a generic `CommandFailed`. The runtime gives the event an id
    /// naming the command record, so a refusal after an operator's retry is news again.
    fn refusal(&self, _command: &Command, _reason: &str) -> Option<EventBody> {
        None
    }
}

/// An answer event from `system` about `command`, with a deterministic id
/// `<system>:<EventName>:<idempotency key>` — the same command answered again yields the
/// same id, which the sagas drop as a duplicate.
pub fn answer(system: System, command: &Command, source_id: impl Into<String>, body: EventBody) -> InboundEvent {
    InboundEvent {
        meta: EventMeta {
            event_id: format!("{system}:{}:{}", body.name(), command.meta.idempotency_key),
            source: SourceRef::new(system, source_id),
            correlation_key: command.meta.correlation_key.clone(),
            occurred_at: Timestamp::now(),
            actor: None,
        },
        body,
    }
}
