//! The dead-letter topic: list what is in it and why, and replay records to the topic
//! they came from once the cause is fixed (DESIGN.md invariant 7). Used by the control
//! plane's `ListDeadLetters`/`ReplayDeadLetters` (operator, audited) while the server
//! runs, and by `waybill dlq list|replay --data-dir` on a stopped one.

use waybill_domain::topic;
use waybill_log::{AppendBatch, EventLog, Header, Position, Record, StoredRecord};
use waybill_saga::coordinator::headers;

/// Consumer group that remembers which dead letters were replayed.
pub const REPLAY_GROUP: &str = "waybill-dlq-replay";

/// A dead letter with its reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Where it is in the dead-letter topic.
    pub partition: i32,
    /// Offset in the dead-letter topic.
    pub offset: i64,
    /// `decode`, `unknown-schema`, `rule`, `forbidden` or `ownership`.
    pub kind: String,
    /// Why it was rejected.
    pub reason: String,
    /// Topic it was read from (`http:/v1/events` when ingestion refused it).
    pub source_topic: String,
    /// The identity that posted it, when ingestion refused it.
    pub caller: Option<String>,
    /// The original record.
    pub record: StoredRecord,
}

fn header_text(r: &StoredRecord, key: &str) -> String {
    r.header(key).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

/// Every dead letter, oldest first per partition.
pub fn list(log: &dyn EventLog) -> Result<Vec<DeadLetter>, waybill_log::Error> {
    let mut out = Vec::new();
    for p in 0..log.partitions(topic::DLQ)? as i32 {
        let mut from = 0;
        loop {
            let batch = log.read(topic::DLQ, p, from, 1024)?;
            let Some(last) = batch.last() else { break };
            from = last.offset + 1;
            for r in batch {
                out.push(DeadLetter {
                    partition: p,
                    offset: r.offset,
                    kind: header_text(&r, headers::DLQ_KIND),
                    reason: header_text(&r, headers::DLQ_REASON),
                    source_topic: header_text(&r, headers::DLQ_TOPIC),
                    caller: r.header(headers::DLQ_CALLER).map(|v| String::from_utf8_lossy(v).into_owned()),
                    record: r,
                });
            }
        }
    }
    Ok(out)
}

/// Appends every dead letter not replayed before (and whose reason contains `matching`)
/// back to its original topic with its original key and headers. Returns how many.
///
/// Without `matching`, the replay group's position moves past everything replayed, so
/// the next replay offers only newer dead letters. With `matching`, the position does not
/// move — the dead letters that did not match must stay on offer — so replaying the same
/// filter twice appends those records twice; the sagas drop the copies by event id.
pub fn replay(log: &dyn EventLog, matching: Option<&str>) -> Result<usize, waybill_log::Error> {
    let mut n = 0;
    for p in 0..log.partitions(topic::DLQ)? as i32 {
        let from = log.committed(REPLAY_GROUP, topic::DLQ, p)?.unwrap_or(0);
        let end = log.end_offset(topic::DLQ, p)?;
        let mut records = Vec::new();
        let mut at = from;
        while at < end {
            let batch = log.read(topic::DLQ, p, at, 1024)?;
            let Some(last) = batch.last() else { break };
            at = last.offset + 1;
            for r in batch {
                let source = header_text(&r, headers::DLQ_TOPIC);
                let reason = header_text(&r, headers::DLQ_REASON);
                if matching.is_some_and(|m| !reason.contains(m)) || log.partitions(&source).is_err() {
                    continue;
                }
                let headers: Vec<Header> =
                    r.headers.iter().filter(|h| !h.key.starts_with("waybill.dlq.")).cloned().collect();
                records.push(Record {
                    topic: source,
                    partition: None,
                    key: r.key.clone(),
                    headers,
                    value: r.value.clone(),
                });
            }
        }
        n += records.len();
        let positions = match matching {
            None => {
                vec![Position { group: REPLAY_GROUP.into(), topic: topic::DLQ.into(), partition: p, next_offset: at }]
            }
            Some(_) => Vec::new(),
        };
        if !records.is_empty() || !positions.is_empty() {
            log.append(AppendBatch { records, positions })?;
        }
    }
    Ok(n)
}
