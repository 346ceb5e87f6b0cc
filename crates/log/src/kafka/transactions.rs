//! Kafka transactions (`kafka.transactions = true`): a batch that carries consumer
//! positions is produced by the transactional producer of its (group, partition) and
//! commits with its positions (`send_offsets_to_transaction`) or not at all; and the
//! start-up probe that checks the brokers run the transaction API.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};

use super::KafkaLog;
use super::append::send_batch;
use super::client::{self, Ctx, lock};
use super::options::{self, Role};
use crate::{Appended, Error, Result};

/// The transactional producer of one (group, partition); one transaction at a time.
pub(super) type TxnProducer = Arc<Mutex<ThreadedProducer<Ctx>>>;

impl KafkaLog {
    /// Transactions committed and aborted since connecting.
    pub fn transaction_outcomes(&self) -> (u64, u64) {
        (self.txn_outcomes[0].load(Ordering::Relaxed), self.txn_outcomes[1].load(Ordering::Relaxed))
    }

    /// Whether the brokers can run Kafka transactions: a probe transaction that commits
    /// only a consumer position (of the probe group `<client_id>.transactions-probe` in
    /// `topic`/0, so no data and no real group is touched) must go through
    /// `InitProducerId`, `AddOffsetsToTxn`, `TxnOffsetCommit` and `EndTxn`. librdkafka
    /// knows the brokers' API versions and refuses any of them a broker lacks; the error
    /// says so and what to do. Call it at start-up when `transactions` is on.
    pub fn verify_transactions(&self, topic: &str) -> Result<()> {
        let explain = |reason: String| Error::InvalidRequest {
            reason: format!(
                "kafka.transactions is on, but the brokers at {} cannot run Kafka transactions ({reason}); use a \
                 broker with transactions (Apache Kafka, Redpanda with transactions enabled) or set \
                 kafka.transactions = false (Waybill's exactly-once effect does not depend on them)",
                self.options.bootstrap_servers
            ),
        };
        let id = format!("{}.transactions-probe", self.options.client_id);
        let producer = self.new_transactional_producer(&id).map_err(|e| explain(e.to_string()))?;
        let group = format!("{}.transactions-probe", self.options.client_id);
        let metadata = self
            .committer(&group)?
            .group_metadata()
            .ok_or_else(|| Error::Unavailable(format!("no consumer-group metadata for group {group:?}")))?;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(topic, 0, KafkaOffset::Offset(0))
            .map_err(|e| Error::InvalidRequest { reason: format!("probe position in {topic}/0: {e}") })?;
        let timeout = self.options.request_timeout;
        let probe = producer
            .begin_transaction()
            .and_then(|()| producer.send_offsets_to_transaction(&offsets, &metadata, timeout))
            .and_then(|()| producer.commit_transaction(timeout));
        match probe {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = producer.abort_transaction(timeout);
                if client::is_unreachable(e.rdkafka_error_code()) {
                    Err(self.unreachable("checking that the brokers run transactions", &e))
                } else {
                    Err(explain(e.to_string()))
                }
            }
        }
    }

    /// A producer with `transactional.id` = `id`, initialised (which fences any earlier
    /// producer with that id).
    pub(super) fn new_transactional_producer(&self, id: &str) -> Result<ThreadedProducer<Ctx>> {
        let mut config = options::config(&self.options, Role::Producer, None);
        config.set("transactional.id", id);
        let producer =
            ThreadedProducer::from_config_and_context(&config, self.ctx()).map_err(|e| Error::InvalidRequest {
                reason: format!(
                    "librdkafka refused the transactional producer configuration: {e}; check the kafka.* properties"
                ),
            })?;
        producer.init_transactions(self.options.request_timeout).map_err(|e| match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::UnsupportedFeature
                | RDKafkaErrorCode::UnsupportedVersion
                | RDKafkaErrorCode::UnsupportedForMessageFormat
                | RDKafkaErrorCode::InvalidRequest
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
            ) => Error::InvalidRequest { reason: format!("initialising transactional id {id:?}: {e}") },
            _ => self.unreachable(&format!("initialising transactional id {id:?}"), &e),
        })?;
        Ok(producer)
    }

    /// The transactional producer for a batch covering `group`'s position in `partition`.
    pub(super) fn txn_producer(&self, group: &str, partition: i32) -> Result<TxnProducer> {
        let key = (group.to_owned(), partition);
        if let Some(p) = lock(&self.txn_producers).get(&key) {
            return Ok(p.clone());
        }
        let id = if partition < 0 {
            format!("{}.{group}", self.options.client_id)
        } else {
            format!("{}.{group}.{partition}", self.options.client_id)
        };
        let producer = Arc::new(Mutex::new(self.new_transactional_producer(&id)?));
        lock(&self.txn_producers).insert(key, producer.clone());
        Ok(producer)
    }

    /// Appends `records` and commits `positions` in one Kafka transaction.
    pub(super) fn append_transactional(
        &self,
        records: &[crate::Record],
        targets: &[i32],
        positions: &[crate::Position],
    ) -> Result<Vec<Appended>> {
        let group = &positions[0].group;
        if positions.iter().any(|p| p.group != *group) {
            return Err(Error::InvalidRequest {
                reason: "a transactional append commits the positions of one consumer group; split the batch".into(),
            });
        }
        // A writer of one partition number (a coordinator worker) gets a producer of its
        // own, so the next owner of the partition fences it; a reader of many partitions
        // (a connector) gets one per group (`-1`).
        let partition =
            if positions.iter().all(|p| p.partition == positions[0].partition) { positions[0].partition } else { -1 };
        let handle = self.txn_producer(group, partition)?;
        let producer = lock(&handle);
        let member = lock(&self.members).get(group.as_str()).cloned();
        let metadata = match member {
            Some(m) => m.group_metadata(),
            None => self.committer(group)?.group_metadata(),
        }
        .ok_or_else(|| Error::Unavailable(format!("no consumer-group metadata for group {group:?} yet")))?;
        let mut offsets = TopicPartitionList::new();
        for p in positions {
            offsets.add_partition_offset(&p.topic, p.partition, KafkaOffset::Offset(p.next_offset)).map_err(|e| {
                Error::InvalidRequest {
                    reason: format!("position {} of {}/{}: {e}", p.next_offset, p.topic, p.partition),
                }
            })?;
        }
        let timeout = self.options.request_timeout;
        let txn = |e: KafkaError, what: &str| -> Error {
            let fenced = matches!(
                e.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                )
            );
            if fenced || matches!(&e, KafkaError::Transaction(r) if r.is_fatal()) {
                lock(&self.txn_producers).remove(&(group.clone(), partition));
                if fenced {
                    return Error::Fenced {
                        reason: format!(
                            "the transactional producer of group {group:?} partition {partition} was fenced while {what}: {e}"
                        ),
                    };
                }
            }
            self.unreachable(what, &e)
        };
        producer.begin_transaction().map_err(|e| txn(e, "beginning a transaction"))?;
        let result = (|| {
            let (pending, refused) = send_batch(&producer, records, targets);
            if let Some(e) = refused {
                return Err(txn(e, "producing in a transaction"));
            }
            producer
                .send_offsets_to_transaction(&offsets, &metadata, timeout)
                .map_err(|e| txn(e, "adding the positions to the transaction"))?;
            let deadline = Instant::now() + timeout;
            loop {
                match producer.commit_transaction(timeout) {
                    Ok(()) => break,
                    Err(KafkaError::Transaction(r)) if r.is_retriable() && Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => return Err(txn(e, "committing the transaction")),
                }
            }
            let mut appended = Vec::with_capacity(records.len());
            for (i, o) in pending.wait().into_iter().enumerate() {
                let (partition, offset) = o.map_err(|e| txn(e, &format!("appending record {i} of a transaction")))?;
                appended.push(Appended { partition, offset });
            }
            Ok(appended)
        })();
        match result {
            Ok(appended) => {
                self.txn_outcomes[0].fetch_add(1, Ordering::Relaxed);
                Ok(appended)
            }
            Err(e) => {
                self.txn_outcomes[1].fetch_add(1, Ordering::Relaxed);
                if !matches!(e, Error::Fenced { .. })
                    && let Err(abort) = producer.abort_transaction(timeout)
                {
                    tracing::warn!(error = %abort, group = %group, partition, "aborting the Kafka transaction failed; the producer is replaced");
                    lock(&self.txn_producers).remove(&(group.clone(), partition));
                }
                tracing::warn!(error = %e, group = %group, partition, "Kafka transaction aborted");
                Err(e)
            }
        }
    }
}
