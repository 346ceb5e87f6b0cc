//! The HTTP side of ingestion: authentication, per-system limits, content types, and the
//! mapping of outcomes to status codes. The decisions about the body are [`Ingest`]'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use waybill_control::auth::{Authenticator, bearer_token};
use waybill_telemetry::SPAN_TARGET;
use waybill_telemetry::metrics as names;

use super::limits::{Limits, RateLimiter};
use super::{Caller, Ingest, IngestError};

/// The identity in the client certificate of the connection a request came on (mutual
/// TLS), put into each request's extensions by the TLS listener.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerIdentity(pub(crate) Option<String>);

/// Everything the ingestion routes need.
#[derive(Debug)]
pub struct IngestHttp {
    ingest: Arc<Ingest>,
    auth: Authenticator,
    allow_anonymous: bool,
    default_limits: Limits,
    limits: BTreeMap<&'static str, Limits>,
    limiter: RateLimiter,
}

impl IngestHttp {
    /// Ingestion over HTTP: `auth` decides who callers are (the tokens file), anonymous
    /// callers are accepted when `allow_anonymous`, `limits(system)` gives each system's
    /// limits (`""` for anonymous callers).
    pub fn new(
        ingest: Arc<Ingest>,
        auth: Authenticator,
        allow_anonymous: bool,
        limits: impl Fn(&str) -> Limits,
    ) -> Self {
        let per_system =
            waybill_domain::topic::INBOUND_SYSTEMS.iter().map(|s| (s.as_str(), limits(s.as_str()))).collect();
        IngestHttp {
            ingest,
            auth,
            allow_anonymous,
            default_limits: limits(""),
            limits: per_system,
            limiter: RateLimiter::default(),
        }
    }

    fn limits_of(&self, system: &str) -> Limits {
        self.limits.get(system).copied().unwrap_or(self.default_limits)
    }

    /// The largest body any system may send.
    fn largest_body(&self) -> usize {
        self.limits.values().map(|l| l.max_body_bytes).chain([self.default_limits.max_body_bytes]).max().unwrap_or(0)
    }

    /// Who is calling.
    fn caller(&self, headers: &HeaderMap, peer: Option<&str>) -> Result<Caller, waybill_control::Error> {
        let bearer = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(bearer_token(v.as_bytes())?),
        };
        match self.auth.resolve_producer(bearer.as_deref(), peer)? {
            Some(p) => Ok(Caller { identity: p.identity, system: Some(p.system) }),
            None if self.allow_anonymous => Ok(Caller::anonymous()),
            None => Err(waybill_control::Error::Unauthenticated(
                "no credentials: send `Authorization: Bearer <token>` with a token whose identity has a system in the tokens file, or connect with a client certificate"
                    .into(),
            )),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody { error: message.into() })).into_response()
}

fn refuse_auth(e: waybill_control::Error) -> Response {
    match e {
        waybill_control::Error::PermissionDenied(m) => error(StatusCode::FORBIDDEN, m),
        other => {
            let mut r = error(StatusCode::UNAUTHORIZED, other.to_string());
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"waybill\""));
            r
        }
    }
}

/// The body of a `409`: the event id and both digests.
#[derive(Serialize)]
struct ConflictBody {
    error: String,
    event_id: String,
    accepted_digest: String,
    digest: String,
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match self {
            IngestError::BadInput(_) => StatusCode::BAD_REQUEST,
            IngestError::Forbidden(_) => StatusCode::FORBIDDEN,
            IngestError::Log(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Conflict { message, event_id, accepted_digest, digest } => {
                let body = ConflictBody { error: message, event_id, accepted_digest, digest };
                return (StatusCode::CONFLICT, axum::Json(body)).into_response();
            }
        };
        error(status, self.to_string())
    }
}

async fn post_event(
    State(state): State<Arc<IngestHttp>>,
    peer: Option<axum::Extension<PeerIdentity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
        enduser.id = tracing::field::Empty,
    );
    // A caller that traces (W3C `traceparent` on the request) gets the ingestion in its trace.
    waybill_telemetry::continue_trace(&span, headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let peer = peer.and_then(|axum::Extension(p)| p.0);
    let (system, response) = ingest_request(state, &headers, peer.as_deref(), body, &span).await;
    let status = response.status();
    metrics::counter!(names::INGEST_REQUESTS, "system" => system, "status" => status.as_str().to_string()).increment(1);
    if !span.is_disabled() {
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
    response
}

/// Handles one post; returns the caller's system label (for the request counter) and
/// the response.
async fn ingest_request(
    state: Arc<IngestHttp>,
    headers: &HeaderMap,
    peer: Option<&str>,
    body: Bytes,
    span: &tracing::Span,
) -> (&'static str, Response) {
    let caller = match state.caller(headers, peer) {
        Ok(c) => c,
        Err(e) => return ("unauthenticated", refuse_auth(e)),
    };
    if !span.is_disabled() {
        span.record("enduser.id", caller.identity.as_str());
    }
    let system = caller.system.map_or("anonymous", |s| s.as_str());
    let limits = state.limits_of(caller.system.map_or("", |s| s.as_str()));
    if let Err(wait) = state.limiter.take(system, &limits, Instant::now()) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "system {system} is over its ingestion rate of {}/s (burst {}); retry after {secs} s, or raise ingest.systems.{system}.rate_per_sec",
                limits.rate_per_sec, limits.burst
            ),
        );
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return (system, r);
    }
    if body.len() > limits.max_body_bytes {
        return (
            system,
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is {} bytes, above system {system}'s limit of {} bytes; send one event per request, or raise ingest.systems.{system}.max_body_bytes",
                    body.len(),
                    limits.max_body_bytes
                ),
            ),
        );
    }
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let json = ctype.starts_with("application/json");
    if !json
        && !ctype.starts_with("application/vnd.confluent.avro")
        && !ctype.starts_with("application/octet-stream")
        && !ctype.starts_with("avro/binary")
    {
        let message = format!(
            "Content-Type {ctype:?} is not supported; send application/json (the JSON envelope) or application/vnd.confluent.avro (one Confluent-framed record)"
        );
        return (system, error(StatusCode::UNSUPPORTED_MEDIA_TYPE, message));
    }
    // The record carries the ingestion span's context, or the caller's when nothing is exported.
    let trace = waybill_telemetry::outgoing(span, headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let blocking_span = span.clone();
    let ingest = state.ingest.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _entered = blocking_span.enter();
        ingest.accept_traced(&caller, &body, json, trace)
    })
    .await;
    let response = match result {
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
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("ingestion task failed: {e}")),
    };
    (system, response)
}

/// The ingestion routes.
pub fn router(state: Arc<IngestHttp>) -> Router {
    // Bodies are capped at the largest per-system limit while they are read; each
    // system's own limit is checked once the caller is known.
    let cap = state.largest_body();
    Router::new()
        .route("/v1/events", post(post_event))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(cap))
        .with_state(state)
}
