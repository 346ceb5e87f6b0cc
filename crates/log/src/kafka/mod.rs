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
//! - `read` uses one assigned (never subscribed) consumer per partition, kept with the
//!   offset it will deliver next, so sequential reads stream without seeking.
//!   `isolation.level=read_committed`; nothing is ever auto-committed.
//! - `end_offset` is the partition's high watermark; `wait_for`/`wait_any` poll it with a
//!   short back-off.
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

mod client;
mod group;

pub use group::{GroupMember, PartitionOwner};

/// The rdkafka crate this backend is built on, for tools and benches that need a plain
/// Kafka client of the same version (and the same librdkafka build).
pub use rdkafka;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};

use crate::{
    AppendBatch, Appended, Capabilities, Error, EventLog, Header, Offset, Result, StoredRecord, partition_for,
};
use client::{Bounded, Ctx, LastError, Pending, Role, Ticket, block_on, lock};

/// How long a partition count learnt from the brokers is reused.
const PARTITIONS_TTL: Duration = Duration::from_secs(10);
/// Most partition readers kept open (each is a librdkafka client with its own threads).
const MAX_READERS: usize = 64;
/// Most consumer-group committers kept open.
const MAX_COMMITTERS: usize = 32;
/// Records each partition reader keeps for re-reads (the coordinator re-reads the part of
/// a batch it left for its next turn).
const RECENT_RECORDS: usize = 2048;
/// Longest pause between two looks at the end offsets in `wait_for`/`wait_any`.
const MAX_WAIT_STEP: Duration = Duration::from_millis(50);

/// Options of [`KafkaLog::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// The brokers to bootstrap from, `host:port` separated by commas
    /// (librdkafka's `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// The client id the brokers see in their logs and quotas. Default: `waybill`.
    pub client_id: String,
    /// Any librdkafka configuration property (`security.protocol`, `sasl.mechanism`,
    /// `ssl.ca.location`, `socket.timeout.ms`, `message.timeout.ms`, ...). A key prefixed
    /// with `producer.` or `consumer.` (or `admin.`) applies only to that kind of client.
    /// Keys Waybill manages (`bootstrap.servers`, `client.id`, `group.id`, ...) and values
    /// that would break the contract (`enable.idempotence=false`, `acks=1`,
    /// `isolation.level=read_uncommitted`, ...) are refused by [`KafkaLog::connect`].
    pub properties: BTreeMap<String, String>,
    /// How long a single request (metadata, offsets, topic creation, commit) may take,
    /// and how long `connect` waits for the brokers. Default: 30 s. Deliveries of
    /// appended records are bounded by librdkafka's `message.timeout.ms` instead.
    pub request_timeout: Duration,
    /// Replication factor of the topics `ensure_topic` creates. Default: 1; use 3 on a
    /// production cluster.
    pub replication_factor: i32,
    /// Append batches that carry consumer positions as Kafka transactions: the records
    /// and the positions (`send_offsets_to_transaction`) commit together or not at all,
    /// one transactional producer per (group, partition) so a new owner of a partition
    /// fences the old one. Needs a broker with transactions
    /// ([`KafkaLog::verify_transactions`] checks). Default: off.
    pub transactions: bool,
}

impl KafkaOptions {
    /// Options with the defaults for the given brokers.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaOptions {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: "waybill".to_owned(),
            properties: BTreeMap::new(),
            request_timeout: Duration::from_secs(30),
            replication_factor: 1,
            transactions: false,
        }
    }
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions::new("localhost:9092")
    }
}

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

/// The transactional producer of one (group, partition); one transaction at a time.
type TxnProducer = Arc<Mutex<ThreadedProducer<Ctx>>>;

/// A consumer assigned to one partition and where it stands.
struct Reader {
    consumer: BaseConsumer<Ctx>,
    /// The offset the consumer delivers next, if it was positioned.
    next: Option<Offset>,
    /// The last end offset seen; reads below it need no round trip to check the range.
    end: Offset,
    /// The last records delivered (at most [`RECENT_RECORDS`], contiguous up to `next`),
    /// so that a re-read of them needs no repositioning.
    recent: VecDeque<StoredRecord>,
}

/// An [`EventLog`] on a Kafka-protocol broker. See the [module docs](self).
pub struct KafkaLog {
    options: KafkaOptions,
    last_error: Arc<Mutex<Option<LastError>>>,
    producer: RwLock<Arc<ThreadedProducer<Ctx>>>,
    admin: Mutex<Option<Arc<AdminClient<Ctx>>>>,
    partitions: Mutex<HashMap<String, (u32, Instant)>>,
    readers: Mutex<Bounded<(String, i32), Mutex<Reader>>>,
    committers: Mutex<Bounded<String, BaseConsumer<Ctx>>>,
    /// Joined consumer groups: their positions are committed through the member.
    members: Arc<Mutex<HashMap<String, Arc<group::MemberConsumer>>>>,
    /// Transactional producers by (group, partition), with `transactions` on.
    txn_producers: Mutex<HashMap<(String, i32), TxnProducer>>,
    /// Transactions committed and aborted.
    txn_outcomes: [AtomicU64; 2],
    /// Per partition, one past the highest offset this client's appends were acknowledged
    /// at: a floor for the end offset the brokers report (see [`KafkaLog::high_watermark`]).
    acknowledged: Mutex<HashMap<(String, i32), Offset>>,
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
        client::validate(&options)?;
        let last_error = Arc::new(Mutex::new(None));
        let producer = new_producer(&options, &last_error)?;
        let log = KafkaLog {
            options,
            last_error,
            producer: RwLock::new(Arc::new(producer)),
            admin: Mutex::new(None),
            partitions: Mutex::new(HashMap::new()),
            readers: Mutex::new(Bounded::new(MAX_READERS)),
            committers: Mutex::new(Bounded::new(MAX_COMMITTERS)),
            members: Arc::new(Mutex::new(HashMap::new())),
            txn_producers: Mutex::new(HashMap::new()),
            txn_outcomes: [AtomicU64::new(0), AtomicU64::new(0)],
            acknowledged: Mutex::new(HashMap::new()),
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
        let mut config = client::config(&self.options, Role::Consumer, Some(group));
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
    fn new_transactional_producer(&self, id: &str) -> Result<ThreadedProducer<Ctx>> {
        let mut config = client::config(&self.options, Role::Producer, None);
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
    fn txn_producer(&self, group: &str, partition: i32) -> Result<TxnProducer> {
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
    fn append_transactional(
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

    fn producer(&self) -> Arc<ThreadedProducer<Ctx>> {
        self.producer.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn ctx(&self) -> Ctx {
        Ctx { last_error: self.last_error.clone() }
    }

    /// A producer that hit a fatal error (the idempotent producer's sequence broke) can
    /// send nothing more: replace it so the next append starts afresh.
    fn renew_producer_if_fatal(&self, current: &Arc<ThreadedProducer<Ctx>>) {
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

    fn admin(&self) -> Result<Arc<AdminClient<Ctx>>> {
        let mut admin = lock(&self.admin);
        if let Some(a) = &*admin {
            return Ok(a.clone());
        }
        let config = client::config(&self.options, Role::Admin, None);
        let a = Arc::new(AdminClient::from_config_and_context(&config, self.ctx()).map_err(|e| self.config_error(&e))?);
        *admin = Some(a.clone());
        Ok(a)
    }

    /// A consumer of `group` for committing and fetching its positions.
    fn committer(&self, group: &str) -> Result<Arc<BaseConsumer<Ctx>>> {
        lock(&self.committers).get_or_try(&group.to_owned(), || {
            let config = client::config(&self.options, Role::Consumer, Some(group));
            BaseConsumer::from_config_and_context(&config, self.ctx()).map_err(|e| self.config_error(&e))
        })
    }

    fn reader(&self, topic: &str, partition: i32) -> Result<Arc<Mutex<Reader>>> {
        lock(&self.readers).get_or_try(&(topic.to_owned(), partition), || {
            // Readers are assigned, never subscribed, and commit nothing; librdkafka still
            // wants a group id for a consumer that is assigned partitions.
            let group = format!("{}.reader", self.options.client_id);
            let config = client::config(&self.options, Role::Consumer, Some(&group));
            let consumer =
                BaseConsumer::from_config_and_context(&config, self.ctx()).map_err(|e| self.config_error(&e))?;
            Ok(Mutex::new(Reader { consumer, next: None, end: 0, recent: VecDeque::new() }))
        })
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

    /// The partition count of `topic` as the brokers report it, `None` if it does not
    /// exist. `Err` if the brokers cannot be asked or the topic is not ready (no leader).
    fn fetch_partition_count(&self, topic: &str) -> Result<Option<u32>> {
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

    fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some((n, at)) = lock(&self.partitions).get(topic)
            && at.elapsed() < PARTITIONS_TTL
        {
            return Ok(*n);
        }
        self.fetch_partition_count(topic)?.ok_or_else(|| Error::UnknownTopic { topic: topic.to_owned() })
    }

    fn check_partition(&self, topic: &str, partition: i32) -> Result<u32> {
        let partitions = self.partition_count(topic)?;
        if partition < 0 || partition as u32 >= partitions {
            return Err(Error::UnknownPartition { topic: topic.to_owned(), partition, partitions });
        }
        Ok(partitions)
    }

    /// The high watermark (end offset) of a partition known to exist.
    ///
    /// Never below one past the last offset this client's own appends were acknowledged
    /// at: with `acks=all` an acknowledged record is below the high watermark, so this only
    /// matters for a broker that answers `ListOffsets(latest)` wrongly — Tansu 0.6.0's
    /// in-memory storage returns the base offset of the partition's newest record batch
    /// plus one, which hides all but the first record of a multi-record batch until the
    /// next batch arrives.
    fn high_watermark(&self, topic: &str, partition: i32) -> Result<Offset> {
        match self.producer().client().fetch_watermarks(topic, partition, self.options.request_timeout) {
            Ok((_, high)) => {
                let acknowledged = lock(&self.acknowledged).get(&(topic.to_owned(), partition)).copied();
                Ok(acknowledged.map_or(high, |a| high.max(a)))
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
                lock(&self.acknowledged).retain(|(t, _), _| t != topic);
                Err(Error::UnknownTopic { topic: topic.to_owned() })
            }
            Err(e) => Err(self.unreachable(&format!("fetching the end offset of {topic}/{partition}"), &e)),
        }
    }

    /// Commits the positions of a batch, one request per group.
    fn commit_positions(&self, positions: &[crate::Position]) -> Result<()> {
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

    /// Waits until one of `positions` has a record at or beyond its offset; returns the
    /// index of that position and its end offset, or `None` at the timeout.
    fn wait_until(&self, positions: &[(&str, i32, Offset)], timeout: Duration) -> Result<(Option<usize>, Vec<Offset>)> {
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

/// Hands every record to `producer` in order (waiting while its local queue is full),
/// each with a ticket for its delivery report. A record librdkafka refuses settles it and
/// every later one with that error and sends nothing more; what was sent is reported by
/// the producer's deliveries.
/// Returns the tickets and the refusal, if any.
fn send_batch(
    producer: &ThreadedProducer<Ctx>,
    records: &[crate::Record],
    targets: &[i32],
) -> (Arc<Pending>, Option<KafkaError>) {
    let pending = Pending::new(records.len());
    for (i, (r, &p)) in records.iter().zip(targets).enumerate() {
        let ticket = Box::new(Ticket { batch: pending.clone(), index: i });
        let mut rec = BaseRecord::with_opaque_to(&r.topic, ticket).partition(p).key(&r.key).payload(&r.value);
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

fn new_producer(options: &KafkaOptions, last_error: &Arc<Mutex<Option<LastError>>>) -> Result<ThreadedProducer<Ctx>> {
    let config = client::config(options, Role::Producer, None);
    ThreadedProducer::from_config_and_context(&config, Ctx { last_error: last_error.clone() }).map_err(|e| {
        Error::InvalidRequest {
            reason: format!("librdkafka refused the Kafka producer configuration: {e}; check the kafka.* properties"),
        }
    })
}

/// Kafka's rule for topic names.
fn check_topic_name(topic: &str) -> Result<()> {
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

impl EventLog for KafkaLog {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
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

    fn partitions(&self, topic: &str) -> Result<u32> {
        self.partition_count(topic)
    }

    fn append(&self, batch: AppendBatch) -> Result<Vec<Appended>> {
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
            let mut acknowledged = lock(&self.acknowledged);
            for (r, a) in records.iter().zip(&appended) {
                if a.offset >= 0 {
                    let end = acknowledged.entry((r.topic.clone(), a.partition)).or_insert(0);
                    *end = (*end).max(a.offset + 1);
                }
            }
            drop(acknowledged);
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

    fn read(&self, topic: &str, partition: i32, from: Offset, max: usize) -> Result<Vec<StoredRecord>> {
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

    fn end_offset(&self, topic: &str, partition: i32) -> Result<Offset> {
        self.check_partition(topic, partition)?;
        self.high_watermark(topic, partition)
    }

    fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<Offset>> {
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
        Capabilities { atomic_batches: self.options.transactions }
    }

    fn flush(&self) -> Result<()> {
        self.producer().flush(self.options.request_timeout).map_err(|e| self.unreachable("flushing the producer", &e))
    }
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
