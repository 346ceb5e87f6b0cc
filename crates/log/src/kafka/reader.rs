//! Reading: one consumer per log, assigned (never subscribed) the partitions that are
//! read, each with a queue of its own (librdkafka's partition queues), so one client and
//! one fetch session per broker serve every partition, and reading one partition never
//! buffers another's records. Each partition's reader keeps the offset its queue delivers
//! next, so sequential reads stream without seeking, and the last records it delivered,
//! so a re-read of them needs no repositioning. A read below the end this client knows
//! of needs no round trip; at the end it asks the brokers (`ListOffsets`). `wait_for` and
//! `wait_any` poll the end offsets with a short back-off.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};

use super::KafkaLog;
use super::client::{Ctx, lock};
use super::options::{self, Role};
use super::recent::Recent;
use crate::{Error, EventLog, Header, Offset, Result, StoredRecord};

/// Most partition readers kept; the least recently read one is unassigned first. A
/// reader costs a partition queue and its prefetched records, not a client.
pub(super) const MAX_READERS: usize = 256;
/// Longest pause between two looks at the end offsets in `wait_for`/`wait_any`.
const MAX_WAIT_STEP: Duration = Duration::from_millis(50);
/// Longest single wait for the next record or event of a partition queue.
const POLL_STEP: Duration = Duration::from_millis(100);

/// One partition of the shared reading consumer and where it stands.
pub(super) struct Reader {
    consumer: Arc<BaseConsumer<Ctx>>,
    queue: PartitionQueue<Ctx>,
    topic: String,
    partition: i32,
    /// The offset the queue delivers next.
    next: Offset,
    /// One past the highest offset known to exist; reads below it need no round trip
    /// to check the range.
    end: Offset,
    /// The last records delivered, so that a re-read of them needs no repositioning.
    recent: Recent,
}

impl Reader {
    /// The consumer's position in this partition (after the last record delivered, or
    /// past transaction markers at the end).
    fn position(&self) -> Option<Offset> {
        self.consumer
            .position()
            .ok()
            .and_then(|tpl| tpl.find_partition(&self.topic, self.partition).and_then(|e| e.offset().to_raw()))
    }

    /// Moves the consumer to `offset`, dropping whatever it had fetched from the old
    /// position. Right after the partition was assigned its fetcher may not have started
    /// yet (`Local: Erroneous state`): try again until `deadline`.
    fn seek(&mut self, offset: Offset, deadline: Instant) -> std::result::Result<(), KafkaError> {
        loop {
            match self.consumer.seek(&self.topic, self.partition, KafkaOffset::Offset(offset), POLL_STEP) {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, topic = %self.topic, partition = self.partition, "kafka seek; retrying");
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
        self.next = offset;
        self.recent.clear();
        Ok(())
    }
}

impl Drop for Reader {
    /// A reader dropped from the cache stops the consumer fetching its partition.
    fn drop(&mut self) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partition);
        if let Err(e) = self.consumer.incremental_unassign(&tpl) {
            tracing::debug!(error = %e, topic = %self.topic, partition = self.partition, "kafka unassign of an idle reader");
        }
    }
}

impl KafkaLog {
    /// The consumer every reader shares, created on the first read.
    fn reading_consumer(&self) -> Result<Arc<BaseConsumer<Ctx>>> {
        let mut slot = lock(&self.reading);
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        // Readers are assigned, never subscribed, and commit nothing; librdkafka still
        // wants a group id for a consumer that is assigned partitions.
        let group = format!("{}.reader", self.options.client_id);
        let config = options::config(&self.options, Role::Consumer, Some(&group));
        let consumer =
            Arc::new(BaseConsumer::from_config_and_context(&config, self.ctx()).map_err(|e| self.config_error(&e))?);
        *slot = Some(consumer.clone());
        Ok(consumer)
    }

    /// The reader of a partition; a new one is assigned at `from`.
    fn reader(&self, topic: &str, partition: i32, from: Offset) -> Result<Arc<Mutex<Reader>>> {
        let consumer = self.reading_consumer()?;
        lock(&self.readers).get_or_try(&(topic.to_owned(), partition), || {
            // The partition gets its own queue before it is assigned, so none of its
            // records lands on the consumer's common queue.
            let queue = consumer.split_partition_queue(topic, partition).ok_or_else(|| Error::InvalidRequest {
                reason: format!("librdkafka has no queue for {topic}/{partition}"),
            })?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, KafkaOffset::Offset(from))
                .and_then(|()| consumer.incremental_assign(&tpl))
                .map_err(|e| self.unreachable(&format!("assigning {topic}/{partition} to the reader"), &e))?;
            Ok(Mutex::new(Reader {
                consumer: consumer.clone(),
                queue,
                topic: topic.to_owned(),
                partition,
                next: from,
                end: 0,
                recent: Recent::default(),
            }))
        })
    }

    /// Serves what librdkafka reports on the reading consumer's common queue (errors not
    /// tied to one partition); every partition's records go to its own queue.
    fn serve_common_queue(&self, consumer: &BaseConsumer<Ctx>) {
        while let Some(event) = consumer.poll(Duration::ZERO) {
            match event {
                Ok(m) => tracing::debug!(
                    topic = m.topic(),
                    partition = m.partition(),
                    "kafka record on the common queue; dropped"
                ),
                Err(e) => tracing::debug!(error = %e, "kafka consumer error"),
            }
        }
    }

    /// `EventLog::read`.
    pub(super) fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        from: Offset,
        max: usize,
    ) -> Result<Vec<StoredRecord>> {
        self.check_partition(topic, partition)?;
        if from < 0 {
            return Err(Error::InvalidRequest {
                reason: format!("cannot read {topic}/{partition} from negative offset {from}"),
            });
        }
        let reader = self.reader(topic, partition, from)?;
        let mut guard = lock(&reader);
        let r = &mut *guard;
        self.serve_common_queue(&r.consumer);
        r.end = r.end.max(self.known_end(topic, partition));
        // Below the end this client knows of (its own appends, earlier answers) the range
        // needs no check; at or past it, ask the brokers.
        if from >= r.end {
            r.end = r.end.max(self.high_watermark(topic, partition)?);
        }
        if from > r.end {
            return Err(Error::OffsetOutOfRange { topic: topic.to_owned(), partition, offset: from, end: r.end });
        }
        if max == 0 || from == r.end {
            return Ok(Vec::new());
        }
        let target = r.end.min(from.saturating_add(max as i64));
        let mut out = Vec::with_capacity((target - from) as usize);
        let mut next = from;
        // A re-read of records this reader delivered recently (the coordinator leaves the
        // tail of a batch for its next turn) is served from memory: repositioning would
        // drop what the consumer has prefetched, cost a fetch round trip, and on a broker
        // that fetches from the next batch boundary (Tansu 0.6.0) skip the rest of a batch.
        if from < r.next && r.recent.first_offset().is_some_and(|first| first <= from) {
            r.recent.read(topic, partition, from, max, &mut out);
            if out.len() == max {
                return Ok(out);
            }
            next = r.next;
        }
        let streamed_from = out.len();
        if out.len() < max && next < target {
            let deadline = Instant::now() + self.options.request_timeout;
            if r.next != next {
                r.seek(next, deadline)
                    .map_err(|e| self.unreachable(&format!("positioning {topic}/{partition}"), &e))?;
            }
            let mut last_error = None;
            while out.len() < max && next < target {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match r.queue.poll((deadline - now).min(POLL_STEP)) {
                    None => {}
                    Some(Ok(m)) => {
                        if m.offset() < next {
                            continue; // fetched before a reposition
                        }
                        next = m.offset() + 1;
                        out.push(stored(&m));
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {
                        // The end of what read_committed may see: stop if it is at or past
                        // the target (records beyond may be transaction markers, never
                        // delivered).
                        let position = r.position();
                        if position.is_some_and(|p| p >= target) {
                            next = position.unwrap_or(next);
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, topic, partition, "kafka fetch error; retrying");
                        last_error = Some(e);
                    }
                }
            }
            r.next = next;
            r.end = r.end.max(next);
            if out.is_empty() && next < target {
                // Nothing arrived though the partition has records there.
                let e = last_error.unwrap_or(KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut));
                return Err(
                    self.unreachable(&format!("reading {topic}/{partition} from offset {from} (end {target})"), &e)
                );
            }
            r.recent.keep(&out[streamed_from..]);
        }
        Ok(out)
    }

    /// Waits until one of `positions` has a record at or beyond its offset; returns the
    /// index of that position and its end offset, or `None` at the timeout.
    pub(super) fn wait_until(
        &self,
        positions: &[(&str, i32, Offset)],
        timeout: Duration,
    ) -> Result<(Option<usize>, Vec<Offset>)> {
        let deadline = Instant::now() + timeout;
        let mut step = Duration::from_millis(2);
        loop {
            let mut ends = Vec::with_capacity(positions.len());
            for (i, (t, p, o)) in positions.iter().enumerate() {
                let end = self.end_offset(t, *p)?;
                if end > *o {
                    ends.push(end);
                    return Ok((Some(i), ends));
                }
                ends.push(end);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok((None, ends));
            }
            thread::sleep(step.min(deadline - now));
            step = (step * 2).min(MAX_WAIT_STEP);
        }
    }
}

fn stored(m: &BorrowedMessage<'_>) -> StoredRecord {
    StoredRecord {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        key: m.key().unwrap_or_default().to_vec(),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| Header { key: h.key.to_owned(), value: h.value.unwrap_or_default().to_vec() })
                    .collect()
            })
            .unwrap_or_default(),
        value: m.payload().unwrap_or_default().to_vec(),
    }
}
