//! Retention: moving log starts forward and deleting segments.
//!
//! Every topic shares the segments, so a segment holds records of topics kept for days
//! (inputs, commands) beside records kept for good (the journal, the audit trail). One
//! pass of [`EmbeddedLog::enforce_retention`]:
//!
//! 1. **Moves log starts.** For each topic a [`TopicRetention`] names, a partition's log
//!    start moves past the records of the oldest segments whose newest record is older
//!    than the retention, but never past the position any consumer group stored for the
//!    partition: a reader that keeps its place in the log never loses a record it has not
//!    read. A rule may name the one group that decides instead (the snapshots' reader,
//!    whose position is where the current generation begins); then nothing goes before
//!    that group has stored a position. The new starts are written as a checkpoint frame before the index forgets the
//!    records.
//! 2. **Deletes segments that are mostly dead.** A sealed segment whose live records
//!    (those the index still points at) take at most half its bytes is deleted, once the
//!    records still live in it are copied forward to the end of the stream at the
//!    offsets they were first given, and the copy and the checkpoints are fsynced. A
//!    segment goes only if the segment after it starts with a checkpoint (every segment
//!    a roll starts does), which brings back the topics and positions it established.
//!
//! Each segment deleted frees at least half of it and copies at most half, so the bytes a
//! pass writes are bounded by those it frees. Readers holding a deleted segment's file
//! keep reading it; a read that starts before a log start gets the records from the start.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use super::format::{self, Cursor, FRAME_HEADER, KIND_BATCH, KIND_COPY, Put};
use super::index::Entry;
use super::{EmbeddedLog, Inner, Segment, invalid, now_ms, sync_dir};
use crate::{AppendBatch, Error, Offset, Position, Result};

/// How long the records of some topics are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRetention {
    /// A topic name, or a prefix ending in `*` (`waybill.inbound.*`).
    pub topics: String,
    /// Records older than this may be deleted once every consumer group that stored a
    /// position in their partition has passed them. Zero: as soon as they have.
    pub keep: Duration,
    /// When set, only this group's position counts, and a partition in which it stored
    /// none keeps every record.
    pub after_group: Option<String>,
}

impl TopicRetention {
    fn matches(&self, topic: &str) -> bool {
        match self.topics.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => topic == self.topics,
        }
    }
}

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Records that left the index (their log start moved past them).
    pub records_expired: u64,
    /// Segment files deleted.
    pub segments_deleted: u64,
    /// Bytes of the deleted segment files.
    pub bytes_deleted: u64,
    /// Records copied forward out of deleted segments.
    pub records_copied: u64,
    /// Bytes of those records.
    pub bytes_copied: u64,
    /// Segment files left.
    pub segments: u64,
    /// Bytes of the segment files left.
    pub bytes: u64,
    /// Partitions whose expired records a reader keeps because it has not read them yet.
    pub held_back: Vec<HeldBack>,
}

/// Expired records of one partition that a consumer group has not read yet, so
/// retention keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group whose stored position is furthest behind.
    pub group: String,
    /// Expired records kept for it.
    pub records: u64,
}

impl EmbeddedLog {
    /// Applies [`super::EmbeddedOptions::retention`] once: moves log starts and deletes
    /// the segments that are mostly dead (see the module docs). Safe to call while
    /// others append and read; appends wait while a checkpoint or a copy is written.
    pub fn enforce_retention(&self) -> Result<RetentionReport> {
        let _one_at_a_time = self.inner.retention_pass.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut report = RetentionReport::default();
        if !self.inner.options.retention.is_empty() {
            (report.records_expired, report.held_back) = self.inner.move_log_starts(now_ms())?;
        }
        // Each segment sealed when the pass began is looked at once, so a pass ends even
        // where what it copies forward would make the next segment deletable again.
        let sealed: Vec<u32> = {
            let st = self.inner.read_state();
            (0..st.segments.len() as u32).filter(|&i| st.segments[i as usize].is_some()).collect()
        };
        for id in sealed {
            if self.inner.deletable(id) {
                self.inner.delete_segment(id, &mut report)?;
            }
        }
        let st = self.inner.read_state();
        for seg in st.segments.iter().flatten() {
            report.segments += 1;
            report.bytes += seg.file.metadata().map_err(|source| Error::Io { path: seg.path.clone(), source })?.len();
        }
        Ok(report)
    }

    /// Forgets every position `group` stored, so retention no longer keeps records for
    /// it (a reader removed for good). Returns how many partitions it had a position in.
    pub fn forget_group(&self, group: &str) -> Result<usize> {
        let positions: Vec<Position> = {
            let st = self.inner.read_state();
            let Some(m) = st.committed.get(group) else { return Ok(0) };
            m.keys()
                .map(|&(t, p)| Position {
                    group: group.to_owned(),
                    topic: st.topics[t as usize].name.clone(),
                    partition: p,
                    next_offset: -1,
                })
                .collect()
        };
        let n = positions.len();
        self.write_batch(AppendBatch { records: Vec::new(), positions })?;
        Ok(n)
    }

    /// The first offset still held in a partition: records before it were deleted by
    /// retention.
    pub fn start_offset(&self, topic: &str, partition: i32) -> Result<Offset> {
        Ok(self.inner.read_state().partition(topic, partition)?.2.start)
    }
}

impl Inner {
    fn retention_of(&self, topic: &str) -> Option<&TopicRetention> {
        self.options.retention.iter().find(|r| r.matches(topic))
    }

    /// Step 1: the log starts retention allows at `now_ms`, checkpointed then applied;
    /// returns the records that left the index, and the expired records readers keep.
    fn move_log_starts(&self, now_ms: i64) -> Result<(u64, Vec<HeldBack>)> {
        let mut guard = self.writer();
        let w = &mut *guard;
        // Every position written counts, including those still waiting for their group
        // commit (a reader may have moved back).
        let mut read_up_to: HashMap<(u32, i32), (Offset, String)> = HashMap::new();
        let mut read_by: HashMap<(String, u32, i32), Offset> = HashMap::new();
        let positions = self.written_positions();
        for (g, t, p, n) in &positions {
            let m = read_up_to.entry((*t, *p)).or_insert((*n, g.clone()));
            if *n < m.0 {
                *m = (*n, g.clone());
            }
            read_by.insert((g.clone(), *t, *p), *n);
        }
        let mut held_back = Vec::new();
        let trims = {
            let st = self.read_state();
            let mut trims = Vec::new();
            for (id, t) in st.topics.iter().enumerate() {
                let Some(rule) = self.retention_of(&t.name) else { continue };
                let cutoff = now_ms.saturating_sub(i64::try_from(rule.keep.as_millis()).unwrap_or(i64::MAX));
                // The oldest segments whose every record is past the retention.
                let mut expired: HashMap<i32, Offset> = HashMap::new();
                for info in st.segments.iter().zip(&st.info).filter(|(s, _)| s.is_some()).map(|(_, i)| i) {
                    if info.newest_ms > cutoff {
                        break;
                    }
                    for (&(topic, p), &end) in &info.ends {
                        if topic == id as u32 {
                            let e = expired.entry(p).or_insert(end);
                            *e = (*e).max(end);
                        }
                    }
                }
                for (p, end) in expired {
                    let key = (id as u32, p);
                    let (to, holder) = match &rule.after_group {
                        Some(g) => (read_by.get(&(g.clone(), key.0, key.1)).map_or(0, |&r| end.min(r)), None),
                        None => match read_up_to.get(&key) {
                            Some((r, g)) => (end.min(*r), Some(g)),
                            None => (end, None),
                        },
                    };
                    let start = t.partitions[p as usize].start;
                    // Reported only for readers: a named group's position says what is
                    // still needed (the snapshots' current generation), not what is unread.
                    if let Some(group) = holder.filter(|_| to < end && end > start) {
                        let records = (end - to.max(start)) as u64;
                        held_back.push(HeldBack { topic: t.name.clone(), partition: p, group: group.clone(), records });
                    }
                    if to > start {
                        trims.push((id as u32, p, to));
                    }
                }
            }
            trims.sort_unstable();
            trims
        };
        held_back.sort_by(|a, b| {
            b.records.cmp(&a.records).then_with(|| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)))
        });
        if trims.is_empty() {
            return Ok((0, held_back));
        }
        // The positions read above, still the log's: the writer lock is held throughout.
        let cp = self.checkpoint(w, positions, &trims);
        w.buf.clear();
        w.buf.resize(FRAME_HEADER, 0);
        format::encode_checkpoint(&mut w.buf, &cp).map_err(invalid)?;
        self.write_frame(w, false)?;
        let mut st = self.write_state();
        Ok((trims.iter().map(|&(t, p, start)| st.trim(t, p, start)).sum(), held_back))
    }

    /// A sealed segment at most half of whose bytes are live, with a checkpoint at the
    /// start of the segment after it, and all of whose frames are published (a frame
    /// waiting for its group commit is not in the index yet, so its records would look
    /// dead). A sealed segment gets no new frame, so once this holds it keeps holding.
    fn deletable(&self, id: u32) -> bool {
        let active = self.writer().active_id;
        let unpublished = self.commits().pending.front().map_or(u32::MAX, |p| p.segment);
        let st = self.read_state();
        let Some(info) = st.info.get(id as usize).filter(|_| st.segments[id as usize].is_some()) else { return false };
        let next = (id + 1..st.segments.len() as u32).find(|&i| st.segments[i as usize].is_some());
        let sealed = id != active && id < unpublished;
        // The segment's own checkpoint counts as live: it is written again at every roll.
        sealed && next.is_some_and(|n| st.info[n as usize].checkpointed) && (info.live + info.head) * 2 <= info.len
    }

    /// Step 2 for one segment: copies its live records forward, makes the copy and every
    /// checkpoint before it durable, points the index at the copies and deletes the file.
    fn delete_segment(&self, id: u32, report: &mut RetentionReport) -> Result<()> {
        let Some(seg) = self.read_state().segments[id as usize].clone() else { return Ok(()) };
        // A sealed segment never changes, so it is read without the writer lock.
        let len = seg.file.metadata().map_err(|source| Error::Io { path: seg.path.clone(), source })?.len();
        let mut bytes = vec![0u8; len as usize];
        seg.file.read_exact_at(&mut bytes, 0).map_err(|source| Error::Io { path: seg.path.clone(), source })?;
        let records =
            records_of(&bytes).map_err(|reason| Error::Corrupt { path: seg.path.clone(), offset: 0, reason })?;

        let mut guard = self.writer();
        let w = &mut *guard;
        // Which records are live is decided under the writer lock: log starts move and
        // records are copied only under it.
        let live: Vec<&SegmentRecord> = {
            let st = self.read_state();
            records
                .iter()
                .filter(|r| {
                    st.topics[r.topic as usize].partitions[r.partition as usize]
                        .get(r.offset)
                        .is_some_and(|e| e.segment == id && e.pos == r.pos)
                })
                .collect()
        };
        let mut placed = Vec::with_capacity(live.len());
        if !live.is_empty() {
            w.buf.clear();
            w.buf.resize(FRAME_HEADER, 0);
            w.buf.put_u8(KIND_COPY);
            w.buf.put_u32(live.len() as u32);
            for r in &live {
                placed.push((w.buf.len(), *r));
                w.buf.extend_from_slice(&bytes[r.pos as usize..r.pos as usize + r.len as usize]);
            }
            if w.buf.len() - FRAME_HEADER > u32::MAX as usize {
                return Err(invalid("the records to copy forward exceed 4 GiB".into()));
            }
        }
        let copied_at = if live.is_empty() { None } else { Some(self.write_frame(w, false)?) };
        {
            let mut st = self.write_state();
            if let Some((segment, frame_pos)) = copied_at {
                for (at, r) in &placed {
                    let entry = Entry { segment, len: r.len, pos: frame_pos + *at as u64 };
                    st.relocate(r.topic, r.partition, r.offset, entry, r.timestamp_ms).map_err(invalid)?;
                    report.records_copied += 1;
                    report.bytes_copied += u64::from(r.len);
                }
            }
            st.remove_segment(id);
        }
        // The copy, and the checkpoints that moved the log starts past the records left
        // behind, reach the disk before the file goes (a roll fsyncs what it leaves).
        // Readers use the copies already; appends need not wait for the fsync.
        let active = w.active.clone();
        drop(guard);
        self.fsync(&active, None)?;
        remove_file(&seg, self)?;
        report.segments_deleted += 1;
        report.bytes_deleted += len;
        Ok(())
    }
}

fn remove_file(seg: &Arc<Segment>, inner: &Inner) -> Result<()> {
    std::fs::remove_file(&seg.path).map_err(|source| Error::Io { path: seg.path.clone(), source })?;
    sync_dir(&inner.segments_dir)
}

/// A record of a segment: where it is and whose it is.
#[derive(Debug)]
struct SegmentRecord {
    topic: u32,
    partition: i32,
    offset: Offset,
    timestamp_ms: i64,
    /// Byte position of the record within the file.
    pos: u64,
    len: u32,
}

/// Every record of a segment's batch and copy frames, in file order. The segment was
/// verified when it was recovered or written, so its frames are whole.
fn records_of(bytes: &[u8]) -> std::result::Result<Vec<SegmentRecord>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + FRAME_HEADER <= bytes.len() {
        let plen = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let payload_at = pos + FRAME_HEADER;
        let payload = bytes.get(payload_at..payload_at + plen).ok_or("a frame runs past the end of the file")?;
        let mut c = Cursor::new(payload);
        let kind = c.u8("frame kind")?;
        if kind == KIND_BATCH || kind == KIND_COPY {
            for _ in 0..c.u32("record count")? {
                let (start, head, len) = c.record_span()?;
                out.push(SegmentRecord {
                    topic: head.topic,
                    partition: head.partition,
                    offset: head.offset,
                    timestamp_ms: head.timestamp_ms,
                    pos: (payload_at + start) as u64,
                    len,
                });
            }
        }
        pos = payload_at + plen;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::embedded::{EmbeddedOptions, FsyncPolicy, SEGMENTS_DIR};
    use crate::{AppendBatch, EventLog, Position, Record};

    /// Topic `in` expires as soon as it is read; `keep` is kept for good.
    fn options(keep_in: Duration) -> EmbeddedOptions {
        EmbeddedOptions {
            fsync: FsyncPolicy::EveryBatch,
            segment_bytes: 2048,
            retention: vec![
                TopicRetention { topics: "in".into(), keep: keep_in, after_group: None },
                TopicRetention { topics: "s*".into(), keep: Duration::ZERO, after_group: Some("reader".into()) },
            ],
        }
    }

    fn open(dir: &Path, keep_in: Duration) -> EmbeddedLog {
        let log = EmbeddedLog::open(dir, options(keep_in)).unwrap();
        log.ensure_topic("in", 2).unwrap();
        log.ensure_topic("keep", 1).unwrap();
        log.ensure_topic("snap", 1).unwrap();
        log
    }

    /// Appends `n` batches, each one record to `in` (alternating partitions) and one to
    /// `keep`, the `keep` value naming the batch.
    fn fill(log: &EmbeddedLog, from: usize, n: usize) {
        for b in from..from + n {
            let records = vec![
                Record { partition: Some((b % 2) as i32), ..Record::keyed("in", "k", vec![b as u8; 100]) },
                Record::keyed("keep", "k", format!("batch {b}")),
            ];
            log.append(AppendBatch { records, positions: vec![] }).unwrap();
        }
    }

    fn commit(log: &EmbeddedLog, group: &str, partition: i32, next: Offset) {
        let positions = vec![Position { group: group.into(), topic: "in".into(), partition, next_offset: next }];
        log.append(AppendBatch { records: vec![], positions }).unwrap();
    }

    fn kept(log: &EmbeddedLog) -> Vec<String> {
        let end = log.end_offset("keep", 0).unwrap() as usize;
        let records = log.read("keep", 0, 0, end + 1).unwrap();
        assert_eq!(records.len(), end, "every kept record reads back");
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
        }
        records.into_iter().map(|r| String::from_utf8(r.value).unwrap()).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(dir.join(SEGMENTS_DIR)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    }

    /// What a reader sees: per partition of `in` its start, end and values, the kept
    /// records, and the positions.
    type View = (Vec<(Offset, Offset, Vec<Vec<u8>>)>, Vec<String>, Vec<Option<Offset>>);

    fn view(log: &EmbeddedLog) -> View {
        let parts = (0..2)
            .map(|p| {
                let (start, end) = (log.start_offset("in", p).unwrap(), log.end_offset("in", p).unwrap());
                let records = log.read("in", p, 0, usize::MAX).unwrap();
                assert_eq!(
                    records.first().map(|r| r.offset),
                    (start < end).then_some(start),
                    "reads begin at the start"
                );
                (start, end, records.into_iter().map(|r| r.value).collect())
            })
            .collect();
        let positions = (0..2).map(|p| log.committed("g", "in", p).unwrap()).collect();
        (parts, kept(log), positions)
    }

    #[test]
    fn expired_records_go_with_their_segments_and_the_kept_ones_are_copied_forward() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), Duration::ZERO);
        fill(&log, 0, 200);
        commit(&log, "g", 0, 100);
        commit(&log, "g", 1, 60);
        let before_files = segment_files(dir.path()).len();
        let before_kept = kept(&log);

        let report = log.enforce_retention().unwrap();
        // Partition 0 is read up to 100 of its 100 records, partition 1 up to 60.
        assert_eq!((log.start_offset("in", 0).unwrap(), log.start_offset("in", 1).unwrap()), (100, 60));
        assert_eq!(report.records_expired, 160);
        assert!(report.segments_deleted > 0, "{report:?}");
        assert!(report.records_copied > 0, "the kept records of deleted segments are copied: {report:?}");
        assert!(report.bytes_copied <= report.bytes_deleted / 2, "a deletion copies at most half: {report:?}");
        assert_eq!(report.segments as usize, segment_files(dir.path()).len());
        assert!(segment_files(dir.path()).len() < before_files);
        assert_eq!(kept(&log), before_kept, "nothing kept is lost or reordered");
        let (parts, _, positions) = view(&log);
        assert_eq!(parts[0].2, Vec::<Vec<u8>>::new());
        assert_eq!(parts[1].2.len(), 40);
        assert_eq!(positions, vec![Some(100), Some(60)]);

        // A restart recovers the same from what is left, and the log goes on.
        let seen = view(&log);
        drop(log);
        let log = open(dir.path(), Duration::ZERO);
        assert_eq!(view(&log), seen);
        fill(&log, 200, 50);
        assert_eq!(log.end_offset("in", 0).unwrap(), 125);
        commit(&log, "g", 1, 125);
        commit(&log, "g", 0, 125);
        let again = log.enforce_retention().unwrap();
        assert!(again.segments_deleted > 0, "{again:?}");
        let seen = view(&log);
        assert_eq!(seen.1.len(), 250);
        drop(log);
        assert_eq!(view(&open(dir.path(), Duration::ZERO)), seen);
    }

    #[test]
    fn records_younger_than_the_retention_or_not_yet_read_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), Duration::from_secs(3600));
        fill(&log, 0, 100);
        commit(&log, "g", 0, 50);
        let report = log.enforce_retention().unwrap();
        assert_eq!((report.records_expired, report.segments_deleted), (0, 0), "an hour has not passed");
        drop(log);

        let log = open(dir.path(), Duration::ZERO);
        log.enforce_retention().unwrap();
        // Group g read partition 0 up to 50; nobody stored a position in partition 1.
        assert_eq!(log.start_offset("in", 0).unwrap(), 50, "not past what g has read");
        assert_eq!(log.start_offset("in", 1).unwrap(), 50, "a partition no group reads expires by age alone");
        commit(&log, "other", 0, 10);
        fill(&log, 100, 2);
        let report = log.enforce_retention().unwrap();
        assert_eq!(log.start_offset("in", 0).unwrap(), 50, "a start never moves back");
        let held = HeldBack { topic: "in".into(), partition: 0, group: "other".into(), records: 1 };
        assert_eq!(report.held_back, vec![held], "the one expired record `other` has not read is named with it");

        // A reader removed for good is forgotten, and retention goes on without it.
        assert_eq!(log.forget_group("other").unwrap(), 1);
        assert_eq!(log.committed("other", "in", 0).unwrap(), None);
        let report = log.enforce_retention().unwrap();
        assert_eq!(report.held_back, vec![HeldBack { group: "g".into(), ..report.held_back[0].clone() }]);
        drop(log);
        let log = open(dir.path(), Duration::ZERO);
        assert_eq!(log.committed("other", "in", 0).unwrap(), None, "forgotten across a restart");
        assert_eq!(log.committed("g", "in", 0).unwrap(), Some(50));
    }

    #[test]
    fn a_topic_whose_rule_names_a_group_keeps_everything_until_that_group_has_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), Duration::ZERO);
        let snap = |n: usize| {
            let records = (0..n).map(|i| Record::keyed("snap", "k", vec![i as u8; 50])).collect();
            log.append(AppendBatch { records, positions: vec![] }).unwrap();
        };
        let read = |group: &str, next: Offset| {
            let positions =
                vec![Position { group: group.into(), topic: "snap".into(), partition: 0, next_offset: next }];
            log.append(AppendBatch { records: vec![], positions }).unwrap();
        };
        snap(40);
        read("someone-else", 40);
        log.enforce_retention().unwrap();
        assert_eq!(log.start_offset("snap", 0).unwrap(), 0, "the named group has stored no position");
        read("reader", 30);
        snap(10);
        let report = log.enforce_retention().unwrap();
        assert_eq!(log.start_offset("snap", 0).unwrap(), 30, "up to the named group's position");
        assert_eq!(report.held_back, vec![], "what the named group still needs is not reported as unread");
    }

    #[test]
    fn a_deletion_that_did_not_reach_the_disk_recovers_to_the_same_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), Duration::ZERO);
        fill(&log, 0, 120);
        commit(&log, "g", 0, 60);
        commit(&log, "g", 1, 60);
        let saved: Vec<(PathBuf, Vec<u8>)> =
            segment_files(dir.path()).into_iter().map(|f| (f.clone(), std::fs::read(&f).unwrap())).collect();
        let report = log.enforce_retention().unwrap();
        assert!(report.segments_deleted > 0 && report.records_copied > 0, "{report:?}");
        let seen = view(&log);
        drop(log);
        // As if the process died after the copies and checkpoints were written but
        // before the files were unlinked.
        for (f, bytes) in &saved {
            if !f.exists() {
                std::fs::write(f, bytes).unwrap();
            }
        }
        let log = open(dir.path(), Duration::ZERO);
        assert_eq!(view(&log), seen);
        let report = log.enforce_retention().unwrap();
        assert!(report.segments_deleted > 0, "the files come back and go again: {report:?}");
        assert_eq!(view(&log), seen);
    }

    #[test]
    fn passes_run_while_others_append_and_read_and_lose_nothing_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(open(dir.path(), Duration::ZERO));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for b in 0..150 {
                        let records = vec![
                            Record { partition: Some(w), ..Record::keyed("in", "k", vec![b as u8; 100]) },
                            Record::keyed("keep", "k", format!("writer {w} batch {b}")),
                        ];
                        let end = log.end_offset("in", w).unwrap();
                        let positions =
                            vec![Position { group: "g".into(), topic: "in".into(), partition: w, next_offset: end }];
                        log.append(AppendBatch { records, positions }).unwrap();
                    }
                })
            })
            .collect();
        let reader = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let records = log.read("keep", 0, 0, usize::MAX).unwrap();
                    for (i, r) in records.iter().enumerate() {
                        assert_eq!(r.offset, i as i64, "kept records read back in place during a pass");
                    }
                }
            })
        };
        let mut deleted = 0;
        while writers.iter().any(|w| !w.is_finished()) {
            deleted += log.enforce_retention().unwrap().segments_deleted;
        }
        for w in writers {
            w.join().unwrap();
        }
        deleted += log.enforce_retention().unwrap().segments_deleted;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        assert!(deleted > 0);
        let kept = kept(&log);
        for w in 0..2 {
            let mine: Vec<&String> = kept.iter().filter(|v| v.starts_with(&format!("writer {w} "))).collect();
            let want: Vec<String> = (0..150).map(|b| format!("writer {w} batch {b}")).collect();
            assert_eq!(mine, want.iter().collect::<Vec<_>>());
        }
        let seen = view(&log);
        drop(log);
        assert_eq!(view(&open(dir.path(), Duration::ZERO)), seen);
    }

    #[test]
    fn a_checkpoint_that_claims_records_no_file_holds_is_corrupt_without_allocating_for_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(SEGMENTS_DIR)).unwrap();
        let cp = format::Checkpoint {
            topics: vec![format::CheckpointTopic { id: 0, name: "t".into(), partitions: vec![(0, 1 << 40)] }],
            positions: vec![],
        };
        let mut frame = vec![0u8; FRAME_HEADER];
        format::encode_checkpoint(&mut frame, &cp).unwrap();
        super::super::seal(&mut frame).unwrap();
        std::fs::write(dir.path().join(SEGMENTS_DIR).join(format!("{:020}.wal", 0)), &frame).unwrap();
        let err = EmbeddedLog::open(dir.path(), options(Duration::ZERO)).unwrap_err().to_string();
        assert!(err.contains("1099511627776 records of t/0 from offset 0 are in no segment file"), "{err}");
    }

    #[test]
    fn a_roll_whose_checkpoint_was_lost_gets_one_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), Duration::ZERO);
        fill(&log, 0, 30);
        drop(log);
        // The process died after creating the next segment, before its checkpoint
        // reached the disk.
        let last = segment_files(dir.path()).pop().unwrap();
        let base: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        let empty = dir.path().join(SEGMENTS_DIR).join(format!("{:020}.wal", base + len));
        std::fs::write(&empty, b"").unwrap();
        let log = open(dir.path(), Duration::ZERO);
        let bytes = std::fs::read(&empty).unwrap();
        assert_eq!(bytes.get(FRAME_HEADER), Some(&format::KIND_CHECKPOINT), "the empty segment starts with one now");
        let seen = view(&log);
        drop(log);
        assert_eq!(view(&open(dir.path(), Duration::ZERO)), seen);
    }

    #[test]
    fn a_pass_ends_when_checkpoints_outweigh_what_deleting_frees() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), Duration::ZERO);
        log.ensure_topic("wide", 300).unwrap();
        fill(&log, 0, 40);
        for p in 0..2 {
            commit(&log, "g", p, 20);
        }
        let report = log.enforce_retention().unwrap();
        assert!(report.segments > 0, "{report:?}");
        assert_eq!(kept(&log).len(), 40);
    }

    #[test]
    fn a_segment_file_removed_by_hand_is_corrupt_naming_the_missing_records() {
        let dir = tempfile::tempdir().unwrap();
        fill(&open(dir.path(), Duration::from_secs(3600)), 0, 60);
        let files = segment_files(dir.path());
        assert!(files.len() > 3);
        std::fs::remove_file(&files[1]).unwrap();
        let err = EmbeddedLog::open(dir.path(), options(Duration::ZERO)).unwrap_err().to_string();
        assert!(err.contains("are in no segment file") && err.contains("a segment file is missing"), "{err}");
    }
}
