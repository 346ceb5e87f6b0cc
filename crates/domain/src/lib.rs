//! The canonical model of Waybill: the business events that come in from Odoo, the
//! warehouse, carriers, finance and operators; the commands Waybill sends out; the saga
//! journal events that record each decision; and the value types they share. Each flow's
//! own records live in a module of their own ([`purchase`] for procure-to-receive,
//! [`cash`] for cash application, [`reconcile`] for reconciliation).
//!
//! This crate owns vocabulary only. It does no I/O, knows nothing of Avro, Kafka or sled,
//! and every type here is plain data with `serde` derives so that the `schema` crate can
//! map it to and from Avro.

pub mod cash;
pub mod command;
pub mod event;
pub mod journal;
pub mod partition;
pub mod purchase;
pub mod reconcile;
pub mod topic;
pub mod value;

pub use command::{Command, CommandBody, CommandMeta};
pub use event::{EventBody, EventMeta, InboundEvent};
pub use journal::{ExceptionCategory, JournalBody, JournalEvent, SagaKind};
pub use value::{Civil, Money, Qty, SourceRef, System, Timestamp};

/// Errors raised while validating domain values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A value that must not be empty was empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The field that was empty.
        field: &'static str,
    },
    /// A system name that Waybill does not know.
    #[error("unknown system {0:?}; expected one of odoo, wms, carrier, finance, bank, channel, operator, waybill")]
    UnknownSystem(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
