//! Sagas and the coordinator.
//!
//! - [`fulfillment`], [`invoicing`], [`returns`]: order-to-fulfillment, ship-to-invoice and
//!   returns-and-credit as pure state machines (one file each, the business rules, no
//!   Kafka or sled in sight); [`procurement`]: procure-to-receive, a purchase order's
//!   flow; [`cash`]: cash application, a bank statement's flow; [`approval`]: the rules
//!   every approval passes;
//! - [`outcome`]: a command a target refused (`CommandFailed`), as every saga decides it —
//!   a `DELIVERY_FAILED` exception whose retry sends the same command again; [`health`]:
//!   one saga per command target that raises `TARGET_UNAVAILABLE` while it is down;
//! - [`admission`]: who may send which event (control events only from the control
//!   plane; each business event only from its system of record);
//! - [`saga`]: the [`Saga`] trait every saga implements; [`flow`]: the [`Flow`] trait (the
//!   sagas of one correlation key) and what is the same for every flow — [`flow::step`]
//!   (operators' retries, resolutions, assignments and replays, then the flow's routing),
//!   [`flow::tick`], committing decisions; [`flow::OrderFlow`]: the sagas of one order;
//!   [`registry`]: the registered flows, one line each ([`AnyFlow`]);
//! - [`decision`]: the outputs of a decision, and how they get their deterministic ids;
//! - [`watch`]: the watchdog that keeps every unfinished saga watched by a timer or an
//!   open exception (no silent stall), and the pure check of that invariant;
//! - [`catalog`], [`policy`]: master data and settings decisions consult; [`entity`]: the
//!   legal entities and the policy each overlays; [`schedule`]: cron schedules in a time
//!   zone (reconciliation runs, cash application's windows);
//! - [`coordinator`]: the I/O shell — consume inbound topics and `waybill.control`, step,
//!   fire timers when a logged timer tick is read, write journal + commands + dead
//!   letters + checkpoint (one append, or the outputs first and the checkpoint after on a
//!   backend without atomic batches), keep state in [`store`] and its changelog in
//!   [`snapshot`] (`waybill.snapshots`), from which a fresh replica restores.
//!
//! This crate must not reach out to Odoo, the warehouse or anything but the event log and
//! its own state store.

pub mod admission;
pub mod approval;
pub mod book;
pub mod cash;
pub mod catalog;
pub mod coordinator;
pub mod decision;
pub mod entity;
pub mod flow;
pub mod fulfillment;
pub mod health;
pub mod invoicing;
pub mod outcome;
pub mod policy;
pub mod procurement;
pub mod reconcile;
pub mod registry;
pub mod returns;
pub mod saga;
pub mod schedule;
pub mod snapshot;
pub mod store;
pub mod watch;

pub use catalog::Catalog;
pub use entity::{Entities, Entity};
pub use flow::{Env, Flow, OrderFlow, Step};
pub use policy::Policy;
pub use registry::AnyFlow;
pub use saga::Saga;

/// Errors of the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] waybill_log::Error),
    /// The state store failed.
    #[error("saga state store {path}: {source}")]
    Store {
        /// Store directory.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: sled::Error,
    },
    /// A record of Waybill's own journal could not be read back.
    #[error(
        "journal record {topic}/{partition}@{offset} cannot be decoded: {reason}; the journal is Waybill's own output, so this means a schemas/ change that is not backward compatible"
    )]
    Journal {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// Why.
        reason: String,
    },
    /// A record of the saga state snapshots could not be read back.
    #[error(
        "saga state snapshot waybill.snapshots/{partition}@{offset} cannot be decoded: {reason}; snapshots are Waybill's own output, so this means a schemas/ change that is not backward compatible"
    )]
    Snapshot {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// Why.
        reason: String,
    },
    /// Encoding an output failed (a bug: every domain value must encode).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
    /// A stored saga state could not be read.
    #[error(
        "saga state for {key:?} in the state store is unreadable ({reason}); delete the state directory to rebuild it from the journal"
    )]
    State {
        /// Correlation key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
