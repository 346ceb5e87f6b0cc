//! Errors of the control plane, and their one mapping to gRPC status codes
//! ([`From<Error> for tonic::Status`]).

/// A control-plane failure. Every message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credentials, or credentials the server does not recognise.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this (role too low, amount above the role's
    /// approval limit, four-eyes).
    #[error("{0}")]
    PermissionDenied(String),
    /// The posting, order or source reference does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the current state (stale version, decided the other
    /// way, refused by the saga).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A field of the request is missing or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The decision was written but the saga has not answered in time.
    #[error("{0}")]
    Pending(String),
    /// A start-up setting is wrong; `key` is the dotted configuration key.
    #[error("configuration key `{key}`: {problem}")]
    Config {
        /// Dotted key, e.g. `control.tls_cert`.
        key: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The event log failed.
    #[error("event log: {0}")]
    Log(#[from] waybill_log::Error),
    /// The projections failed.
    #[error("projections: {0}")]
    Projection(#[from] waybill_projection::Error),
    /// The audit store failed.
    #[error("audit store {what}: {source}")]
    Audit {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: sled::Error,
    },
    /// A system the call must read (the warehouse, for a reconciliation) cannot be read
    /// now; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else that is the server's fault.
    #[error("{0}")]
    Internal(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An audit-store error while doing `what`.
    pub(crate) fn audit(what: impl Into<String>, source: sled::Error) -> Self {
        Error::Audit { what: what.into(), source }
    }

    /// The gRPC code this error is answered with.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Error::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::Pending(_) => tonic::Code::DeadlineExceeded,
            Error::Log(_) | Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::Config { .. } | Error::Projection(_) | Error::Audit { .. } | Error::Internal(_) => {
                tonic::Code::Internal
            }
        }
    }
}

/// The one place where control-plane errors become gRPC statuses.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let code = e.code();
        if matches!(code, tonic::Code::Internal | tonic::Code::Unavailable) {
            tracing::error!(error = %e, "control request failed");
        }
        tonic::Status::new(code, e.to_string())
    }
}
