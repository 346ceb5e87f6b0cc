//! The records a partition reader delivered last, kept for re-reads: the coordinator
//! re-reads the part of a batch it left for its next turn, and serving that from memory
//! spares a reposition (which drops the consumer's prefetched records, costs a fetch round
//! trip, and on Tansu 0.6.0 skips the rest of a stored batch).
//!
//! Every record a reader delivers would be kept, so keeping must be cheap: the records
//! of one read are copied into one byte buffer (a chunk) instead of being cloned, which
//! costs an allocation per key, value and header. Only a re-read builds records again.

use std::collections::VecDeque;
use std::ops::Range;

use crate::{Header, Offset, StoredRecord};

/// Records kept per reader: at least this many of the last delivered, when there are.
pub(super) const RECENT_RECORDS: usize = 2048;

/// The last records delivered by one reader, contiguous up to what it delivers next.
#[derive(Debug, Default)]
pub(super) struct Recent {
    chunks: VecDeque<Chunk>,
    len: usize,
}

/// The records of one read, their bytes in one buffer.
#[derive(Debug)]
struct Chunk {
    bytes: Vec<u8>,
    records: Vec<Kept>,
    /// Header keys and values of every record, as ranges of `bytes`.
    headers: Vec<(Range<usize>, Range<usize>)>,
}

/// One record of a chunk.
#[derive(Debug)]
struct Kept {
    offset: Offset,
    timestamp_ms: i64,
    key: Range<usize>,
    value: Range<usize>,
    /// Its headers, as a range of the chunk's `headers`.
    headers: Range<usize>,
}

impl Recent {
    /// The offset of the first record kept.
    pub(super) fn first_offset(&self) -> Option<Offset> {
        self.chunks.front().and_then(|c| c.records.first()).map(|k| k.offset)
    }

    /// Forgets every record (after a reposition).
    pub(super) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// Keeps the last [`RECENT_RECORDS`] of `records`, just delivered after the ones kept,
    /// and lets the oldest chunks go while the rest hold at least [`RECENT_RECORDS`].
    pub(super) fn keep(&mut self, records: &[StoredRecord]) {
        let records = &records[records.len().saturating_sub(RECENT_RECORDS)..];
        if records.is_empty() {
            return;
        }
        let size: usize = records
            .iter()
            .map(|r| r.key.len() + r.value.len() + r.headers.iter().map(|h| h.key.len() + h.value.len()).sum::<usize>())
            .sum();
        let mut chunk =
            Chunk { bytes: Vec::with_capacity(size), records: Vec::with_capacity(records.len()), headers: Vec::new() };
        for r in records {
            let key = chunk.put(&r.key);
            let value = chunk.put(&r.value);
            let first_header = chunk.headers.len();
            for h in &r.headers {
                let k = chunk.put(h.key.as_bytes());
                let v = chunk.put(&h.value);
                chunk.headers.push((k, v));
            }
            let headers = first_header..chunk.headers.len();
            chunk.records.push(Kept { offset: r.offset, timestamp_ms: r.timestamp_ms, key, value, headers });
        }
        self.len += chunk.records.len();
        self.chunks.push_back(chunk);
        while self.chunks.front().is_some_and(|c| self.len - c.records.len() >= RECENT_RECORDS) {
            let dropped = self.chunks.pop_front().map_or(0, |c| c.records.len());
            self.len -= dropped;
        }
    }

    /// Appends to `out` the kept records of `topic`/`partition` from offset `from` on, up
    /// to `max` in all.
    pub(super) fn read(&self, topic: &str, partition: i32, from: Offset, max: usize, out: &mut Vec<StoredRecord>) {
        for c in &self.chunks {
            if c.records.last().is_none_or(|k| k.offset < from) {
                continue;
            }
            for k in c.records.iter().filter(|k| k.offset >= from) {
                if out.len() >= max {
                    return;
                }
                out.push(StoredRecord {
                    topic: topic.to_owned(),
                    partition,
                    offset: k.offset,
                    timestamp_ms: k.timestamp_ms,
                    key: c.bytes[k.key.clone()].to_vec(),
                    headers: c.headers[k.headers.clone()]
                        .iter()
                        .map(|(hk, hv)| Header {
                            key: String::from_utf8_lossy(&c.bytes[hk.clone()]).into_owned(),
                            value: c.bytes[hv.clone()].to_vec(),
                        })
                        .collect(),
                    value: c.bytes[k.value.clone()].to_vec(),
                });
            }
        }
    }
}

impl Chunk {
    /// Copies `data` into the buffer; returns where it is.
    fn put(&mut self, data: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        start..self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: Offset) -> StoredRecord {
        StoredRecord {
            topic: "t".into(),
            partition: 2,
            offset,
            timestamp_ms: 1000 + offset,
            key: format!("k{offset}").into_bytes(),
            headers: if offset % 2 == 0 {
                vec![Header { key: "traceparent".into(), value: vec![offset as u8; 3] }]
            } else {
                Vec::new()
            },
            value: vec![offset as u8; offset as usize % 7],
        }
    }

    #[test]
    fn rereads_give_back_the_records_delivered() {
        let mut recent = Recent::default();
        let first: Vec<StoredRecord> = (0..10).map(record).collect();
        let second: Vec<StoredRecord> = (10..25).map(record).collect();
        recent.keep(&first);
        recent.keep(&second);
        let mut out = Vec::new();
        recent.read("t", 2, 7, 100, &mut out);
        assert_eq!(out, (7..25).map(record).collect::<Vec<_>>());
        out.clear();
        recent.read("t", 2, 12, 4, &mut out);
        assert_eq!(out, (12..16).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn keeps_at_least_the_last_recent_records_and_lets_older_chunks_go() {
        let mut recent = Recent::default();
        let mut next = 0;
        for n in [1500, 1500, 1500] {
            let batch: Vec<StoredRecord> = (next..next + n).map(record).collect();
            recent.keep(&batch);
            next += n;
        }
        // 4,500 delivered: the first chunk went, the last two (3,000) hold ≥ 2,048.
        assert_eq!(recent.first_offset(), Some(1500));
        let big: Vec<StoredRecord> = (next..next + 5000).map(record).collect();
        recent.keep(&big);
        // One read larger than the bound keeps only its last RECENT_RECORDS.
        assert_eq!(recent.first_offset(), Some(next + 5000 - RECENT_RECORDS as i64));
        recent.clear();
        assert_eq!(recent.first_offset(), None);
    }
}
