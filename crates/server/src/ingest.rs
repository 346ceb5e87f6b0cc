//! HTTP ingestion for systems that cannot publish to Kafka themselves (a WMS webhook, a
//! carrier callback, tests).
//!
//! `POST /v1/events` with either
//! - `Content-Type: application/vnd.confluent.avro` (or `application/octet-stream`): one
//!   record in the Confluent wire format, stored as sent; or
//! - `Content-Type: application/json`: `{"type": "PickConfirmed", "meta": {…}, "data": {…}}`,
//!   re-encoded as Avro.
//!
//! The event goes to `waybill.inbound.<meta.source.system>`, keyed by its correlation
//! key. The answer comes only after the record is durably in the log: `202` with its
//! position, or `200` with the original position when the same event id was accepted
//! before (the same event delivered twice is accepted once). A body that cannot be
//! decoded is answered `400` with what is wrong, and kept in the dead-letter topic.
//!
//! Each request is a `waybill.ingest` span (kind server) that continues the caller's W3C
//! `traceparent` when it sends one; the record written carries the span's context in its
//! `traceparent` header, so the coordinator's processing joins the same trace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use waybill_domain::{InboundEvent, System, topic};
use waybill_log::{AppendBatch, EventLog, Header, Record};
use waybill_telemetry::{SPAN_TARGET, TraceHeaders};

/// Header carrying the event id on inbound records, so duplicates can be found without
/// decoding.
pub const EVENT_ID_HEADER: &str = "waybill.event-id";

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

/// Ingestion state: the log and the ids of events already accepted.
#[derive(Debug)]
pub struct Ingest {
    log: Arc<dyn EventLog>,
    seen: Mutex<HashMap<String, (String, i32, i64)>>,
}

/// An ingestion failure.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a valid event.
    #[error("{0}")]
    BadInput(String),
    /// The log failed.
    #[error("event log: {0}")]
    Log(#[from] waybill_log::Error),
}

impl Ingest {
    /// Opens ingestion over `log`, learning the event ids already in the inbound topics.
    pub fn open(log: Arc<dyn EventLog>) -> Result<Self, waybill_log::Error> {
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
        Ok(Ingest { log, seen: Mutex::new(seen) })
    }

    /// Accepts one event body (`json` selects the JSON form). Blocking: call from a
    /// blocking context. The record carries the trace context of the current span.
    pub fn accept(&self, body: &[u8], json: bool) -> Result<Accepted, IngestError> {
        self.accept_traced(body, json, waybill_telemetry::inject(&tracing::Span::current()))
    }

    /// Like [`Ingest::accept`], writing `trace` as the record's trace context.
    pub fn accept_traced(&self, body: &[u8], json: bool, trace: Option<TraceHeaders>) -> Result<Accepted, IngestError> {
        let decoded = if json { waybill_schema::decode_event_json(body) } else { waybill_schema::decode_event(body) };
        let event = match decoded {
            Ok(e) => e,
            Err(e) => {
                let reason = format!("ingestion refused the body: {e}");
                self.dead_letter(body, &reason)?;
                return Err(IngestError::BadInput(reason));
            }
        };
        if matches!(event.meta.source.system, System::Operator | System::Waybill) {
            let reason = format!(
                "{} from source system {}: approvals and other control actions must go through the authenticated control plane (gRPC), not ingestion",
                event.body.name(),
                event.meta.source.system
            );
            self.dead_letter(body, &reason)?;
            return Err(IngestError::BadInput(reason));
        }
        if event.meta.correlation_key.is_empty() {
            let reason = "meta.correlation_key is empty; set it to the Odoo sale order name".to_string();
            self.dead_letter(body, &reason)?;
            return Err(IngestError::BadInput(reason));
        }
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("waybill.event.type", event.body.name());
            span.record("waybill.order.ref", event.meta.correlation_key.as_str());
        }
        let value = if json {
            waybill_schema::encode_event(&event).map_err(|e| IngestError::BadInput(e.to_string()))?
        } else {
            body.to_vec()
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, p, o)) = seen.get(&event.meta.event_id) {
            return Ok(Accepted {
                status: "duplicate",
                event_id: event.meta.event_id,
                topic: t.clone(),
                partition: *p,
                offset: *o,
            });
        }
        let t = inbound_topic(&event);
        let record = with_trace(record_for(&t, &event, value), trace.as_ref());
        let at = self.log.append(AppendBatch { records: vec![record], positions: vec![] })?;
        let (p, o) = (at[0].partition, at[0].offset);
        seen.insert(event.meta.event_id.clone(), (t.clone(), p, o));
        Ok(Accepted { status: "accepted", event_id: event.meta.event_id, topic: t, partition: p, offset: o })
    }

    fn dead_letter(&self, body: &[u8], reason: &str) -> Result<(), waybill_log::Error> {
        tracing::warn!(reason, "ingested body sent to the dead-letter topic");
        let record = Record::keyed(topic::DLQ, Vec::new(), body.to_vec())
            .with_header(waybill_saga::coordinator::headers::DLQ_REASON, reason.as_bytes().to_vec())
            .with_header(waybill_saga::coordinator::headers::DLQ_KIND, b"decode".to_vec())
            .with_header(waybill_saga::coordinator::headers::DLQ_TOPIC, b"http:/v1/events".to_vec());
        self.log.append(AppendBatch { records: vec![record], positions: vec![] })?;
        Ok(())
    }
}

/// The inbound topic of an event: by its source system (`operator` and `waybill` events
/// go to the control topic; unknown systems to Odoo's, the default producer).
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

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match self {
            IngestError::BadInput(_) => StatusCode::BAD_REQUEST,
            IngestError::Log(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, axum::Json(ErrorBody { error: self.to_string() })).into_response()
    }
}

async fn post_event(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Bytes) -> Response {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "waybill.ingest",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = "POST",
        http.route = "/v1/events",
        url.path = "/v1/events",
        http.response.status_code = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = tracing::field::Empty,
        messaging.destination.partition.id = tracing::field::Empty,
        messaging.kafka.offset = tracing::field::Empty,
        messaging.message.id = tracing::field::Empty,
        waybill.ingest.status = tracing::field::Empty,
        waybill.event.type = tracing::field::Empty,
        waybill.order.ref = tracing::field::Empty,
    );
    // A caller that traces (W3C `traceparent` on the request) gets the ingestion in its trace.
    waybill_telemetry::continue_trace(&span, headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let response = ingest_request(ingest, &headers, body, &span).await;
    if !span.is_disabled() {
        let status = response.status();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
    response
}

async fn ingest_request(ingest: Arc<Ingest>, headers: &HeaderMap, body: Bytes, span: &tracing::Span) -> Response {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let json = ctype.starts_with("application/json");
    if !json
        && !ctype.starts_with("application/vnd.confluent.avro")
        && !ctype.starts_with("application/octet-stream")
        && !ctype.starts_with("avro/binary")
    {
        return IngestError::BadInput(format!(
            "Content-Type {ctype:?} is not supported; send application/json or application/vnd.confluent.avro"
        ))
        .into_response();
    }
    // The record carries the ingestion span's context, or the caller's when nothing is exported.
    let trace = waybill_telemetry::outgoing(span, headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let blocking_span = span.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _entered = blocking_span.enter();
        ingest.accept_traced(&body, json, trace)
    })
    .await;
    match result {
        Ok(Ok(a)) => {
            if !span.is_disabled() {
                span.record("messaging.destination.name", a.topic.as_str());
                span.record("messaging.destination.partition.id", a.partition.to_string());
                span.record("messaging.kafka.offset", a.offset);
                span.record("messaging.message.id", a.event_id.as_str());
                span.record("waybill.ingest.status", a.status);
            }
            let status = if a.status == "duplicate" { StatusCode::OK } else { StatusCode::ACCEPTED };
            (status, axum::Json(a)).into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("ingestion task failed: {e}")).into_response(),
    }
}

/// The ingestion routes.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new().route("/v1/events", post(post_event)).route("/healthz", get(|| async { "ok" })).with_state(ingest)
}
