//! Reading: one assigned (never subscribed) consumer per partition, kept with the offset
//! it delivers next so sequential reads stream without seeking, and the last records it
//! delivered, so that a re-read of them needs no repositioning; and `wait_for`/`wait_any`,
//! which poll the end offsets with a short back-off.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};

use super::KafkaLog;
use super::client::{Ctx, lock};
use super::options::{self, Role};
use crate::{Error, EventLog, Header, Offset, Result, StoredRecord};

/// Most partition readers kept open (each is a librdkafka client with its own threads).
pub(super) const MAX_READERS: usize = 64;
/// Records each partition reader keeps for re-reads (the coordinator re-reads the part of
/// a batch it left for its next turn).
const RECENT_RECORDS: usize = 2048;
/// Longest pause between two looks at the end offsets in `wait_for`/`wait_any`.
const MAX_WAIT_STEP: Duration = Duration::from_millis(50);

/// A consumer assigned to one partition and where it stands.
pub(super) struct Reader {
    consumer: BaseConsumer<Ctx>,
    /// The offset the consumer delivers next, if it was positioned.
    next: Option<Offset>,
    /// The last end offset seen; reads below it need no round trip to check the range.
    end: Offset,
    /// The last records delivered (at most [`RECENT_RECORDS`], contiguous up to `next`),
    /// so that a re-read of them needs no repositioning.
    recent: VecDeque<StoredRecord>,
}

impl KafkaLog {
    pub(super) fn reader(&self, topic: &str, partition: i32) -> Result<Arc<Mutex<Reader>>> {
        lock(&self.readers).get_or_try(&(topic.to_owned(), partition), || {
            // Readers are assigned, never subscribed, and commit nothing; librdkafka still
            // wants a group id for a consumer that is assigned partitions.
            let group = format!("{}.reader", self.options.client_id);
            let config = options::config(&self.options, Role::Consumer, Some(&group));
            let consumer =
                BaseConsumer::from_config_and_context(&config, self.ctx()).map_err(|e| self.config_error(&e))?;
            Ok(Mutex::new(Reader { consumer, next: None, end: 0, recent: VecDeque::new() }))
        })
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
        let reader = self.reader(topic, partition)?;
        let mut guard = lock(&reader);
        let r = &mut *guard;
        if from >= r.end {
            r.end = self.high_watermark(topic, partition)?;
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
        if let Some(n) = r.next
            && from < n
            && r.recent.front().is_some_and(|first| first.offset <= from)
        {
            out.extend(r.recent.iter().filter(|x| x.offset >= from).take(max).cloned());
            if out.len() == max {
                return Ok(out);
            }
            next = n;
        }
        let streamed_from = out.len();
        if out.len() < max && next < target {
            if r.next != Some(next) {
                // Assigning with an offset repositions the consumer and drops whatever it
                // had fetched from the old position.
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, partition, KafkaOffset::Offset(next))
                    .and_then(|()| r.consumer.assign(&tpl))
                    .map_err(|e| self.unreachable(&format!("positioning {topic}/{partition}"), &e))?;
                r.next = Some(next);
                r.recent.clear();
            }
            let deadline = Instant::now() + self.options.request_timeout;
            let mut last_error = None;
            while out.len() < max && next < target {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match r.consumer.poll((deadline - now).min(Duration::from_millis(100))) {
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
                        let position = r
                            .consumer
                            .position()
                            .ok()
                            .and_then(|tpl| tpl.find_partition(topic, partition).and_then(|e| e.offset().to_raw()));
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
            r.next = Some(next);
            if out.is_empty() && next < target {
                // Nothing arrived though the partition has records there: forget the
                // position so the next read starts afresh.
                r.next = None;
                r.recent.clear();
                let e = last_error.unwrap_or(KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut));
                return Err(
                    self.unreachable(&format!("reading {topic}/{partition} from offset {from} (end {target})"), &e)
                );
            }
            let streamed = &out[streamed_from..];
            r.recent.extend(streamed[streamed.len().saturating_sub(RECENT_RECORDS)..].iter().cloned());
            while r.recent.len() > RECENT_RECORDS {
                r.recent.pop_front();
            }
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
