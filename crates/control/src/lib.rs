//! The network edge of Waybill: the gRPC control plane.
//!
//! - [`proto`]: the generated code of `proto/waybill/v1/control.proto` (services
//!   `Approvals`, `Queries`, `Workbench`, `Audit`), plus `grpc.health.v1` and server reflection;
//! - [`auth`]: bearer tokens from a file that is re-read on change, client certificates
//!   (mutual TLS), anonymous callers on loopback for the demo; roles viewer < operator <
//!   approver < senior-approver < admin;
//! - [`service`]: the handlers. Approve/Reject check what the saga will check (state,
//!   expected version, four-eyes, the role's approval limit) for a quick, clear answer,
//!   then write a `PostingApproved`/`PostingRejected` event to `waybill.control` and wait
//!   for the saga's verdict in the projections. The saga's check is the one that counts
//!   (DESIGN.md invariant 6);
//! - `orders`: `ListOrders`, orders by status and age from the projections' index;
//! - [`workbench`]: retry, resolve and assign exceptions, replay an order's inbound events (a
//!   dry run computed here with the saga crate's pure replay; the real one decided by
//!   the saga), each written to `waybill.control`, answered with the saga's verdict;
//! - [`statement_line`]: apply an unmatched bank-statement line by hand, checked with the
//!   cash-application saga's own rule before it is written to `waybill.control`;
//! - [`validate`]: the checks of a request that need no state (required ids, versions
//!   and notes, list filters, page sizes, page tokens), pure functions the handlers call
//!   first and `make fuzz` feeds arbitrary requests;
//! - [`audit`]: the audit projection, derived from `waybill.control`, `waybill.audit`
//!   and the journal, so it is rebuildable;
//! - [`grpc_metrics`]: the tower layer that counts every call by service, method and
//!   status code (`waybill_grpc_requests_total`);
//! - [`server`]: start/stop; [`client`]: what the CLI uses; [`config`]: `[control]`;
//! - [`error`]: the one mapping from errors to gRPC status codes.
//!
//! Four-eyes violations are answered `PERMISSION_DENIED` (the caller is not allowed to
//! approve this posting, whatever its state).
//!
//! This crate must not decide anything the saga decides: its checks only answer early.
//! It writes to the log only `waybill.control` (decisions) and `waybill.audit` (attempts
//! it answered itself).

pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod dead_letters;
pub mod error;
pub mod grpc_metrics;
mod orders;
pub mod server;
pub mod service;
pub mod statement_line;
pub mod validate;
pub mod workbench;

/// Generated from `proto/waybill/v1/control.proto`.
#[allow(missing_docs, missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("waybill.v1");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("waybill_descriptor");
}

pub use auth::{Principal, Role};
pub use config::ControlConfig;
pub use error::{Error, Result};
pub use server::{ControlDeps, ControlServer, Readiness, ReadinessCheck, Services};
pub use service::Reconciler;
