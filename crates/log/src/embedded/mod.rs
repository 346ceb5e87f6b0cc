//! The embedded backend: one process, segment files on local disk.
//!
//! [`EmbeddedLog`] keeps every topic in a single write-ahead stream of segment files
//! under `<dir>/segments/`, each named after the stream byte position of its first byte
//! (`00000000000000000000.wal`, ...). Every [`EventLog::append`] writes exactly one frame
//! holding all its records and positions, so a batch across topics is atomic on disk and
//! in memory: readers see a batch only after its frame is written (and, under
//! [`FsyncPolicy::EveryBatch`], fsynced). See the `format` module for the frame layout.
//!
//! Under [`FsyncPolicy::EveryBatch`] appends **commit in groups**: a frame is written under
//! the writer lock, the lock is let go, and the appender waits until an fsync covers its
//! frame. The first waiter fsyncs for everyone whose frame is written by then; the others
//! wait for it. Frames are published to readers in the order they were written, once
//! durable. So concurrent appenders (the coordinator's partitions, ingestion, the control
//! plane) share fsyncs instead of queueing one fsync each behind the writer lock.
//!
//! In memory the log keeps, per partition, an index from offset to the record's place
//! on disk, so [`EventLog::read`] fetches records with positioned reads and no scanning;
//! records close together are fetched with one read. On [`EmbeddedLog::open`] the segments
//! are scanned and verified (length and crc32 of every frame); a torn final write is cut
//! away, any other damage is [`Error::Corrupt`].
//!
//! A `LOCK` file (an advisory `flock`) keeps a second process from opening the same
//! directory ([`Error::Locked`]).
//!
//! Records of topics with a retention are deleted by
//! [`EmbeddedLog::enforce_retention`]: each partition has a log start, and a segment
//! file goes once most of it is dead, its live records copied forward first (`retention`).
//!
//! The modules: `format` (the frame layout), `index` (what readers see), `durable`
//! (group commit, background fsync), `read` (positioned reads), `recover` (rebuilding
//! the index on open), `retention`, `wake` (readers waiting for records, woken only by
//! appends to the partitions they wait on), `write` (the append path: a batch into one
//! frame, segment rolls); this file opens the log and implements [`EventLog`].

mod durable;
mod format;
mod index;
mod read;
mod recover;
mod retention;
mod wake;
mod write;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{AppendBatch, Appended, Capabilities, Error, EventLog, Offset, Result, StoredRecord, partition_for};
use durable::{Commits, Flusher, Pending};
use format::{FRAME_HEADER, KIND_BATCH, Put, RecordHead};
use index::{Entry, State};
pub use retention::{HeldBack, RetentionReport, TopicRetention};

#[cfg(any(test, feature = "test-util"))]
pub use recover::tear_last_frame;

/// Name of the lock file in the data directory.
const LOCK_FILE: &str = "LOCK";
/// Name of the directory holding the segments.
const SEGMENTS_DIR: &str = "segments";
/// Extension of segment files.
const SEGMENT_EXT: &str = "wal";
/// Most partitions a topic may have.
const MAX_PARTITIONS: u32 = 1 << 16;
/// Longest topic name (Kafka's limit).
const MAX_TOPIC_NAME: usize = 249;
/// The encode buffer is shrunk back after a batch larger than this.
const KEEP_BUFFER: usize = 16 * 1024 * 1024;

/// When appended data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `append` returns only after the batch is fsynced (`fdatasync`). Nothing
    /// acknowledged is lost on power failure.
    EveryBatch,
    /// A background thread fsyncs at most this often (at least every millisecond);
    /// `append` returns after `write()`. A power failure may lose up to one interval of
    /// acknowledged batches; a process crash loses nothing.
    Interval(Duration),
    /// Never fsync on append; the operating system writes back when it likes. Segments
    /// are still fsynced when the log rolls to a new one and on [`EventLog::flush`].
    Never,
}

/// Options of [`EmbeddedLog::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// When appended data is forced to disk. Default: [`FsyncPolicy::EveryBatch`].
    pub fsync: FsyncPolicy,
    /// A new segment file is started when the next frame would take the current one past
    /// this many bytes (a single larger batch gets a segment of its own). Default: 64 MiB.
    pub segment_bytes: u64,
    /// How long the records of each topic are kept; a topic no rule names is kept
    /// forever. [`EmbeddedLog::enforce_retention`] applies it. Default: none.
    pub retention: Vec<TopicRetention>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions { fsync: FsyncPolicy::EveryBatch, segment_bytes: 64 * 1024 * 1024, retention: Vec::new() }
    }
}

/// The default [`EventLog`] backend: segment files in a local directory.
///
/// Cheap to share as `Arc<dyn EventLog>`; appends are serialized by one writer lock,
/// reads run concurrently with each other and with appends. Dropping the last handle
/// stops the background fsync thread (if any) and releases the directory lock.
pub struct EmbeddedLog {
    inner: Arc<Inner>,
    flusher: Option<Flusher>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("dir", &self.inner.dir)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// State shared with the background fsync thread.
struct Inner {
    dir: PathBuf,
    segments_dir: PathBuf,
    options: EmbeddedOptions,
    /// Holds the `flock` for as long as the log is open.
    _lock: File,
    writer: Mutex<Writer>,
    state: RwLock<State>,
    /// Readers waiting for records, woken by the partitions they wait on.
    waiters: wake::Waiters,
    /// Something was written since the last fsync (used under `Interval`).
    dirty: AtomicBool,
    /// Group commit under `EveryBatch`: what is durable and what waits to be.
    commits: Mutex<Commits>,
    /// Signalled when `commits.synced` moves or an fsync fails.
    committed: Condvar,
    /// Held for the length of a retention pass: one at a time.
    retention_pass: Mutex<()>,
    /// Makes the next fsyncs fail (tests of what a failed fsync does).
    #[cfg(test)]
    fail_fsync: AtomicBool,
}

/// One segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Stream byte position of the file's first byte.
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

/// The appender's state, behind the writer lock.
#[derive(Debug)]
struct Writer {
    active: Arc<Segment>,
    /// Id of `active` in [`State::segments`].
    active_id: u32,
    /// Bytes in `active` (all of them valid frames).
    active_len: u64,
    /// Encode buffer, reused across appends.
    buf: Vec<u8>,
    /// Per record of the batch being written: (topic id, partition, start in `buf`, len).
    placed: Vec<(u32, i32, usize, u32)>,
    /// Per position of the batch being written: topic id.
    position_topics: Vec<u32>,
    /// Timestamp of the records of the batch being written.
    batch_ms: i64,
    /// Next offset per partition touched by the batch being written.
    next: HashMap<(u32, i32), i64>,
    /// Next offset per partition over every frame written, published or not (frames
    /// waiting for a group commit are not in the readers' index yet).
    assigned: HashMap<(u32, i32), i64>,
    /// Set when a write or fsync failed in a way that leaves the file in doubt; every
    /// later append fails with this message.
    failed: Option<String>,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir`, recovering from the segment files.
    ///
    /// Fails with [`Error::Locked`] if another process has the directory open,
    /// [`Error::Corrupt`] if a segment is damaged other than by a torn final write, and
    /// [`Error::Io`] if the files cannot be read or created.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedLog> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        match crate::local::wait_for_lock(|| lock.try_lock(), |e| matches!(e, std::fs::TryLockError::WouldBlock)) {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: dir.to_owned() }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let segments_dir = dir.join(SEGMENTS_DIR);
        std::fs::create_dir_all(&segments_dir).map_err(io(&segments_dir))?;

        let recovered = recover::recover(&segments_dir)?;
        let mut state = recovered.state;
        let active_len = recovered.last_len;
        if state.segments.is_empty() {
            state.add_segment(Arc::new(create_segment(&segments_dir, 0)?), false);
        }
        let active_id = (state.segments.len() - 1) as u32;
        let Some(active) = state.segments[active_id as usize].clone() else {
            unreachable!("recovery returns the segments it found, none deleted")
        };
        // A roll whose checkpoint did not reach the disk leaves an empty segment after the
        // others: it gets its checkpoint now, or the segment before it could never go.
        let active_len = if active_len == 0 && active.base > 0 {
            let frame = checkpoint_frame(&state.checkpoint(|_, _, part| part.next(), state.positions()))?;
            active.file.write_all_at(&frame, 0).map_err(io(&active.path))?;
            active.file.sync_data().map_err(io(&active.path))?;
            state.info[active_id as usize].checkpointed = true;
            state.info[active_id as usize].head = frame.len() as u64;
            frame.len() as u64
        } else {
            active_len
        };
        let stream_end = active.base + active_len;
        // Timestamps never go back along the stream, even across a restart.
        let newest_ms = state.info.iter().map(|i| i.newest_ms).max().unwrap_or(0);

        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            segments_dir,
            options: EmbeddedOptions { segment_bytes: options.segment_bytes.max(1), ..options },
            _lock: lock,
            #[cfg(test)]
            fail_fsync: AtomicBool::new(false),
            writer: Mutex::new(Writer {
                active,
                active_id,
                active_len,
                buf: Vec::new(),
                placed: Vec::new(),
                position_topics: Vec::new(),
                batch_ms: newest_ms,
                next: HashMap::new(),
                assigned: HashMap::new(),
                failed: None,
            }),
            state: RwLock::new(state),
            waiters: wake::Waiters::default(),
            dirty: AtomicBool::new(false),
            commits: Mutex::new(Commits { synced: stream_end, ..Commits::default() }),
            committed: Condvar::new(),
            retention_pass: Mutex::new(()),
        });
        let flusher = match options.fsync {
            FsyncPolicy::Interval(every) => Some(Flusher::start(inner.clone(), every)?),
            FsyncPolicy::EveryBatch | FsyncPolicy::Never => None,
        };
        Ok(EmbeddedLog { inner, flusher })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        if let Some(f) = self.flusher.take() {
            f.stop();
            if let Err(e) = self.inner.sync_active() {
                tracing::error!(error = %e, "embedded log: final fsync on close failed");
            }
        }
    }
}

/// Creates an empty segment file starting at stream position `base` and makes its
/// directory entry durable.
fn create_segment(segments_dir: &Path, base: u64) -> Result<Segment> {
    let path = segments_dir.join(format!("{base:020}.{SEGMENT_EXT}"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| Error::Io { path: path.clone(), source })?;
    sync_dir(segments_dir)?;
    Ok(Segment { base, path, file })
}

/// Fills in the length and crc of the frame whose payload is `buf[FRAME_HEADER..]`.
fn seal(buf: &mut [u8]) -> Result<()> {
    let payload_len = buf.len() - FRAME_HEADER;
    let Ok(len) = u32::try_from(payload_len) else {
        return Err(invalid(format!(
            "the batch encodes to {payload_len} bytes; the embedded log takes at most \
             4294967295 bytes per append, so split it"
        )));
    };
    let crc = crc32fast::hash(&buf[FRAME_HEADER..]);
    buf[0..4].copy_from_slice(&len.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A whole checkpoint frame, to write first in a segment.
fn checkpoint_frame(cp: &format::Checkpoint) -> Result<Vec<u8>> {
    let mut frame = vec![0u8; FRAME_HEADER];
    format::encode_checkpoint(&mut frame, cp).map_err(invalid)?;
    seal(&mut frame)?;
    Ok(frame)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| Error::Io { path: dir.to_owned(), source })
}

fn invalid(reason: String) -> Error {
    Error::InvalidRequest { reason }
}

fn check_topic_name(topic: &str) -> Result<()> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > MAX_TOPIC_NAME || !topic.chars().all(legal) {
        return Err(invalid(format!(
            "topic name {topic:?} is not allowed; use 1 to {MAX_TOPIC_NAME} ASCII letters, \
             digits, '.', '_' or '-' (the names Kafka accepts)"
        )));
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Inner {
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The (topic id, partition) a waiter registers for.
    fn key(&self, topic: &str, partition: i32) -> Result<wake::Key> {
        Ok((self.read_state().partition(topic, partition)?.0, partition))
    }

    /// The end offset of a partition [`Inner::key`] found (topics are never removed).
    fn end_of(&self, (topic, partition): wake::Key) -> Offset {
        self.read_state().topics[topic as usize].partitions[partition as usize].next()
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventLog for EmbeddedLog {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        check_topic_name(topic)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(invalid(format!(
                "topic {topic:?} cannot have {partitions} partitions; use 1 to {MAX_PARTITIONS}"
            )));
        }
        let existing = |st: &State| {
            st.by_name.get(topic).map(|&id| {
                let actual = st.topics[id as usize].partitions.len() as u32;
                if actual == partitions {
                    Ok(())
                } else {
                    Err(Error::PartitionMismatch { topic: topic.to_owned(), wanted: partitions, actual })
                }
            })
        };
        if let Some(r) = existing(&self.inner.read_state()) {
            return r;
        }
        let mut guard = self.inner.writer();
        let w = &mut *guard;
        // Another thread may have created it while we waited for the writer lock.
        let id = {
            let st = self.inner.read_state();
            if let Some(r) = existing(&st) {
                return r;
            }
            st.topics.len() as u32
        };
        w.buf.clear();
        w.buf.resize(FRAME_HEADER, 0);
        format::encode_topic(&mut w.buf, id, partitions, topic).map_err(invalid)?;
        self.inner.write_frame(w, true)?;
        self.inner.write_state().add_topic(topic, partitions);
        Ok(())
    }

    fn partitions(&self, topic: &str) -> Result<u32> {
        let st = self.inner.read_state();
        Ok(st.topic(topic)?.1.partitions.len() as u32)
    }

    fn append(&self, batch: AppendBatch) -> Result<Vec<Appended>> {
        // A negative position is how the log records a forgotten group; only
        // `EmbeddedLog::forget_group` writes one.
        if let Some(p) = batch.positions.iter().find(|p| p.next_offset < 0) {
            return Err(invalid(format!(
                "position of group {:?} in {}/{} is {}; a position is the next offset to read, 0 or more \
                 (to forget a group, stop the server and run `waybill log forget-group`)",
                p.group, p.topic, p.partition, p.next_offset
            )));
        }
        self.write_batch(batch)
    }

    fn read(&self, topic: &str, partition: i32, from: Offset, max: usize) -> Result<Vec<StoredRecord>> {
        self.inner.read_records(topic, partition, from, max)
    }

    fn end_offset(&self, topic: &str, partition: i32) -> Result<Offset> {
        let st = self.inner.read_state();
        Ok(st.partition(topic, partition)?.2.next())
    }

    fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<Offset>> {
        let st = self.inner.read_state();
        let (id, _, _) = st.partition(topic, partition)?;
        Ok(st.committed.get(group).and_then(|m| m.get(&(id, partition))).copied())
    }

    fn wait_for(&self, topic: &str, partition: i32, offset: Offset, timeout: Duration) -> Result<Offset> {
        let key = self.inner.key(topic, partition)?;
        let end = || self.inner.end_of(key);
        let reached = self.inner.waiters.wait(&[key], timeout, || Ok(Some(end()).filter(|&e| e > offset)))?;
        Ok(reached.unwrap_or_else(end))
    }

    fn wait_any(&self, positions: &[(&str, i32, Offset)], timeout: Duration) -> Result<bool> {
        let on = positions.iter().map(|&(t, p, _)| self.inner.key(t, p)).collect::<Result<Vec<_>>>()?;
        let ready = || Ok(on.iter().zip(positions).any(|(&key, &(_, _, o))| self.inner.end_of(key) > o).then_some(()));
        Ok(self.inner.waiters.wait(&on, timeout, ready)?.is_some())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { atomic_batches: true, compacts: false }
    }

    fn flush(&self) -> Result<()> {
        // Under the writer lock, so a concurrent roll cannot slip a segment past us
        // (rolling fsyncs the old segment itself).
        let mut w = self.inner.writer();
        // After a failed fsync a good one proves nothing (the pages may be gone): what
        // was acknowledged without an fsync cannot be promised durable.
        if let Some(reason) = &w.failed {
            return Err(Error::Unavailable(reason.clone()));
        }
        self.inner.dirty.store(false, Ordering::SeqCst);
        let active = w.active.clone();
        self.inner.fsync(&active, Some(&mut w))
    }
}

#[cfg(test)]
mod tests;
