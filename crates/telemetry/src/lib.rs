//! Telemetry set-up: structured logs through `tracing`, OpenTelemetry trace export over
//! OTLP/gRPC, and the W3C trace context (`traceparent`, `tracestate`) that travels in record
//! headers so one order can be followed across every hop.
//!
//! This crate configures; it never decides what to log or which spans exist. Components
//! log with `tracing` macros and dotted field names (`waybill.saga.id`, `waybill.order.ref`)
//! and create their trace spans with `target: waybill_telemetry::SPAN_TARGET`; this crate
//! sends those spans to OpenTelemetry (when an OTLP endpoint is configured) and keeps them
//! out of the log lines.
//!
//! Export is configured by the standard environment variables only
//! ([`TraceExport::from_env`]): `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` turn it on, `OTEL_SERVICE_NAME` names the service
//! (`waybill` by default), `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` sample,
//! `OTEL_BSP_*` tune the batch processor, `OTEL_EXPORTER_OTLP_{HEADERS,TIMEOUT,COMPRESSION}`
//! reach the exporter. Without an endpoint no OpenTelemetry layer is installed at all: the
//! trace spans are disabled at their call sites and cost a cached interest check.

pub mod metrics;
mod otel;
mod propagation;

use std::fmt;

pub use otel::{Error, Result, TelemetryGuard, TraceExport, init_with, shutdown};
pub use propagation::{
    TraceHeaders, continue_trace, extract, inject, outgoing, parent_decides_sampling, unsampled_upstream,
};

/// Record header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Record header carrying W3C vendor trace state, next to [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// The `tracing` target of the spans meant for OpenTelemetry (one per processed record,
/// per ingestion request). They go to the exporter only, never to the log lines, so that
/// they cost nothing when no exporter is configured:
/// `tracing::info_span!(target: waybill_telemetry::SPAN_TARGET, "process", ...)`.
pub const SPAN_TARGET: &str = "waybill::trace";

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?} is not one of \"text\", \"json\"")),
        }
    }
}

/// Installs the global subscriber: log lines as before, plus trace export when the
/// `OTEL_EXPORTER_OTLP_*` environment asks for it. `filter` uses `RUST_LOG` syntax; the
/// `RUST_LOG` environment variable wins when set. Logs go to stderr so stdout stays for
/// output. Calling it twice is harmless (the second call is ignored).
///
/// Kept for compatibility: an exporter that cannot be built is reported on stderr and
/// logging goes on without it, and the last spans are only flushed by [`shutdown`].
/// Prefer [`init_with_guard`], which fails loudly and flushes when the guard drops.
pub fn init(format: LogFormat, filter: &str) {
    match init_with(format, filter, TraceExport::from_env()) {
        // The provider is also kept globally; `shutdown()` flushes it.
        Ok(guard) => std::mem::forget(guard),
        Err(e) => {
            eprintln!("waybill: trace export is off: {e}");
            if let Ok(guard) = init_with(format, filter, TraceExport::disabled()) {
                std::mem::forget(guard);
            }
        }
    }
}

/// Like [`init`], configured from the environment ([`TraceExport::from_env`]), but returns
/// the guard that flushes and shuts the exporter down when dropped — keep it in `main`
/// until the process exits — and fails when export is asked for but cannot be set up (a
/// malformed endpoint, `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`).
pub fn init_with_guard(format: LogFormat, filter: &str) -> Result<TelemetryGuard> {
    init_with(format, filter, TraceExport::from_env())
}

/// A W3C trace context (`00-<trace id>-<span id>-<flags>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 16-byte trace id.
    pub trace_id: u128,
    /// 8-byte parent span id.
    pub span_id: u64,
    /// Sampled flag.
    pub sampled: bool,
}

impl TraceParent {
    /// Starts a new trace (random ids, sampled).
    pub fn new_root() -> Self {
        TraceParent { trace_id: fastrand::u128(1..), span_id: fastrand::u64(1..), sampled: true }
    }

    /// A child context in the same trace with a new span id.
    pub fn child(&self) -> Self {
        TraceParent { span_id: fastrand::u64(1..), ..*self }
    }

    /// Parses a `traceparent` header value; `None` when malformed (W3C says: start a new
    /// trace then).
    pub fn parse(value: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(value).ok()?;
        let mut parts = s.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceParent { trace_id, span_id, sampled: flags & 1 == 1 })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_malformed_values() {
        let tp = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(tp.sampled);
        let child = tp.child();
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.span_id, tp.span_id);
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-xyz",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{:?}", std::str::from_utf8(bad));
        }
    }
}
