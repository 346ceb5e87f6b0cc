//! W3C trace context in record (and HTTP) headers: [`inject`] a span's context into the
//! headers of the records it writes, [`extract`] it from the headers of a record read, and
//! [`continue_trace`] to make a span the child of the record's writer.
//!
//! Headers are passed as `(name, value)` pairs so that this crate knows nothing of the
//! log's record type: `r.headers.iter().map(|h| (h.key.as_str(), h.value.as_slice()))`.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{TRACEPARENT, TRACESTATE, TraceParent};

/// The W3C trace context to write as record headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    /// `traceparent`: `00-<trace id>-<span id>-<flags>`.
    pub traceparent: String,
    /// `tracestate`, when the trace carries vendor state.
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// The trace context found in `headers` (a well-formed `traceparent`, and the
    /// `tracestate` next to it), copied as is.
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Option<Self> {
        let found = Found::scan(headers);
        let traceparent = found.traceparent.filter(|v| TraceParent::parse(v.as_bytes()).is_some())?;
        Some(TraceHeaders { traceparent: traceparent.to_string(), tracestate: found.tracestate.map(str::to_string) })
    }

    /// The headers to add: `traceparent`, then `tracestate` if there is one.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, Vec<u8>)> + '_ {
        std::iter::once((TRACEPARENT, self.traceparent.as_bytes().to_vec()))
            .chain(self.tracestate.iter().map(|s| (TRACESTATE, s.as_bytes().to_vec())))
    }

    /// The parsed `traceparent`.
    pub fn parent(&self) -> Option<TraceParent> {
        TraceParent::parse(self.traceparent.as_bytes())
    }

    /// Whether the context is sampled (the `traceparent` flags' sampled bit).
    pub fn sampled(&self) -> bool {
        let flags = self.traceparent.rsplit('-').next().unwrap_or_default();
        u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1)
    }
}

/// The trace context headers among `headers` (names compared case-insensitively, as HTTP
/// does; the first of each wins).
#[derive(Debug, Default)]
struct Found<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl<'a> Found<'a> {
    fn scan(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut found = Found::default();
        for (k, v) in headers {
            let slot = if k.eq_ignore_ascii_case(TRACEPARENT) {
                &mut found.traceparent
            } else if k.eq_ignore_ascii_case(TRACESTATE) {
                &mut found.tracestate
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = std::str::from_utf8(v).ok();
            }
        }
        found
    }
}

impl Extractor for Found<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = Vec::with_capacity(2);
        if self.traceparent.is_some() {
            keys.push(TRACEPARENT);
        }
        if self.tracestate.is_some() {
            keys.push(TRACESTATE);
        }
        keys
    }
}

#[derive(Default)]
struct Collect {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// The trace context of `span`, for the headers of a record written on its behalf; `None`
/// when the span is not exported (no OpenTelemetry layer, or the span is filtered out).
/// Starts the span if it has not been entered yet, so set its parent first.
pub fn inject(span: &tracing::Span) -> Option<TraceHeaders> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Collect::default();
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    Some(TraceHeaders { traceparent: out.traceparent?, tracestate: out.tracestate })
}

/// The OpenTelemetry context carried by `headers` (empty when they carry none or a
/// malformed one: the span then starts a new trace, as W3C says).
pub fn extract<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Context {
    let found = Found::scan(headers);
    if found.traceparent.is_none() {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&found)
}

/// Whether a span whose remote parent is not sampled will not be sampled either: true
/// with the SDK's default sampler and every `parentbased_*` one (`OTEL_TRACES_SAMPLER`),
/// false with `always_on`, `always_off`, `traceidratio`, which decide for themselves.
/// Read once per process.
pub fn parent_decides_sampling() -> bool {
    static DECIDES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DECIDES.get_or_init(|| match std::env::var("OTEL_TRACES_SAMPLER") {
        Err(_) => true,
        Ok(s) => s.trim().is_empty() || s.trim().to_ascii_lowercase().starts_with("parentbased_"),
    })
}

/// Whether handling a record with these headers can skip its span altogether: the
/// record's trace was left out upstream (its `traceparent` is not sampled) and the sampler
/// follows the parent, so the span would be created, never sampled and dropped. Records
/// written meanwhile carry the inbound context unchanged ([`outgoing`] with a disabled
/// span), so the trace stays connected and unsampled downstream too.
pub fn unsampled_upstream<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> bool {
    let found = Found::scan(headers);
    found.traceparent.and_then(|v| TraceParent::parse(v.as_bytes())).is_some_and(|tp| !tp.sampled)
        && parent_decides_sampling()
}

/// Makes `span` continue the trace whose context `headers` carry: its parent becomes the
/// span that wrote them. Call it before entering the span. Does nothing (and reads no
/// header) when the span is disabled; returns whether a parent was set.
pub fn continue_trace<'a>(span: &tracing::Span, headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> bool {
    if span.is_disabled() {
        return false;
    }
    let cx = extract(headers);
    if !cx.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(cx).is_ok()
}

/// The trace context for records written while handling an input: `span`'s own when it is
/// exported, otherwise the input's context passed through unchanged — so a node that
/// exports nothing still keeps the trace of the systems around it connected.
pub fn outgoing<'a>(
    span: &tracing::Span,
    inbound: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Option<TraceHeaders> {
    inject(span).or_else(|| TraceHeaders::from_headers(inbound))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn only_an_unsampled_upstream_context_skips_the_span() {
        // The default sampler (no OTEL_TRACES_SAMPLER in the test environment) is
        // parent-based.
        if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
            assert!(parent_decides_sampling());
            let unsampled = TP.replace("-01", "-00");
            assert!(unsampled_upstream([(TRACEPARENT, unsampled.as_bytes())]));
        }
        assert!(!unsampled_upstream([(TRACEPARENT, TP.as_bytes())]), "a sampled parent keeps its span");
        assert!(!unsampled_upstream([]), "a record without context starts a trace");
        assert!(!unsampled_upstream([(TRACEPARENT, &b"00-garbage-00"[..])]), "a malformed context is ignored");
    }

    #[test]
    fn headers_are_found_case_insensitively_and_passed_through() {
        let headers = [("waybill.event-id", &b"x"[..]), ("TraceParent", TP.as_bytes()), ("tracestate", b"a=1")];
        let h = TraceHeaders::from_headers(headers).unwrap();
        assert_eq!(h.traceparent, TP);
        assert_eq!(h.tracestate.as_deref(), Some("a=1"));
        assert!(h.sampled());
        let unsampled = TraceHeaders { traceparent: TP.replace("-01", "-00"), tracestate: None };
        assert!(!unsampled.sampled());
        let pairs: Vec<_> = h.pairs().collect();
        assert_eq!(pairs, [(TRACEPARENT, TP.as_bytes().to_vec()), (TRACESTATE, b"a=1".to_vec())]);
        assert!(TraceHeaders::from_headers([(TRACEPARENT, &b"00-garbage"[..])]).is_none());
        assert!(TraceHeaders::from_headers([]).is_none());
    }

    #[test]
    fn extract_reads_the_w3c_context() {
        let cx = extract([(TRACEPARENT, TP.as_bytes())]);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(format!("{:032x}", sc.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(format!("{:016x}", sc.span_id()), "00f067aa0ba902b7");
        assert!(!extract([(TRACEPARENT, &b"nope"[..])]).span().span_context().is_valid());
    }

    #[test]
    fn without_an_exporter_nothing_is_injected_but_the_input_context_passes_through() {
        // No subscriber in this test: every span is disabled.
        let span = tracing::info_span!(target: crate::SPAN_TARGET, "process");
        assert!(inject(&span).is_none());
        assert!(!continue_trace(&span, [(TRACEPARENT, TP.as_bytes())]));
        let out = outgoing(&span, [(TRACEPARENT, TP.as_bytes())]).unwrap();
        assert_eq!(out.traceparent, TP);
        assert!(outgoing(&span, []).is_none());
    }
}
