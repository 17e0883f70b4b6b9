//! One partition replica hosted by this broker: its log, its group-commit
//! state and its metric handles.
//!
//! The log sits behind a `RwLock`: fetches read under the shared lock with
//! positional reads, so many consumers never wait on each other; produce
//! takes the exclusive lock only for the append itself.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicI64, Ordering},
        RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
};

use rivulet_storage::{config::LogConfig, AppendInfo, Log, ReadResult, StorageError};

use crate::metrics::PartitionMetrics;

/// A hosted partition.
pub struct Partition {
    /// Partition index within its topic.
    pub index: i32,
    log: RwLock<Log>,
    /// Serializes fsyncs so concurrent acks=all producers share one (group commit).
    flush_lock: tokio::sync::Mutex<()>,
    /// Every offset below this is known to be fsynced.
    flushed_to: AtomicI64,
    metrics: PartitionMetrics,
}

impl Partition {
    /// Opens (recovering if needed) the log in `dir`.
    pub fn open(
        index: i32,
        dir: &Path,
        config: LogConfig,
        metrics: PartitionMetrics,
    ) -> Result<Self, StorageError> {
        let log = Log::open(dir, config)?;
        let partition = Partition {
            index,
            flushed_to: AtomicI64::new(log.log_end_offset()),
            log: RwLock::new(log),
            flush_lock: tokio::sync::Mutex::new(()),
            metrics,
        };
        partition.update_gauges(&partition.read_log());
        Ok(partition)
    }

    /// Shared access to the log (reads).
    pub fn read_log(&self) -> RwLockReadGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written in
        // memory (every mutation is a single call), so poisoning is ignored.
        self.log.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Exclusive access to the log (appends, retention, config changes).
    pub fn write_log(&self) -> RwLockWriteGuard<'_, Log> {
        self.log.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends validated batches; `batches` is copied because offsets are
    /// rewritten in place and the request buffer is shared.
    pub fn append(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, StorageError> {
        let mut owned = batches.to_vec();
        let mut log = self.write_log();
        let info = log.append(&mut owned, 0, now_ms)?;
        self.update_gauges(&log);
        Ok(info)
    }

    /// Whole batches from `offset`, up to the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        let log = self.read_log();
        let hw = log.log_end_offset();
        log.read(offset, max_bytes, hw, min_one)
    }

    /// The high watermark: on a single broker every appended offset is committed.
    pub fn high_watermark(&self) -> i64 {
        self.read_log().log_end_offset()
    }

    /// Waits until everything up to `offset` (exclusive) is fsynced. One
    /// caller does the fsync while the others wait on the lock; when they get
    /// it their data is usually already covered and they return at once.
    pub async fn flush_to(&self, offset: i64) -> Result<(), StorageError> {
        if self.flushed_to.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _guard = self.flush_lock.lock().await;
        if self.flushed_to.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        // Only the handle is taken under the lock: appends continue during
        // the fsync, and the next waiter's fsync covers them all.
        let handle = self.read_log().sync_handle()?;
        let end = handle.end_offset();
        tokio::task::spawn_blocking(move || handle.sync())
            .await
            .expect("fsync does not panic")?;
        self.flushed_to.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Applies retention and time-based rolling; returns segments deleted.
    pub fn housekeeping(&self, now_ms: i64) -> Result<usize, StorageError> {
        let mut log = self.write_log();
        log.maybe_roll(now_ms)?;
        let deleted = log.apply_retention(now_ms)?;
        self.update_gauges(&log);
        Ok(deleted)
    }

    /// Compacts the log if its policy includes `compact` and enough of it is
    /// dirty. Only records below the high watermark decide what is removed.
    pub fn maybe_compact(
        &self,
        now_ms: i64,
    ) -> Result<Option<rivulet_storage::CompactionStats>, StorageError> {
        {
            let log = self.read_log();
            if !log.config().compact || !log.needs_compaction(now_ms) {
                return Ok(None);
            }
        }
        let mut log = self.write_log();
        let hw = log.log_end_offset();
        let stats = log.compact_below(now_ms, hw)?;
        self.update_gauges(&log);
        Ok(Some(stats))
    }

    /// Refreshes the per-partition gauges from the log.
    pub fn update_gauges(&self, log: &Log) {
        self.metrics.size.set(log.size_bytes() as i64);
        self.metrics.start_offset.set(log.log_start_offset());
        self.metrics.end_offset.set(log.log_end_offset());
        self.metrics.segments.set(log.segment_count() as i64);
    }

    /// Flushes and closes the log (clean shutdown).
    pub fn close(self) -> Result<(), StorageError> {
        self.log
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .close()
    }

    /// Removes the log from disk (topic deletion).
    pub fn delete(self) -> Result<(), StorageError> {
        self.log
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .delete()
    }
}
