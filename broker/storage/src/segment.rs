//! One segment: a `.log` file of batches plus its `.index`, `.timeindex`
//! and `.txnindex` (aborted transactions whose marker it holds).
//!
//! A segment knows its own byte size, next offset and largest timestamp so
//! the log never has to walk it for those. It checks itself on open:
//! indexes that are missing, malformed or disagree with the log are rebuilt
//! by walking the log, and a walk in recovery mode also checks each batch's
//! CRC and cuts the file at the first torn or corrupt batch.
//!
//! Appends are written behind (`writeback.rs`): every few MiB the segment
//! starts the kernel's writeback of what it just appended and drops pages
//! far behind its end from the page cache. That is advisory only and can
//! never fail an append; durability stays with `flush` and the log's
//! `SyncHandle`.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use bytes::Bytes;
use tracing::{info, warn};

use crate::{
    batch::{check_crc, BatchHeader},
    error::StorageError,
    faults::{self, Site},
    files::{
        remove_file, segment_path, DELETED_SUFFIX, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT,
        TXN_INDEX_EXT,
    },
    index::{IndexState, OffsetIndex, TimeIndex, TxnIndex, TxnIndexState},
    scan::{BatchScanner, Scanned},
    txn::AbortedTxn,
    writeback::{WriteBehind, SEGMENT_TUNING},
};

/// How much to trust a segment's files when opening it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Closed segment: trust the log, check the indexes cheaply.
    Sealed,
    /// Active segment after a clean close: like `Sealed`, plus the CRC of
    /// the last batch.
    CleanActive,
    /// Active segment after a crash: CRC-check every batch and rebuild.
    Recover,
}

/// A segment of the partition log.
pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    log: File,
    size: u64,
    index: OffsetIndex,
    time_index: TimeIndex,
    /// Aborted transactions whose marker is in this segment.
    txn_index: TxnIndex,
    /// The `.txnindex` was missing or damaged on open: the log rebuilds it.
    txn_index_lost: bool,
    /// Offset after the last batch; the log end offset for the active segment.
    next_offset: i64,
    /// Largest batch max timestamp in the segment, -1 when none.
    max_timestamp: i64,
    /// Base offset of the first batch that reached `max_timestamp`.
    offset_of_max_timestamp: i64,
    /// Log bytes written since the last offset index entry (sparse indexing).
    bytes_since_index_entry: u64,
    /// When the segment started taking data, for `segment.ms` rolling.
    rolling_since_ms: Option<i64>,
    /// How much of the log has been written back and dropped from the page
    /// cache, so sustained appends neither pile up dirty pages nor fill
    /// memory with cold data.
    write_behind: WriteBehind,
}

impl Segment {
    /// Creates an empty active segment at `base_offset` with preallocated indexes.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        index_bytes: usize,
    ) -> Result<Segment, StorageError> {
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT] {
            // A stale file from a truncated-away segment must not leak in.
            remove_file(&segment_path(dir, base_offset, ext))?;
        }
        let log_path = segment_path(dir, base_offset, LOG_EXT);
        faults::check(Site::Roll, &log_path).map_err(StorageError::open_file(&log_path))?;
        let mut segment = Segment::open_files(dir, base_offset)?.0;
        segment.txn_index_lost = false;
        segment.activate(index_bytes)?;
        Ok(segment)
    }

    /// Opens an existing segment and checks it as `mode` says.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        mode: OpenMode,
        interval: usize,
        index_bytes: usize,
    ) -> Result<Segment, StorageError> {
        let (mut segment, states) = Segment::open_files(dir, base_offset)?;
        let trusted = mode != OpenMode::Recover
            && states == (IndexState::Trimmed, IndexState::Trimmed)
            && segment.load_from_indexes(mode == OpenMode::CleanActive)?;
        if !trusted {
            if mode != OpenMode::Recover {
                info!(path = %segment.log_path.display(), ?states, "rebuilding segment indexes");
            }
            // A missing index was created empty: give the rebuild room.
            segment.activate(index_bytes)?;
            segment.rebuild(interval)?;
            if mode == OpenMode::Sealed {
                segment.seal()?;
            }
        }
        if mode != OpenMode::Sealed {
            segment.activate(index_bytes)?;
            segment.rolling_since_ms = segment.first_timestamp()?;
        }
        // Entries past a torn tail that recovery cut describe lost markers.
        segment.txn_index.truncate_from(segment.next_offset)?;
        Ok(segment)
    }

    fn open_files(
        dir: &Path,
        base_offset: i64,
    ) -> Result<(Segment, (IndexState, IndexState)), StorageError> {
        let log_path = segment_path(dir, base_offset, LOG_EXT);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(StorageError::open_file(&log_path))?;
        let size = log
            .metadata()
            .map_err(StorageError::read_segment(&log_path))?
            .len();
        let (index, index_state) =
            OffsetIndex::open(&segment_path(dir, base_offset, INDEX_EXT), base_offset)?;
        let (time_index, time_state) =
            TimeIndex::open(&segment_path(dir, base_offset, TIME_INDEX_EXT), base_offset)?;
        let (txn_index, txn_state) =
            TxnIndex::open(&segment_path(dir, base_offset, TXN_INDEX_EXT))?;
        let segment = Segment {
            base_offset,
            log_path,
            log,
            size,
            index,
            time_index,
            txn_index,
            txn_index_lost: txn_state != TxnIndexState::Valid,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            bytes_since_index_entry: 0,
            rolling_since_ms: None,
            write_behind: WriteBehind::new(SEGMENT_TUNING),
        };
        Ok((segment, (index_state, time_state)))
    }

    /// Derives the segment's state from trimmed indexes plus a short walk
    /// from the last index entry to the end of the log. Returns false when
    /// the indexes disagree with the log, so the caller rebuilds.
    fn load_from_indexes(&mut self, check_last_crc: bool) -> Result<bool, StorageError> {
        let (start_offset, start) = self.index.last_entry().unwrap_or((self.base_offset, 0));
        if start > 0 && start + BatchHeader::SIZE as u64 > self.size {
            return Ok(false);
        }
        if let Some((ts, offset)) = self.time_index.last_entry() {
            self.max_timestamp = ts;
            self.offset_of_max_timestamp = offset;
        }
        let mut scan = BatchScanner::new(&self.log, &self.log_path, start, self.size);
        let mut last = None;
        loop {
            match scan.next_batch()? {
                Scanned::Batch(pos, header) => {
                    if last.is_none() && header.base_offset != start_offset {
                        return Ok(false);
                    }
                    if header.max_timestamp > self.max_timestamp {
                        self.max_timestamp = header.max_timestamp;
                        self.offset_of_max_timestamp = header.base_offset;
                    }
                    last = Some((pos, header));
                }
                Scanned::End => break,
                Scanned::Invalid(..) => return Ok(false),
            }
        }
        if let Some((pos, header)) = last {
            if check_last_crc && check_crc(scan.bytes(pos, header.total_size())?, &header).is_err()
            {
                return Ok(false);
            }
            self.next_offset = header.last_offset() + 1;
        }
        if self
            .time_index
            .last_entry()
            .is_some_and(|(_, o)| o >= self.next_offset)
        {
            return Ok(false);
        }
        self.bytes_since_index_entry = self.size - start;
        Ok(true)
    }

    /// Walks the whole log checking every batch (structure, increasing
    /// offsets, CRC), cuts the file at the first bad one and rebuilds both
    /// indexes from the walk.
    fn rebuild(&mut self, interval: usize) -> Result<(), StorageError> {
        self.index.clear();
        self.time_index.clear();
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_index_entry = 0;
        let end = self.size;
        // The scanner borrows its own handles so the walk can update `self`.
        let log = self
            .log
            .try_clone()
            .map_err(StorageError::open_file(&self.log_path))?;
        let path = self.log_path.clone();
        let mut scan = BatchScanner::new(&log, &path, 0, end);
        let valid_end = loop {
            match scan.next_batch()? {
                Scanned::Batch(pos, header) => {
                    let crc = check_crc(scan.bytes(pos, header.total_size())?, &header);
                    if let Err(e) = crc {
                        warn!(path = %self.log_path.display(), pos, error = %e, "corrupt batch");
                        break pos;
                    }
                    if header.base_offset < self.next_offset {
                        warn!(path = %self.log_path.display(), pos, "batch offsets go backwards");
                        break pos;
                    }
                    self.reserve_index(1)?;
                    self.index_batch(&header, pos, interval);
                }
                Scanned::End => break end,
                Scanned::Invalid(pos, e) => {
                    warn!(path = %self.log_path.display(), pos, error = %e, "torn or invalid batch");
                    break pos;
                }
            }
        };
        if valid_end < end {
            warn!(path = %self.log_path.display(), from = end, to = valid_end, "truncating log tail");
            self.set_log_len(valid_end)?;
        }
        self.size = valid_end;
        Ok(())
    }

    fn set_log_len(&mut self, len: u64) -> Result<(), StorageError> {
        faults::check(Site::Truncate, &self.log_path)
            .and_then(|()| self.log.set_len(len))
            .map_err(StorageError::truncate(&self.log_path))?;
        self.write_behind.truncated(len);
        faults::check(Site::Fsync, &self.log_path)
            .and_then(|()| self.log.sync_all())
            .map_err(StorageError::flush(&self.log_path))
    }

    /// Makes sure both indexes have disk space for the entries `batches`
    /// more batches may add (plus the final time-index entry of a seal),
    /// so writing them through the mapping can never fault on a full disk.
    /// One comparison per index unless a new chunk must be allocated.
    fn reserve_index(&mut self, batches: usize) -> Result<(), StorageError> {
        self.index.reserve(batches)?;
        self.time_index.reserve(batches + 1)
    }

    /// Timestamp to measure `segment.ms` from for a segment loaded from
    /// disk: the first batch's max timestamp (as Kafka does), else the file's
    /// modification time; `None` while empty.
    fn first_timestamp(&self) -> Result<Option<i64>, StorageError> {
        if self.size == 0 {
            return Ok(None);
        }
        let mut scan = BatchScanner::new(&self.log, &self.log_path, 0, self.size);
        if let Scanned::Batch(_, h) = scan.next_batch()? {
            if h.max_timestamp >= 0 {
                return Ok(Some(h.max_timestamp));
            }
        }
        Ok(Some(self.modified_ms()))
    }

    /// Modification time of the log file in ms since the epoch (0 if unknown).
    pub(crate) fn modified_ms(&self) -> i64 {
        self.log
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// Updates indexes and bookkeeping for a batch written at `position`.
    fn index_batch(&mut self, header: &BatchHeader, position: u64, interval: usize) {
        let add_entry = position > 0 && self.bytes_since_index_entry >= interval as u64;
        if add_entry && self.index.append(header.base_offset, position) {
            self.bytes_since_index_entry = 0;
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        if add_entry {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        self.bytes_since_index_entry += header.total_size() as u64;
        self.next_offset = header.last_offset() + 1;
    }

    /// Appends `buf` (whole batches with offsets assigned, described by
    /// `headers`) with one write, then writes behind (never fails).
    ///
    /// A failed write (a full disk, a device error) changes nothing the
    /// segment shows: its size, indexes and offsets stay as they were, and
    /// whatever part of `buf` reached the file is cut off again, so no torn
    /// batch is left for a later append to follow or for recovery to find.
    pub(crate) fn append(
        &mut self,
        buf: &[u8],
        headers: &[BatchHeader],
        interval: usize,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.reserve_index(headers.len())?;
        if let Err(e) = faults::write_all_at(&self.log, &self.log_path, buf, self.size) {
            let size = self.size;
            if let Err(cut) = self.set_log_len(size) {
                warn!(path = %self.log_path.display(), size, error = %cut, "cannot cut a failed write back");
            }
            return Err(StorageError::write_segment(&self.log_path)(e));
        }
        if self.size == 0 {
            self.rolling_since_ms = Some(now_ms);
        }
        let mut position = self.size;
        for header in headers {
            self.index_batch(header, position, interval);
            position += header.total_size() as u64;
        }
        self.size = position;
        self.write_behind
            .appended(&self.log, &self.log_path, self.size);
        Ok(())
    }

    /// Finds the batch containing `offset` (or the first batch after it when
    /// `offset` falls in a gap) and returns a scanner positioned after it.
    pub(crate) fn find_batch(
        &self,
        offset: i64,
    ) -> Result<Option<(u64, BatchHeader, BatchScanner<'_>)>, StorageError> {
        let (_, start) = self.index.lookup(offset);
        let mut scan = BatchScanner::new(&self.log, &self.log_path, start, self.size);
        loop {
            match scan.next_batch()? {
                Scanned::Batch(pos, h) if h.last_offset() >= offset => {
                    return Ok(Some((pos, h, scan)))
                }
                Scanned::Batch(..) => {}
                Scanned::End => return Ok(None),
                Scanned::Invalid(position, source) => return Err(self.corrupt(position, source)),
            }
        }
    }

    /// Finds the first batch with max timestamp >= `timestamp` whose last
    /// offset is >= `min_offset`.
    pub(crate) fn find_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        let from = self
            .time_index
            .lookup(timestamp)
            .unwrap_or(self.base_offset);
        let Some((pos, header, mut scan)) = self.find_batch(from.max(min_offset))? else {
            return Ok(None);
        };
        if header.max_timestamp >= timestamp {
            return Ok(Some((pos, header)));
        }
        loop {
            match scan.next_batch()? {
                Scanned::Batch(pos, h) if h.max_timestamp >= timestamp => {
                    return Ok(Some((pos, h)))
                }
                Scanned::Batch(..) => {}
                Scanned::End => return Ok(None),
                Scanned::Invalid(position, source) => return Err(self.corrupt(position, source)),
            }
        }
    }

    pub(crate) fn corrupt(&self, position: u64, source: crate::batch::BatchError) -> StorageError {
        StorageError::CorruptSegment {
            path: self.log_path.clone(),
            position,
            source,
        }
    }

    /// Reads `len` bytes at `position`.
    pub(crate) fn read_bytes(&self, position: u64, len: usize) -> Result<Bytes, StorageError> {
        let mut buf = vec![0; len];
        self.log
            .read_exact_at(&mut buf, position)
            .map_err(StorageError::read_segment(&self.log_path))?;
        Ok(Bytes::from(buf))
    }

    /// Removes every batch at or after the one containing `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64, interval: usize) -> Result<(), StorageError> {
        let cut = match self.find_batch(offset)? {
            Some((pos, ..)) => pos,
            None => return Ok(()),
        };
        self.set_log_len(cut)?;
        self.size = cut;
        self.rebuild(interval)?;
        self.txn_index.truncate_from(self.next_offset)
    }

    /// Preallocates the indexes so the segment can take appends.
    pub(crate) fn activate(&mut self, index_bytes: usize) -> Result<(), StorageError> {
        self.index.resize(index_bytes)?;
        self.time_index.resize(index_bytes)
    }

    /// Makes the segment durable and compact before it stops being active:
    /// records the final max timestamp, fsyncs, trims the indexes, and
    /// drops all but the tail of the now clean log from the page cache.
    pub(crate) fn seal(&mut self) -> Result<(), StorageError> {
        if self.max_timestamp >= 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        self.flush()?;
        self.index.trim()?;
        self.time_index.trim()?;
        self.index.flush()?;
        self.time_index.flush()?;
        self.txn_index.flush()?;
        self.write_behind.sealed(&self.log_path, self.size);
        Ok(())
    }

    /// A second handle on the log file, for fsyncing without the segment.
    pub(crate) fn clone_log_file(&self) -> Result<(std::fs::File, PathBuf), StorageError> {
        let file = self
            .log
            .try_clone()
            .map_err(StorageError::open_file(&self.log_path))?;
        Ok((file, self.log_path.clone()))
    }

    /// fsyncs the log and writes back the index mappings.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        faults::check(Site::Fsync, &self.log_path)
            .and_then(|()| self.log.sync_data())
            .map_err(StorageError::flush(&self.log_path))?;
        self.index.flush()?;
        self.time_index.flush()
    }

    /// Deletes the segment's files. The log is renamed to `.deleted` first so
    /// a crash midway never leaves a log without indexes that looks live.
    pub(crate) fn delete(self) -> Result<(), StorageError> {
        let mut deleted = self.log_path.clone().into_os_string();
        deleted.push(DELETED_SUFFIX);
        let deleted = PathBuf::from(deleted);
        std::fs::rename(&self.log_path, &deleted).map_err(StorageError::delete(&self.log_path))?;
        let index_path = self.index.path().to_path_buf();
        let time_path = self.time_index.path().to_path_buf();
        let txn_path = self.txn_index.path().to_path_buf();
        drop(self);
        remove_file(&index_path)?;
        remove_file(&time_path)?;
        remove_file(&txn_path)?;
        remove_file(&deleted)
    }

    /// Aborted transactions whose marker is in this segment, in order.
    pub(crate) fn aborted_txns(&self) -> &[AbortedTxn] {
        self.txn_index.entries()
    }

    /// Records a transaction aborted by a marker just appended here.
    pub(crate) fn append_aborted(&mut self, entry: AbortedTxn) -> Result<(), StorageError> {
        self.txn_index.append(entry)
    }

    /// Whether the `.txnindex` was missing or damaged when opened and has
    /// not been rebuilt since.
    pub(crate) fn txn_index_lost(&self) -> bool {
        self.txn_index_lost
    }

    /// Sets the entries for markers at or after `from` to `rebuilt` (from
    /// a walk of the log), keeping those before.
    pub(crate) fn rebuild_aborted_from(
        &mut self,
        from: i64,
        rebuilt: &[AbortedTxn],
    ) -> Result<(), StorageError> {
        if self.txn_index.rebuild_from(from, rebuilt)? {
            info!(path = %self.txn_index.path().display(), from, entries = rebuilt.len(), "rebuilt aborted transaction index");
        }
        if from <= self.base_offset {
            self.txn_index_lost = false;
        }
        Ok(())
    }

    /// Replaces every entry (a compacted segment taking over its sources').
    pub(crate) fn replace_aborted(&mut self, entries: Vec<AbortedTxn>) -> Result<(), StorageError> {
        self.txn_index_lost = false;
        self.txn_index.replace(entries)
    }

    /// First offset the segment may hold.
    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after the last batch.
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Size of the log file in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Largest timestamp and the base offset of its batch, if any batch has one.
    pub(crate) fn max_timestamp(&self) -> Option<(i64, i64)> {
        (self.max_timestamp >= 0).then_some((self.max_timestamp, self.offset_of_max_timestamp))
    }

    /// When the segment started taking data.
    pub(crate) fn rolling_since_ms(&self) -> Option<i64> {
        self.rolling_since_ms
    }

    /// Index slots left in the fuller of the two indexes. One time-index
    /// slot is held back for the final entry written by [`Segment::seal`].
    pub(crate) fn index_slots_left(&self) -> usize {
        self.index
            .remaining()
            .min(self.time_index.remaining().saturating_sub(1))
    }

    /// Whether appending `incoming` bytes would start write-behind calls,
    /// which may wait for the disk.
    pub(crate) fn write_behind_due(&self, incoming: usize) -> bool {
        self.write_behind.due(self.size + incoming as u64)
    }

    /// Walks all batch headers from `position` to the end.
    pub(crate) fn scanner_from(&self, position: u64) -> BatchScanner<'_> {
        BatchScanner::new(&self.log, &self.log_path, position, self.size)
    }

    /// Path of the `.log` file.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }
}

#[cfg(test)]
#[path = "segment_writeback_tests.rs"]
mod writeback_tests;
