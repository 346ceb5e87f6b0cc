//! A double for the warehouse, carrier, finance and bank HTTP APIs: one command endpoint
//! that checks Waybill's signature, deduplicates by `Idempotency-Key` and lets the test
//! decide each answer.
//!
//! Order of checks for `POST <path>`: availability and faults, then the signature
//! (`X-Waybill-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, 401 if missing or
//! wrong), the content type (JSON or Confluent Avro, else 415), the idempotency key (400 if
//! missing; a repeat with the same body gets the first answer again and counts as a
//! duplicate; with a different body 409 naming both SHA-256 digests), and only then the
//! behaviour closure, which sees each distinct command once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ring::{digest, hmac};
use serde_json::{Value, json};

use crate::faults::{DownMode, Fault, FaultId, FaultPlan, Match, RequestLog, RequestRecord, Times, Transport};
use crate::serve::{Availability, ConnKill, Server};

/// Header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-waybill-signature";
/// Header carrying the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Confluent Avro content type.
pub const AVRO_CONTENT_TYPE: &str = "application/vnd.confluent.avro";

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`), the value of `X-Waybill-Signature`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex(hmac::sign(&key, body).as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn sha256_hex(body: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, body).as_ref())
}

/// A distinct command the target received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its `Idempotency-Key`.
    pub key: String,
    /// The path it was posted to.
    pub path: String,
    /// `Content-Type` as sent.
    pub content_type: String,
    /// The `traceparent` header, if any.
    pub traceparent: Option<String>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body parsed, when it is JSON.
    pub json: Option<Value>,
    /// Lowercase hex SHA-256 of the body.
    pub digest: String,
    /// When it arrived.
    pub at: Instant,
}

/// What the target answers a new command.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Answer now with this status and JSON body (e.g. `{"events": [...]}`).
    Sync {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: Value,
    },
    /// `202 Accepted` with an empty body: the system answers later, through ingestion.
    Accepted,
}

impl Answer {
    /// `200 OK` with `body`.
    pub fn ok(body: Value) -> Self {
        Answer::Sync { status: 200, body }
    }
}

/// Decides the answer to each new command. It runs while the target holds its command
/// table (so two racing requests with one key still reach it once): it must not call back
/// into the target.
pub type Behaviour = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

/// Answers a signed `GET` of the read path (a page of stock): it sees the raw query
/// string and answers `200` with the JSON it returns, or the status and message of `Err`.
pub type Reads = Arc<dyn Fn(&str) -> Result<Value, (u16, String)> + Send + Sync>;

/// How to start an [`HttpTarget`].
#[derive(Clone)]
pub struct HttpTargetConfig {
    /// A name for logs and the server thread (`warehouse`, `carrier`, …).
    pub name: String,
    /// The command path; default `/v1/commands`.
    pub path: String,
    /// The shared HMAC secret.
    pub secret: Vec<u8>,
    /// The answer to each new command; default `202 Accepted`.
    pub behaviour: Behaviour,
    /// How long each answer takes (a slow system); default none.
    pub latency: std::time::Duration,
    /// The fraction of requests answered `503 Service Unavailable` before anything else is
    /// looked at (an overloaded system; the caller retries the same command); default 0.
    pub unavailable_rate: f64,
    /// The path of reads (`GET`), default `/v1/stock`, and what answers them; `None`
    /// (the default) serves no reads. A read is signed over its request target:
    /// `X-Waybill-Signature: sha256=<hex HMAC-SHA256 of "GET <path>?<query>">`.
    pub reads: Option<(String, Reads)>,
    /// Keep every request and command for [`HttpTarget::requests`] and
    /// [`HttpTarget::received`] (tests look at them); off, only the idempotency table is
    /// kept, so a long load run does not grow by every body it was sent. Default on.
    pub history: bool,
}

impl std::fmt::Debug for HttpTargetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTargetConfig").field("name", &self.name).field("path", &self.path).finish_non_exhaustive()
    }
}

impl Default for HttpTargetConfig {
    fn default() -> Self {
        Self {
            name: "target".into(),
            path: "/v1/commands".into(),
            secret: b"waybill-test-secret".to_vec(),
            behaviour: Arc::new(|_| Answer::Accepted),
            latency: std::time::Duration::ZERO,
            unavailable_rate: 0.0,
            reads: None,
            history: true,
        }
    }
}

impl HttpTargetConfig {
    /// Defaults with this secret and behaviour.
    pub fn new(secret: impl Into<Vec<u8>>, behaviour: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> Self {
        Self { secret: secret.into(), behaviour: Arc::new(behaviour), ..Self::default() }
    }
}

struct Stored {
    digest: String,
    status: u16,
    body: Option<Value>,
}

/// What the target has seen, by idempotency key.
#[derive(Default)]
struct Seen {
    /// Key → digest and first answer.
    first: HashMap<String, Stored>,
    /// Every distinct command in arrival order.
    commands: Vec<Received>,
    /// Key → how many repeats arrived.
    repeats: HashMap<String, u64>,
}

struct Shared {
    config: HttpTargetConfig,
    faults: FaultPlan,
    log: RequestLog,
    availability: Mutex<Availability>,
    seen: Mutex<Seen>,
}

/// A running HTTP target on `127.0.0.1`; stops when dropped.
pub struct HttpTarget {
    shared: Arc<Shared>,
    server: Server,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget").field("name", &self.shared.config.name).field("addr", &self.server.addr()).finish()
    }
}

impl HttpTarget {
    /// Start serving; panics if no loopback port can be bound (a test double).
    pub fn start(config: HttpTargetConfig) -> Self {
        Self::try_start(config).expect("the HTTP target double could not start")
    }

    /// Start serving.
    pub fn try_start(config: HttpTargetConfig) -> crate::Result<Self> {
        let name = config.name.clone();
        let shared = Arc::new(Shared {
            config,
            faults: FaultPlan::default(),
            log: RequestLog::default(),
            availability: Mutex::new(Availability::Up),
            seen: Mutex::new(Seen::default()),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let server = Server::start(&name, router)?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The full command URL (`url()` + the configured path).
    pub fn command_url(&self) -> String {
        format!("{}{}", self.url(), self.shared.config.path)
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every distinct command, in arrival order (one per idempotency key).
    pub fn received(&self) -> Vec<Received> {
        self.shared.seen.lock().unwrap().commands.clone()
    }

    /// The distinct command with this key.
    pub fn command(&self, key: &str) -> Option<Received> {
        self.received().into_iter().find(|r| r.key == key)
    }

    /// How many repeats of already-seen commands (same key, same body) arrived in total.
    pub fn duplicates(&self) -> u64 {
        self.shared.seen.lock().unwrap().repeats.values().sum()
    }

    /// How many repeats arrived for `key`.
    pub fn duplicates_of(&self, key: &str) -> u64 {
        self.shared.seen.lock().unwrap().repeats.get(key).copied().unwrap_or(0)
    }

    /// Arm `fault` for requests `matcher` selects (path, idempotency-key prefix).
    pub fn inject(&self, matcher: Match, fault: Fault, times: Times) -> FaultId {
        self.shared.faults.arm(matcher, fault, times)
    }

    /// Arm `fault` for the next matching request only.
    pub fn fail_next(&self, matcher: Match, fault: Fault) -> FaultId {
        self.inject(matcher, fault, Times::Next(1))
    }

    /// Disarm one fault.
    pub fn clear_fault(&self, id: FaultId) {
        self.shared.faults.clear(id);
    }

    /// Disarm every fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear_all();
    }

    /// Go down: refuse connections, or answer 503 to everything, until [`Self::up`].
    pub fn down(&self, mode: DownMode) {
        *self.shared.availability.lock().unwrap() = Availability::Down(mode);
        self.server.set_availability(Availability::Down(mode));
    }

    /// Come back up (same address).
    pub fn up(&self) {
        *self.shared.availability.lock().unwrap() = Availability::Up;
        self.server.set_availability(Availability::Up);
    }

    /// Every request received, in arrival order (including refused and duplicate ones).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.all()
    }

    /// Forget the requests received so far (not the commands).
    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }
}

fn reply(status: u16, body: Option<&Value>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match body {
        Some(b) => {
            let mut r = (code, b.to_string()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        None => code.into_response(),
    }
}

fn refuse(status: u16, message: &str) -> Response {
    reply(status, Some(&json!({"error": message})))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(kill): Extension<ConnKill>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let path = uri.path().to_string();
    let key = header_text(IDEMPOTENCY_HEADER);
    if shared.config.history {
        shared.log.push(RequestRecord {
            at: Instant::now(),
            transport: if path == shared.config.path { Transport::Http } else { Transport::Other },
            path: path.clone(),
            model: None,
            method: None,
            key: None,
            idempotency_key: key.clone(),
        });
    }
    if *shared.availability.lock().unwrap() == Availability::Down(DownMode::Unavailable) {
        return refuse(503, "the system is down (injected)");
    }
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    if shared.config.unavailable_rate > 0.0 && fastrand::f64() < shared.config.unavailable_rate {
        return refuse(503, "the system is overloaded (configured unavailable_rate); retry later");
    }
    let mut drop_after = false;
    if let Some(fault) = shared.faults.take(Some(&path), key.as_deref(), true) {
        match fault {
            Fault::Slow(d) => tokio::time::sleep(d).await,
            Fault::Status(code) => return refuse(code, "injected failure"),
            Fault::RetryAfter { status, secs } => {
                let mut r = refuse(status, "injected throttling");
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return r;
            }
            Fault::Drop => return kill.drop_connection().await,
            Fault::CommitThenDrop => drop_after = true,
            Fault::SerializationFailure | Fault::LockTimeout => return refuse(500, "injected database failure"),
            Fault::SessionExpired => return refuse(401, "injected: session expired"),
            Fault::Validation(message) => return refuse(422, &message),
        }
    }
    let response = match &shared.config.reads {
        Some((read_path, reads)) if *read_path == path && method == Method::GET => {
            read(&shared.config.secret, &path, uri.query().unwrap_or(""), &headers, reads)
        }
        _ => accept(&shared, &method, &path, &headers, key, header_text("traceparent"), &body),
    };
    if drop_after {
        return kill.drop_connection().await;
    }
    response
}

/// A signed read: the signature covers `GET <path>?<query>`.
fn read(secret: &[u8], path: &str, query: &str, headers: &HeaderMap, reads: &Reads) -> Response {
    let signed = format!("GET {path}?{query}");
    let valid = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(unhex)
        .is_some_and(|tag| hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), signed.as_bytes(), &tag).is_ok());
    if !valid {
        return refuse(
            401,
            "missing or wrong X-Waybill-Signature; a read is signed over its request target: sha256=<hex HMAC-SHA256 of \"GET <path>?<query>\">",
        );
    }
    match reads(query) {
        Ok(v) => reply(200, Some(&v)),
        Err((status, message)) => refuse(status, &message),
    }
}

fn accept(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    key: Option<String>,
    traceparent: Option<String>,
    body: &[u8],
) -> Response {
    if path != shared.config.path {
        return refuse(404, &format!("no such path {path:?}; commands go to {:?}", shared.config.path));
    }
    if method != Method::POST {
        let mut r = refuse(405, "commands must be POSTed");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let Some(signature) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return refuse(401, "missing X-Waybill-Signature header; expected sha256=<hex HMAC-SHA256 of the raw body>");
    };
    let valid = signature
        .strip_prefix("sha256=")
        .and_then(unhex)
        .is_some_and(|tag| hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, &shared.config.secret), body, &tag).is_ok());
    if !valid {
        return refuse(
            401,
            "X-Waybill-Signature does not match the body; is the shared secret the same on both sides, and is the signature taken over the exact bytes sent?",
        );
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/json" && media != AVRO_CONTENT_TYPE {
        return refuse(
            415,
            &format!("content type {content_type:?} is not accepted; send application/json or {AVRO_CONTENT_TYPE}"),
        );
    }
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return refuse(400, "missing Idempotency-Key header");
    };
    let digest = sha256_hex(body);
    let mut seen = shared.seen.lock().unwrap();
    if let Some(first) = seen.first.get(&key) {
        if first.digest != digest {
            return reply(
                409,
                Some(&json!({
                    "error": format!("Idempotency-Key {key:?} was first used with a different body"),
                    "first_digest": first.digest,
                    "this_digest": digest,
                })),
            );
        }
        let response = reply(first.status, first.body.as_ref());
        *seen.repeats.entry(key).or_insert(0) += 1;
        return response;
    }
    let json = if media == "application/json" { serde_json::from_slice(body).ok() } else { None };
    if media == "application/json" && json.is_none() {
        return refuse(400, "the body is not valid JSON");
    }
    let received = Received {
        key: key.clone(),
        path: path.to_string(),
        content_type,
        traceparent,
        body: body.to_vec(),
        json,
        digest: digest.clone(),
        at: Instant::now(),
    };
    let answer = (shared.config.behaviour)(&received);
    let (status, body) = match answer {
        Answer::Sync { status, body } => (status, Some(body)),
        Answer::Accepted => (202, None),
    };
    seen.first.insert(key, Stored { digest, status, body: body.clone() });
    if shared.config.history {
        seen.commands.push(received);
    }
    reply(status, body.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trips_through_hex() {
        let s = sign(b"k", b"body");
        let tag = unhex(s.strip_prefix("sha256=").unwrap()).unwrap();
        assert!(hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, b"k"), b"body", &tag).is_ok());
        assert_eq!(unhex("zz"), None);
    }
}
