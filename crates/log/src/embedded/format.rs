//! The byte layout of the write-ahead stream.
//!
//! A segment is a sequence of frames: `[u32 LE payload length][u32 LE crc32 of payload]
//! [payload]`. The payload's first byte is its kind:
//!
//! - topic created: `[1][u32 topic id][u32 partitions][u16 name length][name]`; topic ids
//!   are dense, in creation order;
//! - batch: `[2][u32 record count][record]*[u32 position count][position]*`, where a
//!   record is `[u32 topic id][i32 partition][i64 offset][i64 timestamp ms]
//!   [u32 key length][key][u32 header count]([u16 name length][name][u32 value length]
//!   [value])*[u32 value length][value]` and a position is `[u16 group length][group]
//!   [u32 topic id][i32 partition][i64 next offset]`; a negative next offset forgets the
//!   group's position in the partition;
//! - checkpoint: `[3][u32 topic count]([u32 topic id][u32 partitions][u16 name length]
//!   [name]([i64 start][i64 next])*)*[u32 position count][position]*`: every topic, each
//!   partition's log start (records before it were deleted by retention) and next offset,
//!   and every stored position, as of the frame. It is the first frame of every segment
//!   after the first, and is written again whenever retention moves a log start, so a
//!   segment stands on its own once the segments before it are gone;
//! - copy: `[4][u32 record count][record]*`: records carried forward from a segment about
//!   to be deleted, each at the offset it was first given (so unlike a batch's, these
//!   offsets are not the next of their partition).
//!
//! All integers are little-endian. A record's bytes are self-contained, so a reader can
//! fetch one record with a single positioned read using the in-memory index.

use crate::Header;

/// Bytes before a frame's payload: length and crc.
pub(crate) const FRAME_HEADER: usize = 8;
/// Payload kind: a topic was created.
pub(crate) const KIND_TOPIC: u8 = 1;
/// Payload kind: a batch of records and positions.
pub(crate) const KIND_BATCH: u8 = 2;
/// Payload kind: every topic, log start, next offset and position at this point.
pub(crate) const KIND_CHECKPOINT: u8 = 3;
/// Payload kind: records copied forward at the offsets they were first given.
pub(crate) const KIND_COPY: u8 = 4;

/// Whether `kind` is a frame kind this version writes.
pub(crate) fn known_kind(kind: u8) -> bool {
    matches!(kind, KIND_TOPIC | KIND_BATCH | KIND_CHECKPOINT | KIND_COPY)
}

/// Appends little-endian integers and length-prefixed byte strings to a buffer.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_i32(&mut self, v: i32);
    fn put_i64(&mut self, v: i64);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}

/// Why bytes could not be encoded (a field too long for its length prefix).
pub(crate) type EncodeError = String;

fn len_u16(what: &str, len: usize) -> Result<u16, EncodeError> {
    u16::try_from(len).map_err(|_| format!("{what} is {len} bytes long; at most 65535 are allowed"))
}

fn len_u32(what: &str, len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| format!("{what} is {len} bytes long; at most 4294967295 are allowed"))
}

/// Encodes a topic-created payload.
pub(crate) fn encode_topic(buf: &mut Vec<u8>, id: u32, partitions: u32, name: &str) -> Result<(), EncodeError> {
    buf.put_u8(KIND_TOPIC);
    buf.put_u32(id);
    buf.put_u32(partitions);
    buf.put_u16(len_u16("topic name", name.len())?);
    buf.extend_from_slice(name.as_bytes());
    Ok(())
}

/// The fixed fields of an encoded record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordHead {
    pub(crate) topic: u32,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp_ms: i64,
}

/// Encodes one record of a batch.
pub(crate) fn encode_record(
    buf: &mut Vec<u8>,
    head: RecordHead,
    key: &[u8],
    headers: &[Header],
    value: &[u8],
) -> Result<(), EncodeError> {
    buf.put_u32(head.topic);
    buf.put_i32(head.partition);
    buf.put_i64(head.offset);
    buf.put_i64(head.timestamp_ms);
    buf.put_u32(len_u32("record key", key.len())?);
    buf.extend_from_slice(key);
    buf.put_u32(len_u32("header list", headers.len())?);
    for h in headers {
        buf.put_u16(len_u16("header name", h.key.len())?);
        buf.extend_from_slice(h.key.as_bytes());
        buf.put_u32(len_u32("header value", h.value.len())?);
        buf.extend_from_slice(&h.value);
    }
    buf.put_u32(len_u32("record value", value.len())?);
    buf.extend_from_slice(value);
    Ok(())
}

/// Encodes one position of a batch.
pub(crate) fn encode_position(
    buf: &mut Vec<u8>,
    group: &str,
    topic: u32,
    partition: i32,
    next_offset: i64,
) -> Result<(), EncodeError> {
    buf.put_u16(len_u16("consumer group name", group.len())?);
    buf.extend_from_slice(group.as_bytes());
    buf.put_u32(topic);
    buf.put_i32(partition);
    buf.put_i64(next_offset);
    Ok(())
}

/// One topic of a checkpoint: its id, name and per partition (log start, next offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckpointTopic {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) partitions: Vec<(i64, i64)>,
}

/// What a checkpoint frame holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) topics: Vec<CheckpointTopic>,
    /// (group, topic id, partition, next offset).
    pub(crate) positions: Vec<(String, u32, i32, i64)>,
}

/// Encodes a checkpoint payload.
pub(crate) fn encode_checkpoint(buf: &mut Vec<u8>, cp: &Checkpoint) -> Result<(), EncodeError> {
    buf.put_u8(KIND_CHECKPOINT);
    buf.put_u32(len_u32("topic list", cp.topics.len())?);
    for t in &cp.topics {
        buf.put_u32(t.id);
        buf.put_u32(len_u32("partition list", t.partitions.len())?);
        buf.put_u16(len_u16("topic name", t.name.len())?);
        buf.extend_from_slice(t.name.as_bytes());
        for &(start, next) in &t.partitions {
            buf.put_i64(start);
            buf.put_i64(next);
        }
    }
    buf.put_u32(len_u32("position list", cp.positions.len())?);
    for (group, topic, partition, next) in &cp.positions {
        encode_position(buf, group, *topic, *partition, *next)?;
    }
    Ok(())
}

/// Decodes a checkpoint payload after its kind byte.
pub(crate) fn decode_checkpoint(c: &mut Cursor<'_>) -> Result<Checkpoint, DecodeError> {
    let topics = c.u32("checkpoint topic count")?;
    let mut cp = Checkpoint::default();
    for _ in 0..topics {
        let id = c.u32("checkpoint topic id")?;
        let partitions = c.u32("checkpoint partition count")?;
        let name = c.str16("checkpoint topic name")?.to_owned();
        // Each partition takes 16 bytes, so a damaged count cannot allocate more than
        // the payload could hold.
        let mut parts = Vec::with_capacity((partitions as usize).min(c.remaining() / 16));
        for _ in 0..partitions {
            let start = c.i64("partition log start")?;
            let next = c.i64("partition next offset")?;
            if start < 0 || next < start {
                return Err(format!("topic {name:?} has log start {start} and next offset {next}"));
            }
            parts.push((start, next));
        }
        cp.topics.push(CheckpointTopic { id, name, partitions: parts });
    }
    let positions = c.u32("checkpoint position count")?;
    for _ in 0..positions {
        let group = c.str16("consumer group")?.to_owned();
        let topic = c.u32("position topic id")?;
        let partition = c.i32("position partition")?;
        let next = c.i64("position offset")?;
        cp.positions.push((group, topic, partition, next));
    }
    Ok(cp)
}

/// Reads fields from a payload, failing (never panicking) on truncation.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Why a payload could not be decoded.
pub(crate) type DecodeError = String;

/// The variable part of a record: key, headers, value.
pub(crate) type RecordBody = (Vec<u8>, Vec<Header>, Vec<u8>);

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte was consumed.
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "{what} needs {n} bytes at payload byte {} but only {} remain",
                self.pos,
                self.buf.len() - self.pos
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// A `u16`-length-prefixed UTF-8 string.
    pub(crate) fn str16(&mut self, what: &str) -> Result<&'a str, DecodeError> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        std::str::from_utf8(b).map_err(|_| format!("{what} is not valid UTF-8"))
    }

    /// A `u32`-length-prefixed byte string.
    pub(crate) fn bytes32(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    /// The fixed fields of a record.
    pub(crate) fn record_head(&mut self) -> Result<RecordHead, DecodeError> {
        Ok(RecordHead {
            topic: self.u32("record topic id")?,
            partition: self.i32("record partition")?,
            offset: self.i64("record offset")?,
            timestamp_ms: self.i64("record timestamp")?,
        })
    }

    /// The next record of a batch or copy frame without its body: where it starts in the
    /// payload, its fixed fields and its length in bytes.
    pub(crate) fn record_span(&mut self) -> Result<(usize, RecordHead, u32), DecodeError> {
        let start = self.pos;
        let head = self.record_head()?;
        self.skip_record_body()?;
        Ok((start, head, (self.pos - start) as u32))
    }

    /// Skips the variable part of a record (key, headers, value), checking its framing.
    pub(crate) fn skip_record_body(&mut self) -> Result<(), DecodeError> {
        self.bytes32("record key")?;
        let headers = self.u32("header count")?;
        for _ in 0..headers {
            self.str16("header name")?;
            self.bytes32("header value")?;
        }
        self.bytes32("record value")?;
        Ok(())
    }

    /// Decodes the variable part of a record: key, headers, value.
    pub(crate) fn record_body(&mut self) -> Result<RecordBody, DecodeError> {
        let key = self.bytes32("record key")?.to_vec();
        let count = self.u32("header count")? as usize;
        // Each header takes at least 6 bytes, so a damaged count cannot make us
        // allocate more than the payload could hold.
        let mut headers = Vec::with_capacity(count.min(self.buf.len().saturating_sub(self.pos) / 6));
        for _ in 0..count {
            let key = self.str16("header name")?.to_owned();
            let value = self.bytes32("header value")?.to_vec();
            headers.push(Header { key, value });
        }
        let value = self.bytes32("record value")?.to_vec();
        Ok((key, headers, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_truncation_is_an_error_not_a_panic() {
        let cp = Checkpoint {
            topics: vec![CheckpointTopic { id: 0, name: "t".into(), partitions: vec![(3, 9), (0, 0)] }],
            positions: vec![("g".into(), 0, 1, 7)],
        };
        let mut buf = Vec::new();
        encode_checkpoint(&mut buf, &cp).unwrap();
        let mut c = Cursor::new(&buf);
        assert_eq!(c.u8("kind").unwrap(), KIND_CHECKPOINT);
        assert_eq!(decode_checkpoint(&mut c).unwrap(), cp);
        assert!(c.at_end());
        for cut in 1..buf.len() {
            let mut c = Cursor::new(&buf[..cut]);
            c.u8("kind").unwrap();
            assert!(decode_checkpoint(&mut c).is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn record_round_trips_and_truncation_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        let head = RecordHead { topic: 3, partition: 1, offset: 42, timestamp_ms: 7 };
        let headers = vec![Header { key: "h".into(), value: vec![0, 1] }];
        encode_record(&mut buf, head, b"k", &headers, b"value").unwrap();

        let mut c = Cursor::new(&buf);
        let h = c.record_head().unwrap();
        assert_eq!((h.topic, h.partition, h.offset, h.timestamp_ms), (3, 1, 42, 7));
        let (k, hs, v) = c.record_body().unwrap();
        assert_eq!((k.as_slice(), hs, v.as_slice()), (&b"k"[..], headers, &b"value"[..]));
        assert!(c.at_end());

        for cut in 0..buf.len() {
            let mut c = Cursor::new(&buf[..cut]);
            let r = c.record_head().and_then(|_| c.skip_record_body());
            assert!(r.is_err(), "cut at {cut} decoded");
        }
    }
}
