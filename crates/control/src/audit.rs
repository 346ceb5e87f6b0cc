//! The audit projection: who tried to approve or reject which posting, or to retry,
//! resolve, assign, apply a statement line by hand or replay on the workbench, when, from where, and how it ended. Derived from the log only, so deleting `data/audit` and restarting
//! rebuilds it:
//!
//! - `waybill.control`: every decision the control plane sent to the saga, with the
//!   `waybill.actor`, `waybill.role` and `waybill.peer` headers;
//! - `waybill.audit` ([`AUDIT_TOPIC`]): attempts the control plane answered itself
//!   (refused: role, four-eyes, limit, stale version, unknown posting; or already
//!   decided; dead-letter listings and replays), as Confluent-framed Avro [`EdgeRecord`]s
//!   (`waybill.audit.EdgeRecord`; JSON before, still read) — they never reach the saga;
//! - `waybill.journal`: the saga's verdict on each action (`PostingApproved`,
//!   `PostingRejected`, `ExceptionRetried`, `ExceptionResolved`, `ExceptionAssigned`,
//!   `SagaReplayed` or `ControlRefused`, whose `caused_by` is the action's event id).
//!
//! Entries and verdicts are stored under separate keys and joined when read, so the
//! order in which the three topics are read does not matter; checkpoints are written in
//! the same sled batch as the changes they cover.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use waybill_domain::{EventBody, JournalBody, topic};
use waybill_log::{EventLog, StoredRecord};

use crate::error::{Error, Result};

/// Topic of control attempts answered at the edge (never seen by the saga).
pub const AUDIT_TOPIC: &str = waybill_domain::topic::AUDIT;

/// Record headers the control plane writes.
pub mod headers {
    /// Event id (the same header ingestion uses).
    pub const EVENT_ID: &str = "waybill.event-id";
    /// Authenticated identity of the caller.
    pub const ACTOR: &str = "waybill.actor";
    /// The caller's role.
    pub const ROLE: &str = "waybill.role";
    /// The caller's network address.
    pub const PEER: &str = "waybill.peer";
}

/// One audited control action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The control event id, or `edge:<partition>:<offset>` for an attempt answered at
    /// the edge.
    pub event_id: String,
    /// When (microseconds since the epoch).
    pub at_us: i64,
    /// Who.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// From where.
    pub peer: String,
    /// `approve`, `reject`, `retry`, `resolve`, `assign`, `assign-line`, `replay` or
    /// `replay-dry-run`.
    pub action: String,
    /// Which posting, exception or saga.
    pub posting_id: String,
    /// Its order.
    pub order_ref: String,
    /// The version the caller named.
    pub expected_version: i64,
    /// The caller's reason.
    pub reason: String,
    /// `approved`, `rejected`, `refused`, `already-decided` or `pending`.
    pub outcome: String,
    /// The refusal reason or the new version.
    pub detail: String,
    /// `waybill.control` or `waybill.audit`.
    pub topic: String,
}

/// An attempt answered by the control plane itself: the JSON value of a
/// [`AUDIT_TOPIC`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeRecord {
    /// When.
    pub at_us: i64,
    /// Who.
    pub actor: String,
    /// Role.
    pub role: String,
    /// From where.
    pub peer: String,
    /// The action, as in [`AuditEntry::action`].
    pub action: String,
    /// Posting, exception or saga.
    pub posting_id: String,
    /// Order (empty when the posting is unknown).
    pub order_ref: String,
    /// Version named.
    pub expected_version: i64,
    /// Reason given.
    pub reason: String,
    /// `refused` or `already-decided`.
    pub outcome: String,
    /// The answer given (`PERMISSION_DENIED: …`).
    pub detail: String,
}

/// The Avro schema of [`EdgeRecord`]s (`schemas/waybill.audit/EdgeRecord`).
pub const EDGE_RECORD_SCHEMA: &str = "waybill.audit.EdgeRecord";

/// An [`EdgeRecord`] as the value of a `waybill.audit` record: Confluent-framed Avro, so
/// standard Kafka tooling reads the topic like every other.
pub fn encode_edge(x: &EdgeRecord) -> Result<Vec<u8>> {
    waybill_schema::Registry::embedded()
        .encode_record(EDGE_RECORD_SCHEMA, x)
        .map_err(|e| Error::Internal(format!("cannot encode an audit record: {e}")))
}

/// The [`EdgeRecord`] of a `waybill.audit` value: Avro, or the JSON that releases before
/// the topic became Avro wrote.
pub fn decode_edge(value: &[u8]) -> Option<EdgeRecord> {
    match value.first() {
        Some(&waybill_schema::wire::MAGIC) => waybill_schema::Registry::embedded().decode_record(value).ok(),
        _ => serde_json::from_slice(value).ok(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Verdict {
    outcome: String,
    detail: String,
}

const ENTRY: &[u8] = b"e\0";
const VERDICT: &[u8] = b"v\0";
const CHECKPOINT: &[u8] = b"c\0";

fn key(prefix: &[u8], id: &str) -> Vec<u8> {
    [prefix, id.as_bytes()].concat()
}

fn checkpoint_key(topic: &str, partition: i32) -> Vec<u8> {
    [CHECKPOINT, topic.as_bytes(), b"\0", &partition.to_be_bytes()].concat()
}

/// The audit store (its own sled database).
#[derive(Debug)]
pub struct AuditStore {
    tree: sled::Tree,
}

impl AuditStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = waybill_log::local::open_sled(&sled::Config::new().path(path).cache_capacity(16 * 1024 * 1024))
            .map_err(|e| Error::audit(format!("opening {}", path.display()), e))?;
        let tree = db.open_tree("waybill.audit").map_err(|e| Error::audit("opening the tree", e))?;
        Ok(AuditStore { tree })
    }

    fn checkpoint(&self, topic: &str, partition: i32) -> Result<i64> {
        let v = self.tree.get(checkpoint_key(topic, partition)).map_err(|e| Error::audit("reading a checkpoint", e))?;
        Ok(v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok()).map(i64::from_be_bytes).unwrap_or(0))
    }

    /// Reads what is new in the three topics and applies it; returns the records read.
    pub fn catch_up(&self, log: &dyn EventLog) -> Result<usize> {
        let mut n = 0;
        for t in [topic::CONTROL, AUDIT_TOPIC] {
            for p in 0..log.partitions(t)? as i32 {
                loop {
                    let from = self.checkpoint(t, p)?;
                    let records = log.read(t, p, from, 1024)?;
                    let Some(last) = records.last() else { break };
                    let mut batch = sled::Batch::default();
                    for r in &records {
                        apply(r, &mut batch);
                    }
                    batch.insert(checkpoint_key(t, p), &(last.offset + 1).to_be_bytes());
                    self.tree.apply_batch(batch).map_err(|e| Error::audit("writing a batch", e))?;
                    n += records.len();
                }
            }
        }
        for p in 0..log.partitions(topic::JOURNAL)? as i32 {
            n += self.catch_up_journal(log, p)?;
        }
        Ok(n)
    }

    /// The journal's verdicts count only once a checkpoint covers them (DESIGN.md
    /// invariant 2): events are held until the checkpoint that ends their batch, those it
    /// does not cover (the remains of a batch cut short) are dropped, and the audit's own
    /// position never passes an event it still holds.
    fn catch_up_journal(&self, log: &dyn EventLog, p: i32) -> Result<usize> {
        let t = topic::JOURNAL;
        let mut n = 0;
        let from = self.checkpoint(t, p)?;
        let end = log.end_offset(t, p)?;
        let (mut at, mut held) = (from, Vec::new());
        let mut batch = sled::Batch::default();
        while at < end {
            let records = log.read(t, p, at, 1024)?;
            let Some(last) = records.last() else { break };
            at = last.offset + 1;
            n += records.len();
            for r in records {
                // Only checkpoints are decoded here; `apply` reads a verdict's schema name
                // before it decodes anything else.
                let checkpoint = waybill_schema::schema_name_of(&r.value)
                    .is_ok_and(|n| n.ends_with(".Checkpoint"))
                    .then(|| waybill_schema::decode_journal_record(&r.value));
                match checkpoint {
                    Some(Ok(waybill_schema::JournalRecord::Checkpoint(c))) => {
                        for e in held.drain(..).filter(|e: &StoredRecord| c.covers(e.offset)) {
                            apply(&e, &mut batch);
                        }
                        batch.insert(checkpoint_key(t, p), &(r.offset + 1).to_be_bytes());
                        self.tree
                            .apply_batch(std::mem::take(&mut batch))
                            .map_err(|e| Error::audit("writing a batch", e))?;
                    }
                    // Undecodable records are passed over like any other non-verdict.
                    _ => held.push(r),
                }
            }
        }
        Ok(n)
    }

    /// Entries, newest first, optionally only for one posting or one actor.
    pub fn list(&self, posting_id: Option<&str>, actor: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(ENTRY) {
            let (k, v) = kv.map_err(|e| Error::audit("scanning entries", e))?;
            let mut e: AuditEntry = serde_json::from_slice(&v).map_err(|e| {
                Error::Internal(format!(
                    "audit entry {:?} is unreadable ({e}); delete the audit directory to rebuild it",
                    String::from_utf8_lossy(&k)
                ))
            })?;
            if posting_id.is_some_and(|p| p != e.posting_id) || actor.is_some_and(|a| a != e.actor) {
                continue;
            }
            if e.outcome == "pending"
                && let Some(v) =
                    self.tree.get(key(VERDICT, &e.event_id)).map_err(|e| Error::audit("reading a verdict", e))?
                && let Ok(v) = serde_json::from_slice::<Verdict>(&v)
            {
                e.outcome = v.outcome;
                e.detail = v.detail;
            }
            out.push(e);
        }
        out.sort_by(|a, b| (b.at_us, &b.event_id).cmp(&(a.at_us, &a.event_id)));
        out.truncate(limit);
        Ok(out)
    }
}

fn header(r: &StoredRecord, name: &str) -> String {
    r.header(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

fn apply(r: &StoredRecord, batch: &mut sled::Batch) {
    if r.topic == topic::CONTROL {
        let Ok(event) = waybill_schema::decode_event(&r.value) else { return };
        let peer = header(r, headers::PEER);
        let peer = if peer.is_empty() { "(not through the control plane)".to_string() } else { peer };
        // (action, actor, role, subject, order, expected version, reason)
        let (action, actor, role, subject, order_ref, version, reason) = match &event.body {
            EventBody::PostingApproved(d) | EventBody::PostingRejected(d) => (
                if matches!(event.body, EventBody::PostingApproved(_)) { "approve" } else { "reject" },
                &d.actor,
                &d.role,
                &d.posting_id,
                &d.order_ref,
                d.expected_version,
                d.reason.clone(),
            ),
            EventBody::ExceptionRetryRequested(a) | EventBody::ExceptionResolveRequested(a) => (
                if matches!(event.body, EventBody::ExceptionRetryRequested(_)) { "retry" } else { "resolve" },
                &a.actor,
                &a.role,
                &a.exception_id,
                &a.order_ref,
                0,
                a.note.clone(),
            ),
            EventBody::ExceptionAssignRequested(a) => {
                // The owner is part of what was asked: the reason names it.
                let reason =
                    if a.note.is_empty() { format!("to {}", a.owner) } else { format!("to {}: {}", a.owner, a.note) };
                ("assign", &a.actor, &a.role, &a.exception_id, &a.order_ref, 0, reason)
            }
            EventBody::SagaReplayRequested(x) => {
                ("replay", &x.actor, &x.role, &x.saga_id, &x.order_ref, 0, x.note.clone())
            }
            // The allocation is part of what was asked: the reason names it.
            EventBody::StatementLineAssignRequested(a) => (
                crate::statement_line::ACTION,
                &a.actor,
                &a.role,
                &a.exception_id,
                &event.meta.correlation_key,
                0,
                crate::statement_line::describe(&a.allocations, a.on_account.as_deref(), &a.note),
            ),
            _ => return,
        };
        let entry = AuditEntry {
            event_id: event.meta.event_id.clone(),
            at_us: event.meta.occurred_at.0,
            actor: actor.clone(),
            role: role.clone(),
            peer,
            action: action.into(),
            posting_id: subject.clone(),
            order_ref: order_ref.clone(),
            expected_version: version,
            reason,
            outcome: "pending".into(),
            detail: String::new(),
            topic: r.topic.clone(),
        };
        batch.insert(key(ENTRY, &entry.event_id), serde_json::to_vec(&entry).unwrap_or_default());
    } else if r.topic == AUDIT_TOPIC {
        let Some(x) = decode_edge(&r.value) else { return };
        let entry = AuditEntry {
            event_id: format!("edge:{}:{}", r.partition, r.offset),
            at_us: x.at_us,
            actor: x.actor,
            role: x.role,
            peer: x.peer,
            action: x.action,
            posting_id: x.posting_id,
            order_ref: x.order_ref,
            expected_version: x.expected_version,
            reason: x.reason,
            outcome: x.outcome,
            detail: x.detail,
            topic: r.topic.clone(),
        };
        batch.insert(key(ENTRY, &entry.event_id), serde_json::to_vec(&entry).unwrap_or_default());
    } else {
        // The journal: only the verdicts matter; the schema name is read without decoding
        // the rest.
        let Ok(name) = waybill_schema::schema_name_of(&r.value) else { return };
        const VERDICTS: [&str; 7] = [
            ".PostingApproved",
            ".PostingRejected",
            ".ControlRefused",
            ".ExceptionRetried",
            ".ExceptionResolved",
            ".ExceptionAssigned",
            ".SagaReplayed",
        ];
        if !VERDICTS.iter().any(|v| name.ends_with(v)) {
            return;
        }
        let Ok(j) = waybill_schema::decode_journal(&r.value) else { return };
        let verdict = match &j.body {
            JournalBody::PostingApproved(o) => {
                Verdict { outcome: "approved".into(), detail: format!("version {}", o.version) }
            }
            JournalBody::PostingRejected(o) => {
                Verdict { outcome: "rejected".into(), detail: format!("version {}", o.version) }
            }
            JournalBody::ControlRefused(x) => {
                Verdict { outcome: "refused".into(), detail: format!("refused by the saga: {}", x.reason) }
            }
            JournalBody::ExceptionRetried(x) => {
                Verdict { outcome: "retried".into(), detail: format!("command {} re-issued", x.idempotency_key) }
            }
            // Only an operator's resolution is a verdict (others are caused by inbound
            // events, timers, or a replay closing dead letters).
            JournalBody::ExceptionResolved(x) if j.meta.caused_by.starts_with("control:resolve:") => {
                Verdict { outcome: "resolved".into(), detail: x.resolution.clone() }
            }
            // A statement line applied by hand: its exception closes with the allocation.
            JournalBody::ExceptionResolved(x) if j.meta.caused_by.starts_with("control:assign-line:") => {
                Verdict { outcome: "applied".into(), detail: x.resolution.clone() }
            }
            JournalBody::ExceptionAssigned(x) => Verdict {
                outcome: "assigned".into(),
                detail: match &x.previous_owner {
                    Some(p) => format!("assigned to {} (was {p})", x.owner),
                    None => format!("assigned to {}", x.owner),
                },
            },
            JournalBody::SagaReplayed(x) => Verdict {
                outcome: "replayed".into(),
                detail: format!(
                    "{} of {} records applied; commands [{}]; {} still refused",
                    x.applied,
                    x.inputs,
                    x.commands.join(", "),
                    x.refused.len()
                ),
            },
            _ => return,
        };
        batch.insert(key(VERDICT, &j.meta.caused_by), serde_json::to_vec(&verdict).unwrap_or_default());
    }
}

/// Keeps `store` up to date with the log until `stop`.
pub fn run(store: &AuditStore, log: &dyn EventLog, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        match store.catch_up(log) {
            Ok(0) => {
                backoff = Duration::from_millis(100);
                if let Err(e) = wait(store, log) {
                    tracing::warn!(error = %e, "audit projector could not wait for new records");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "audit projector failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn wait(store: &AuditStore, log: &dyn EventLog) -> Result<()> {
    let mut positions = Vec::new();
    for t in [topic::CONTROL, AUDIT_TOPIC, topic::JOURNAL] {
        for p in 0..log.partitions(t)? as i32 {
            positions.push((t, p, store.checkpoint(t, p)?));
        }
    }
    log.wait_any(&positions, Duration::from_millis(200))?;
    Ok(())
}

/// Starts [`run`] on its own thread.
pub fn spawn(
    store: Arc<AuditStore>,
    log: Arc<dyn EventLog>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("control-audit".into()).spawn(move || run(&store, log.as_ref(), &stop))
}

#[cfg(test)]
mod tests {
    use waybill_domain::journal::{Checkpoint, PostingOutcome};
    use waybill_domain::{JournalBody, SagaKind, Timestamp};
    use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions};
    use waybill_log::{AppendBatch, Record};
    use waybill_test_util::journal::ev;

    use super::*;

    fn approved(order: &str, seq: i64, posting: &str, actor: &str) -> Record {
        let o = PostingOutcome {
            posting_id: posting.into(),
            version: 2,
            actor: actor.into(),
            role: "approver".into(),
            reason: "ok".into(),
        };
        let e = ev(order, SagaKind::ShipToInvoice, seq, 1, JournalBody::PostingApproved(o));
        let mut e = e;
        e.meta.caused_by = format!("control:{posting}:v1:approve:{actor}");
        Record {
            topic: topic::JOURNAL.into(),
            partition: Some(0),
            key: order.as_bytes().to_vec(),
            headers: vec![],
            value: waybill_schema::encode_journal(&e).unwrap(),
        }
    }

    fn checkpoint(from: i64, until: i64) -> Record {
        let c = Checkpoint {
            partition: 0,
            positions: vec![],
            at: Timestamp(0),
            journal_from: Some(from),
            journal_until: Some(until),
        };
        Record {
            topic: topic::JOURNAL.into(),
            partition: Some(0),
            key: vec![],
            headers: vec![],
            value: waybill_schema::encode_checkpoint(&c).unwrap(),
        }
    }

    fn control(posting: &str, actor: &str) -> Record {
        let id = format!("control:{posting}:v1:approve:{actor}");
        let e = waybill_test_util::inbound::decision("SO1", &id, posting, 1, actor, "approver", true);
        Record::keyed(topic::CONTROL, b"SO1".to_vec(), waybill_schema::encode_event(&e).unwrap())
    }

    #[test]
    fn a_verdict_no_checkpoint_covers_is_not_audited() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log"), EmbeddedOptions::default()).unwrap();
        for t in [topic::CONTROL, AUDIT_TOPIC, topic::JOURNAL] {
            log.ensure_topic(t, 1).unwrap();
        }
        let store = AuditStore::open(&dir.path().join("audit")).unwrap();
        let append = |r: Record| log.append(AppendBatch { records: vec![r], positions: vec![] }).unwrap();
        append(control("inv:A", "bob"));
        append(control("inv:A", "alice"));
        // A batch cut short after bob's verdict (journal offset 0); the re-run's batch
        // decides alice's (offset 1) and its checkpoint covers only that.
        append(approved("SO1", 7, "inv:A", "bob"));
        store.catch_up(&log).unwrap();
        let outcome = |actor: &str| {
            store.list(Some("inv:A"), Some(actor), 10).unwrap().first().map(|e| e.outcome.clone()).unwrap_or_default()
        };
        assert_eq!(outcome("bob"), "pending", "a verdict waits for its checkpoint");
        append(approved("SO1", 7, "inv:A", "alice"));
        append(checkpoint(1, 2));
        store.catch_up(&log).unwrap();
        assert_eq!(outcome("alice"), "approved");
        assert_eq!(outcome("bob"), "pending", "the cut batch's verdict is dropped");
    }
}

#[cfg(test)]
mod edge_tests {
    use super::*;

    #[test]
    fn edge_records_are_avro_and_old_json_ones_still_read() {
        let x = EdgeRecord {
            at_us: 1_700_000_000_000_000,
            actor: "vera".into(),
            role: "viewer".into(),
            peer: "127.0.0.1:5000".into(),
            action: "approve".into(),
            posting_id: "inv:SHP-1".into(),
            order_ref: "SO1".into(),
            expected_version: 3,
            reason: "ok".into(),
            outcome: "refused".into(),
            detail: "PERMISSION_DENIED: approve needs role approver".into(),
        };
        let bytes = encode_edge(&x).unwrap();
        let schema = waybill_schema::Registry::embedded().schema_of(&bytes).unwrap();
        assert_eq!(schema.full_name(), EDGE_RECORD_SCHEMA);
        assert_eq!(decode_edge(&bytes), Some(x.clone()));
        assert_eq!(decode_edge(&serde_json::to_vec(&x).unwrap()), Some(x));
    }
}
