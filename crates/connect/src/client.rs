//! The HTTP client every adapter calls through: one `ureq` agent per target (TLS through
//! rustls with the Mozilla roots, or the configured CA), each call a client span with
//! OpenTelemetry's HTTP semantic conventions that continues the command's trace and sends
//! it on in `traceparent`, and transport errors classified into [`Failure`]s.

use std::time::Duration;

use waybill_telemetry::{SPAN_TARGET, TraceHeaders};

use crate::error::{Failure, classify_status, parse_retry_after};

/// Timeouts of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connection set-up (DNS, TCP, TLS).
    pub connect: Duration,
    /// The whole call, answer included.
    pub call: Duration,
}

/// An HTTP answer that got as far as a status line.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// `Retry-After`, parsed.
    pub retry_after: Option<Duration>,
    /// Body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The failure this answer is, when it is not a success (`2xx`).
    pub fn failure(&self) -> Option<Failure> {
        (!(200..300).contains(&self.status))
            .then(|| classify_status(self.status, &error_message(&self.body), self.retry_after))
    }
}

/// A target's HTTP client.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    system: &'static str,
}

impl Client {
    /// A client for calls to `system` (the span attribute `waybill.target`).
    pub fn new(system: &'static str, timeouts: Timeouts) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeouts.connect))
            .timeout_global(Some(timeouts.call))
            .max_idle_connections_per_host(16)
            .user_agent(concat!("waybill/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client { agent, system }
    }

    /// `POST url` with `headers` and `body`, as a client span named `POST <route>`.
    /// `trace` is the caller's context; the span's own goes out in `traceparent`.
    pub fn post(
        &self,
        url: &str,
        route: &str,
        headers: &[(&str, String)],
        content_type: &str,
        body: &[u8],
        trace: Option<&TraceHeaders>,
    ) -> Result<Answer, Failure> {
        let span = self.span("POST", url, route, trace);
        let _entered = span.enter();
        let mut request = self.agent.post(url).header("Content-Type", content_type);
        for (k, v) in outgoing(&span, headers, trace) {
            request = request.header(k, v);
        }
        finish(&span, url, request.send(body))
    }

    /// `GET url` with `headers`, as a client span named `GET <route>` (a read: a
    /// reconciliation's page of stock).
    pub fn get(
        &self,
        url: &str,
        route: &str,
        headers: &[(&str, String)],
        trace: Option<&TraceHeaders>,
    ) -> Result<Answer, Failure> {
        let span = self.span("GET", url, route, trace);
        let _entered = span.enter();
        let mut request = self.agent.get(url).header("Accept", "application/json");
        for (k, v) in outgoing(&span, headers, trace) {
            request = request.header(k, v);
        }
        finish(&span, url, request.call())
    }

    fn span(&self, method: &'static str, url: &str, route: &str, trace: Option<&TraceHeaders>) -> tracing::Span {
        let (host, port) = host_port(url);
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "http",
            otel.name = format!("{method} {route}"),
            otel.kind = "client",
            http.request.method = method,
            url.full = url,
            server.address = host,
            server.port = port,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            waybill.target = self.system,
        );
        if let Some(t) = trace {
            let pairs: Vec<(&'static str, Vec<u8>)> = t.pairs().collect();
            waybill_telemetry::continue_trace(&span, pairs.iter().map(|(k, v)| (*k, v.as_slice())));
        }
        span
    }
}

/// The caller's headers and the span's trace context (`traceparent`), to send.
fn outgoing(span: &tracing::Span, headers: &[(&str, String)], trace: Option<&TraceHeaders>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
    if let Some(t) = waybill_telemetry::inject(span).or_else(|| trace.cloned()) {
        for (k, v) in t.pairs() {
            out.push((k.to_string(), String::from_utf8_lossy(&v).into_owned()));
        }
    }
    out
}

/// The answer of a sent request, recorded on its span.
fn finish(
    span: &tracing::Span,
    url: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, Failure> {
    let answer = match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after = parse_retry_after(response.headers().get("retry-after").and_then(|v| v.to_str().ok()));
            let body = response
                .body_mut()
                .with_config()
                .limit(16 << 20)
                .read_to_vec()
                .map_err(|e| Failure::Unknown { reason: format!("{url}: the answer broke off: {e}") })?;
            Answer { status, retry_after, body }
        }
        Err(e) => {
            let f = classify_transport(url, e);
            if !span.is_disabled() {
                span.record("error.type", f.outcome());
            }
            return Err(f);
        }
    };
    if !span.is_disabled() {
        span.record("http.response.status_code", i64::from(answer.status));
        if answer.status >= 400 {
            span.record("error.type", answer.status.to_string());
        }
    }
    Ok(answer)
}

fn host_port(url: &str) -> (String, i64) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let default = if url.starts_with("https") { 443 } else { 80 };
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default)),
        None => (authority.to_string(), default),
    }
}

/// A transport error as a [`Failure`]: nothing sent yet (no connection, DNS, TLS set-up)
/// is `Unavailable`; sent and no answer (timeout, reset, closed) is `Unknown`.
fn classify_transport(url: &str, e: ureq::Error) -> Failure {
    use std::io::ErrorKind;
    let reason = format!("{url}: {e}");
    match &e {
        ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => {
            Failure::Unavailable { reason, retry_after: None, throttled: false }
        }
        ureq::Error::Timeout(_) => Failure::Unknown { reason },
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
            Failure::Unavailable { reason, retry_after: None, throttled: false }
        }
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused | ErrorKind::NotFound | ErrorKind::AddrNotAvailable => {
                Failure::Unavailable { reason, retry_after: None, throttled: false }
            }
            _ => Failure::Unknown { reason },
        },
        ureq::Error::BadUri(_) | ureq::Error::RequireHttpsOnly(_) | ureq::Error::TlsRequired => {
            Failure::Refused { reason: format!("{reason}; check the connector's url") }
        }
        _ => Failure::Unknown { reason },
    }
}

/// The message in an error body: `{"error": "..."}`, `{"message": "..."}` (Odoo JSON-2),
/// or the text itself, shortened.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for k in ["error", "message"] {
            match v.get(k) {
                Some(serde_json::Value::String(s)) => return s.clone(),
                Some(serde_json::Value::Object(o)) => {
                    if let Some(serde_json::Value::String(s)) = o.get("message") {
                        return s.clone();
                    }
                }
                _ => {}
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_found_in_the_usual_shapes() {
        assert_eq!(error_message(br#"{"error": "period closed"}"#), "period closed");
        assert_eq!(error_message(br#"{"name": "odoo.exceptions.UserError", "message": "nope"}"#), "nope");
        assert_eq!(error_message(b"plain text\n"), "plain text");
        assert_eq!(host_port("http://127.0.0.1:8069/jsonrpc"), ("127.0.0.1".to_string(), 8069));
        assert_eq!(host_port("https://odoo.example.com/json/2/x/y"), ("odoo.example.com".to_string(), 443));
    }

    #[test]
    fn a_refused_connection_is_unavailable_not_unknown() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Client::new("test", Timeouts { connect: Duration::from_secs(1), call: Duration::from_secs(2) });
        let url = format!("http://127.0.0.1:{port}/x");
        let f = client.post(&url, "/x", &[], "application/json", b"{}", None).unwrap_err();
        assert!(matches!(f, Failure::Unavailable { throttled: false, .. }), "{f:?}");
    }
}
