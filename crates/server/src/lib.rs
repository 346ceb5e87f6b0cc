//! The `waybill` binary's library: configuration, node wiring, HTTP ingestion, the
//! dead-letter tools, the demo with its simulator, and the load test (`waybill load`). The binary's `cli` modules only parse
//! flags, call these and render the answers.

pub mod backend;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod dlq;
pub mod ingest;
pub mod load;
pub mod log_retention;
pub mod node;
pub mod observe;
pub mod reconcile;
pub mod registry;
pub mod schemas;
