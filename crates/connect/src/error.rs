//! What can go wrong: [`Error`] for setting a connector up, [`Failure`] for one call to a
//! target, classified by what the runtime must do next.

use std::time::Duration;

/// Errors setting a connector up (configuration, secrets, the log).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is unusable.
    #[error("connector {connector}: `{key}` {problem}")]
    Config {
        /// Connector name (`[connectors.<name>]`).
        connector: String,
        /// The key.
        key: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A secret file cannot be read.
    #[error("secret file {path}: {problem}")]
    Secret {
        /// File.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] waybill_log::Error),
    /// A record could not be encoded.
    #[error(transparent)]
    Schema(#[from] waybill_schema::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one call to a target did not succeed, classified by what happens next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The target understood the request and refused it for a business reason (Odoo's
    /// UserError, ValidationError, AccessError, MissingError; an HTTP `4xx` other than
    /// `401`, `408`, `409`, `429`). Not retried: the saga turns it into an exception in
    /// business terms, and an operator retries after the fix.
    Refused {
        /// The target's own message.
        reason: String,
    },
    /// The target answered that it could not do it now (serialization failure, lock
    /// timeout, `500`). Retried with backoff and jitter, up to the connector's
    /// `max_attempts`; then reported as a failure like [`Failure::Refused`].
    Transient {
        /// What the target said.
        reason: String,
    },
    /// The target is not there or says it is overloaded (connection refused, `502`,
    /// `503`, `504`, `429`). Retried without limit — the breaker decides when to call
    /// again — and, past the connector's `unavailable_after`, raised once as
    /// `TARGET_UNAVAILABLE`.
    Unavailable {
        /// What happened.
        reason: String,
        /// The target's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// `429`: the target is alive but throttling us; does not count against the breaker.
        throttled: bool,
    },
    /// The request went out and no answer came back (a timeout or reset after sending):
    /// it may have taken effect. Retried like [`Failure::Unavailable`]; every adapter's
    /// delivery re-reads the target before it creates anything, so the retry finds what
    /// the first attempt did instead of doing it twice.
    Unknown {
        /// What happened.
        reason: String,
    },
    /// The credentials were refused (session expired, key rotated or revoked). The
    /// secret file is read again and the call retried; counted like [`Failure::Transient`]
    /// so a key that stays wrong ends in an exception rather than a silent loop.
    Unauthorized {
        /// What the target said.
        reason: String,
    },
}

impl Failure {
    /// The message, whatever the class.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Refused { reason }
            | Failure::Transient { reason }
            | Failure::Unavailable { reason, .. }
            | Failure::Unknown { reason }
            | Failure::Unauthorized { reason } => reason,
        }
    }

    /// The label used in metrics: `refused`, `transient`, `unavailable`, `throttled`,
    /// `unknown`, `unauthorized`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::Refused { .. } => "refused",
            Failure::Transient { .. } => "transient",
            Failure::Unavailable { throttled: true, .. } => "throttled",
            Failure::Unavailable { .. } => "unavailable",
            Failure::Unknown { .. } => "unknown",
            Failure::Unauthorized { .. } => "unauthorized",
        }
    }

    /// Whether the target itself is in trouble (counts toward opening the breaker).
    pub fn counts_against_target(&self) -> bool {
        matches!(
            self,
            Failure::Unavailable { throttled: false, .. } | Failure::Unknown { .. } | Failure::Transient { .. }
        )
    }

    /// Whether an attempt failing this way uses up one of the command's attempts.
    pub fn uses_attempt(&self) -> bool {
        matches!(self, Failure::Transient { .. } | Failure::Unauthorized { .. })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.outcome(), self.reason())
    }
}

/// Classifies an HTTP status a target answered with (`body` is its message).
pub fn classify_status(status: u16, body: &str, retry_after: Option<Duration>) -> Failure {
    let reason =
        if body.trim().is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {}", body.trim()) };
    match status {
        401 => Failure::Unauthorized { reason },
        429 => Failure::Unavailable { reason, retry_after, throttled: true },
        502..=504 => Failure::Unavailable { reason, retry_after, throttled: false },
        408 => Failure::Unknown { reason },
        500..=599 => Failure::Transient { reason },
        _ => Failure::Refused { reason },
    }
}

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is read as absent:
/// the backoff applies instead).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_by_what_happens_next() {
        assert!(matches!(classify_status(422, "bad", None), Failure::Refused { .. }));
        assert!(matches!(classify_status(401, "", None), Failure::Unauthorized { .. }));
        assert!(matches!(classify_status(403, "", None), Failure::Refused { .. }));
        assert!(matches!(
            classify_status(429, "", Some(Duration::from_secs(2))),
            Failure::Unavailable { throttled: true, retry_after: Some(_), .. }
        ));
        assert!(matches!(classify_status(503, "", None), Failure::Unavailable { throttled: false, .. }));
        assert!(matches!(classify_status(500, "boom", None), Failure::Transient { .. }));
        assert_eq!(parse_retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }
}
