//! Errors of the projection store and its runner.

use std::path::PathBuf;

/// Errors of the projection store and the projector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sled database could not be opened.
    #[error(
        "cannot open the projection store at {path}: {source}; check that the directory is writable and that no other waybill process uses it"
    )]
    Open {
        /// Directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: sled::Error,
    },
    /// sled failed while reading or writing.
    #[error(
        "projection store failed while {action}: {source}; check disk space and permissions, or delete the projection directory and rebuild it from the log"
    )]
    Storage {
        /// What the store was doing, with the key.
        action: String,
        /// The error.
        #[source]
        source: sled::Error,
    },
    /// A stored value could not be decoded.
    #[error(
        "projection value under key {key} cannot be read: {reason}; the store is damaged or was written by another Waybill version: rebuild the projections from the log"
    )]
    Corrupt {
        /// The key, with NUL separators shown as `|`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The store was written with another key layout.
    #[error(
        "projection store has layout {found:?} but this build reads and writes layout {expected:?}; rebuild the projections from the log (delete the projection directory, or run a rebuild)"
    )]
    Layout {
        /// Layout found in the store.
        found: String,
        /// Layout of this build.
        expected: String,
    },
    /// The event log failed.
    #[error("event log failed on {topic}/{partition}: {source}")]
    Log {
        /// Topic.
        topic: String,
        /// Partition (-1 when the call concerned the whole topic).
        partition: i32,
        /// The error.
        #[source]
        source: waybill_log::Error,
    },
    /// The store has applied more of a partition than the log holds.
    #[error(
        "projection checkpoint for {topic}/{partition} is at offset {checkpoint} but the log ends at {end}; the log was reset or truncated behind the projections: rebuild them from the log"
    )]
    CheckpointBeyondEnd {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Next offset the store would apply.
        checkpoint: i64,
        /// The partition's end offset.
        end: i64,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn storage(action: impl Into<String>, source: sled::Error) -> Self {
        Error::Storage { action: action.into(), source }
    }

    pub(crate) fn log(topic: &str, partition: i32, source: waybill_log::Error) -> Self {
        Error::Log { topic: topic.to_string(), partition, source }
    }
}
