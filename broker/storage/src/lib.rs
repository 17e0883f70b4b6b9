//! Rivulet's partition log: Kafka-format segments on local disk.
//!
//! A [`Log`] is one partition: a directory of segments named by base offset,
//! each a `.log` of RecordBatch v2 bytes stored exactly as produced plus a
//! sparse memory-mapped `.index` and `.timeindex`. The log assigns offsets,
//! enforces idempotent-producer sequences, rolls segments by size and age,
//! deletes old segments for retention and recovers from torn writes on open.
//!
//! Everything here is synchronous and knows nothing of the network: the
//! server wraps each log in a lock, appends with `&mut`, and serves fetches
//! through `&self`, which only does positional reads.

pub mod batch;
pub mod config;
pub mod error;
pub mod files;
mod index;
mod log;
pub mod producer;
mod scan;
mod segment;
#[cfg(test)]
mod test_util;

use bytes::Bytes;

pub use crate::{
    batch::{BatchError, BatchHeader},
    config::LogConfig,
    error::StorageError,
    log::Log,
};

/// Outcome of [`Log::append`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record (the original one for a duplicate).
    pub first_offset: i64,
    /// Offset assigned to the last record (the original one for a duplicate).
    pub last_offset: i64,
    /// Largest batch max timestamp appended, -1 if none (or a duplicate).
    pub max_timestamp: i64,
    /// Base offset of the batch holding `max_timestamp`, -1 if none.
    pub offset_of_max_timestamp: i64,
    /// True when the batches were a producer retry and were not appended.
    pub duplicate: bool,
    /// Broker time stamped on LogAppendTime topics; -1 (not implemented yet).
    pub log_append_time: i64,
}

/// Outcome of [`Log::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, as stored; empty when nothing qualifies.
    pub bytes: Bytes,
    /// Log start offset when the read was served.
    pub log_start_offset: i64,
    /// Log end offset when the read was served.
    pub log_end_offset: i64,
}
