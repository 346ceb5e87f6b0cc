//! Topic names. Inbound topics are per source system; commands per target system.

use crate::value::System;

/// Saga journal: saga events and checkpoints (the changelog of saga state).
pub const JOURNAL: &str = "waybill.journal";
/// Dead-letter topic: undecodable or rule-breaking input with the reason and its bytes.
pub const DLQ: &str = "waybill.dlq";
/// Control actions (approvals, retries, replays) written by the control plane.
pub const CONTROL: &str = "waybill.control";
/// Control-plane attempts answered at the edge (refused before reaching a saga), for the
/// audit trail.
pub const AUDIT: &str = "waybill.audit";

/// Saga state snapshots: the coordinator's changelog of flow states, keyed by correlation
/// key and co-partitioned with the journal, with a mark record after every save naming
/// the journal offset the states cover. A fresh replica restores from it plus the
/// journal after the mark. Compacted on Kafka.
pub const SNAPSHOTS: &str = "waybill.snapshots";

/// Connector state: each poller's cursor (key `<connector>/<model>`), appended with the
/// events it covers. Small; compacted on Kafka.
pub const CONNECT_STATE: &str = "waybill.connect.state";

/// The systems that send inbound events on their own topic.
pub const INBOUND_SYSTEMS: [System; 5] = [System::Odoo, System::Wms, System::Carrier, System::Finance, System::Bank];

/// The systems that receive commands on their own topic.
pub const COMMAND_TARGETS: [System; 4] = [System::Odoo, System::Wms, System::Carrier, System::Finance];

/// `waybill.inbound.<system>`.
pub fn inbound(system: System) -> String {
    format!("waybill.inbound.{system}")
}

/// The system whose inbound topic `name` is (`waybill.inbound.wms` → WMS), without
/// allocating: the coordinator asks it of every record it reads.
pub fn inbound_system(name: &str) -> Option<System> {
    let system = name.strip_prefix("waybill.inbound.")?;
    INBOUND_SYSTEMS.into_iter().find(|s| s.as_str() == system)
}

/// `waybill.commands.<system>`.
pub fn commands(system: System) -> String {
    format!("waybill.commands.{system}")
}

/// Every topic the coordinator consumes, in a fixed order: the inbound topics, then
/// control.
pub fn coordinator_inputs() -> Vec<String> {
    let mut v: Vec<String> = INBOUND_SYSTEMS.iter().map(|s| inbound(*s)).collect();
    v.push(CONTROL.to_string());
    v
}

/// Every command topic.
pub fn command_topics() -> Vec<String> {
    COMMAND_TARGETS.iter().map(|s| commands(*s)).collect()
}

/// Record header names every writer uses: the coordinator, ingestion and the connectors.
pub mod headers {
    /// Event id of an inbound record, so duplicates are found without decoding.
    pub const EVENT_ID: &str = "waybill.event-id";
    /// Idempotency key of a command.
    pub const IDEMPOTENCY_KEY: &str = "waybill.idempotency-key";
    /// Saga id of a journal event or command.
    pub const SAGA_ID: &str = "waybill.saga-id";
    /// Why a record is in the dead-letter topic.
    pub const DLQ_REASON: &str = "waybill.dlq.reason";
    /// `decode`, `unknown-schema`, `rule`, `forbidden` or `ownership`.
    pub const DLQ_KIND: &str = "waybill.dlq.kind";
    /// Topic the dead letter was read from.
    pub const DLQ_TOPIC: &str = "waybill.dlq.topic";
    /// Partition the dead letter was read from.
    pub const DLQ_PARTITION: &str = "waybill.dlq.partition";
    /// The identity that posted a body ingestion refused (`anonymous` where anonymous
    /// posts are allowed).
    pub const DLQ_CALLER: &str = "waybill.dlq.caller";
    /// Offset the dead letter was read from.
    pub const DLQ_OFFSET: &str = "waybill.dlq.offset";
}
