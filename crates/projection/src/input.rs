//! What the core applies: decoded domain values with the position they were read at.

use waybill_domain::journal::InputPosition;
use waybill_domain::{Command, JournalEvent, SourceRef, System, Timestamp};
use waybill_log::StoredRecord;

/// Header names of a dead-letter record (`waybill.dlq`). The value is the original bytes.
pub mod dlq_header {
    /// Why the record was dead-lettered (UTF-8 text).
    pub const REASON: &str = "waybill.dlq.reason";
    /// Topic the original record was read from.
    pub const TOPIC: &str = "waybill.dlq.topic";
    /// Partition of the original record (decimal text).
    pub const PARTITION: &str = "waybill.dlq.partition";
    /// Offset of the original record (decimal text).
    pub const OFFSET: &str = "waybill.dlq.offset";
    /// `decode`, `unknown-schema` or `rule`.
    pub const KIND: &str = "waybill.dlq.kind";
    /// Optional: the source reference the record is about (`wms:SHP-1`).
    pub const SUBJECT: &str = "waybill.dlq.subject";
}

/// One decoded record of an internal topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A saga journal event (`waybill.journal`).
    Journal(JournalEvent),
    /// A command (`waybill.commands.<system>`).
    Command(Command),
    /// A dead-letter record (`waybill.dlq`).
    DeadLetter(DeadLetter),
    /// A record with nothing to project (a journal checkpoint, or a record that could
    /// not be decoded): only the checkpoint moves past it.
    Skip,
}

/// An input and where it was read. Inputs of one topic partition must be applied in
/// offset order; partitions and topics may interleave in any way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positioned {
    /// Topic, partition and offset of the record.
    pub position: InputPosition,
    /// The decoded record.
    pub input: Input,
}

impl Positioned {
    /// `input` read at `topic`/`partition`/`offset`.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64, input: Input) -> Self {
        Positioned { position: InputPosition { topic: topic.into(), partition, offset }, input }
    }
}

/// A dead-letter record, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why it was dead-lettered.
    pub reason: String,
    /// `decode`, `unknown-schema` or `rule` (empty when the header is missing).
    pub kind: String,
    /// Where the original record was read, when the headers say.
    pub origin: Option<InputPosition>,
    /// The record key (the correlation key: the sale order name), when it is UTF-8 text.
    pub key: Option<String>,
    /// The `waybill.dlq.subject` header, when present and valid.
    pub subject: Option<SourceRef>,
    /// When the dead letter was appended.
    pub at: Timestamp,
}

impl DeadLetter {
    /// Reads a dead letter's headers. Missing or malformed headers leave the field empty;
    /// the record still becomes an exception.
    pub fn from_record(record: &StoredRecord) -> Self {
        let text = |name: &str| record.header(name).map(|v| String::from_utf8_lossy(v).into_owned());
        let origin = match (text(dlq_header::TOPIC), text(dlq_header::PARTITION), text(dlq_header::OFFSET)) {
            (Some(topic), Some(p), Some(o)) => match (p.trim().parse(), o.trim().parse()) {
                (Ok(partition), Ok(offset)) => Some(InputPosition { topic, partition, offset }),
                _ => None,
            },
            _ => None,
        };
        DeadLetter {
            reason: text(dlq_header::REASON)
                .unwrap_or_else(|| "no reason given (header waybill.dlq.reason missing)".into()),
            kind: text(dlq_header::KIND).unwrap_or_default(),
            origin,
            key: std::str::from_utf8(&record.key).ok().filter(|k| !k.is_empty()).map(str::to_string),
            subject: text(dlq_header::SUBJECT).and_then(|s| s.parse().ok()),
            at: Timestamp(record.timestamp_ms.saturating_mul(1000)),
        }
    }

    /// The exception id: `dlq:<topic>:<partition>:<offset>` of the original record, or of
    /// the dead letter itself (`at`) when the headers do not name the original.
    pub fn exception_id(&self, at: &InputPosition) -> String {
        let p = self.origin.as_ref().unwrap_or(at);
        format!("dlq:{}:{}:{}", p.topic, p.partition, p.offset)
    }

    /// What the exception is about: the `subject` header, else the order named by the
    /// record key (`odoo:<key>`), else the dead letter itself (`waybill:<exception id>`).
    pub fn subject_ref(&self, at: &InputPosition) -> SourceRef {
        if let Some(s) = &self.subject {
            return s.clone();
        }
        match &self.key {
            Some(k) => SourceRef::new(System::Odoo, k.clone()),
            None => SourceRef::new(System::Waybill, self.exception_id(at)),
        }
    }
}

/// What one [`ProjectionStore::apply`](crate::ProjectionStore::apply) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Inputs applied to the views.
    pub applied: usize,
    /// Copies of already-applied journal events, commands or dead letters, dropped.
    pub duplicates: usize,
    /// Inputs below their partition's checkpoint (read again), ignored.
    pub already_applied: usize,
    /// [`Input::Skip`] records passed over.
    pub skipped: usize,
}

impl std::ops::AddAssign for ApplyStats {
    fn add_assign(&mut self, o: ApplyStats) {
        self.applied += o.applied;
        self.duplicates += o.duplicates;
        self.already_applied += o.already_applied;
        self.skipped += o.skipped;
    }
}
