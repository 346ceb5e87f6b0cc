//! When written frames become durable and visible to readers: the group commit of
//! [`super::FsyncPolicy::EveryBatch`] (a frame is written under the writer lock, then its
//! appender waits until an fsync covers it, and whoever fsyncs publishes every frame the
//! fsync covers, in write order), the background fsync of [`super::FsyncPolicy::Interval`], and
//! what a failed fsync poisons.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::index::Entry;
use super::{Inner, Segment};
use crate::{Error, Result};

/// Frames written and not yet durable, in write order (group commit, `EveryBatch`).
#[derive(Debug, Default)]
pub(super) struct Commits {
    /// Stream byte position up to which the log is fsynced.
    pub(super) synced: u64,
    /// A thread is fsyncing on everyone's behalf.
    pub(super) syncing: bool,
    /// An fsync failed: nothing after `synced` is ever published.
    pub(super) failed: Option<String>,
    /// Written frames waiting for an fsync, oldest first.
    pub(super) pending: VecDeque<Pending>,
}

/// A written frame's records and positions, published once an fsync covers `end`.
#[derive(Debug)]
pub(super) struct Pending {
    /// Stream byte position just past the frame.
    pub(super) end: u64,
    pub(super) segment: u32,
    pub(super) frame_pos: u64,
    pub(super) timestamp_ms: i64,
    /// (topic id, partition, start in the frame, len) per record.
    pub(super) placed: Vec<(u32, i32, usize, u32)>,
    /// (group, topic id, partition, next offset) per position.
    pub(super) positions: Vec<(String, u32, i32, i64)>,
}

impl Inner {
    /// Fsyncs a segment's data. Every fsync of an open log goes through here, and a
    /// failure poisons the log: the kernel may have dropped the dirty pages, so nothing
    /// written since the last good fsync can be trusted. A caller holding the writer lock
    /// passes it (`holding`), so the poison takes no second hold of it.
    pub(super) fn fsync(&self, seg: &Segment, holding: Option<&mut super::Writer>) -> Result<()> {
        #[cfg(test)]
        let result = if self.fail_fsync.load(Ordering::SeqCst) {
            // As a failing device does, it takes its time: other appenders queue behind it.
            std::thread::sleep(std::time::Duration::from_millis(20));
            Err(std::io::Error::other("injected fsync failure"))
        } else {
            seg.file.sync_data()
        };
        #[cfg(not(test))]
        let result = seg.file.sync_data();
        result.map_err(|source| {
            let reason = format!(
                "fsync of {} failed ({source}); restart the process so recovery can check the file",
                seg.path.display()
            );
            match holding {
                Some(w) => self.poison_writer(w, reason),
                None => self.poison(reason),
            }
            Error::Io { path: seg.path.clone(), source }
        })
    }

    /// Fsyncs the active segment; a failure poisons the log.
    pub(super) fn sync_active(&self) -> Result<()> {
        let active = self.writer().active.clone();
        self.dirty.store(false, Ordering::SeqCst);
        self.fsync(&active, None)
    }

    /// After a failed fsync nothing written since the last good one can be trusted: no
    /// later append is acknowledged, and waiters of a group commit are told.
    pub(super) fn poison(&self, reason: String) {
        self.poison_writer(&mut self.writer(), reason);
    }

    /// [`Inner::poison`] for a caller that holds the writer lock (the writer, then the
    /// commits: the order `append` takes them in).
    pub(super) fn poison_writer(&self, w: &mut super::Writer, reason: String) {
        self.commits().failed = Some(reason.clone());
        self.committed.notify_all();
        w.failed = Some(reason);
    }

    pub(super) fn commits(&self) -> MutexGuard<'_, Commits> {
        self.commits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once an fsync covers the stream up to `end`: fsyncs for every frame written
    /// by then if no other thread is, else waits for the one that is. Whoever completes an
    /// fsync publishes the frames it covers, in write order.
    pub(super) fn make_durable(&self, end: u64) -> Result<()> {
        let mut c = self.commits();
        loop {
            if let Some(reason) = &c.failed {
                return Err(Error::Unavailable(reason.clone()));
            }
            if c.synced >= end {
                return Ok(());
            }
            if c.syncing {
                c = self.committed.wait(c).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            c.syncing = true;
            drop(c);
            // Everything written up to `upto` is in `seg` or in a segment a roll fsynced.
            let (upto, seg) = {
                let w = self.writer();
                (w.active.base + w.active_len, w.active.clone())
            };
            // A failure poisons the log, which wakes the waiters with the reason.
            let result = self.fsync(&seg, None);
            c = self.commits();
            c.syncing = false;
            result?;
            c.synced = c.synced.max(upto);
            let published = self.publish_durable(&mut c);
            self.committed.notify_all();
            drop(c);
            self.waiters.wake(&published);
            c = self.commits();
        }
    }

    /// Publishes the pending frames an fsync now covers, oldest first; returns the
    /// partitions they wrote to, whose readers are to be woken.
    pub(super) fn publish_durable(&self, c: &mut Commits) -> Vec<super::wake::Key> {
        let mut st = self.write_state();
        let mut published = Vec::new();
        while c.pending.front().is_some_and(|p| p.end <= c.synced) {
            let Some(p) = c.pending.pop_front() else { break };
            super::wake::add_partitions(&mut published, &p.placed);
            for &(topic, partition, start, len) in &p.placed {
                let entry = Entry { segment: p.segment, len, pos: p.frame_pos + start as u64 };
                st.push(topic, partition, entry, p.timestamp_ms);
            }
            for (group, topic, partition, next) in &p.positions {
                st.set_committed(group, *topic, *partition, *next);
            }
        }
        published
    }
}

/// The background thread of [`super::FsyncPolicy::Interval`].
pub(super) struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: JoinHandle<()>,
}

impl Flusher {
    pub(super) fn start(inner: Arc<Inner>, every: Duration) -> Result<Flusher> {
        let every = every.max(Duration::from_millis(1));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("waybill-log-fsync".into())
            .spawn(move || {
                let (lock, cv) = &*stop2;
                let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    stopped = cv.wait_timeout(stopped, every).unwrap_or_else(PoisonError::into_inner).0;
                    if *stopped {
                        return;
                    }
                    if inner.dirty.load(Ordering::SeqCst)
                        && let Err(e) = inner.sync_active()
                    {
                        tracing::error!(error = %e, "embedded log: background fsync failed");
                    }
                }
            })
            .map_err(|source| Error::Io { path: PathBuf::from("<fsync thread>"), source })?;
        Ok(Flusher { stop, handle })
    }

    pub(super) fn stop(self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
        if self.handle.join().is_err() {
            tracing::error!("embedded log: the background fsync thread panicked");
        }
    }
}
