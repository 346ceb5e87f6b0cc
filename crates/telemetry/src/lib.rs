//! Telemetry set-up: structured logs through `tracing`, and the W3C trace context
//! (`traceparent`) that travels in record headers so one order can be followed across
//! every hop.
//!
//! This crate configures; it never decides what to log. Components log with `tracing`
//! macros and dotted field names (`waybill.saga.id`, `waybill.order.ref`).

pub mod metrics;

use std::fmt;

use tracing_subscriber::EnvFilter;

/// Record header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

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
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?} is not one of \"text\", \"json\"")),
        }
    }
}

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax; the `RUST_LOG`
/// environment variable wins when set. Logs go to stderr so stdout stays for output.
/// Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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
