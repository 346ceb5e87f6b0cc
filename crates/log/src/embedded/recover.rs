//! Rebuilding the in-memory index from the segment files on open.
//!
//! Every frame's length and crc are checked and its payload decoded. The first damaged
//! frame is a torn final write, and cut away, only if it is in the last segment and no
//! valid frame follows it; anything else is [`Error::Corrupt`].
//!
//! Segments deleted by retention leave gaps in the stream. A segment after a gap must
//! start with a checkpoint, which brings back what the deleted segments established
//! (topics, positions, each partition's offsets); the records they held that were still
//! needed are in copy frames further on, and a later checkpoint moves the log start past
//! the rest. Once every segment is read, each partition must hold every record from its
//! log start to its end, or a segment file was lost.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, Cursor, FRAME_HEADER, KIND_BATCH, KIND_CHECKPOINT, KIND_COPY, KIND_TOPIC};
use super::index::{Entry, Partition, State};
use super::{MAX_PARTITIONS, SEGMENT_EXT, Segment};
use crate::{Error, Offset, Result};

/// Bytes read from a segment at a time while scanning.
const SCAN_CHUNK: usize = 1024 * 1024;

/// What [`recover`] found.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Index, topics, positions and the segments (in order).
    pub(crate) state: State,
    /// Length of the last segment after any torn write was cut away.
    pub(crate) last_len: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { path, source }
}

/// Segment files in `segments_dir`, sorted by their base position.
fn list_segments(segments_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(segments_dir).map_err(io(segments_dir))? {
        let path = entry.map_err(io(segments_dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
            continue;
        }
        match path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok()) {
            Some(base) => out.push((base, path)),
            None => tracing::warn!(
                path = %path.display(),
                "embedded log: ignoring a .wal file whose name is not a byte position"
            ),
        }
    }
    out.sort();
    Ok(out)
}

/// Scans every segment in `segments_dir` and rebuilds the state.
pub(crate) fn recover(segments_dir: &Path) -> Result<Recovered> {
    let files = list_segments(segments_dir)?;
    let mut r = Rebuild::default();
    let mut last_len = 0;
    let mut expected_base = 0u64;
    let mut cut = None;
    for (i, (base, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io(path))?;
        if *base < expected_base {
            return Err(Error::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!(
                    "the segment starts at stream byte {base} but the segment before it ends \
                     at byte {expected_base}; two segment files overlap"
                ),
            });
        }
        let gap = *base != expected_base;
        let id = r.state.add_segment(Arc::new(Segment { base: *base, path: path.clone(), file }), false);
        let Some(segment) = r.state.segments[id as usize].clone() else { unreachable!("just added") };
        let (len, torn) = scan_segment(&mut r, id, path, &segment.file, is_last)?;
        if gap && !r.state.info[id as usize].checkpointed {
            return Err(Error::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!(
                    "the segment starts at stream byte {base} but the segments before it end \
                     at byte {expected_base}, and it does not start with a checkpoint (as one \
                     after segments deleted by retention does); a segment file is missing"
                ),
            });
        }
        r.state.info[id as usize].len = len;
        expected_base = base + len;
        last_len = len;
        if let Some(reason) = torn {
            cut = Some((segment, len, reason));
        }
    }
    let state = r.finish(segments_dir)?;
    // Only once the rest is known good is the torn tail cut away.
    if let Some((segment, at, reason)) = cut {
        let path = &segment.path;
        tracing::warn!(
            path = %path.display(),
            offset = at,
            reason = %reason,
            "embedded log: cutting off a torn write at the end of the log"
        );
        segment.file.set_len(at).map_err(io(path))?;
        segment.file.sync_data().map_err(io(path))?;
    }
    Ok(Recovered { state, last_len })
}

/// What recovery builds before the index: topics, segments and positions in `state`, and
/// each partition's records as found, the log start and end the checkpoints claim.
#[derive(Debug, Default)]
struct Rebuild {
    state: State,
    /// Per topic id, per partition.
    parts: Vec<Vec<Building>>,
}

/// One partition while the segments are read. Nothing is allocated for records a
/// checkpoint claims and no frame holds (they may be trimmed by a later checkpoint), so
/// a damaged claim cannot make recovery allocate more than the files hold.
#[derive(Debug, Default)]
struct Building {
    start: Offset,
    /// The next offset, as the frames and checkpoints so far say.
    next: Offset,
    /// Records of batch frames: runs of consecutive offsets, ascending.
    runs: Vec<(Offset, Vec<Entry>)>,
    /// Records of copy frames, by offset (a later copy wins over an earlier one and over
    /// the batch record).
    copies: BTreeMap<Offset, Entry>,
}

impl Building {
    fn push(&mut self, offset: Offset, e: Entry) -> std::result::Result<(), String> {
        if offset < 0 || (offset >= self.start && offset != self.next) {
            return Err(format!("offset {offset} where {} comes next", self.next));
        }
        if offset < self.start {
            // Before the log start: retention deleted it, the file not yet.
            return Ok(());
        }
        match self.runs.last_mut() {
            Some((first, run)) if *first + run.len() as i64 == offset => run.push(e),
            _ => self.runs.push((offset, vec![e])),
        }
        self.next = offset + 1;
        Ok(())
    }

    fn copy(&mut self, offset: Offset, e: Entry) -> std::result::Result<(), String> {
        if offset < 0 || offset >= self.next {
            return Err(format!("a copied record has offset {offset}, outside the partition's 0..{}", self.next));
        }
        if offset >= self.start {
            self.copies.insert(offset, e);
        }
        Ok(())
    }

    fn checkpoint(&mut self, start: Offset, next: Offset) -> std::result::Result<(), String> {
        if next < self.next {
            return Err(format!(
                "a checkpoint says the partition ends at {next}, but records up to {} came before it",
                self.next
            ));
        }
        self.next = next;
        if start > self.start {
            self.start = start;
            self.runs.retain_mut(|(first, run)| {
                if *first + run.len() as i64 <= start {
                    return false;
                }
                if *first < start {
                    run.drain(..(start - *first) as usize);
                    *first = start;
                }
                true
            });
            self.copies = self.copies.split_off(&start);
        }
        Ok(())
    }

    /// The partition's index, or the first offset no frame holds and how many are missing.
    fn finish(mut self) -> std::result::Result<Partition, (Offset, u64)> {
        let want = (self.next - self.start) as u64;
        let in_runs = |runs: &[(Offset, Vec<Entry>)], o: Offset| {
            let i = runs.partition_point(|(first, _)| *first <= o);
            i > 0 && o < runs[i - 1].0 + runs[i - 1].1.len() as i64
        };
        let from_runs: u64 = self.runs.iter().map(|(_, r)| r.len() as u64).sum();
        let only_copied = self.copies.keys().filter(|&&o| !in_runs(&self.runs, o)).count() as u64;
        if from_runs + only_copied != want {
            let mut o = self.start;
            while o < self.next && (in_runs(&self.runs, o) || self.copies.contains_key(&o)) {
                o += 1;
            }
            return Err((o, want - from_runs - only_copied));
        }
        if self.runs.len() == 1 && self.runs[0].0 == self.start && self.copies.is_empty() {
            let (start, entries) = self.runs.pop().unwrap_or_default();
            return Ok(Partition { start, entries });
        }
        if want == 0 {
            return Ok(Partition { start: self.start, entries: Vec::new() });
        }
        let placeholder = Entry { segment: u32::MAX, len: 0, pos: 0 };
        let mut entries = vec![placeholder; want as usize];
        for (first, run) in &self.runs {
            let at = (first - self.start) as usize;
            entries[at..at + run.len()].copy_from_slice(run);
        }
        for (o, e) in &self.copies {
            entries[(o - self.start) as usize] = *e;
        }
        Ok(Partition { start: self.start, entries })
    }
}

impl Rebuild {
    fn add_topic(&mut self, name: &str, partitions: u32) {
        self.state.add_topic(name, partitions);
        self.parts.push((0..partitions).map(|_| Building::default()).collect());
    }

    fn part(&mut self, topic: u32, partition: i32) -> std::result::Result<&mut Building, String> {
        let Some(parts) = self.parts.get_mut(topic as usize) else {
            return Err(format!("topic id {topic} was never created"));
        };
        let n = parts.len();
        match usize::try_from(partition).ok().and_then(|p| parts.get_mut(p)) {
            Some(b) => Ok(b),
            None => {
                let name = &self.state.topics[topic as usize].name;
                Err(format!("topic {name:?} has {n} partitions, not partition {partition}"))
            }
        }
    }

    /// Notes a record found in `segment`, live or not, for retention's view of it.
    fn seen(&mut self, segment: u32, topic: u32, partition: i32, offset: Offset, timestamp_ms: i64) {
        let info = &mut self.state.info[segment as usize];
        info.newest_ms = info.newest_ms.max(timestamp_ms);
        let end = info.ends.entry((topic, partition)).or_insert(0);
        *end = (*end).max(offset + 1);
    }

    /// The index: every partition must hold every record from its log start to its end.
    fn finish(self, segments_dir: &Path) -> Result<State> {
        let mut state = self.state;
        for (t, parts) in self.parts.into_iter().enumerate() {
            for (p, b) in parts.into_iter().enumerate() {
                let part = b.finish().map_err(|(first, missing)| Error::Corrupt {
                    path: segments_dir.to_owned(),
                    offset: 0,
                    reason: format!(
                        "{missing} records of {}/{p} from offset {first} are in no segment file, \
                         though a checkpoint says they exist; a segment file is missing",
                        state.topics[t].name
                    ),
                })?;
                for e in &part.entries {
                    state.info[e.segment as usize].live += u64::from(e.len);
                }
                state.topics[t].partitions[p] = part;
            }
        }
        Ok(state)
    }
}

/// Buffered positioned reads over one file.
struct Window<'a> {
    file: &'a File,
    buf: Vec<u8>,
    start: u64,
}

impl Window<'_> {
    /// Bytes `[pos, pos + n)`; the caller has checked they are within the file.
    fn get(&mut self, pos: u64, n: usize) -> std::io::Result<&[u8]> {
        let have = pos >= self.start && pos + n as u64 <= self.start + self.buf.len() as u64;
        if !have {
            let file_len = self.file.metadata()?.len();
            let want = (n.max(SCAN_CHUNK) as u64).min(file_len - pos) as usize;
            self.buf.resize(want.max(n), 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.start = pos;
        }
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..at + n])
    }
}

/// Scans one segment into `r`; returns its length without any torn tail, and why there
/// is one (the caller cuts it away once everything else is known good).
fn scan_segment(r: &mut Rebuild, index: u32, path: &Path, file: &File, is_last: bool) -> Result<(u64, Option<String>)> {
    let len = file.metadata().map_err(io(path))?.len();
    let mut window = Window { file, buf: Vec::new(), start: 0 };
    let mut pos = 0u64;
    while pos < len {
        let damage = if len - pos < FRAME_HEADER as u64 {
            Some(format!("only {} bytes remain, too few for a frame header", len - pos))
        } else {
            let header = window.get(pos, FRAME_HEADER).map_err(io(path))?;
            let plen = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let end = pos + FRAME_HEADER as u64 + u64::from(plen);
            if plen == 0 {
                Some("the frame length is zero".to_owned())
            } else if end > len {
                Some(format!(
                    "the frame claims {plen} bytes but the file ends {} bytes after its header",
                    len - pos - FRAME_HEADER as u64
                ))
            } else {
                let payload = window.get(pos + FRAME_HEADER as u64, plen as usize).map_err(io(path))?;
                if crc32fast::hash(payload) != crc {
                    Some("the frame's crc32 does not match its contents".to_owned())
                } else {
                    apply_frame(r, index, pos, payload, pos == 0).map_err(|reason| Error::Corrupt {
                        path: path.to_owned(),
                        offset: pos,
                        reason: format!("the frame passes its crc but cannot be decoded: {reason}"),
                    })?;
                    pos = end;
                    None
                }
            }
        };
        let Some(reason) = damage else { continue };
        if !is_last {
            return Err(Error::Corrupt {
                path: path.to_owned(),
                offset: pos,
                reason: format!("{reason}, and this is not the last segment"),
            });
        }
        let mut tail = vec![0u8; (len - pos) as usize];
        file.read_exact_at(&mut tail, pos).map_err(io(path))?;
        if let Some(q) = find_valid_frame(&tail) {
            return Err(Error::Corrupt {
                path: path.to_owned(),
                offset: pos,
                reason: format!(
                    "{reason}, and a valid frame follows at byte {}, so this is not a torn \
                     final write",
                    pos + q as u64
                ),
            });
        }
        return Ok((pos, Some(format!("{reason} ({} bytes cut)", len - pos))));
    }
    Ok((len, None))
}

/// The start of the first frame in `tail[1..]` whose length fits and whose crc matches.
fn find_valid_frame(tail: &[u8]) -> Option<usize> {
    (1..tail.len().saturating_sub(FRAME_HEADER)).find(|&q| {
        let h = &tail[q..q + FRAME_HEADER];
        let plen = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let start = q + FRAME_HEADER;
        plen > 0
            && plen <= tail.len() - start
            && format::known_kind(tail[start])
            && crc32fast::hash(&tail[start..start + plen]) == crc
    })
}

/// Applies one verified frame at byte `frame_pos` of segment `segment`; `first` if it is
/// the segment's first frame.
fn apply_frame(
    r: &mut Rebuild,
    segment: u32,
    frame_pos: u64,
    payload: &[u8],
    first: bool,
) -> std::result::Result<(), String> {
    let mut c = Cursor::new(payload);
    let kind = c.u8("frame kind")?;
    match kind {
        KIND_TOPIC => {
            let id = c.u32("topic id")?;
            let partitions = c.u32("partition count")?;
            let name = c.str16("topic name")?;
            if id as usize != r.state.topics.len() {
                return Err(format!(
                    "topic {name:?} has id {id} but {} topics were created before it",
                    r.state.topics.len()
                ));
            }
            if r.state.by_name.contains_key(name) {
                return Err(format!("topic {name:?} is created a second time"));
            }
            check_partitions(name, partitions)?;
            r.add_topic(name, partitions);
        }
        KIND_BATCH | KIND_COPY => {
            let records = c.u32("record count")?;
            for _ in 0..records {
                let (start, head, len) = c.record_span()?;
                let entry = Entry { segment, len, pos: frame_pos + (FRAME_HEADER + start) as u64 };
                let b = r.part(head.topic, head.partition)?;
                let placed = if kind == KIND_BATCH { b.push(head.offset, entry) } else { b.copy(head.offset, entry) };
                placed.map_err(|e| format!("a record of topic id {} partition {}: {e}", head.topic, head.partition))?;
                r.seen(segment, head.topic, head.partition, head.offset, head.timestamp_ms);
            }
            if kind == KIND_BATCH {
                let positions = c.u32("position count")?;
                for _ in 0..positions {
                    let group = c.str16("consumer group")?;
                    let topic = c.u32("position topic id")?;
                    let partition = c.i32("position partition")?;
                    let next = c.i64("position offset")?;
                    r.part(topic, partition)?;
                    r.state.set_committed(group, topic, partition, next);
                }
            }
        }
        KIND_CHECKPOINT => {
            let cp = format::decode_checkpoint(&mut c)?;
            for t in &cp.topics {
                let partitions = t.partitions.len() as u32;
                match r.state.topics.get(t.id as usize) {
                    Some(known) if known.name != t.name || known.partitions.len() as u32 != partitions => {
                        return Err(format!(
                            "the checkpoint names topic id {} {:?} with {partitions} partitions, \
                             but it was created as {:?} with {}",
                            t.id,
                            t.name,
                            known.name,
                            known.partitions.len()
                        ));
                    }
                    Some(_) => {}
                    None if t.id as usize == r.state.topics.len() && !r.state.by_name.contains_key(&t.name) => {
                        check_partitions(&t.name, partitions)?;
                        r.add_topic(&t.name, partitions);
                    }
                    None => {
                        return Err(format!("the checkpoint names topic {:?} with id {} out of order", t.name, t.id));
                    }
                }
                for (p, &(start, next)) in t.partitions.iter().enumerate() {
                    r.part(t.id, p as i32)?
                        .checkpoint(start, next)
                        .map_err(|e| format!("topic {:?} partition {p}: {e}", t.name))?;
                }
            }
            for (group, topic, partition, next) in &cp.positions {
                r.part(*topic, *partition)?;
                r.state.set_committed(group, *topic, *partition, *next);
            }
            if first {
                let info = &mut r.state.info[segment as usize];
                info.checkpointed = true;
                info.head = (FRAME_HEADER + payload.len()) as u64;
            }
        }
        kind => return Err(format!("unknown frame kind {kind}")),
    }
    if !c.at_end() {
        return Err(format!("{} bytes follow the end of the payload", payload.len() - c.pos()));
    }
    Ok(())
}

fn check_partitions(name: &str, partitions: u32) -> std::result::Result<(), String> {
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(format!("topic {name:?} has {partitions} partitions"));
    }
    Ok(())
}

/// Test support: simulates a crash part-way through the last write by cutting the last
/// frame of the last segment in `dir` (a log's data directory, not open) in half.
///
/// Fails if there is no frame to cut.
#[cfg(any(test, feature = "test-util"))]
pub fn tear_last_frame(dir: &Path) -> std::io::Result<()> {
    let no_frame = || std::io::Error::other(format!("no frame to tear in {}", dir.display()));
    let segments = list_segments(&dir.join(super::SEGMENTS_DIR)).map_err(|e| std::io::Error::other(e.to_string()))?;
    let (_, path) = segments.last().ok_or_else(no_frame)?;
    let file = OpenOptions::new().write(true).read(true).open(path)?;
    let len = file.metadata()?.len();
    let (mut pos, mut last) = (0u64, None);
    while pos + FRAME_HEADER as u64 <= len {
        let mut h = [0u8; 4];
        file.read_exact_at(&mut h, pos)?;
        let frame = FRAME_HEADER as u64 + u64::from(u32::from_le_bytes(h));
        last = Some((pos, frame));
        pos += frame;
    }
    let (start, frame) = last.ok_or_else(no_frame)?;
    file.set_len(start + frame / 2)?;
    file.sync_all()
}
