//! Topics and offsets: topic creation ([`KafkaLog::create_topic`], `ensure_topic`),
//! partition counts from the brokers' metadata (cached for a few seconds), and end
//! offsets (`ListOffsets`), with the floor that works around Tansu 0.6.0's answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use super::KafkaLog;
use super::client::{Ctx, block_on, lock};
use super::options::{self, Role};
use crate::{Error, Offset, Result};

/// How long a partition count learnt from the brokers is reused.
const PARTITIONS_TTL: Duration = Duration::from_secs(10);

/// A topic to create with [`KafkaLog::create_topic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: u32,
    /// Replication factor.
    pub replication_factor: i32,
    /// Topic configuration (`retention.ms`, `cleanup.policy`, `min.insync.replicas`, ...).
    pub config: BTreeMap<String, String>,
}

impl KafkaLog {
    /// Creates a topic as `spec` says and waits until it has leaders. An existing topic
    /// with the same partition count is fine (its settings are left alone); another
    /// count is [`Error::PartitionMismatch`].
    pub fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        check_topic_name(&spec.name)?;
        if spec.partitions == 0 || spec.partitions > i32::MAX as u32 {
            return Err(Error::InvalidRequest {
                reason: format!("topic {:?} cannot have {} partitions", spec.name, spec.partitions),
            });
        }
        let (topic, partitions) = (spec.name.as_str(), spec.partitions);
        let mut new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(spec.replication_factor));
        for (k, v) in &spec.config {
            new = new.set(k, v);
        }
        let opts = AdminOptions::new()
            .request_timeout(Some(self.options.request_timeout))
            .operation_timeout(Some(self.options.request_timeout));
        let admin = self.admin()?;
        let results = block_on(admin.create_topics([&new], &opts))
            .map_err(|e| self.unreachable(&format!("creating topic {topic:?}"), &e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code))
                    if matches!(
                        code,
                        RDKafkaErrorCode::InvalidTopic
                            | RDKafkaErrorCode::InvalidPartitions
                            | RDKafkaErrorCode::InvalidReplicationFactor
                            | RDKafkaErrorCode::PolicyViolation
                            | RDKafkaErrorCode::TopicAuthorizationFailed
                            | RDKafkaErrorCode::ClusterAuthorizationFailed
                    ) =>
                {
                    return Err(Error::InvalidRequest {
                        reason: format!(
                            "Kafka refused to create topic {topic:?} with {partitions} partitions, replication factor {} and {:?}: {code}",
                            spec.replication_factor, spec.config
                        ),
                    });
                }
                Err((_, code)) => {
                    return Err(self.unreachable(&format!("creating topic {topic:?}"), &KafkaError::AdminOp(code)));
                }
            }
        }
        let matches = |actual: u32| {
            if actual == partitions {
                Ok(())
            } else {
                Err(Error::PartitionMismatch { topic: topic.to_owned(), wanted: partitions, actual })
            }
        };
        // Creation is asynchronous on the brokers: wait until the topic has leaders.
        let deadline = Instant::now() + self.options.request_timeout;
        loop {
            match self.fetch_partition_count(topic) {
                Ok(Some(actual)) => return matches(actual),
                Ok(None) | Err(Error::Unavailable(_)) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    return Err(Error::Unavailable(format!(
                        "topic {topic:?} was created on Kafka at {} but did not appear in its metadata within {:?}",
                        self.options.bootstrap_servers, self.options.request_timeout
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The partition count of `topic`, `None` if it does not exist.
    pub fn topic_partitions(&self, topic: &str) -> Result<Option<u32>> {
        check_topic_name(topic)?;
        self.fetch_partition_count(topic)
    }

    pub(super) fn admin(&self) -> Result<Arc<AdminClient<Ctx>>> {
        let mut admin = lock(&self.admin);
        if let Some(a) = &*admin {
            return Ok(a.clone());
        }
        let config = options::config(&self.options, Role::Admin, None);
        let a = Arc::new(AdminClient::from_config_and_context(&config, self.ctx()).map_err(|e| self.config_error(&e))?);
        *admin = Some(a.clone());
        Ok(a)
    }

    /// The partition count of `topic` as the brokers report it, `None` if it does not
    /// exist. `Err` if the brokers cannot be asked or the topic is not ready (no leader).
    pub(super) fn fetch_partition_count(&self, topic: &str) -> Result<Option<u32>> {
        let md = self
            .producer()
            .client()
            .fetch_metadata(Some(topic), self.options.request_timeout)
            .map_err(|e| self.unreachable(&format!("fetching metadata of {topic:?}"), &e))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        if let Some(err) = t.error() {
            let code = RDKafkaErrorCode::from(err);
            if matches!(code, RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) {
                return Ok(None);
            }
            return Err(self.unreachable(&format!("metadata of {topic:?}"), &KafkaError::MetadataFetch(code)));
        }
        let parts = t.partitions();
        if parts.is_empty() || parts.iter().any(|p| p.error().is_some() || p.leader() < 0) {
            return Err(Error::Unavailable(format!(
                "topic {topic:?} on Kafka at {} has partitions without a leader; retry when the cluster has settled",
                self.options.bootstrap_servers
            )));
        }
        let n = parts.len() as u32;
        lock(&self.partitions).insert(topic.to_owned(), (n, Instant::now()));
        Ok(Some(n))
    }

    pub(super) fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some((n, at)) = lock(&self.partitions).get(topic)
            && at.elapsed() < PARTITIONS_TTL
        {
            return Ok(*n);
        }
        self.fetch_partition_count(topic)?.ok_or_else(|| Error::UnknownTopic { topic: topic.to_owned() })
    }

    pub(super) fn check_partition(&self, topic: &str, partition: i32) -> Result<u32> {
        let partitions = self.partition_count(topic)?;
        if partition < 0 || partition as u32 >= partitions {
            return Err(Error::UnknownPartition { topic: topic.to_owned(), partition, partitions });
        }
        Ok(partitions)
    }

    /// The high watermark (end offset) of a partition known to exist, asked of the brokers
    /// (`ListOffsets`).
    ///
    /// Never below an end this client knew of before (one past the last offset its own
    /// appends were acknowledged at, or an earlier answer): with `acks=all` an acknowledged
    /// record is below the high watermark and an end never moves back, so this only
    /// matters for a broker that answers `ListOffsets(latest)` wrongly — Tansu 0.6.0's
    /// in-memory storage returns the base offset of the partition's newest record batch
    /// plus one, which hides all but the first record of a multi-record batch until the
    /// next batch arrives.
    pub(super) fn high_watermark(&self, topic: &str, partition: i32) -> Result<Offset> {
        match self.producer().client().fetch_watermarks(topic, partition, self.options.request_timeout) {
            Ok((_, high)) => {
                let mut known = lock(&self.known_ends);
                let end = known.entry((topic.to_owned(), partition)).or_insert(0);
                *end = (*end).max(high);
                Ok(*end)
            }
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::UnknownTopicOrPartition
                            | RDKafkaErrorCode::UnknownTopic
                            | RDKafkaErrorCode::UnknownPartition
                    )
                ) =>
            {
                lock(&self.partitions).remove(topic);
                lock(&self.known_ends).retain(|(t, _), _| t != topic);
                Err(Error::UnknownTopic { topic: topic.to_owned() })
            }
            Err(e) => Err(self.unreachable(&format!("fetching the end offset of {topic}/{partition}"), &e)),
        }
    }

    /// One past the highest offset of a partition this client knows to exist, without
    /// asking the brokers (0 if it knows of none).
    pub(super) fn known_end(&self, topic: &str, partition: i32) -> Offset {
        lock(&self.known_ends).get(&(topic.to_owned(), partition)).copied().unwrap_or(0)
    }

    /// `EventLog::ensure_topic`: an existing topic must have `partitions`; a missing one
    /// is created with the configured replication factor.
    pub(super) fn ensure_topic_with(&self, topic: &str, partitions: u32) -> Result<()> {
        check_topic_name(topic)?;
        if partitions == 0 || partitions > i32::MAX as u32 {
            return Err(Error::InvalidRequest {
                reason: format!("topic {topic:?} cannot have {partitions} partitions"),
            });
        }
        let matches = |actual: u32| {
            if actual == partitions {
                Ok(())
            } else {
                Err(Error::PartitionMismatch { topic: topic.to_owned(), wanted: partitions, actual })
            }
        };
        // Ask first: an existing topic needs no admin rights (and the mock cluster has no
        // CreateTopics at all).
        if let Some(actual) = self.fetch_partition_count(topic)? {
            return matches(actual);
        }
        self.create_topic(&TopicSpec {
            name: topic.to_owned(),
            partitions,
            replication_factor: self.options.replication_factor,
            config: BTreeMap::new(),
        })
    }
}

/// Kafka's rule for topic names.
pub(super) fn check_topic_name(topic: &str) -> Result<()> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." {
        return Err(Error::InvalidRequest {
            reason: format!("topic name {topic:?} is not allowed by Kafka (1 to 249 characters, not \".\" or \"..\")"),
        });
    }
    if let Some(c) = topic.chars().find(|c| !legal(*c)) {
        return Err(Error::InvalidRequest {
            reason: format!(
                "topic name {topic:?} has {c:?}; Kafka allows only ASCII letters, digits, '.', '_' and '-'"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(check_topic_name("waybill.inbound.odoo").is_ok());
        assert!(check_topic_name("a_b-C.9").is_ok());
        for bad in ["", ".", "..", "has space", "slash/no", &"x".repeat(250)] {
            assert!(check_topic_name(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
