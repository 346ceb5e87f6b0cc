//! HTTP ingestion for systems that cannot publish to Kafka themselves (a WMS webhook, a
//! carrier callback, tests).
//!
//! `POST /v1/events` with either
//! - `Content-Type: application/vnd.confluent.avro` (or `application/octet-stream`): one
//!   record in the Confluent wire format; or
//! - `Content-Type: application/json`: `{"type": "PickConfirmed", "meta": {…}, "data": {…}}`,
//!   re-encoded as Avro.
//!
//! Who may post what ([`http`] answers with the status in brackets):
//! - every caller authenticates like a control-plane caller — bearer token or client
//!   certificate, looked up in the one tokens file — and its identity names the one
//!   system it speaks for; no credentials `[401]`, an identity without a system `[403]`.
//!   Anonymous posts are accepted only when `ingest.allow_anonymous` is set, which the
//!   configuration allows only on a loopback address (the demo);
//! - each system has a body-size limit `[413]` and a rate limit `[429]`, with `Retry-After`;
//! - control events (approvals, rejections, workbench actions) are refused by type
//!   whatever source they claim `[403]`: they have one way in, the control plane;
//! - the body's `meta.source.system` must be the caller's system `[403]`, its
//!   `meta.actor`, when set, the caller's identity `[403]` (ingestion sets it otherwise,
//!   so a posting the event causes names who caused it, for four-eyes);
//! - the caller's system must own the event type (`policy.ownership`) `[403]`;
//! - a body that does not decode, or has no correlation key `[400]`; a `Content-Type`
//!   other than JSON or Confluent Avro `[415]`;
//! - an event id accepted before with a different body `[409]`, answered with the SHA-256
//!   digests of both events' canonical Avro encoding ([`event_digest`]).
//!
//! Every refused body that got past authentication and the limits is kept in the
//! dead-letter topic with the reason, its kind (`decode`, `unknown-schema`, `rule`,
//! `forbidden`, `ownership`, the coordinator's names), who sent it and the original
//! bytes, and counted in `waybill_dead_letters_total{kind}` (ownership violations also in
//! `waybill_ownership_violations_total{system,event}`). The admission rules are the
//! saga crate's own ([`waybill_saga::admission`]), the ones the coordinator applies to
//! records on the inbound topics.
//!
//! An accepted event goes to `waybill.inbound.<system>`, keyed by its correlation key.
//! The answer comes only after the record is durably in the log: `202` with its
//! position, or `200` with the original position when the same event (same id, same
//! content) was accepted before (the same event delivered twice is accepted once).
//!
//! Each request is a `waybill.ingest` span (kind server) that continues the caller's W3C
//! `traceparent` when it sends one; the record written carries the span's context in its
//! `traceparent` header, so the coordinator's processing joins the same trace.

mod http;
mod limits;
mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use waybill_domain::{InboundEvent, System, topic};
use waybill_log::{AppendBatch, EventLog, Header, Record};
use waybill_saga::admission::{self, Channel, Ownership};
use waybill_saga::coordinator::headers;
use waybill_saga::decision::DeadLetterKind;
use waybill_telemetry::TraceHeaders;
use waybill_telemetry::metrics as names;

pub use http::{IngestHttp, router};
pub use limits::Limits;
pub use tls::{serve_tls, tls_config};

/// `waybill.dlq.topic` of a body ingestion refused: it never reached a topic, so `waybill
/// dlq replay` leaves it (the producer posts it again once fixed).
pub const HTTP_SOURCE: &str = "http:/v1/events";

/// Header carrying the event id on inbound records, so duplicates can be found without
/// decoding.
pub const EVENT_ID_HEADER: &str = topic::headers::EVENT_ID;

/// Where an accepted event is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// `accepted` or `duplicate`.
    pub status: &'static str,
    /// Event id.
    pub event_id: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Who is posting, as the edge authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Identity from the tokens file (or certificate), or `anonymous`.
    pub identity: String,
    /// The system the identity speaks for; `None` for an anonymous caller, who posts as
    /// the system its body claims.
    pub system: Option<System>,
}

impl Caller {
    /// An anonymous caller (only where configuration allows it).
    pub fn anonymous() -> Self {
        Caller { identity: "anonymous".into(), system: None }
    }
}

/// Ingestion state: the log, the ownership table and the ids of events already accepted.
#[derive(Debug)]
pub struct Ingest {
    log: Arc<dyn EventLog>,
    ownership: Ownership,
    seen: Mutex<HashMap<String, (String, i32, i64)>>,
}

/// An ingestion failure.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a valid event.
    #[error("{0}")]
    BadInput(String),
    /// The caller may not send this (a control event, another system's source or actor,
    /// an event its system does not own).
    #[error("{0}")]
    Forbidden(String),
    /// The event id was accepted before with a different body.
    #[error("{message}")]
    Conflict {
        /// What happened and what to do.
        message: String,
        /// The event id.
        event_id: String,
        /// SHA-256 of the accepted event (hex).
        accepted_digest: String,
        /// SHA-256 of this body's event (hex).
        digest: String,
    },
    /// The log failed.
    #[error("event log: {0}")]
    Log(#[from] waybill_log::Error),
}

/// SHA-256 (hex) of an event's canonical form: its Avro encoding with the latest schema,
/// so the same event posted as JSON or as Avro written with an older schema digests the
/// same.
pub fn event_digest(event: &InboundEvent) -> String {
    let bytes = waybill_schema::encode_event(event).unwrap_or_default();
    ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Ingest {
    /// Opens ingestion over `log`, learning the event ids already in the inbound topics.
    pub fn open(log: Arc<dyn EventLog>, ownership: Ownership) -> Result<Self, waybill_log::Error> {
        let mut seen = HashMap::new();
        for system in topic::INBOUND_SYSTEMS {
            let t = topic::inbound(system);
            for p in 0..log.partitions(&t)? as i32 {
                let mut from = 0;
                loop {
                    let batch = log.read(&t, p, from, 4096)?;
                    let Some(last) = batch.last() else { break };
                    from = last.offset + 1;
                    for r in &batch {
                        if let Some(id) = r.header(EVENT_ID_HEADER) {
                            seen.insert(String::from_utf8_lossy(id).into_owned(), (t.clone(), p, r.offset));
                        }
                    }
                }
            }
        }
        Ok(Ingest { log, ownership, seen: Mutex::new(seen) })
    }

    /// Accepts one event body from `caller` (`json` selects the JSON form). Blocking:
    /// call from a blocking context. The record carries the trace context of the
    /// current span.
    pub fn accept(&self, caller: &Caller, body: &[u8], json: bool) -> Result<Accepted, IngestError> {
        self.accept_traced(caller, body, json, waybill_telemetry::inject(&tracing::Span::current()))
    }

    /// Like [`Ingest::accept`], writing `trace` as the record's trace context.
    pub fn accept_traced(
        &self,
        caller: &Caller,
        body: &[u8],
        json: bool,
        trace: Option<TraceHeaders>,
    ) -> Result<Accepted, IngestError> {
        let decoded = if json { waybill_schema::decode_event_json(body) } else { waybill_schema::decode_event(body) };
        let mut event = match decoded {
            Ok(e) => e,
            Err(e) => {
                let kind = DeadLetterKind::of_decode_error(&e);
                let reason = format!("ingestion refused the body: {e}");
                self.dead_letter(caller, body, None, trace.as_ref(), kind, &reason)?;
                return Err(IngestError::BadInput(reason));
            }
        };
        let system = match self.admit(caller, &event) {
            Ok(system) => system,
            Err(refusal) => {
                self.dead_letter(
                    caller,
                    body,
                    Some(&event),
                    trace.as_ref(),
                    refusal.dead_letter.kind,
                    &refusal.dead_letter.reason,
                )?;
                if let Some((system, event)) = refusal.ownership {
                    metrics::counter!(names::OWNERSHIP_VIOLATIONS, "system" => system.as_str(), "event" => event)
                        .increment(1);
                }
                return Err(IngestError::Forbidden(refusal.dead_letter.reason));
            }
        };
        if event.meta.correlation_key.is_empty() {
            let reason = "meta.correlation_key is empty; set it to the Odoo sale order name".to_string();
            self.dead_letter(caller, body, Some(&event), trace.as_ref(), DeadLetterKind::Rule, &reason)?;
            return Err(IngestError::BadInput(reason));
        }
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("waybill.event.type", event.body.name());
            span.record("waybill.order.ref", event.meta.correlation_key.as_str());
        }
        // The actor is who the edge authenticated: stamped when the body named nobody.
        let stamp = caller.system.is_some() && event.meta.actor.is_none();
        if stamp {
            event.meta.actor = Some(caller.identity.clone());
        }
        let value = if json || stamp {
            waybill_schema::encode_event(&event).map_err(|e| IngestError::BadInput(e.to_string()))?
        } else {
            body.to_vec()
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, p, o)) = seen.get(&event.meta.event_id) {
            // The same id is a redelivery only with the same content; another body under
            // it is a producer bug that would otherwise be lost silently.
            let original = self.log.read(t, *p, *o, 1)?.into_iter().next().filter(|r| r.offset == *o);
            let accepted_digest = original
                .and_then(|r| waybill_schema::decode_event(&r.value).ok())
                .map(|e| event_digest(&e))
                .unwrap_or_default();
            let digest = event_digest(&event);
            if !accepted_digest.is_empty() && accepted_digest != digest {
                let message = format!(
                    "event id {} was accepted before ({t}/{p}/{o}) with a different body (sha256 {accepted_digest}); this body is sha256 {digest}. A redelivery must repeat the event unchanged, and a new event needs a new event id; this body is kept in the dead-letter topic",
                    event.meta.event_id
                );
                let (t, p, o) = (t.clone(), *p, *o);
                drop(seen);
                let reason = format!(
                    "event id {} reused with a different body: accepted at {t}/{p}/{o} (sha256 {accepted_digest}), this one sha256 {digest}",
                    event.meta.event_id
                );
                self.dead_letter(caller, body, Some(&event), trace.as_ref(), DeadLetterKind::Rule, &reason)?;
                return Err(IngestError::Conflict { message, event_id: event.meta.event_id, accepted_digest, digest });
            }
            return Ok(Accepted {
                status: "duplicate",
                event_id: event.meta.event_id,
                topic: t.clone(),
                partition: *p,
                offset: *o,
            });
        }
        let t = topic::inbound(system);
        let record = with_trace(record_for(&t, &event, value), trace.as_ref());
        let at = self.log.append(AppendBatch { records: vec![record], positions: vec![] })?;
        let (p, o) = (at[0].partition, at[0].offset);
        seen.insert(event.meta.event_id.clone(), (t.clone(), p, o));
        Ok(Accepted { status: "accepted", event_id: event.meta.event_id, topic: t, partition: p, offset: o })
    }

    /// The system `caller` posts `event` as, once the event passes the edge's own checks
    /// (claimed source and actor are the caller's) and the saga crate's admission rule.
    fn admit(&self, caller: &Caller, event: &InboundEvent) -> Result<System, admission::Refusal> {
        let claimed = event.meta.source.system;
        let forbidden = |reason: String| admission::Refusal {
            dead_letter: waybill_saga::decision::DeadLetter { kind: DeadLetterKind::Forbidden, reason },
            ownership: None,
        };
        let system = caller.system.unwrap_or(claimed);
        // Control events first: refused by type, whatever source they claim.
        let channel = Channel::Ingestion(system);
        if event.body.is_control() {
            admission::admit(event, channel, &self.ownership)?;
        }
        if let Some(own) = caller.system
            && claimed != own
        {
            return Err(forbidden(format!(
                "{} authenticated as system {own}, but the body claims source {}; a producer posts only as its own system (event {})",
                caller.identity, event.meta.source, event.meta.event_id
            )));
        }
        if !topic::INBOUND_SYSTEMS.contains(&system) {
            let systems: Vec<&str> = topic::INBOUND_SYSTEMS.iter().map(|s| s.as_str()).collect();
            return Err(forbidden(format!(
                "source system {claimed} does not send events through ingestion (event {}); use one of {}",
                event.meta.event_id,
                systems.join(", ")
            )));
        }
        if caller.system.is_some()
            && let Some(actor) = event.meta.actor.as_deref().filter(|a| *a != caller.identity)
        {
            return Err(forbidden(format!(
                "meta.actor is {actor:?}, but the caller authenticated as {}; a producer acts only as itself (leave meta.actor out and ingestion sets it)",
                caller.identity
            )));
        }
        admission::admit(event, Channel::Ingestion(system), &self.ownership)?;
        Ok(system)
    }

    /// Keeps a refused body in the dead-letter topic with the headers a dead letter from
    /// a topic has: the record's own (event id, trace context — here the ingestion's)
    /// and key (the correlation key) when the body decoded, then `waybill.dlq.reason`,
    /// `.kind`, `.topic` (`http:/v1/events`), `.partition` and `.offset` (`-1`: it was
    /// never on a topic), plus `.caller`, the identity that posted it.
    fn dead_letter(
        &self,
        caller: &Caller,
        body: &[u8],
        event: Option<&InboundEvent>,
        trace: Option<&TraceHeaders>,
        kind: DeadLetterKind,
        reason: &str,
    ) -> Result<(), waybill_log::Error> {
        tracing::warn!(caller = %caller.identity, kind = kind.as_str(), reason, "ingested body sent to the dead-letter topic");
        let mut record = match event {
            Some(e) => record_for(topic::DLQ, e, body.to_vec()),
            None => Record::keyed(topic::DLQ, Vec::new(), body.to_vec()),
        };
        record = with_trace(record, trace);
        let record = record
            .with_header(headers::DLQ_REASON, reason.as_bytes().to_vec())
            .with_header(headers::DLQ_KIND, kind.as_str().as_bytes().to_vec())
            .with_header(headers::DLQ_TOPIC, HTTP_SOURCE.as_bytes().to_vec())
            .with_header(headers::DLQ_PARTITION, b"-1".to_vec())
            .with_header(headers::DLQ_OFFSET, b"-1".to_vec())
            .with_header(headers::DLQ_CALLER, caller.identity.as_bytes().to_vec());
        self.log.append(AppendBatch { records: vec![record], positions: vec![] })?;
        metrics::counter!(names::DEAD_LETTERS, "kind" => kind.as_str()).increment(1);
        Ok(())
    }
}

/// The inbound topic a Kafka producer writes an event to: by its source system
/// (`operator` and `waybill` events to the control topic, which only the control plane
/// may write; unknown systems to Odoo's). For simulators and tests that stand in for
/// producers; ingestion itself writes to the caller's system's topic.
pub fn inbound_topic(event: &InboundEvent) -> String {
    match event.meta.source.system {
        System::Operator | System::Waybill => topic::CONTROL.to_string(),
        s if topic::INBOUND_SYSTEMS.contains(&s) => topic::inbound(s),
        _ => topic::inbound(System::Odoo),
    }
}

/// The log record for an inbound event: keyed by correlation key, with the event id header.
pub fn record_for(topic: &str, event: &InboundEvent, value: Vec<u8>) -> Record {
    Record {
        topic: topic.to_string(),
        partition: None,
        key: event.meta.correlation_key.as_bytes().to_vec(),
        headers: vec![Header { key: EVENT_ID_HEADER.into(), value: event.meta.event_id.as_bytes().to_vec() }],
        value,
    }
}

/// Adds the W3C trace context headers (`traceparent`, `tracestate`) to `record`.
pub fn with_trace(mut record: Record, trace: Option<&TraceHeaders>) -> Record {
    if let Some(t) = trace {
        record.headers.extend(t.pairs().map(|(k, v)| Header { key: k.into(), value: v }));
    }
    record
}
