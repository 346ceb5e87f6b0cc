//! The event log: Waybill's source of truth.
//!
//! [`EventLog`] is the one abstraction every component above it uses: append a batch of
//! records (topic, key, headers, bytes) atomically together with consumer positions; read
//! a partition from an offset; wait for new records. Partitions are chosen by the key's
//! murmur2 hash, as Kafka's Java client and librdkafka's `murmur2_random` do.
//!
//! Backends: [`embedded`] (the default: segment files on local disk) and `kafka`
//! (feature `kafka`: any Kafka-protocol broker through librdkafka). Every backend
//! passes the same conformance suite (`testing::conformance`, behind `test-util`).
//!
//! [`local`] opens a node's local stores (this log's directory and the sled databases
//! beside it) under one rule for a lock that is still being released.
//!
//! This crate must not know about Avro, sagas or projections: it moves bytes.

pub mod embedded;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod local;
#[cfg(feature = "test-util")]
pub mod testing;

use std::path::PathBuf;
use std::time::Duration;

/// Position of a record within a partition; the first record has offset 0.
pub type Offset = i64;

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name, e.g. `traceparent`.
    pub key: String,
    /// Header value.
    pub value: Vec<u8>,
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Destination topic; it must exist.
    pub topic: String,
    /// Explicit partition, or `None` to choose by the key's hash.
    pub partition: Option<i32>,
    /// Record key (for Waybill: the correlation key).
    pub key: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Payload (for Waybill: Confluent-framed Avro). Empty: a tombstone (on Kafka a null
    /// value, which a compacted topic's cleaner removes with its key; read back empty).
    pub value: Vec<u8>,
}

impl Record {
    /// A record routed by `key`.
    pub fn keyed(topic: impl Into<String>, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Record { topic: topic.into(), partition: None, key: key.into(), headers: Vec::new(), value: value.into() }
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header { key: key.into(), value: value.into() });
        self
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.key == key).map(|h| h.value.as_slice())
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: Offset,
    /// Append time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Key.
    pub key: Vec<u8>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Payload.
    pub value: Vec<u8>,
}

impl StoredRecord {
    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.key == key).map(|h| h.value.as_slice())
    }
}

/// A consumer group's position in one partition, stored with a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset the group will read.
    pub next_offset: Offset,
}

/// Records plus consumer positions to store together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendBatch {
    /// Records, appended in this order.
    pub records: Vec<Record>,
    /// Positions committed with them.
    pub positions: Vec<Position>,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: Offset,
}

/// What a backend guarantees beyond the trait's common contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Records and positions of one batch become visible together or not at all,
    /// across topics (the embedded log; Kafka only with transactions, for batches that
    /// carry positions).
    pub atomic_batches: bool,
    /// Topics created compacted keep the latest record of each key (Kafka's log
    /// cleaner, `cleanup.policy=compact`); the embedded log does not compact. A writer
    /// of a changelog need not rewrite it whole from time to time where this holds.
    pub compacts: bool,
}

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topic does not exist.
    #[error(
        "topic {topic:?} does not exist; create it first (`waybill topics apply`, or the embedded log creates Waybill's topics at start-up)"
    )]
    UnknownTopic {
        /// Topic.
        topic: String,
    },
    /// The partition does not exist.
    #[error("topic {topic:?} has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition asked for.
        partition: i32,
        /// Partitions the topic has.
        partitions: u32,
    },
    /// A topic exists with another partition count than asked for.
    #[error(
        "topic {topic:?} exists with {actual} partitions but {wanted} were asked for; co-partitioned topics must match (change `partitions` in the config back, or recreate the data directory)"
    )]
    PartitionMismatch {
        /// Topic.
        topic: String,
        /// Partitions asked for.
        wanted: u32,
        /// Partitions it has.
        actual: u32,
    },
    /// A read started beyond the end of the partition.
    #[error("offset {offset} is beyond the end ({end}) of {topic}/{partition}")]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset asked for.
        offset: Offset,
        /// The partition's end offset.
        end: Offset,
    },
    /// The on-disk log is damaged somewhere other than a torn final write.
    #[error(
        "embedded log file {path} is corrupt at byte {offset}: {reason}; restore the data directory from a backup, or move the file aside to start from the records before it"
    )]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Byte offset of the damaged frame.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The data directory is in use by another process.
    #[error(
        "embedded log directory {path} is locked by another process (is another `waybill` running with the same data directory?)"
    )]
    Locked {
        /// Directory.
        path: PathBuf,
    },
    /// An I/O error, with the file it concerned.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A request the backend cannot carry out as given (an illegal topic name, zero
    /// partitions, a batch too large to store).
    #[error("invalid event log request: {reason}")]
    InvalidRequest {
        /// What is wrong and what to do instead.
        reason: String,
    },
    /// The backend cannot be reached or refused the request.
    #[error("event log backend unavailable: {0}")]
    Unavailable(String),
    /// Another process took over the partition this append wrote for (Kafka
    /// transactions: its producer fenced this one). Stop working on the partition; do
    /// not retry.
    #[error("fenced: {reason}; another process owns the partition now, so this one stops working on it")]
    Fenced {
        /// What was fenced, and when.
        reason: String,
    },
    /// The log was closed.
    #[error("event log is closed")]
    Closed,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An append-only, partitioned event log.
///
/// Contract for every backend (checked by the conformance suite):
/// - records of one key keep their append order within their partition;
/// - `append` returns only once the batch is durable to the backend's policy, and a
///   reader never sees part of a batch;
/// - offsets within a partition start at 0 and have no gaps;
/// - positions stored with a batch are visible through [`EventLog::committed`];
/// - everything appended and acknowledged survives a restart, until the topic's
///   retention deletes it (Kafka's `retention.ms`; the embedded log's
///   [`embedded::TopicRetention`], which also waits for every reader that stores a
///   position).
pub trait EventLog: Send + Sync + std::fmt::Debug {
    /// Creates `topic` with `partitions` partitions if it does not exist. An existing
    /// topic with another partition count is [`Error::PartitionMismatch`].
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()>;

    /// Number of partitions of `topic`.
    fn partitions(&self, topic: &str) -> Result<u32>;

    /// Appends a batch; returns where each record landed, in order.
    fn append(&self, batch: AppendBatch) -> Result<Vec<Appended>>;

    /// Reads up to `max` records of one partition starting at `from`. Returns an empty
    /// vector at the end; `from` beyond the end is [`Error::OffsetOutOfRange`]. Records
    /// before `from` that retention deleted are skipped: the first record returned is
    /// then the first one kept (Kafka's `auto.offset.reset=earliest`), so a caller that
    /// wants one offset checks the offset it got.
    fn read(&self, topic: &str, partition: i32, from: Offset, max: usize) -> Result<Vec<StoredRecord>>;

    /// The offset the next record appended to the partition will get.
    fn end_offset(&self, topic: &str, partition: i32) -> Result<Offset>;

    /// The position stored for `group` in a partition, if any.
    fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<Offset>>;

    /// Blocks until the partition's end offset is greater than `offset` or `timeout`
    /// passes; returns the end offset.
    fn wait_for(&self, topic: &str, partition: i32, offset: Offset, timeout: Duration) -> Result<Offset>;

    /// Blocks until any of `positions` (topic, partition, offset) has a record at or
    /// beyond its offset, or `timeout` passes; returns whether one has. The default polls
    /// every few milliseconds; backends with a wake-up mechanism override it.
    fn wait_any(&self, positions: &[(&str, i32, Offset)], timeout: Duration) -> Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            for (t, p, o) in positions {
                if self.end_offset(t, *p)? > *o {
                    return Ok(true);
                }
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
    }

    /// What this backend guarantees beyond the common contract.
    fn capabilities(&self) -> Capabilities;

    /// Makes everything appended so far durable, whatever the fsync policy.
    fn flush(&self) -> Result<()>;
}

/// The partition of `key` in a topic with `partitions` partitions (Kafka's murmur2).
pub fn partition_for(key: &[u8], partitions: u32) -> i32 {
    waybill_domain::partition::partition_for(key, partitions) as i32
}
