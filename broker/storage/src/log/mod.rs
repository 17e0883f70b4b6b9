//! The partition log: an ordered set of segments, the last one active.
//!
//! This file holds opening (with recovery), appending, rolling and flushing;
//! `read.rs` serves fetches and lookups through `&self`, `retention.rs`
//! removes data (retention, DeleteRecords, truncation), `compact.rs` keeps
//! the latest record per key (log compaction), `replica.rs` appends batches
//! fetched from the leader and answers leader epoch queries, `snapshots.rs`
//! snapshots producer state and the epoch cache and restores them on open,
//! `txn.rs` appends transaction markers and answers the last stable offset
//! and aborted-transaction queries.

mod compact;
#[cfg(test)]
mod compact_crash_tests;
#[cfg(test)]
mod compact_tests;
#[cfg(test)]
mod epoch_tests;
#[cfg(test)]
mod fault_tests;
mod read;
#[cfg(test)]
mod recovery_tests;
mod replica;
#[cfg(test)]
mod replica_tests;
mod retention;
#[cfg(test)]
mod snapshot_bench;
#[cfg(test)]
mod snapshot_tests;
mod snapshots;
#[cfg(test)]
mod tests;
mod txn;
#[cfg(test)]
mod txn_tests;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use tracing::{debug, info, warn};

use crate::{
    batch::{check_header, set_base_offset_and_epoch, BatchHeader},
    config::LogConfig,
    epochs::LeaderEpochCache,
    error::StorageError,
    files::{
        is_leftover, parse_segment_file_name, read_cleaner_checkpoint, read_log_start_offset,
        remove_file, sync_dir, write_atomically, CleanerCheckpoint, CLEAN_SHUTDOWN_FILE, LOG_EXT,
        SNAPSHOT_EXT,
    },
    producer::{ProducerAppend, ProducerStateManager, SequenceCheck},
    segment::{OpenMode, Segment},
    AppendInfo,
};

/// One partition's log. See the crate docs for the model.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Segments by base offset; the last is the active one. Never empty.
    segments: BTreeMap<i64, Segment>,
    /// First offset visible to readers; persisted in `log-start-offset`.
    log_start_offset: i64,
    /// Idempotent producers' recent batches and open transactions;
    /// snapshotted at rolls and on close, restored on open (`snapshots.rs`).
    producers: ProducerStateManager,
    /// First offset of each leader epoch, for OffsetsForLeaderEpoch; kept
    /// in the same snapshots.
    epochs: LeaderEpochCache,
    /// Records appended since the last fsync, for `flush_messages`.
    unflushed_messages: u64,
    /// Time of the first append since the last fsync, for `flush_ms`.
    first_unflushed_ms: Option<i64>,
    /// Compaction progress, persisted in `cleaner-offset-checkpoint`, so
    /// the broker can tell from the dirty ratio when to compact again.
    cleaner: CleanerCheckpoint,
    /// Where a test wants compaction to stop as if the process died.
    #[cfg(test)]
    crash_point: Option<compact::CrashPoint>,
    /// The snapshot open restored state from and the batch headers it read.
    #[cfg(test)]
    restored_from: (Option<i64>, u64),
}

impl Log {
    /// Opens or creates the partition directory `dir` and recovers it.
    ///
    /// Recovery: an interrupted compaction swap (a `.swap` file) is
    /// completed; leftover `.deleted`/`.cleaned`/`.tmp` files and indexes
    /// without a log are removed; every segment's indexes are checked and
    /// rebuilt if missing or inconsistent; the active segment is CRC-checked
    /// batch by batch and cut at the first torn or corrupt batch unless the
    /// previous close was clean (then only its last batch is checked); the
    /// log start offset is read back; producer state and the leader epoch
    /// cache are restored from the newest usable snapshot and the batch
    /// headers after it (all of them if there is none; `snapshots.rs`).
    ///
    /// The epoch cache needs no file of its own: the snapshot holds it up
    /// to its offset, the epoch stamped in each later batch header says the
    /// rest, the walk runs after recovery cut any torn tail (snapshots above
    /// the recovered end are deleted, and no entry can point past it), and
    /// compaction keeps the batch holding each epoch's start
    /// ([`Log::compact_below`]). As when Kafka loads its checkpoint, entries
    /// are then trimmed to the log start and end offsets; one that started
    /// at the log end offset (the start offset moved up to the end) is not
    /// kept.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log, StorageError> {
        config.validate()?;
        fs::create_dir_all(dir).map_err(StorageError::create_dir(dir))?;
        let bases = list_segments(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        let (interval, index_bytes) = (config.index_interval_bytes, config.segment_index_bytes);
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let mode = match (i + 1 == bases.len(), clean) {
                (false, _) => OpenMode::Sealed,
                (true, true) => OpenMode::CleanActive,
                (true, false) => OpenMode::Recover,
            };
            segments.insert(base, Segment::open(dir, base, mode, interval, index_bytes)?);
        }
        let persisted_start = read_log_start_offset(dir)?;
        if segments.is_empty() {
            let base = persisted_start.unwrap_or(0);
            segments.insert(base, Segment::create(dir, base, index_bytes)?);
            sync_dir(dir)?;
        }
        let first_base = *segments.keys().next().expect("at least one segment");
        let cleaner = read_cleaner_checkpoint(dir)?.unwrap_or(CleanerCheckpoint {
            first_dirty_offset: first_base,
            next_delete_horizon: None,
        });
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: first_base,
            producers: ProducerStateManager::new(),
            epochs: LeaderEpochCache::default(),
            unflushed_messages: 0,
            first_unflushed_ms: None,
            cleaner,
            #[cfg(test)]
            crash_point: None,
            #[cfg(test)]
            restored_from: (None, 0),
        };
        let start = persisted_start.unwrap_or(first_base).max(first_base);
        if start > log.log_end_offset() {
            // Recovery cut below a DeleteRecords point: records below the
            // start offset must stay invisible, so start empty there.
            warn!(dir = %dir.display(), start, end = log.log_end_offset(), "log start offset beyond recovered end");
            log.reset_at(start)?;
            log.delete_all_snapshots()?;
        }
        log.log_start_offset = start;
        log.delete_segments_below_start()?;
        log.clamp_first_dirty_offset()?;
        let (snapshot, walked) = log.restore_batch_state()?;
        #[cfg(test)]
        {
            log.restored_from = (snapshot, walked);
        }
        if clean {
            // From now on a crash must trigger full recovery again.
            remove_file(&marker)?;
            sync_dir(dir)?;
        }
        info!(
            dir = %dir.display(),
            segments = log.segments.len(),
            start = log.log_start_offset,
            end = log.log_end_offset(),
            clean,
            snapshot,
            walked,
            "opened log"
        );
        Ok(log)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration (topic config change). Index sizes apply
    /// to segments created from now on.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// First offset readers may fetch.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Total bytes of all segment `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Forgets producers idle since before `cutoff_ms` with no open
    /// transaction (`producer.id.expiration.ms`); how many were forgotten.
    pub fn expire_producers(&mut self, cutoff_ms: i64) -> usize {
        self.producers.remove_expired(cutoff_ms)
    }

    /// Producer state: idempotent sequences and open transactions.
    pub fn producers(&self) -> &ProducerStateManager {
        &self.producers
    }

    /// Appends whole, already validated batches (as [`crate::batch::validate_batches`]
    /// accepted them), assigning offsets from the log end offset and
    /// stamping `leader_epoch`. `buf` is rewritten in place.
    ///
    /// If any batch is a retry of one of its producer's last five batches,
    /// nothing is appended and the duplicate's original offsets are returned
    /// with `duplicate` set, as Kafka does. Sequence gaps fail with
    /// [`StorageError::OutOfOrderSequence`], stale epochs with
    /// [`StorageError::InvalidProducerEpoch`], a plain batch from a
    /// producer with an open transaction with
    /// [`StorageError::InvalidTxnState`]; nothing is written then. A
    /// transactional batch opens its producer's transaction if none is
    /// open. Control batches are not taken here ([`Log::append_marker`]).
    pub fn append(
        &mut self,
        buf: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let mut headers = parse_batches(buf)?;
        let mut info = AppendInfo {
            first_offset: self.log_end_offset(),
            last_offset: -1,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            duplicate: false,
            log_append_time: -1,
        };
        let mut next = info.first_offset;
        let mut producers = ProducerAppend::new(&self.producers);
        let mut records = 0u64;
        for header in &mut headers {
            if let SequenceCheck::Duplicate(original) = producers.check(header)? {
                debug!(
                    producer_id = header.producer_id,
                    first = original.first_offset,
                    "duplicate batch"
                );
                return Ok(AppendInfo {
                    first_offset: original.first_offset,
                    last_offset: original.last_offset,
                    duplicate: true,
                    ..info
                });
            }
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            next = header.last_offset() + 1;
            producers.record(header);
            records += header.records_count as u64;
            info.note_max_timestamp(header);
        }
        info.last_offset = next - 1;
        let staged = producers.into_staged();

        let mut at = 0;
        for header in &headers {
            set_base_offset_and_epoch(&mut buf[at..], header.base_offset, leader_epoch);
            at += header.total_size();
        }
        if self.should_roll(buf.len(), headers.len(), info.last_offset, now_ms) {
            self.roll()?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(buf, &headers, interval, now_ms)?;
        staged.commit(&mut self.producers);
        self.epochs.assign(leader_epoch, info.first_offset);
        self.count_unflushed(records, now_ms)?;
        Ok(info)
    }

    /// Whether appending `incoming` bytes now may wait on the disk, beyond
    /// a buffered write: a roll (which fsyncs the sealed segment), an fsync
    /// by `flush.messages`/`flush.ms`, or write-behind waiting for older
    /// data. Conservative (it may say yes when the append will not), and
    /// cheap: an async caller asks before every append and runs the ones
    /// that may block where blocking is allowed, so a slow disk under one
    /// partition does not stall the threads serving all the others.
    pub fn append_may_block(&self, incoming: usize, now_ms: i64) -> bool {
        let config = &self.config;
        let flushes = config.flush_messages != u64::MAX || config.flush_ms != u64::MAX;
        let active = self.active();
        let rolls = active.size() > 0
            && (active.size() + incoming as u64 > config.segment_bytes
                || self.is_old(active, now_ms)
                // At most one index entry per batch; a batch is at least a header.
                || active.index_slots_left() <= incoming / BatchHeader::SIZE);
        flushes || rolls || active.write_behind_due(incoming)
    }

    /// Counts `records` just appended toward `flush_messages`/`flush_ms`
    /// and flushes if either is reached.
    fn count_unflushed(&mut self, records: u64, now_ms: i64) -> Result<(), StorageError> {
        self.unflushed_messages = self.unflushed_messages.saturating_add(records);
        self.first_unflushed_ms.get_or_insert(now_ms);
        self.maybe_flush(now_ms)
    }

    /// Whether the active segment must be rolled before taking `incoming`
    /// bytes in `batches` batches ending at `last_offset`.
    fn should_roll(&self, incoming: usize, batches: usize, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.size() == 0 {
            return false;
        }
        active.size() + incoming as u64 > self.config.segment_bytes
            || self.is_old(active, now_ms)
            || active.index_slots_left() < batches
            // Index entries store offsets relative to the base as u32.
            || last_offset - active.base_offset() > i64::from(u32::MAX)
    }

    fn is_old(&self, segment: &Segment, now_ms: i64) -> bool {
        segment
            .rolling_since_ms()
            .is_some_and(|since| now_ms.saturating_sub(since) >= self.config.segment_ms)
    }

    /// Seals the active segment and starts a new one at the log end offset.
    fn roll(&mut self) -> Result<(), StorageError> {
        self.roll_at(self.log_end_offset())
    }

    /// Seals the active segment and starts a new one at `next`, which is
    /// above the log end offset only when compaction left a gap there, then
    /// snapshots producer state at `next`.
    fn roll_at(&mut self, next: i64) -> Result<(), StorageError> {
        self.active_mut().seal()?;
        let segment = Segment::create(&self.dir, next, self.config.segment_index_bytes)?;
        sync_dir(&self.dir)?;
        self.segments.insert(next, segment);
        debug!(dir = %self.dir.display(), base_offset = next, "rolled segment");
        self.take_snapshot();
        Ok(())
    }

    /// A handle that fsyncs everything appended so far without holding the
    /// log: group commit takes it under a short lock, then lets appends go
    /// on while the disk catches up. Segments rolled meanwhile were fsynced
    /// by the roll; the index mappings are not needed for durability (they
    /// are rebuilt from the log on recovery).
    pub fn sync_handle(&self) -> Result<SyncHandle, StorageError> {
        let (file, path) = self.active().clone_log_file()?;
        Ok(SyncHandle {
            file,
            path,
            end_offset: self.log_end_offset(),
        })
    }

    /// fsyncs the active segment (rolled segments were fsynced when rolled).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.active().flush()?;
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        Ok(())
    }

    /// Flushes if `flush_messages` or `flush_ms` say so. Appends call this;
    /// a periodic task should too, so a quiet partition still honours `flush_ms`.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<(), StorageError> {
        let by_count = self.unflushed_messages >= self.config.flush_messages;
        let by_time = self.first_unflushed_ms.is_some_and(|since| {
            now_ms.saturating_sub(since).max(0) as u64 >= self.config.flush_ms
        });
        if self.unflushed_messages > 0 && (by_count || by_time) {
            self.flush()?;
        }
        Ok(())
    }

    /// Closes cleanly: fsyncs, trims the active indexes, snapshots producer
    /// state at the log end offset and writes the clean-shutdown marker, so
    /// the next open skips the CRC scan and the batch header walk.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.active_mut().seal()?;
        self.take_snapshot();
        let dir = self.dir.clone();
        drop(self);
        write_atomically(&dir, CLEAN_SHUTDOWN_FILE, b"")
    }

    /// Deletes the whole partition directory (topic deletion).
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir).map_err(StorageError::delete(&dir))
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has a segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }
}

/// Parses the headers of `buf`, which must be whole batches back to back.
/// The CRC is not checked again: the caller validated the payload.
fn parse_batches(buf: &[u8]) -> Result<Vec<BatchHeader>, StorageError> {
    if buf.is_empty() {
        return Err(crate::batch::BatchError::Truncated.into());
    }
    let mut headers = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let header = check_header(&buf[at..])?;
        at += header.total_size();
        headers.push(header);
    }
    Ok(headers)
}

/// Lists the base offsets of the segments in `dir`, completing interrupted
/// compaction swaps and removing leftovers of interrupted operations and
/// index files whose log is gone.
fn list_segments(dir: &Path) -> Result<Vec<i64>, StorageError> {
    // First: a `.swap` file would otherwise look like an index without a log.
    compact::complete_interrupted_swaps(dir)?;
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(StorageError::list_dir(dir))? {
        let entry = entry.map_err(StorageError::list_dir(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_leftover(name) {
            info!(file = %entry.path().display(), "removing leftover file");
            remove_file(&entry.path())?;
            continue;
        }
        match parse_segment_file_name(name) {
            Some((base, LOG_EXT)) => logs.push(base),
            Some((_, SNAPSHOT_EXT)) => {}
            Some((base, _)) => indexes.push((base, entry.path())),
            None => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            info!(file = %path.display(), "removing index without a log");
            remove_file(&path)?;
        }
    }
    Ok(logs)
}

/// See [`Log::sync_handle`].
#[derive(Debug)]
pub struct SyncHandle {
    file: std::fs::File,
    path: std::path::PathBuf,
    end_offset: i64,
}

impl SyncHandle {
    /// Every offset below this is durable once [`SyncHandle::sync`] returns.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// fsyncs the data (blocking).
    pub fn sync(&self) -> Result<(), StorageError> {
        crate::faults::check(crate::faults::Site::Fsync, &self.path)
            .and_then(|()| self.file.sync_data())
            .map_err(StorageError::flush(&self.path))
    }
}
