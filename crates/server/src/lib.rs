//! The `waybill` binary's library: configuration, node wiring, HTTP ingestion, the
//! dead-letter tools and the demo with its simulator. The binary's `cli` modules only parse
//! flags, call these and render the answers.

pub mod backend;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod dlq;
pub mod ingest;
pub mod node;
pub mod observe;
pub mod registry;
pub mod schemas;
