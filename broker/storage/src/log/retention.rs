//! Removing data: time and size retention, DeleteRecords, truncation.
//!
//! Each move of the log start or end offset also trims the leader epoch
//! cache, so it always describes exactly the offsets the log holds.
//!
//! Whole segments are the unit of deletion, as in Kafka: retention never
//! rewrites a segment, it only moves the log start offset and unlinks files.
//! The log start offset is persisted before files are removed, so a crash in
//! between never makes deleted records visible again.

use tracing::{info, warn};

use super::Log;
use crate::{
    error::StorageError,
    files::{sync_dir, write_log_start_offset},
    segment::Segment,
};

impl Log {
    /// DeleteRecords: moves the log start offset up to `offset` (clamped to
    /// the log end offset, never backwards), persists it and deletes the
    /// segments that lie wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, StorageError> {
        let target = offset.min(self.log_end_offset());
        if target > self.log_start_offset {
            self.set_log_start_offset(target)?;
        }
        self.delete_segments_below_start()?;
        Ok(self.log_start_offset)
    }

    /// Applies `retention_ms` (segments whose newest timestamp is older than
    /// `now_ms - retention_ms`) and `retention_bytes` (oldest segments while
    /// the rest still holds at least `retention_bytes`). An expired active
    /// segment is rolled first so it can go too. Returns the number of
    /// segments deleted.
    ///
    /// Does nothing unless the cleanup policy includes `delete`
    /// ([`crate::LogConfig::delete`]): a `compact`-only topic keeps every
    /// key's latest record forever.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        let mut deleted = 0;
        if !self.config.delete {
            return Ok(0);
        }
        let retention_ms = self.config.retention_ms;
        if retention_ms >= 0 {
            deleted += self.delete_oldest_while(|segment| {
                let newest = segment
                    .max_timestamp()
                    .map_or_else(|| segment.modified_ms(), |(ts, _)| ts);
                now_ms.saturating_sub(newest) > retention_ms
            })?;
        }
        let retention_bytes = self.config.retention_bytes;
        if retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - retention_bytes;
            deleted += self.delete_oldest_while(|segment| {
                let size = segment.size() as i64;
                if excess - size >= 0 {
                    excess -= size;
                    true
                } else {
                    false
                }
            })?;
        }
        Ok(deleted)
    }

    /// Rolls the active segment if it holds data and is older than `segment_ms`.
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<(), StorageError> {
        if self.active().size() > 0 && self.is_old(self.active(), now_ms) {
            self.roll()?;
        }
        Ok(())
    }

    /// Removes every batch at or after the one containing `offset`, so the
    /// log end offset becomes `offset` or, if `offset` falls inside a batch,
    /// that batch's base offset. In a gap that compaction left between
    /// batches it becomes `offset` too. Below the log start offset the log is
    /// emptied and restarted at `offset`
    /// ([`Log::truncate_fully_and_start_at`]).
    ///
    /// Leader epochs starting at or after the new log end offset are
    /// forgotten: a follower truncates to where its log diverged from the
    /// leader's, and the epochs it wrote past that point never happened.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let first_base = *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment");
        if offset < self.log_start_offset || offset <= first_base {
            return self.truncate_fully_and_start_at(offset);
        }
        while let Some(entry) = self.segments.last_entry() {
            if *entry.key() < offset {
                break;
            }
            entry.remove().delete()?;
        }
        let interval = self.config.index_interval_bytes;
        let index_bytes = self.config.segment_index_bytes;
        let active = self.active_mut();
        // In a gap left by compaction no batch holds `offset`.
        let in_gap = active
            .find_batch(offset)?
            .is_none_or(|(_, header, _)| header.base_offset > offset);
        active.truncate_to(offset, interval)?;
        active.activate(index_bytes)?;
        sync_dir(&self.dir)?;
        if in_gap && self.log_end_offset() < offset {
            // The log still ends at `offset`, as in Kafka, so offsets
            // consumers saw before compaction are never handed out again.
            self.roll_at(offset)?;
        }
        let end = self.log_end_offset();
        // Before moving the start offset, which may collapse an entry onto
        // the new end: that entry describes batches that are still there.
        self.epochs.truncate_from_end(end);
        if self.log_start_offset > end {
            // The start offset pointed into the batch just cut.
            self.set_log_start_offset(end)?;
        }
        self.clamp_first_dirty_offset()?;
        self.rebuild_producer_state()
    }

    /// Empties the log and restarts it at `offset` (>= 0), which becomes both
    /// its start and end offset, above or below the current ones (Kafka's
    /// `truncateFullyAndStartAt`). A follower does this when the leader no
    /// longer holds the offset it would fetch next because the leader's log
    /// start offset moved past it. Producer state and the leader epoch
    /// cache are cleared with the data they described.
    ///
    /// Segments are removed before the new start offset is persisted, so a
    /// crash in between leaves an empty log at the old start offset (or at
    /// `offset`), never old records at the new one.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        info!(dir = %self.dir.display(), offset, "truncating log fully");
        self.reset_at(offset)?;
        // Snapshots of the old log would describe offsets the new one reuses.
        self.delete_all_snapshots()?;
        // Directly: the start may move back, which is the point here.
        write_log_start_offset(&self.dir, offset)?;
        self.log_start_offset = offset;
        self.producers.clear();
        self.epochs.clear();
        self.clamp_first_dirty_offset()
    }

    /// Deletes all segments and starts an empty one at `offset`.
    pub(super) fn reset_at(&mut self, offset: i64) -> Result<(), StorageError> {
        while let Some((_, segment)) = self.segments.pop_first() {
            segment.delete()?;
        }
        let segment = Segment::create(&self.dir, offset, self.config.segment_index_bytes)?;
        self.segments.insert(offset, segment);
        sync_dir(&self.dir)
    }

    /// Deletes segments whose successor starts at or below the log start
    /// offset. The active segment always stays.
    pub(super) fn delete_segments_below_start(&mut self) -> Result<usize, StorageError> {
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let mut bases = self.segments.keys();
            let (_, second) = (bases.next(), *bases.next().expect("two segments"));
            if second > self.log_start_offset {
                break;
            }
            let (_, segment) = self.segments.pop_first().expect("two segments");
            segment.delete()?;
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }

    /// Deletes the oldest segments while `doomed` says so, rolling first if
    /// that includes the active segment, then moves the log start offset to
    /// the first remaining segment.
    fn delete_oldest_while(
        &mut self,
        mut doomed: impl FnMut(&Segment) -> bool,
    ) -> Result<usize, StorageError> {
        let count = self.segments.len();
        let mut victims = 0;
        for (i, segment) in self.segments.values().enumerate() {
            if (i + 1 == count && segment.size() == 0) || !doomed(segment) {
                break;
            }
            victims += 1;
        }
        if victims == 0 {
            return Ok(0);
        }
        if victims == count {
            self.roll()?;
        }
        for _ in 0..victims {
            let (_, segment) = self.segments.pop_first().expect("victims exist");
            info!(path = %segment.log_path().display(), "deleting segment for retention");
            segment.delete()?;
        }
        sync_dir(&self.dir)?;
        let first_base = *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment");
        if first_base > self.log_start_offset {
            self.set_log_start_offset(first_base)?;
        }
        Ok(victims)
    }

    /// Sets and persists the log start offset; leader epochs wholly below
    /// it collapse onto it.
    pub(super) fn set_log_start_offset(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset < self.log_start_offset {
            warn!(dir = %self.dir.display(), from = self.log_start_offset, to = offset, "log start offset moves back");
        }
        write_log_start_offset(&self.dir, offset)?;
        self.log_start_offset = offset;
        self.epochs.truncate_from_start(offset);
        Ok(())
    }
}
