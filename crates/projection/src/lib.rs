//! Read models of Waybill, kept in sled and derived only from the log (DESIGN.md,
//! invariant 1): order views with their timeline, the exception workbench, lineage from
//! source references to every related journal event and command, stock positions per
//! warehouse and SKU, and the checkpoints that say how far each topic partition has been
//! applied.
//!
//! The crate has two layers:
//! - a pure core ([`ProjectionStore::apply`]) that takes already-decoded domain values
//!   ([`Positioned`] [`Input`]s) and writes every change of one call, including the
//!   checkpoints, in one atomic `sled::Batch`;
//! - a thin [`runner`] that reads `waybill.journal`, the command topics and
//!   `waybill.dlq` through the [`waybill_log::EventLog`] trait, decodes them with a
//!   [`runner::Decoder`] and feeds the core.
//!
//! The contents of the store are a pure function of the set of records applied: they do
//! not depend on batch boundaries, on how partitions interleave, or on the wall clock.
//! Deleting the store and replaying the log gives the same bytes ([`ProjectionStore::dump`]).
//! How: see the `apply` module; the key layout is in the `keys` module.
//!
//! Speed: a rebuild is bounded by sled's cost per written key and byte, so each order's
//! view and timeline share one key, lineage is one key per source reference, values use a
//! compact binary encoding, and the runner applies large batches (`commit_records`) so
//! that a batch rewrites each touched order once rather than once per event.
//!
//! This crate must not decide anything: it records what the sagas decided. It never
//! writes to the log.

mod apply;
mod bin;
mod error;
mod input;
mod keys;
pub mod runner;
mod store;
mod summary;
mod view;

pub use error::{Error, Result};
pub use input::{ApplyStats, DeadLetter, Input, Positioned, dlq_header};
pub use store::ProjectionStore;
pub use summary::summarize;
pub use view::{
    DocumentView, ExceptionView, LineageEntry, LinkKind, OrderLineView, OrderStatus, OrderView, PostingView,
    SagaProgress, ShipmentView, SkuMovements, StockCheck, StockPosition, TimelineEntry,
};
