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
//!
//! Format decisions where Kafka leaves room:
//! - an `.index` entry maps a batch's *base* offset to its position (Kafka
//!   maps the last offset); both make the floor lookup land on a batch start,
//!   and the base offset lands on the exact batch for any offset inside it;
//! - the `.timeindex` is as sparse as the offset index (an entry at most per
//!   `index_interval_bytes`, when the max timestamp grew) plus a final entry
//!   on roll/close, so its size tracks the log's, not the batch count;
//! - "offset of max timestamp" is the base offset of the batch holding it;
//!   the server decodes that batch to find the exact record;
//! - rolled segments are fsynced at roll time, so after a crash only the
//!   active segment needs a CRC scan; the clean-shutdown marker skips even
//!   that (only the last batch is checked);
//! - producer state and the leader epoch cache are restored on open from
//!   the newest `<offset>.snapshot` (written at segment roll and clean
//!   close, epoch cache included) plus the batches after it; without a
//!   usable snapshot they are rebuilt from every batch header.
//!
//! Followers append batches fetched from the leader with
//! [`Log::append_replicated`], which keeps the leader's offsets and epochs;
//! [`Log::end_offset_for_epoch`] answers OffsetsForLeaderEpoch.
//!
//! Compaction (`cleanup.policy=compact`, see [`Log::compact`]) is the one
//! place that reads records: it rewrites closed segments keeping the
//! latest record per key, with offsets unchanged, and swaps them in through
//! `.cleaned` and `.swap` files that recovery understands. A compacted
//! batch keeps its base offset and `lastOffsetDelta` but holds fewer
//! records (possibly none), so stored batches may have `recordsCount <
//! lastOffsetDelta + 1`; produced batches never may.

/// RecordBatch v2 headers: the on-disk format is the wire format.
pub use rivulet_wire::batch;
#[cfg(test)]
mod batch_tests;
mod cleaner;
pub mod config;
mod epochs;
pub mod error;
pub mod faults;
pub mod files;
mod index;
mod log;
pub mod producer;
mod records;
pub mod rewrite;
mod scan;
mod segment;
mod snapshot;
#[cfg(test)]
mod test_util;
pub mod txn;
mod writeback;

use bytes::Bytes;

pub use crate::{
    batch::{BatchError, BatchHeader},
    config::LogConfig,
    error::StorageError,
    log::{Log, SyncHandle},
};

/// Outcome of [`Log::append`] and [`Log::append_replicated`].
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

impl AppendInfo {
    /// Takes `header`'s max timestamp if it is the largest so far.
    pub(crate) fn note_max_timestamp(&mut self, header: &BatchHeader) {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
    }
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

/// Outcome of [`Log::compact`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Closed segments that were rewritten (several may become one).
    pub segments_cleaned: usize,
    /// Records removed: superseded values and expired tombstones.
    pub records_removed: u64,
    /// Bytes of the rewritten segments before the run.
    pub bytes_before: u64,
    /// Bytes of the segments that replaced them.
    pub bytes_after: u64,
}
