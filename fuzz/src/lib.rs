//! What Waybill's fuzz targets share: seed corpora written from real records, a scratch
//! directory for the embedded log, and an independent reading of the log's segment
//! format that the log targets compare the real recovery with.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
use waybill_log::{EventLog, Header};

/// Writes `seeds` into the directory named by `WAYBILL_FUZZ_SEEDS` (the target's corpus,
/// set by `scripts/fuzz.sh`), one file per seed named by its hash, so running it again
/// adds nothing. Without the variable it does nothing.
pub fn write_seeds(seeds: impl IntoIterator<Item = Vec<u8>>) {
    let Some(dir) = std::env::var_os("WAYBILL_FUZZ_SEEDS") else { return };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create the corpus {}: {e}", dir.display()));
    for seed in seeds {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        let path = dir.join(format!("seed-{:016x}", h.finish()));
        if !path.exists() {
            std::fs::write(&path, &seed).unwrap_or_else(|e| panic!("cannot write the seed {}: {e}", path.display()));
        }
    }
}

/// A directory of this process for embedded logs, on tmpfs when there is one.
pub fn scratch_dir(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    base.join(format!("waybill-fuzz-{name}-{}", std::process::id()))
}

/// Options for logs under fuzzing: no fsync (the files are thrown away).
pub fn log_options() -> EmbeddedOptions {
    EmbeddedOptions { fsync: FsyncPolicy::Never, ..EmbeddedOptions::default() }
}

/// Path of the first (and, here, only) segment file of a log in `dir`.
pub fn first_segment(dir: &Path) -> PathBuf {
    dir.join("segments").join(format!("{:020}.wal", 0))
}

/// A real segment: the bytes the embedded log writes for a few topics, batches and
/// positions, and (with batches) the checkpoint its retention writes when it moves a log
/// start (seeds for the log targets).
pub fn real_segment(dir: &Path, batches: usize) -> Vec<u8> {
    let _ = std::fs::remove_dir_all(dir);
    {
        let log = EmbeddedLog::open(dir, log_options()).expect("open a fresh log");
        log.ensure_topic("waybill.inbound.odoo", 2).expect("create a topic");
        log.ensure_topic("waybill.journal", 1).expect("create a topic");
        for i in 0..batches {
            let records = vec![
                waybill_log::Record::keyed("waybill.inbound.odoo", format!("SO{i:04}"), format!("event {i}"))
                    .with_header("waybill.event-id", format!("e-{i}")),
                waybill_log::Record {
                    topic: "waybill.journal".into(),
                    partition: Some(0),
                    key: b"SO0001".to_vec(),
                    headers: Vec::new(),
                    value: vec![0, 0, 0, 0, 1, i as u8],
                },
            ];
            let positions = vec![waybill_log::Position {
                group: "waybill-coordinator".into(),
                topic: "waybill.inbound.odoo".into(),
                partition: 0,
                next_offset: i as i64 + 1,
            }];
            log.append(waybill_log::AppendBatch { records, positions }).expect("append a batch");
        }
    }
    if batches > 0 {
        // Retention moves the inbound topic's log start past what the coordinator read:
        // a checkpoint frame in the same segment.
        let options = EmbeddedOptions {
            retention: vec![waybill_log::embedded::TopicRetention {
                topics: "waybill.inbound.odoo".into(),
                keep: std::time::Duration::ZERO,
                after_group: None,
            }],
            ..log_options()
        };
        let log = EmbeddedLog::open(dir, options).expect("open the log again");
        log.enforce_retention().expect("apply retention");
    }
    let bytes = std::fs::read(first_segment(dir)).expect("read the segment back");
    let _ = std::fs::remove_dir_all(dir);
    bytes
}

/// One record as the segment format stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBytes {
    /// Append time.
    pub timestamp_ms: i64,
    /// Key.
    pub key: Vec<u8>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Value.
    pub value: Vec<u8>,
}

/// What a log holds: topics in creation order, records per partition, positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// (name, partitions) in creation order; the index is the topic id.
    pub topics: Vec<(String, u32)>,
    /// Records of each (topic id, partition), in offset order from its log start.
    pub records: BTreeMap<(u32, i32), Vec<RecordBytes>>,
    /// The log start of each (topic id, partition) a checkpoint moved (0 otherwise).
    pub starts: BTreeMap<(u32, i32), i64>,
    /// The last position stored for each (group, topic id, partition).
    pub positions: BTreeMap<(String, u32, i32), i64>,
}

/// How the reference reading of a segment ended.
#[derive(Debug)]
pub enum Reading {
    /// Every byte belongs to a whole, valid frame.
    Clean(Contents),
    /// A frame at byte `at` is torn or damaged (length or crc); `Contents` holds every
    /// frame before it. Recovery may cut it off (a torn final write) or call it corrupt.
    Damaged {
        /// What the frames before the damage hold.
        before: Contents,
        /// Where the damaged frame starts.
        at: usize,
    },
    /// A frame at byte `at` passes its crc but its payload breaks the format's rules;
    /// recovery must call the log corrupt.
    Undecodable {
        /// Where the frame starts.
        at: usize,
        /// What is wrong.
        reason: String,
    },
}

const FRAME_HEADER: usize = 8;
const MAX_PARTITIONS: u32 = 1 << 16;

/// Rewrites the crc of every whole frame in `bytes` to match its payload, so mutated
/// payloads reach the decoder instead of all failing the checksum.
pub fn repair_crcs(bytes: &mut [u8]) {
    let mut pos = 0usize;
    while bytes.len() - pos >= FRAME_HEADER {
        let plen = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let Some(end) = (pos + FRAME_HEADER).checked_add(plen).filter(|&e| e <= bytes.len()) else { break };
        let crc = crc32fast::hash(&bytes[pos + FRAME_HEADER..end]);
        bytes[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// Reads a segment independently of the log crate, by the format documented in
/// `crates/log/src/embedded/format.rs`.
pub fn read_segment(bytes: &[u8]) -> Reading {
    let mut contents = Work::default();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let whole = rest.len() >= FRAME_HEADER && {
            let plen = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
            plen > 0 && plen <= rest.len() - FRAME_HEADER && crc32fast::hash(&rest[8..8 + plen]) == crc
        };
        if !whole {
            return match contents.finish() {
                Ok(before) => Reading::Damaged { before, at: pos },
                // Recovery cuts the torn frame, then finds the hole.
                Err(reason) => Reading::Undecodable { at: pos, reason },
            };
        }
        let plen = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        if let Err(reason) = apply(&mut contents, &rest[8..8 + plen]) {
            return Reading::Undecodable { at: pos, reason };
        }
        pos += FRAME_HEADER + plen;
    }
    match contents.finish() {
        Ok(c) => Reading::Clean(c),
        Err(reason) => Reading::Undecodable { at: pos, reason },
    }
}

/// What the frames read so far hold: per partition its log start, its next offset (as
/// records and checkpoints say) and the records found from the log start on.
#[derive(Default)]
struct Work {
    topics: Vec<(String, u32)>,
    parts: BTreeMap<(u32, i32), Part>,
    positions: BTreeMap<(String, u32, i32), i64>,
}

#[derive(Default)]
struct Part {
    start: i64,
    next: i64,
    records: BTreeMap<i64, RecordBytes>,
}

impl Work {
    fn finish(&self) -> Result<Contents, String> {
        let mut c = Contents { topics: self.topics.clone(), positions: self.positions.clone(), ..Contents::default() };
        for (&k, part) in &self.parts {
            let complete = part.records.len() as i64 == part.next - part.start
                && part.records.keys().copied().eq(part.start..part.next);
            if !complete {
                return Err(format!("a record of topic id {} partition {} is in no frame", k.0, k.1));
            }
            if part.start > 0 {
                c.starts.insert(k, part.start);
            }
            if !part.records.is_empty() {
                c.records.insert(k, part.records.values().cloned().collect());
            }
        }
        Ok(c)
    }

    fn part(&mut self, topic: u32, partition: i32) -> Result<&mut Part, String> {
        match self.topics.get(topic as usize) {
            Some((_, n)) if partition >= 0 && (partition as u32) < *n => Ok(self.parts.entry((topic, partition)).or_default()),
            _ => Err(format!("no partition {partition} of topic id {topic}")),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("{n} bytes wanted, {} left", self.0.len()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn str16(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "not UTF-8".to_string())
    }
    fn bytes32(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// One record of a batch or copy frame: (topic id, partition, offset, record).
fn record(r: &mut Reader<'_>) -> Result<(u32, i32, i64, RecordBytes), String> {
    let topic = r.u32()?;
    let partition = i32::from_le_bytes(r.take(4)?.try_into().unwrap());
    let offset = r.i64()?;
    let timestamp_ms = r.i64()?;
    let key = r.bytes32()?;
    let mut headers = Vec::new();
    for _ in 0..r.u32()? {
        let key = r.str16()?;
        let value = r.bytes32()?;
        headers.push(Header { key, value });
    }
    let value = r.bytes32()?;
    Ok((topic, partition, offset, RecordBytes { timestamp_ms, key, headers, value }))
}

fn position(c: &mut Work, r: &mut Reader<'_>) -> Result<(), String> {
    let group = r.str16()?;
    let topic = r.u32()?;
    let partition = i32::from_le_bytes(r.take(4)?.try_into().unwrap());
    let next = r.i64()?;
    c.part(topic, partition)?;
    // A negative position forgets the group's (`EmbeddedLog::forget_group`).
    if next < 0 {
        c.positions.remove(&(group, topic, partition));
    } else {
        c.positions.insert((group, topic, partition), next);
    }
    Ok(())
}

fn new_topic(c: &mut Work, id: u32, name: String, partitions: u32) -> Result<(), String> {
    if id as usize != c.topics.len() || c.topics.iter().any(|(n, _)| *n == name) {
        return Err(format!("topic {name:?} with id {id} out of order or repeated"));
    }
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(format!("{partitions} partitions"));
    }
    c.topics.push((name, partitions));
    Ok(())
}

fn apply(c: &mut Work, payload: &[u8]) -> Result<(), String> {
    let mut r = Reader(payload);
    match r.u8()? {
        1 => {
            let id = r.u32()?;
            let partitions = r.u32()?;
            let name = r.str16()?;
            new_topic(c, id, name, partitions)?;
        }
        2 => {
            for _ in 0..r.u32()? {
                let (topic, partition, offset, rec) = record(&mut r)?;
                let part = c.part(topic, partition)?;
                if offset < 0 || (offset >= part.start && offset != part.next) {
                    return Err(format!("offset {offset} where {} comes next", part.next));
                }
                if offset >= part.start {
                    part.records.insert(offset, rec);
                    part.next = offset + 1;
                }
            }
            for _ in 0..r.u32()? {
                position(c, &mut r)?;
            }
        }
        3 => {
            for _ in 0..r.u32()? {
                let id = r.u32()?;
                let partitions = r.u32()?;
                let name = r.str16()?;
                match c.topics.get(id as usize) {
                    Some((n, k)) if *n == name && *k == partitions => {}
                    Some(_) => return Err(format!("checkpoint topic {name:?} differs from its creation")),
                    None => new_topic(c, id, name, partitions)?,
                }
                for p in 0..partitions as i32 {
                    let (start, next) = (r.i64()?, r.i64()?);
                    if start < 0 || next < start {
                        return Err(format!("log start {start}, next {next}"));
                    }
                    let part = c.part(id, p)?;
                    if next < part.next {
                        return Err(format!("checkpoint end {next} below {}", part.next));
                    }
                    part.next = next;
                    if start > part.start {
                        part.start = start;
                        part.records = part.records.split_off(&start);
                    }
                }
            }
            for _ in 0..r.u32()? {
                position(c, &mut r)?;
            }
        }
        4 => {
            for _ in 0..r.u32()? {
                let (topic, partition, offset, rec) = record(&mut r)?;
                let part = c.part(topic, partition)?;
                if offset < 0 || offset >= part.next {
                    return Err(format!("copy outside 0..{} at {offset}", part.next));
                }
                if offset >= part.start {
                    part.records.insert(offset, rec);
                }
            }
        }
        kind => return Err(format!("unknown frame kind {kind}")),
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the payload", r.0.len()));
    }
    Ok(())
}

/// Asserts that `log` holds exactly `expected`: the same topics with the same partition
/// counts, every record whole and in place, the same positions.
pub fn assert_log_holds(log: &EmbeddedLog, expected: &Contents) {
    for (id, (name, partitions)) in expected.topics.iter().enumerate() {
        assert_eq!(log.partitions(name).expect("a recovered topic exists"), *partitions, "partitions of {name}");
        for p in 0..*partitions as i32 {
            let want = expected.records.get(&(id as u32, p)).map(Vec::as_slice).unwrap_or_default();
            let start = expected.starts.get(&(id as u32, p)).copied().unwrap_or(0);
            assert_eq!(log.start_offset(name, p).expect("log start"), start, "log start of {name}/{p}");
            assert_eq!(log.end_offset(name, p).expect("end offset"), start + want.len() as i64, "end of {name}/{p}");
            if want.is_empty() {
                continue;
            }
            let got = log.read(name, p, 0, want.len() + 1).expect("recovered records read back");
            assert_eq!(got.len(), want.len(), "records of {name}/{p}");
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert_eq!(
                    (g.offset, g.partition, g.topic.as_str(), g.timestamp_ms, &g.key, &g.headers, &g.value),
                    (start + i as i64, p, name.as_str(), w.timestamp_ms, &w.key, &w.headers, &w.value),
                    "record {i} of {name}/{p}"
                );
            }
        }
    }
    for ((group, topic, p), next) in &expected.positions {
        let name = &expected.topics[*topic as usize].0;
        assert_eq!(log.committed(group, name, *p).expect("position"), Some(*next), "position of {group} in {name}/{p}");
    }
}
