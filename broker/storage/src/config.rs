//! Per-partition log configuration.
//!
//! Field names mirror Kafka's topic configs (`segment.bytes`, `segment.ms`,
//! `retention.ms`, ...) so operators can carry their settings over; the
//! server maps the Kafka config keys onto this struct.
//!
//! `cleanup.policy` is two flags, [`LogConfig::delete`] and
//! [`LogConfig::compact`], because Kafka allows `compact,delete`: both
//! compaction and retention.

use crate::error::StorageError;

/// Tuning of one partition log. Every field documents its default and its
/// smallest accepted value; [`LogConfig::validate`] enforces the minimums.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this
    /// size. Default 1 GiB; minimum 14 (Kafka's); maximum `i32::MAX` because
    /// index entries store 32-bit file positions.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first append is this
    /// old, so time retention can delete it. Default 7 days; minimum 1.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest timestamp is older than
    /// this. Default 7 days; -1 means unlimited; minimum -1.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger
    /// than this. Default -1 (unlimited); minimum -1.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: log bytes between two sparse index entries.
    /// Default 4096; minimum 0 (an entry for every batch).
    pub index_interval_bytes: usize,
    /// `segment.index.bytes`: size the offset and time indexes are
    /// preallocated to while their segment is active; a full index rolls the
    /// segment. Default 10 MiB; minimum 12 (one time-index entry).
    pub segment_index_bytes: usize,
    /// `flush.messages`: fsync after this many records have been appended
    /// since the last fsync. Default `u64::MAX` (never by count); minimum 1.
    pub flush_messages: u64,
    /// `flush.ms`: fsync when the last fsync is at least this old (checked
    /// on append and by [`crate::Log::maybe_flush`]). Default `u64::MAX`
    /// (never by time); minimum 0.
    pub flush_ms: u64,
    /// `cleanup.policy` contains `delete`: `retention_ms` and
    /// `retention_bytes` remove old segments. Default true; policy
    /// `compact` alone sets it false, so a compacted topic keeps every key.
    pub delete: bool,
    /// `cleanup.policy` contains `compact`: [`crate::Log::compact`] keeps
    /// only the latest record per key in closed segments. Default false.
    pub compact: bool,
    /// `delete.retention.ms`: how long a tombstone (a record with a null
    /// value) survives once compaction has first kept it, so consumers that
    /// are behind still see the delete. Default 1 day; minimum 0.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records newer than this are never
    /// compacted; a segment whose newest timestamp is younger stays as it
    /// is, and so do all segments after it. Default 0; minimum 0.
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compaction is worth running once this
    /// share of the closed segments' bytes has not been compacted yet (see
    /// [`crate::Log::needs_compaction`]). Default 0.5; between 0 and 1.
    pub min_cleanable_dirty_ratio: f64,
}

// Kept from before the ratio existed, so callers comparing configs still
// can: `validate` rejects NaN, the only value that is not equal to itself.
impl Eq for LogConfig {}

/// Seven days in milliseconds, Kafka's default for segment age and retention.
const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// One day in milliseconds, Kafka's default `delete.retention.ms`.
const ONE_DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: SEVEN_DAYS_MS,
            retention_ms: SEVEN_DAYS_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 << 20,
            flush_messages: u64::MAX,
            flush_ms: u64::MAX,
            delete: true,
            compact: false,
            delete_retention_ms: ONE_DAY_MS,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

impl LogConfig {
    /// Checks every field against its documented minimum (and maximum).
    pub fn validate(&self) -> Result<(), StorageError> {
        let fail = |field: &'static str, reason: &'static str| {
            Err(StorageError::InvalidConfig { field, reason })
        };
        if self.segment_bytes < 14 || self.segment_bytes > i32::MAX as u64 {
            return fail("segment_bytes", "must be between 14 and 2147483647");
        }
        if self.segment_ms < 1 {
            return fail("segment_ms", "must be at least 1");
        }
        if self.retention_ms < -1 {
            return fail("retention_ms", "must be -1 (unlimited) or at least 0");
        }
        if self.retention_bytes < -1 {
            return fail("retention_bytes", "must be -1 (unlimited) or at least 0");
        }
        if self.segment_index_bytes < 12 {
            return fail("segment_index_bytes", "must be at least 12");
        }
        if self.flush_messages < 1 {
            return fail("flush_messages", "must be at least 1");
        }
        if self.delete_retention_ms < 0 {
            return fail("delete_retention_ms", "must be at least 0");
        }
        if self.min_compaction_lag_ms < 0 {
            return fail("min_compaction_lag_ms", "must be at least 0");
        }
        // Written so that NaN fails too.
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return fail("min_cleanable_dirty_ratio", "must be between 0 and 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kafka() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1_073_741_824);
        assert_eq!(c.segment_ms, 604_800_000);
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.index_interval_bytes, 4096);
        assert_eq!(c.segment_index_bytes, 10_485_760);
        assert!(c.delete && !c.compact);
        assert_eq!(c.delete_retention_ms, 86_400_000);
        assert_eq!(c.min_compaction_lag_ms, 0);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.5);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn minimums_are_enforced() {
        let bad = [
            LogConfig {
                segment_bytes: 13,
                ..LogConfig::default()
            },
            LogConfig {
                segment_ms: 0,
                ..LogConfig::default()
            },
            LogConfig {
                retention_ms: -2,
                ..LogConfig::default()
            },
            LogConfig {
                segment_index_bytes: 11,
                ..LogConfig::default()
            },
            LogConfig {
                flush_messages: 0,
                ..LogConfig::default()
            },
            LogConfig {
                delete_retention_ms: -1,
                ..LogConfig::default()
            },
            LogConfig {
                min_compaction_lag_ms: -1,
                ..LogConfig::default()
            },
            LogConfig {
                min_cleanable_dirty_ratio: 1.5,
                ..LogConfig::default()
            },
            LogConfig {
                min_cleanable_dirty_ratio: f64::NAN,
                ..LogConfig::default()
            },
        ];
        for c in bad {
            assert!(matches!(
                c.validate(),
                Err(StorageError::InvalidConfig { .. })
            ));
        }
    }
}
