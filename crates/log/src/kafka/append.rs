//! Appending: the idempotent producer (replaced when it fails fatally), a batch's records
//! sent to explicit partitions and waited for, and only then its positions committed,
//! through the group member while the process is joined, else through a committer of
//! the group.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};

use super::KafkaLog;
use super::client::{self, Ctx, LastError, Pending, Ticket, lock};
use super::options::{self, KafkaOptions, Role};
use crate::{AppendBatch, Appended, Error, Offset, Result, partition_for};

/// Most consumer-group committers kept open.
pub(super) const MAX_COMMITTERS: usize = 32;

impl KafkaLog {
    /// `EventLog::append`.
    pub(super) fn append_batch(&self, batch: AppendBatch) -> Result<Vec<Appended>> {
        let AppendBatch { records, positions } = batch;
        // Check every record before sending any, so a bad one appends nothing.
        let mut counts: HashMap<&str, u32> = HashMap::new();
        let mut targets = Vec::with_capacity(records.len());
        for r in &records {
            let n = match counts.get(r.topic.as_str()) {
                Some(n) => *n,
                None => {
                    let n = self.partition_count(&r.topic)?;
                    counts.insert(&r.topic, n);
                    n
                }
            };
            targets.push(match r.partition {
                Some(p) if p < 0 || p as u32 >= n => {
                    return Err(Error::UnknownPartition { topic: r.topic.clone(), partition: p, partitions: n });
                }
                Some(p) => p,
                None => partition_for(&r.key, n),
            });
        }

        if self.options.transactions && !positions.is_empty() {
            return self.append_transactional(&records, &targets, &positions);
        }
        let mut appended = Vec::with_capacity(records.len());
        if !records.is_empty() {
            let producer = self.producer();
            // After a refusal nothing more is sent; what was sent is waited for.
            let (pending, _) = send_batch(&producer, &records, &targets);
            let outcomes = pending.wait();
            if let Some((i, e)) =
                outcomes.iter().enumerate().find_map(|(i, o)| o.as_ref().err().map(|e| (i, e.clone())))
            {
                self.renew_producer_if_fatal(&producer);
                let r = &records[i];
                let what = format!(
                    "appending a batch of {} records (record {i} to {}/{})",
                    records.len(),
                    r.topic,
                    targets[i]
                );
                return Err(match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::MessageSizeTooLarge) => Error::InvalidRequest {
                        reason: format!(
                            "record {i} of the batch ({} bytes) is larger than the broker or producer accepts (message.max.bytes); split it or raise the limit",
                            r.key.len() + r.value.len()
                        ),
                    },
                    _ => self.unreachable(&what, &e),
                });
            }
            for o in outcomes {
                let (partition, offset) = o.expect("errors were returned above");
                appended.push(Appended { partition, offset });
            }
            // The ends this batch proves, one entry per partition it touched.
            let mut ends: HashMap<(&str, i32), Offset> = HashMap::new();
            for (r, a) in records.iter().zip(&appended) {
                if a.offset >= 0 {
                    let end = ends.entry((r.topic.as_str(), a.partition)).or_insert(0);
                    *end = (*end).max(a.offset + 1);
                }
            }
            let mut known = lock(&self.known_ends);
            for ((topic, partition), offset) in ends {
                let end = known.entry((topic.to_owned(), partition)).or_insert(0);
                *end = (*end).max(offset);
            }
            drop(known);
            if let Some(i) = appended.iter().position(|a| a.offset < 0) {
                // librdkafka reports no offset when the broker answers a retry with
                // DUPLICATE_SEQUENCE_NUMBER: stored by an earlier, unacknowledged send.
                return Err(Error::Unavailable(format!(
                    "Kafka at {} stored record {i} of the batch (in {}/{}) on an unacknowledged earlier send and did not say at which offset; the batch is in the log, but its offsets are unknown",
                    self.options.bootstrap_servers, records[i].topic, appended[i].partition
                )));
            }
        }
        // Positions only after every record they cover is acknowledged.
        if !positions.is_empty() {
            self.commit_positions(&positions)?;
        }
        Ok(appended)
    }

    /// `EventLog::committed`.
    pub(super) fn committed_position(&self, group: &str, topic: &str, partition: i32) -> Result<Option<Offset>> {
        let committer = self.committer(group)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let got = committer.committed_offsets(tpl, self.options.request_timeout).map_err(|e| {
            self.unreachable(&format!("fetching the position of group {group:?} in {topic}/{partition}"), &e)
        })?;
        Ok(got.find_partition(topic, partition).and_then(|e| match e.offset() {
            KafkaOffset::Offset(o) => Some(o),
            _ => None,
        }))
    }

    pub(super) fn producer(&self) -> Arc<ThreadedProducer<Ctx>> {
        self.producer.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A producer that hit a fatal error (the idempotent producer's sequence broke) can
    /// send nothing more: replace it so the next append starts afresh.
    pub(super) fn renew_producer_if_fatal(&self, current: &Arc<ThreadedProducer<Ctx>>) {
        let Some((code, reason)) = current.client().fatal_error() else {
            return;
        };
        tracing::warn!(error = %reason, code = ?code, "kafka producer failed fatally; replacing it");
        if let Ok(fresh) = new_producer(&self.options, &self.last_error) {
            let mut p = self.producer.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if Arc::ptr_eq(&p, current) {
                *p = Arc::new(fresh);
            }
        }
    }

    /// A consumer of `group` for committing and fetching its positions.
    pub(super) fn committer(&self, group: &str) -> Result<Arc<BaseConsumer<Ctx>>> {
        lock(&self.committers).get_or_try(&group.to_owned(), || {
            let config = options::config(&self.options, Role::Consumer, Some(group));
            BaseConsumer::from_config_and_context(&config, self.ctx()).map_err(|e| self.config_error(&e))
        })
    }

    /// Commits the positions of a batch, one request per group.
    pub(super) fn commit_positions(&self, positions: &[crate::Position]) -> Result<()> {
        // The last position for a (group, topic, partition) wins.
        let mut latest: BTreeMap<(&str, &str, i32), Offset> = BTreeMap::new();
        for p in positions {
            latest.insert((&p.group, &p.topic, p.partition), p.next_offset);
        }
        let mut by_group: BTreeMap<&str, TopicPartitionList> = BTreeMap::new();
        for ((group, topic, partition), offset) in latest {
            by_group
                .entry(group)
                .or_default()
                .add_partition_offset(topic, partition, KafkaOffset::Offset(offset))
                .map_err(|e| Error::InvalidRequest {
                    reason: format!("position {offset} of group {group:?} in {topic}/{partition}: {e}"),
                })?;
        }
        for (group, tpl) in by_group {
            let member = lock(&self.members).get(group).cloned();
            let committer = match member {
                Some(_) => None,
                None => Some(self.committer(group)?),
            };
            // A commit is idempotent: retry while the coordinator is unreachable or
            // moving (or the group is rebalancing), up to the request timeout.
            let deadline = Instant::now() + self.options.request_timeout;
            loop {
                let result = match (&member, &committer) {
                    (Some(m), _) => m.commit(&tpl, CommitMode::Sync),
                    (None, Some(c)) => c.commit(&tpl, CommitMode::Sync),
                    (None, None) => unreachable!("either a member or a committer"),
                };
                match result {
                    Ok(()) => break,
                    Err(e)
                        if (client::is_unreachable(e.rdkafka_error_code())
                            || e.rdkafka_error_code() == Some(RDKafkaErrorCode::RebalanceInProgress))
                            && Instant::now() < deadline =>
                    {
                        tracing::debug!(error = %e, group, "kafka commit failed; retrying");
                        thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => {
                        return Err(self.unreachable(&format!("committing positions of group {group:?}"), &e));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Hands every record to `producer` in order (waiting while its local queue is full),
/// each with a ticket for its delivery report. A record librdkafka refuses settles it and
/// every later one with that error and sends nothing more; what was sent is reported by
/// the producer's deliveries.
/// Returns the tickets and the refusal, if any.
pub(super) fn send_batch(
    producer: &ThreadedProducer<Ctx>,
    records: &[crate::Record],
    targets: &[i32],
) -> (Arc<Pending>, Option<KafkaError>) {
    let pending = Pending::new(records.len());
    for (i, (r, &p)) in records.iter().zip(targets).enumerate() {
        let ticket = Box::new(Ticket { batch: pending.clone(), index: i });
        let mut rec: BaseRecord<'_, [u8], [u8], _> =
            BaseRecord::with_opaque_to(&r.topic, ticket).partition(p).key(r.key.as_slice());
        // An empty value is a tombstone: Kafka's null value, which compaction removes
        // with the key (every other record Waybill writes carries at least the
        // five-byte Confluent header).
        if !r.value.is_empty() {
            rec = rec.payload(r.value.as_slice());
        }
        if !r.headers.is_empty() {
            let mut hs = OwnedHeaders::new_with_capacity(r.headers.len());
            for h in &r.headers {
                hs = hs.insert(KafkaHeader { key: &h.key, value: Some(&h.value) });
            }
            rec = rec.headers(hs);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: let deliveries drain it.
                    rec = back;
                    thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    for j in i..records.len() {
                        pending.settle(j, Err(e.clone()));
                    }
                    return (pending, Some(e));
                }
            }
        }
    }
    (pending, None)
}

pub(super) fn new_producer(
    options: &KafkaOptions,
    last_error: &Arc<Mutex<Option<LastError>>>,
) -> Result<ThreadedProducer<Ctx>> {
    let config = options::config(options, Role::Producer, None);
    ThreadedProducer::from_config_and_context(&config, Ctx { last_error: last_error.clone() }).map_err(|e| {
        Error::InvalidRequest {
            reason: format!("librdkafka refused the Kafka producer configuration: {e}; check the kafka.* properties"),
        }
    })
}
