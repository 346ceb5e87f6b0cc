//! Reading records: the index gives each record's place, and records close together in
//! one segment are fetched with one positioned read.

use std::os::unix::fs::FileExt;

use super::Inner;
use super::format::Cursor;
use crate::{Error, Offset, Result, StoredRecord};

/// Records closer together than this on disk are fetched with one read.
const READ_GAP: u64 = 32 * 1024;
/// Largest span fetched with one read (a larger single record gets its own read).
const READ_SPAN: u64 = 1024 * 1024;

impl Inner {
    /// Up to `max` records of a partition from `from` (from its log start when `from` is
    /// before it), with positioned reads of the runs of records close together on disk.
    pub(super) fn read_records(
        &self,
        topic: &str,
        partition: i32,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>> {
        let (name, from, entries, first_segment, segments) = {
            let st = self.read_state();
            let (_, t, part) = st.partition(topic, partition)?;
            let end = part.next();
            if from < 0 || from > end {
                return Err(Error::OffsetOutOfRange { topic: topic.to_owned(), partition, offset: from, end });
            }
            // Records before the log start were deleted by retention: read from it.
            let from = from.max(part.start);
            let n = ((end - from) as usize).min(max);
            if n == 0 {
                return Ok(Vec::new());
            }
            let at = (from - part.start) as usize;
            let entries = part.entries[at..at + n].to_vec();
            // Copied-forward records sit in later segments than the records after them.
            let first = entries.iter().map(|e| e.segment).min().unwrap_or(0);
            let last = entries.iter().map(|e| e.segment).max().unwrap_or(0);
            (t.name.clone(), from, entries, first, st.segments[first as usize..=last as usize].to_vec())
        };
        let mut out = Vec::with_capacity(entries.len());
        let mut buf = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            // A run: records of one segment close enough to fetch with one read.
            let start = entries[i];
            let mut end = start.pos + u64::from(start.len);
            let mut j = i + 1;
            while let Some(e) = entries.get(j) {
                let e_end = e.pos + u64::from(e.len);
                if e.segment != start.segment || e.pos < end || e.pos - end > READ_GAP || e_end - start.pos > READ_SPAN
                {
                    break;
                }
                end = e_end;
                j += 1;
            }
            let Some(seg) = &segments[(start.segment - first_segment) as usize] else {
                return Err(Error::Unavailable(format!(
                    "{topic}/{partition} offset {} points into a segment retention deleted; this \
                     is a bug in the embedded log, restart the process to rebuild its index",
                    from + i as i64
                )));
            };
            buf.resize((end - start.pos) as usize, 0);
            seg.file.read_exact_at(&mut buf, start.pos).map_err(|source| {
                if source.kind() == std::io::ErrorKind::UnexpectedEof {
                    Error::Corrupt {
                        path: seg.path.clone(),
                        offset: start.pos,
                        reason: "the file is shorter than the index says; was it truncated \
                                 while the log was open?"
                            .into(),
                    }
                } else {
                    Error::Io { path: seg.path.clone(), source }
                }
            })?;
            for (k, e) in entries[i..j].iter().enumerate() {
                let at = (e.pos - start.pos) as usize;
                let offset = from + (i + k) as i64;
                let record = decode_record(&buf[at..at + e.len as usize], &name, partition, offset)
                    .map_err(|reason| Error::Corrupt { path: seg.path.clone(), offset: e.pos, reason })?;
                out.push(record);
            }
            i = j;
        }
        Ok(out)
    }
}

/// Decodes a record's bytes, checking they are the record the index says.
fn decode_record(
    bytes: &[u8],
    topic: &str,
    partition: i32,
    offset: Offset,
) -> std::result::Result<StoredRecord, String> {
    let mut c = Cursor::new(bytes);
    let head = c.record_head()?;
    if head.partition != partition || head.offset != offset {
        return Err(format!(
            "expected the record at {topic}/{partition} offset {offset} but found partition {} \
             offset {}",
            head.partition, head.offset
        ));
    }
    let (key, headers, value) = c.record_body()?;
    if !c.at_end() {
        return Err(format!("record at {topic}/{partition} offset {offset} has trailing bytes"));
    }
    Ok(StoredRecord {
        topic: topic.to_owned(),
        partition,
        offset,
        timestamp_ms: head.timestamp_ms,
        key,
        headers,
        value,
    })
}
