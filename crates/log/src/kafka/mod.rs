//! The Kafka backend (feature `kafka`): [`KafkaLog`] keeps Waybill's topics on any
//! Kafka-protocol broker (Apache Kafka, Redpanda, managed Kafka, Tansu) through
//! librdkafka, built from the sources bundled with `rdkafka-sys`.
//!
//! How the [`EventLog`] contract maps onto Kafka:
//! - `append` produces every record with an idempotent producer (`enable.idempotence`,
//!   `acks=all`) to an explicit partition ([`partition_for`] of the key unless the record
//!   names one), waits for every delivery report, and only then commits the batch's
//!   positions for each consumer group. A batch is **not atomic** (see
//!   [`Capabilities::atomic_batches`]): after a failed append some of its records may be
//!   stored and its positions are not. Waybill copes by design (invariant 2: outputs carry
//!   ids derived from their input and readers drop what they already applied). With
//!   [`KafkaOptions::transactions`] a batch that carries positions is one Kafka
//!   transaction instead, and atomic.
//! - `read` uses one consumer per log, assigned (never subscribed) every partition it
//!   reads, each with a queue of its own, kept with the offset it will deliver next, so
//!   sequential reads stream without seeking. A read below the end this client knows of
//!   (its own acknowledged appends, earlier answers) needs no round trip; at the end it
//!   asks for the end offset. `isolation.level=read_committed`; nothing is ever
//!   auto-committed.
//! - `end_offset` is the partition's high watermark (`ListOffsets`); `wait_for`/`wait_any`
//!   poll it with a short back-off.
//! - `committed` asks the group coordinator (`OffsetFetch`) through a consumer of that
//!   group; commits come from the same consumer. Such a consumer is not a group member,
//!   so the broker accepts its commits only while no member of the group is active.
//!
//! Any librdkafka property can be passed through [`KafkaOptions::properties`] (TLS, SASL,
//! timeouts, buffer sizes). librdkafka is linked with OpenSSL and zlib: TLS, SASL PLAIN,
//! SCRAM and OAUTHBEARER, gzip batches (Kerberos/GSSAPI is not built). Settings the contract relies on
//! (idempotence, `acks`, `isolation.level`, auto-commit off) cannot be overridden.
//!
//! This module must not know about Avro or sagas; it moves bytes.

mod admin;
mod append;
mod client;
mod group;
mod options;
mod reader;
mod recent;
mod transactions;

pub use admin::TopicSpec;
pub use group::{GroupMember, PartitionOwner};
pub use options::KafkaOptions;

/// The rdkafka crate this backend is built on, for tools and benches that need a plain
/// Kafka client of the same version (and the same librdkafka build).
pub use rdkafka;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};

use crate::{AppendBatch, Appended, Capabilities, Error, EventLog, Offset, Result, StoredRecord};
use admin::check_topic_name;
use append::{MAX_COMMITTERS, new_producer};
use client::{Bounded, Ctx, LastError, lock};
use options::Role;
use reader::{MAX_READERS, Reader};
use transactions::TxnProducer;

/// An [`EventLog`] on a Kafka-protocol broker. See the [module docs](self).
pub struct KafkaLog {
    options: KafkaOptions,
    last_error: Arc<Mutex<Option<LastError>>>,
    producer: RwLock<Arc<ThreadedProducer<Ctx>>>,
    admin: Mutex<Option<Arc<AdminClient<Ctx>>>>,
    partitions: Mutex<HashMap<String, (u32, Instant)>>,
    /// The consumer every partition reader shares (created on the first read).
    reading: Mutex<Option<Arc<BaseConsumer<Ctx>>>>,
    readers: Mutex<Bounded<(String, i32), Mutex<Reader>>>,
    committers: Mutex<Bounded<String, BaseConsumer<Ctx>>>,
    /// Joined consumer groups: their positions are committed through the member.
    members: Arc<Mutex<HashMap<String, Arc<group::MemberConsumer>>>>,
    /// Transactional producers by (group, partition), with `transactions` on.
    txn_producers: Mutex<HashMap<(String, i32), TxnProducer>>,
    /// Transactions committed and aborted.
    txn_outcomes: [AtomicU64; 2],
    /// Per partition, one past the highest offset this client knows to exist (its own
    /// appends were acknowledged there, or the brokers reported that end): a floor for
    /// the end offset the brokers report (see [`KafkaLog::high_watermark`]), and where a
    /// reader knows it has records to wait for.
    known_ends: Mutex<HashMap<(String, i32), Offset>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("bootstrap_servers", &self.options.bootstrap_servers)
            .field("client_id", &self.options.client_id)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Checks the options, creates the producer and waits (up to `request_timeout`) until
    /// the brokers answer. An unreachable cluster is [`Error::Unavailable`] saying which
    /// servers were tried and why they failed.
    pub fn connect(options: KafkaOptions) -> Result<Self> {
        options::validate(&options)?;
        let last_error = Arc::new(Mutex::new(None));
        let producer = new_producer(&options, &last_error)?;
        let log = KafkaLog {
            options,
            last_error,
            producer: RwLock::new(Arc::new(producer)),
            admin: Mutex::new(None),
            partitions: Mutex::new(HashMap::new()),
            reading: Mutex::new(None),
            readers: Mutex::new(Bounded::new(MAX_READERS)),
            committers: Mutex::new(Bounded::new(MAX_COMMITTERS)),
            members: Arc::new(Mutex::new(HashMap::new())),
            txn_producers: Mutex::new(HashMap::new()),
            txn_outcomes: [AtomicU64::new(0), AtomicU64::new(0)],
            known_ends: Mutex::new(HashMap::new()),
        };
        log.probe()?;
        Ok(log)
    }

    /// The options this log was opened with.
    pub fn options(&self) -> &KafkaOptions {
        &self.options
    }

    /// Joins consumer group `group` subscribed to `topic` (cooperative-sticky assignment)
    /// and tells `owner` which partitions this process gains and loses; see
    /// [`GroupMember`]. While joined, positions appended for `group` are committed
    /// through the member, with the group's generation, so a member that was fenced
    /// out cannot move them. One membership per group per log.
    pub fn join_group(&self, group: &str, topic: &str, owner: Arc<dyn PartitionOwner>) -> Result<GroupMember> {
        check_topic_name(topic)?;
        self.partition_count(topic)?;
        if lock(&self.members).contains_key(group) {
            return Err(Error::InvalidRequest {
                reason: format!("this process already is a member of consumer group {group:?}; leave it first"),
            });
        }
        let mut config = options::config(&self.options, Role::Consumer, Some(group));
        config.set("partition.assignment.strategy", "cooperative-sticky");
        let (ctx, shared) = group::context(self.ctx(), topic, owner);
        let consumer: Arc<group::MemberConsumer> =
            Arc::new(BaseConsumer::from_config_and_context(&config, ctx).map_err(|e| self.config_error(&e))?);
        consumer
            .subscribe(&[topic])
            .map_err(|e| self.unreachable(&format!("joining consumer group {group:?} on {topic}"), &e))?;
        lock(&self.members).insert(group.to_owned(), consumer.clone());
        let members = self.members.clone();
        let name = group.to_owned();
        let on_leave = Box::new(move || {
            lock(&members).remove(&name);
        });
        group::spawn(group::Join { group: group.to_owned(), topic: topic.to_owned(), consumer, shared, on_leave })
            .map_err(|e| Error::Unavailable(format!("cannot start the consumer group thread: {e}")))
    }

    /// Waits until the brokers answer a metadata request.
    fn probe(&self) -> Result<()> {
        let deadline = Instant::now() + self.options.request_timeout;
        loop {
            let step = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            let err = match self.producer().client().fetch_metadata(None, step) {
                Ok(md) if !md.brokers().is_empty() => return Ok(()),
                Ok(_) => KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(self.unreachable("connecting", &err));
            }
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx { last_error: self.last_error.clone() }
    }

    fn config_error(&self, e: &KafkaError) -> Error {
        Error::InvalidRequest {
            reason: format!("librdkafka refused the Kafka client configuration: {e}; check the kafka.* properties"),
        }
    }

    /// The error for a failed request: unreachable brokers name the servers and
    /// librdkafka's reason, anything else says what was refused.
    fn unreachable(&self, what: &str, e: &KafkaError) -> Error {
        let servers = &self.options.bootstrap_servers;
        let code = e.rdkafka_error_code();
        if !client::is_unreachable(code) {
            return Error::Unavailable(format!("Kafka at {servers} refused {what}: {e}"));
        }
        let recent = self.options.request_timeout * 2 + Duration::from_secs(10);
        let (code, reason) = match lock(&self.last_error).clone() {
            Some(l) if l.at.elapsed() < recent => (l.code, l.reason),
            _ => (code.map_or_else(|| "Unknown".to_owned(), |c| format!("{c:?}")), e.to_string()),
        };
        Error::Unavailable(format!(
            "cannot reach Kafka at {servers} ({code}: {reason}) while {what}; check kafka.bootstrap.servers and that the broker is up"
        ))
    }
}

impl EventLog for KafkaLog {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        self.ensure_topic_with(topic, partitions)
    }

    fn partitions(&self, topic: &str) -> Result<u32> {
        self.partition_count(topic)
    }

    fn append(&self, batch: AppendBatch) -> Result<Vec<Appended>> {
        self.append_batch(batch)
    }

    fn read(&self, topic: &str, partition: i32, from: Offset, max: usize) -> Result<Vec<StoredRecord>> {
        self.read_partition(topic, partition, from, max)
    }

    fn end_offset(&self, topic: &str, partition: i32) -> Result<Offset> {
        self.check_partition(topic, partition)?;
        self.high_watermark(topic, partition)
    }

    fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<Offset>> {
        self.committed_position(group, topic, partition)
    }

    fn wait_for(&self, topic: &str, partition: i32, offset: Offset, timeout: Duration) -> Result<Offset> {
        let (_, ends) = self.wait_until(&[(topic, partition, offset)], timeout)?;
        Ok(ends[0])
    }

    fn wait_any(&self, positions: &[(&str, i32, Offset)], timeout: Duration) -> Result<bool> {
        Ok(self.wait_until(positions, timeout)?.0.is_some())
    }

    fn capabilities(&self) -> Capabilities {
        // With transactions a batch that carries positions is one transaction: its
        // records and positions commit together or not at all (`read_committed` readers).
        Capabilities { atomic_batches: self.options.transactions, compacts: true }
    }

    fn flush(&self) -> Result<()> {
        self.producer().flush(self.options.request_timeout).map_err(|e| self.unreachable("flushing the producer", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TLS and SASL (PLAIN, SCRAM) are compiled in: librdkafka accepts the settings and
    /// the failure is the unreachable broker, not the configuration.
    #[test]
    fn tls_and_sasl_settings_are_accepted() {
        for (protocol, mechanism) in
            [("SSL", None), ("SASL_SSL", Some("SCRAM-SHA-512")), ("SASL_PLAINTEXT", Some("PLAIN"))]
        {
            let mut o = KafkaOptions::new("127.0.0.1:1");
            o.request_timeout = Duration::from_millis(300);
            o.properties.insert("security.protocol".into(), protocol.into());
            if let Some(m) = mechanism {
                o.properties.insert("sasl.mechanism".into(), m.into());
                o.properties.insert("sasl.username".into(), "waybill".into());
                o.properties.insert("sasl.password".into(), "secret".into());
            }
            o.properties.insert("compression.type".into(), "gzip".into());
            let e = KafkaLog::connect(o).unwrap_err().to_string();
            assert!(e.contains("cannot reach Kafka at 127.0.0.1:1"), "{protocol}: {e}");
        }
    }

    #[test]
    fn connect_refuses_contract_breaking_properties_before_any_network() {
        let mut o = KafkaOptions::new("127.0.0.1:1");
        o.properties.insert("enable.idempotence".into(), "false".into());
        let e = KafkaLog::connect(o).unwrap_err().to_string();
        assert!(e.contains("enable.idempotence"), "{e}");
    }
}
