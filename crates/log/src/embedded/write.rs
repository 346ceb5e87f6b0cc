//! The append path: a batch encoded into one frame (`encode_batch`), the frame written
//! to the active segment (`write_frame`), a full segment sealed and a new one begun with a
//! checkpoint (`roll`), and `write_batch`, which puts them together under the writer lock
//! and leaves the fsync to the group commit (`durable`).

use super::*;

impl Inner {
    /// Writes the frame whose payload is `w.buf[FRAME_HEADER..]` (the header is filled in
    /// here), rolling to a new segment first if needed, and fsyncs per policy — under
    /// `EveryBatch` only when `sync_now` (an append leaves it to the group commit).
    /// Returns the segment index and byte position of the frame. Does not publish
    /// anything.
    pub(super) fn write_frame(&self, w: &mut Writer, sync_now: bool) -> Result<(u32, u64)> {
        if let Some(reason) = &w.failed {
            return Err(Error::Unavailable(reason.clone()));
        }
        seal(&mut w.buf)?;
        let frame_len = w.buf.len() as u64;

        if w.active_len > 0 && w.active_len + frame_len > self.options.segment_bytes {
            self.roll(w)?;
        }
        let pos = w.active_len;
        let seg = w.active.clone();
        if let Err(source) = seg.file.write_all_at(&w.buf, pos) {
            // Cut off whatever part of the frame made it, so the next frame follows the
            // last good one; if even that fails the file's tail is in doubt.
            if let Err(e) = seg.file.set_len(pos) {
                let reason = format!(
                    "a failed write to {} could not be rolled back ({e}); restart the \
                     process so recovery can check the file",
                    seg.path.display()
                );
                self.poison_writer(w, reason);
            }
            return Err(Error::Io { path: seg.path.clone(), source });
        }
        match self.options.fsync {
            FsyncPolicy::EveryBatch if !sync_now => {}
            FsyncPolicy::EveryBatch => {
                self.fsync(&seg, Some(w))?;
            }
            FsyncPolicy::Interval(_) => self.dirty.store(true, Ordering::SeqCst),
            FsyncPolicy::Never => {}
        }
        w.active_len += frame_len;
        Ok((w.active_id, pos))
    }

    /// Makes the active segment durable and starts a new one after it, whose first frame
    /// is a checkpoint: so once the segments before it are deleted, it still says which
    /// topics exist, where each partition starts and ends, and every stored position.
    pub(super) fn roll(&self, w: &mut Writer) -> Result<()> {
        let old = w.active.clone();
        self.fsync(&old, Some(w))?;
        let frame = checkpoint_frame(&self.checkpoint(w, self.written_positions(), &[]))?;
        let seg = Arc::new(create_segment(&self.segments_dir, old.base + w.active_len)?);
        if let Err(source) = seg.file.write_all_at(&frame, 0) {
            let reason = format!(
                "the checkpoint at the start of {} could not be written ({source}); restart the \
                 process so recovery can check the file",
                seg.path.display()
            );
            self.poison_writer(w, reason);
            return Err(Error::Io { path: seg.path.clone(), source });
        }
        let mut st = self.write_state();
        st.info[w.active_id as usize].len = w.active_len;
        w.active_id = st.add_segment(seg.clone(), true);
        st.info[w.active_id as usize].head = frame.len() as u64;
        drop(st);
        w.active = seg;
        w.active_len = frame.len() as u64;
        Ok(())
    }

    /// The checkpoint of everything written so far, with the log starts of `trims`
    /// (topic id, partition, new start) applied. The caller holds the writer lock.
    pub(super) fn checkpoint(
        &self,
        w: &Writer,
        positions: Vec<(String, u32, i32, Offset)>,
        trims: &[(u32, i32, Offset)],
    ) -> format::Checkpoint {
        let st = self.read_state();
        let mut cp = st.checkpoint(|t, p, part| w.assigned.get(&(t, p)).copied().unwrap_or(part.next()), positions);
        for &(t, p, start) in trims {
            let range = &mut cp.topics[t as usize].partitions[p as usize];
            range.0 = range.0.max(start.min(range.1));
        }
        cp
    }

    /// Every position stored by a frame written so far, published or still waiting for
    /// its group commit, sorted. The caller holds the writer lock, so no frame is written
    /// meanwhile; the commits lock is let go before the state lock is taken (publishing
    /// takes them the other way).
    pub(super) fn written_positions(&self) -> Vec<(String, u32, i32, Offset)> {
        let pending: Vec<(String, u32, i32, Offset)> =
            self.commits().pending.iter().flat_map(|p| p.positions.iter().cloned()).collect();
        let mut positions: HashMap<(String, u32, i32), Offset> =
            self.read_state().positions().into_iter().map(|(g, t, p, n)| ((g, t, p), n)).collect();
        positions.extend(pending.into_iter().map(|(g, t, p, n)| ((g, t, p), n)));
        // A negative position forgets the group's (`EmbeddedLog::forget_group`).
        let mut positions: Vec<_> =
            positions.into_iter().filter(|(_, n)| *n >= 0).map(|((g, t, p), n)| (g, t, p, n)).collect();
        positions.sort();
        positions
    }

    /// Encodes `batch` into `w.buf`, assigning partitions and offsets; fills `w.placed`
    /// and `w.position_topics` and returns where each record will land.
    pub(super) fn encode_batch(&self, w: &mut Writer, batch: &AppendBatch) -> Result<Vec<Appended>> {
        let st = self.read_state();
        // Never earlier than a record already written, so a segment's newest timestamp
        // only grows along the stream even if the clock steps back.
        let timestamp_ms = now_ms().max(w.batch_ms);
        w.batch_ms = timestamp_ms;
        let Writer { buf, placed, position_topics, next, assigned, .. } = w;
        buf.clear();
        placed.clear();
        position_topics.clear();
        next.clear();
        buf.resize(FRAME_HEADER, 0);
        buf.put_u8(KIND_BATCH);
        let count = u32::try_from(batch.records.len())
            .map_err(|_| invalid("a batch holds at most 4294967295 records".into()))?;
        buf.put_u32(count);
        let mut out = Vec::with_capacity(batch.records.len());
        for rec in &batch.records {
            let (topic, t) = st.topic(&rec.topic)?;
            let n = t.partitions.len() as u32;
            let partition = match rec.partition {
                Some(p) if p >= 0 && (p as u32) < n => p,
                Some(p) => {
                    return Err(Error::UnknownPartition { topic: rec.topic.clone(), partition: p, partitions: n });
                }
                None => partition_for(&rec.key, n),
            };
            let offset = next.entry((topic, partition)).or_insert_with(|| {
                assigned.get(&(topic, partition)).copied().unwrap_or(t.partitions[partition as usize].next())
            });
            let head = RecordHead { topic, partition, offset: *offset, timestamp_ms };
            *offset += 1;
            let start = buf.len();
            format::encode_record(buf, head, &rec.key, &rec.headers, &rec.value)
                .map_err(|e| invalid(format!("a record for topic {:?}: {e}", rec.topic)))?;
            let len = u32::try_from(buf.len() - start)
                .map_err(|_| invalid(format!("a record for topic {:?} is larger than 4 GiB", rec.topic)))?;
            placed.push((topic, partition, start, len));
            out.push(Appended { partition, offset: head.offset });
        }
        let count = u32::try_from(batch.positions.len())
            .map_err(|_| invalid("a batch holds at most 4294967295 positions".into()))?;
        buf.put_u32(count);
        for p in &batch.positions {
            let (topic, _, _) = st.partition(&p.topic, p.partition)?;
            format::encode_position(buf, &p.group, topic, p.partition, p.next_offset)
                .map_err(|e| invalid(format!("position of group {:?}: {e}", p.group)))?;
            position_topics.push(topic);
        }
        Ok(out)
    }
}

impl EmbeddedLog {
    /// Writes one frame holding `batch` and returns once readers may see it (under
    /// `EveryBatch`, once an fsync covers it). The checks of the `EventLog` contract
    /// are the caller's.
    pub(super) fn write_batch(&self, batch: AppendBatch) -> Result<Vec<Appended>> {
        if batch.records.is_empty() && batch.positions.is_empty() {
            return Ok(Vec::new());
        }
        let mut guard = self.inner.writer();
        let w = &mut *guard;
        if let Some(reason) = &w.failed {
            return Err(Error::Unavailable(reason.clone()));
        }
        let out = self.inner.encode_batch(w, &batch)?;
        let group_commit = self.inner.options.fsync == FsyncPolicy::EveryBatch;
        let (segment, frame_pos) = self.inner.write_frame(w, !group_commit)?;
        let Writer { next, assigned, .. } = w;
        assigned.extend(next.drain());
        let positions = batch.positions.iter().zip(&w.position_topics);
        let durable_at = if group_commit {
            let end = w.active.base + w.active_len;
            let pending = Pending {
                end,
                segment,
                frame_pos,
                timestamp_ms: w.batch_ms,
                placed: w.placed.clone(),
                positions: positions.map(|(p, &topic)| (p.group.clone(), topic, p.partition, p.next_offset)).collect(),
            };
            self.inner.commits().pending.push_back(pending);
            Some(end)
        } else {
            let mut st = self.inner.write_state();
            for &(topic, partition, start, len) in &w.placed {
                let entry = Entry { segment, len, pos: frame_pos + start as u64 };
                st.push(topic, partition, entry, w.batch_ms);
            }
            for (p, &topic) in positions {
                st.set_committed(&p.group, topic, p.partition, p.next_offset);
            }
            None
        };
        // Published now (without group commit) or by the fsync that covers the frame,
        // whichever thread runs it: the publisher wakes the partitions' readers.
        let mut published = Vec::new();
        if durable_at.is_none() {
            wake::add_partitions(&mut published, &w.placed);
        }
        if w.buf.capacity() > KEEP_BUFFER {
            w.buf = Vec::new();
        }
        drop(guard);
        self.inner.waiters.wake(&published);
        if let Some(end) = durable_at {
            self.inner.make_durable(end)?;
        }
        Ok(out)
    }
}
