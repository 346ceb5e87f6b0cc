//! Waybill's Avro schemas and the codec between them and the domain model.
//!
//! This crate owns:
//! - the schemas in `schemas/` at the repository root, one `.avsc` per record and
//!   version (`schemas/<namespace>/<Name>/v<N>.avsc`), embedded at compile time together
//!   with `schemas/ids.txt`, the append-only catalog that gives each version its schema
//!   id ([`Registry`]);
//! - the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary
//!   datum) ([`wire`]);
//! - the codec from [`InboundEvent`], [`Command`], [`JournalEvent`] and [`Checkpoint`] to
//!   framed Avro and back, where readers resolve records written with older versions of a
//!   schema to the latest one ([`encode_event`], [`decode_event`], …);
//! - JSON events for webhooks that cannot speak Avro ([`decode_event_json`]);
//! - the compatibility levels of `schemas/compatibility.txt` ([`Levels`]: backward
//!   transitive by default, full for commands and control events) and their check
//!   ([`check_registry`], [`check_level`]);
//! - the answers of the Confluent Schema Registry REST API over the catalog
//!   ([`confluent::Api`], a pure request → response that the server puts on HTTP).
//!
//! It must not do I/O: no network (it neither listens nor calls a registry), no files at
//! run time; the only schemas it reads are the ones compiled in. It decides nothing about
//! what the records mean; that is the domain and saga crates' business.
//!
//! ## Mapping
//! Every event, command and journal record is `{meta, data}`: `meta` holds the common
//! fields ([`EventMeta`](waybill_domain::EventMeta) as record `waybill.EventMeta`, …),
//! `data` the fields of the variant's struct (record `<namespace>.<Name>Data`); the
//! record's full name is `waybill.event.<EventBody::name()>` (or `waybill.command`,
//! `waybill.journal`). Avro field names are the Rust field names. `Timestamp` is a
//! `long` with logical type `timestamp-micros`, `Qty` (thousandths of a unit) and `Money`
//! (minor units) are `long`s, `Option<T>` is `["null", T]` with default `null`, `Vec<T>`
//! an array, and unit-only enums are Avro enums whose symbols are serde's
//! SCREAMING_SNAKE names **in Rust declaration order** (the direct serializer writes
//! serde's variant index), so new symbols are appended, never inserted.
//!
//! ## Cost
//! Schemas are parsed once and their named-type references inlined, so neither the
//! writer nor the reader builds a name table per record; resolution runs only for
//! records written with an older version. Encoding uses apache-avro's direct serde
//! serializer when the latest schema has exactly the domain type's fields in order
//! (checked against [`samples`] when the registry is built; the tests require it for
//! every schema in `schemas/`), and falls back to an Avro `Value` plus resolution
//! otherwise, because that serializer writes fields in serde order without checking them.
//!
//! ## Limits
//! A decoder accepts at most [`registry::MAX_DECODE_LEN`] bytes in one string or `bytes`
//! field and as many items in one array or map; a record claiming more is a decode error
//! (a dead letter), never a huge allocation.

pub mod changelog;
pub mod codec;
pub mod compat;
pub mod confluent;
mod datum;
mod error;
pub mod external;
pub mod json;
pub mod levels;
pub mod registry;
pub mod release;
pub mod samples;
pub mod snapshot;
pub mod wire;

#[cfg(test)]
mod tests;

pub use codec::{COMMAND_NAMES, EVENT_NAMES, JOURNAL_NAMES, JournalRecord};
pub use compat::{check_backward_transitive, check_candidate, check_level, check_registry, check_registry_levels};
pub use error::{Error, Result};
pub use levels::{Level, Levels};
pub use registry::{Kind, RegisteredSchema, Registry, SchemaSource};

use waybill_domain::journal::Checkpoint;
use waybill_domain::{Command, InboundEvent, JournalEvent};

/// Encodes an inbound event as Confluent-framed Avro with the latest version of its schema.
pub fn encode_event(event: &InboundEvent) -> Result<Vec<u8>> {
    Registry::embedded().encode_event(event)
}

/// Decodes a Confluent-framed inbound event written with any version in `schemas/`.
pub fn decode_event(bytes: &[u8]) -> Result<InboundEvent> {
    Registry::embedded().decode_event(bytes)
}

/// Encodes a command as Confluent-framed Avro.
pub fn encode_command(command: &Command) -> Result<Vec<u8>> {
    Registry::embedded().encode_command(command)
}

/// Decodes a Confluent-framed command.
pub fn decode_command(bytes: &[u8]) -> Result<Command> {
    Registry::embedded().decode_command(bytes)
}

/// Encodes a saga journal event as Confluent-framed Avro.
pub fn encode_journal(event: &JournalEvent) -> Result<Vec<u8>> {
    Registry::embedded().encode_journal(event)
}

/// Decodes a Confluent-framed saga journal event (rejects checkpoints; use
/// [`decode_journal_record`] on the journal topic).
pub fn decode_journal(bytes: &[u8]) -> Result<JournalEvent> {
    Registry::embedded().decode_journal(bytes)
}

/// Encodes a journal checkpoint as Confluent-framed Avro.
pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Result<Vec<u8>> {
    Registry::embedded().encode_checkpoint(checkpoint)
}

/// Decodes a Confluent-framed journal checkpoint.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint> {
    Registry::embedded().decode_checkpoint(bytes)
}

/// Decodes any record of the journal topic: a saga event or a checkpoint.
pub fn decode_journal_record(bytes: &[u8]) -> Result<JournalRecord> {
    Registry::embedded().decode_journal_record(bytes)
}

/// Full name of the schema a framed record names, e.g. `waybill.event.OrderReleased`,
/// without decoding the datum (for routing and dead-letter reasons).
pub fn schema_name_of(bytes: &[u8]) -> Result<&'static str> {
    Registry::embedded().schema_name_of(bytes)
}

/// **Benchmark baseline only**: [`encode_event`] without caching (parses the schema
/// JSON on every call and goes through an intermediate Avro `Value`).
pub fn encode_event_naive(event: &InboundEvent) -> Result<Vec<u8>> {
    Registry::embedded().encode_event_naive(event)
}

/// **Benchmark baseline only**: [`decode_event`] without caching (parses writer and
/// reader schema JSON on every call and always runs schema resolution).
pub fn decode_event_naive(bytes: &[u8]) -> Result<InboundEvent> {
    Registry::embedded().decode_event_naive(bytes)
}

/// Decodes a JSON event `{"type": "OrderReleased", "meta": {...}, "data": {...}}`; see
/// [`json`].
pub fn decode_event_json(bytes: &[u8]) -> Result<InboundEvent> {
    Registry::embedded().decode_event_json(bytes)
}

/// Encodes an event as the JSON envelope [`decode_event_json`] reads.
pub fn encode_event_json(event: &InboundEvent) -> Vec<u8> {
    Registry::embedded().encode_event_json(event)
}

/// Encodes a command as the JSON envelope `{"type", "meta", "data"}` with the Avro
/// records' field names, as the connectors' HTTP adapter sends it.
pub fn encode_command_json(command: &Command) -> Vec<u8> {
    codec::command_to_json(command)
}
