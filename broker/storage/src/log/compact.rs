//! Log compaction: keep only the latest record per key in closed segments.
//!
//! A run (Kafka's log cleaner, synchronously, under the caller's `&mut`):
//! 1. the cleanable range is the closed segments from the first one up to,
//!    not including, the first segment that is active, younger than
//!    `min_compaction_lag_ms` or reaches past the caller's upper bound;
//! 2. an offset map (key -> latest offset) is built over the *whole* log,
//!    the active segment included, so a key rewritten recently is dropped
//!    from old segments too;
//! 3. the cleanable segments are grouped into runs whose total size fits
//!    `segment_bytes` (so small cleaned segments merge, as in Kafka), and
//!    each group is written batch by batch into `<first base>.log.cleaned`
//!    following the rules in `cleaner.rs`; a second pass merges the
//!    segments that the first one shrank;
//! 4. a group whose output differs is swapped in crash-safely: the
//!    `.cleaned` file is fsynced and renamed to `.swap` (the commit point),
//!    the originals are deleted, the `.swap` is renamed to `.log` and the
//!    segment is reopened, which rebuilds its indexes from the new log.
//!
//! On open, a `.cleaned` file is an unfinished run and is deleted (the
//! originals are intact); a `.swap` file is a committed one: every
//! original segment whose base offset lies within the swap's offset range
//! is deleted and the swap is renamed into place. Originals past the
//! swap's last offset may survive such a crash; they hold records the swap
//! does not, so the log stays correct, only less compact until next time.
//!
//! Transactions: nothing at or past the first unstable offset (the oldest
//! open transaction) is cleaned or decides what is superseded, since it
//! may still abort; records of aborted transactions (found through the
//! aborted indexes) are removed and never supersede anything. A marker
//! goes, as in Kafka, once no batch of its transaction is left and
//! `delete.retention.ms` has passed since a run first found that (rules in
//! `cleaner.rs`); only markers below the oldest producer state snapshot
//! qualify, so that a log replayed from any snapshot still meets the
//! marker of every transaction the snapshot holds open. A cleaned segment
//! takes over the aborted-index entries of the segments it replaced, but
//! those of the abort markers it dropped; the originals' `.txnindex`
//! files go with them, so a crash before the new one is written leaves it
//! missing, and open rebuilds it from the log.
//!
//! The first dirty offset and the earliest pending delete horizon are
//! persisted in `cleaner-offset-checkpoint` so [`Log::needs_compaction`]
//! can tell after a restart whether a run is due.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use tracing::{info, warn};

use super::Log;
use crate::{
    batch::BatchHeader,
    cleaner::{
        clean_batch, index_keys, AbortedRanges, CleanContext, Cleaned, MarkerTracker, OffsetMap,
    },
    error::StorageError,
    files::{
        parse_segment_file_name, remove_file, segment_path, sync_dir, write_cleaner_checkpoint,
        CleanerCheckpoint, CLEANED_SUFFIX, INDEX_EXT, LOG_EXT, SWAP_SUFFIX, TIME_INDEX_EXT,
        TXN_INDEX_EXT,
    },
    scan::{BatchScanner, Scanned},
    segment::{OpenMode, Segment},
    snapshot, CompactionStats,
};

/// Where a test makes a run stop as if the process had died there.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CrashPoint {
    /// After the `.cleaned` file is written, before it becomes `.swap`.
    BeforeSwap,
    /// After the `.swap` rename and this many originals deleted.
    AfterDeleting(usize),
    /// After all originals are deleted, before the `.swap` becomes `.log`.
    BeforeRename,
}

/// What cleaning one group produced.
struct GroupOutcome {
    records_removed: u64,
    /// Whether a new segment replaced the group.
    replaced: bool,
    /// Earliest delete horizon among the batches the group now holds.
    horizon: Option<i64>,
    /// Offsets of the markers removed.
    dropped_markers: Vec<i64>,
}

impl Log {
    /// Compacts the log as of `now_ms`; see [`Log::compact_below`]. Records
    /// up to the log end offset decide what is superseded.
    pub fn compact(&mut self, now_ms: i64) -> Result<CompactionStats, StorageError> {
        self.compact_below(now_ms, i64::MAX)
    }

    /// Compacts the closed segments (never the active one) that lie wholly
    /// below `upper_bound`, keeping per key only the latest record of the
    /// log below `upper_bound`. A replicated partition passes its high
    /// watermark, so a record that a leader change may still truncate never
    /// causes older values to be removed.
    ///
    /// Does nothing unless [`crate::LogConfig::compact`] is set. Offsets
    /// never change; records that are not the latest for their key are
    /// removed, tombstones once their delete horizon has passed (module
    /// docs of `cleaner.rs` have the rules). Emptied batches are dropped but
    /// for a producer's newest one and one holding a leader epoch's start.
    pub fn compact_below(
        &mut self,
        now_ms: i64,
        upper_bound: i64,
    ) -> Result<CompactionStats, StorageError> {
        let mut stats = CompactionStats::default();
        if !self.config.compact {
            return Ok(stats);
        }
        let upper_bound = upper_bound.min(self.first_unstable_offset().unwrap_or(i64::MAX));
        let cleanable = self.cleanable_bases(now_ms, upper_bound);
        let Some(&last) = cleanable.last() else {
            return Ok(stats);
        };
        let first_uncleanable = *self
            .segments
            .range(last + 1..)
            .next()
            .expect("the active segment follows the cleanable ones")
            .0;
        let aborted = AbortedRanges::new(&self.all_aborted_transactions());
        let map = self.build_offset_map(upper_bound, &aborted)?;
        let sizes: BTreeMap<i64, u64> = cleanable
            .iter()
            .map(|base| (*base, self.segments[base].size()))
            .collect();
        // Base offsets of the original segments that were replaced.
        let mut replaced = BTreeSet::new();
        let mut horizon: Option<i64> = None;
        let bound = self.marker_bound()?;
        let mut markers = MarkerTracker::new(bound, true);
        for group in self.group_segments(&cleanable) {
            let outcome = self.clean_group(&group, &map, &aborted, now_ms, &mut markers)?;
            stats.records_removed += outcome.records_removed;
            horizon = min_some(horizon, outcome.horizon);
            if outcome.replaced {
                replaced.extend(group);
            }
        }
        // Groups are sized before cleaning (as in Kafka), so full segments
        // never merge; once cleaned they may fit together: merge them now.
        let cleaned: Vec<i64> = self
            .segments
            .range(..first_uncleanable)
            .map(|(base, _)| *base)
            .collect();
        for group in self.group_segments(&cleaned) {
            if group.len() > 1 {
                let mut markers = MarkerTracker::new(bound, false);
                let outcome = self.clean_group(&group, &map, &aborted, now_ms, &mut markers)?;
                stats.records_removed += outcome.records_removed;
                replaced.extend(group);
            }
        }
        stats.segments_cleaned = replaced.iter().filter(|b| sizes.contains_key(b)).count();
        stats.bytes_before = replaced.iter().filter_map(|b| sizes.get(b)).sum();
        stats.bytes_after = replaced
            .iter()
            .filter_map(|b| self.segments.get(b))
            .map(Segment::size)
            .sum();
        self.cleaner = CleanerCheckpoint {
            first_dirty_offset: first_uncleanable,
            next_delete_horizon: horizon,
        };
        write_cleaner_checkpoint(&self.dir, self.cleaner)?;
        info!(dir = %self.dir.display(), ?stats, first_dirty = first_uncleanable, "compacted log");
        Ok(stats)
    }

    /// Markers at or past this offset are kept: the oldest producer state
    /// snapshot in use (none: every marker may go).
    fn marker_bound(&self) -> Result<i64, StorageError> {
        let first = self.segments.keys().next().copied().unwrap_or(0);
        let oldest = snapshot::list(&self.dir)?
            .into_iter()
            .filter(|o| *o >= first)
            .min();
        Ok(oldest.unwrap_or(i64::MAX))
    }

    /// Share of the closed segments' bytes at or after the first dirty
    /// offset (not compacted yet), from 0 to 1; 0 when there are no closed
    /// segments.
    pub fn dirty_ratio(&self) -> f64 {
        let closed = self.segments.len() - 1;
        let bases: Vec<i64> = self.segments.keys().take(closed).copied().collect();
        self.ratio_of(&bases)
    }

    /// Whether a [`Log::compact`] run at `now_ms` is due: the policy
    /// includes `compact` and either a kept tombstone's delete horizon has
    /// passed or the dirty share of the cleanable segments (closed and
    /// older than `min_compaction_lag_ms`) reaches
    /// `min_cleanable_dirty_ratio`.
    pub fn needs_compaction(&self, now_ms: i64) -> bool {
        if !self.config.compact {
            return false;
        }
        let horizon = self.cleaner.next_delete_horizon;
        if horizon.is_some_and(|h| h <= now_ms) {
            return true;
        }
        let cleanable = self.cleanable_bases(now_ms, i64::MAX);
        let has_dirty = cleanable
            .iter()
            .any(|b| *b >= self.cleaner.first_dirty_offset && self.segments[b].size() > 0);
        has_dirty && self.ratio_of(&cleanable) >= self.config.min_cleanable_dirty_ratio
    }

    /// First offset not yet compacted (Kafka's cleaner checkpoint).
    pub fn first_dirty_offset(&self) -> i64 {
        self.cleaner.first_dirty_offset
    }

    /// After a truncation the dirty range starts at the new end at the latest.
    pub(super) fn clamp_first_dirty_offset(&mut self) -> Result<(), StorageError> {
        let end = self.log_end_offset();
        if self.cleaner.first_dirty_offset > end {
            self.cleaner.first_dirty_offset = end;
            write_cleaner_checkpoint(&self.dir, self.cleaner)?;
        }
        Ok(())
    }

    /// Dirty bytes over all bytes of the segments with these base offsets.
    fn ratio_of(&self, bases: &[i64]) -> f64 {
        let (mut clean, mut dirty) = (0u64, 0u64);
        for base in bases {
            let size = self.segments[base].size();
            if *base < self.cleaner.first_dirty_offset {
                clean += size;
            } else {
                dirty += size;
            }
        }
        match clean + dirty {
            0 => 0.0,
            total => dirty as f64 / total as f64,
        }
    }

    /// Base offsets of the segments a run may rewrite, oldest first.
    fn cleanable_bases(&self, now_ms: i64, upper_bound: i64) -> Vec<i64> {
        let closed = self.segments.len() - 1;
        let lag = self.config.min_compaction_lag_ms;
        self.segments
            .values()
            .take(closed)
            .take_while(|segment| {
                let newest = segment
                    .max_timestamp()
                    .map_or_else(|| segment.modified_ms(), |(ts, _)| ts);
                segment.next_offset() <= upper_bound
                    && (lag == 0 || newest <= now_ms.saturating_sub(lag))
            })
            .map(Segment::base_offset)
            .collect()
    }

    /// Key -> latest offset over every segment, for records below
    /// `upper_bound` that no aborted transaction wrote.
    fn build_offset_map(
        &self,
        upper_bound: i64,
        aborted: &AbortedRanges,
    ) -> Result<OffsetMap, StorageError> {
        let mut map = OffsetMap::new();
        for segment in self.segments.values() {
            let mut scan = segment.scanner_from(0);
            loop {
                match scan.next_batch()? {
                    Scanned::Batch(_, h) if h.base_offset >= upper_bound => return Ok(map),
                    Scanned::Batch(_, h) if aborted.holds(&h) => {}
                    Scanned::Batch(pos, h) => {
                        let bytes = scan.bytes(pos, h.total_size())?;
                        if let Err(e) = index_keys(bytes, h, upper_bound, &mut map) {
                            // Its records stay too (see `clean_group`), so
                            // leaving its keys out only keeps more data.
                            warn!(path = %segment.log_path().display(), pos, error = %e, "cannot read records for compaction");
                        }
                    }
                    Scanned::End => break,
                    Scanned::Invalid(pos, e) => return Err(segment.corrupt(pos, e)),
                }
            }
        }
        Ok(map)
    }

    /// Splits consecutive cleanable segments into groups that fit one
    /// segment: total size within `segment_bytes` and offsets within the
    /// index's 32-bit relative range.
    fn group_segments(&self, bases: &[i64]) -> Vec<Vec<i64>> {
        let mut groups: Vec<Vec<i64>> = Vec::new();
        let mut group_size = 0;
        for base in bases {
            let segment = &self.segments[base];
            match groups.last_mut() {
                Some(group)
                    if group_size + segment.size() <= self.config.segment_bytes
                        && segment.next_offset() - group[0] <= i64::from(u32::MAX) =>
                {
                    group.push(*base);
                    group_size += segment.size();
                }
                _ => {
                    groups.push(vec![*base]);
                    group_size = segment.size();
                }
            }
        }
        groups
    }

    /// Writes the cleaned form of `group` and swaps it in if it differs.
    fn clean_group(
        &mut self,
        group: &[i64],
        map: &OffsetMap,
        aborted: &AbortedRanges,
        now_ms: i64,
        markers: &mut MarkerTracker,
    ) -> Result<GroupOutcome, StorageError> {
        let first = group[0];
        let cleaned = with_suffix(&segment_path(&self.dir, first, LOG_EXT), CLEANED_SUFFIX);
        let written = self.write_cleaned(group, map, aborted, now_ms, markers, &cleaned);
        let (mut outcome, changed) = match written {
            Ok(written) => written,
            Err(e) => {
                // Best effort: open() removes it anyway.
                let _ = fs::remove_file(&cleaned);
                return Err(e);
            }
        };
        if !changed {
            remove_file(&cleaned)?;
            return Ok(outcome);
        }
        #[cfg(test)]
        self.maybe_crash(CrashPoint::BeforeSwap, &cleaned)?;
        let swap = with_suffix(&segment_path(&self.dir, first, LOG_EXT), SWAP_SUFFIX);
        fs::rename(&cleaned, &swap).map_err(StorageError::delete(&cleaned))?;
        sync_dir(&self.dir)?;
        // An abort marker that went takes its aborted-index entry along.
        let aborted_txns: Vec<_> = group
            .iter()
            .flat_map(|base| self.segments[base].aborted_txns().iter().copied())
            .filter(|a| !outcome.dropped_markers.contains(&a.last_offset))
            .collect();
        for base in group {
            #[cfg(test)]
            {
                let deleted = group.iter().filter(|b| !self.segments.contains_key(b));
                self.maybe_crash(CrashPoint::AfterDeleting(deleted.count()), &swap)?;
            }
            let segment = self.segments.remove(base).expect("grouped segments exist");
            segment.delete()?;
        }
        #[cfg(test)]
        self.maybe_crash(CrashPoint::BeforeRename, &swap)?;
        let log_path = segment_path(&self.dir, first, LOG_EXT);
        fs::rename(&swap, &log_path).map_err(StorageError::delete(&swap))?;
        sync_dir(&self.dir)?;
        let (interval, index_bytes) = (
            self.config.index_interval_bytes,
            self.config.segment_index_bytes,
        );
        let mut segment = Segment::open(&self.dir, first, OpenMode::Sealed, interval, index_bytes)?;
        segment.replace_aborted(aborted_txns)?;
        outcome.replaced = true;
        self.segments.insert(first, segment);
        Ok(outcome)
    }

    /// Streams the cleaned batches of `group` into `path` and fsyncs it.
    /// Returns the outcome and whether the output differs from the input.
    fn write_cleaned(
        &self,
        group: &[i64],
        map: &OffsetMap,
        aborted: &AbortedRanges,
        now_ms: i64,
        markers: &mut MarkerTracker,
        path: &Path,
    ) -> Result<(GroupOutcome, bool), StorageError> {
        let file = File::create(path).map_err(StorageError::open_file(path))?;
        let mut out = BufWriter::new(file);
        let cx = CleanContext {
            latest: map,
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
        };
        let mut outcome = GroupOutcome {
            records_removed: 0,
            replaced: false,
            horizon: None,
            dropped_markers: Vec::new(),
        };
        let mut changed = group.len() > 1;
        for base in group {
            let segment = &self.segments[base];
            let mut scan = segment.scanner_from(0);
            loop {
                let (pos, header) = match scan.next_batch()? {
                    Scanned::Batch(pos, header) => (pos, header),
                    Scanned::End => break,
                    Scanned::Invalid(pos, e) => return Err(segment.corrupt(pos, e)),
                };
                let bytes = scan.bytes(pos, header.total_size())?;
                let keep_empty = self.must_keep_empty(&header);
                let is_aborted = aborted.holds(&header);
                let removable = header.is_control() && markers.marker(&header);
                let cleaned = clean_batch(bytes, header, &cx, keep_empty, is_aborted, removable);
                if !matches!(cleaned, Ok(Cleaned::Dropped { .. })) {
                    markers.kept(&header);
                }
                let kept = match cleaned {
                    Ok(Cleaned::Unchanged) => Some((bytes, header)),
                    Ok(Cleaned::Rewritten { ref batch, removed }) => {
                        changed = true;
                        outcome.records_removed += removed;
                        let header = BatchHeader::parse(batch)?;
                        write_all(&mut out, batch, path)?;
                        outcome.horizon = min_some(outcome.horizon, header.delete_horizon());
                        None
                    }
                    Ok(Cleaned::Dropped { removed }) => {
                        changed = true;
                        outcome.records_removed += removed;
                        if header.is_control() {
                            outcome.dropped_markers.push(header.base_offset);
                        }
                        None
                    }
                    Err(e) => {
                        warn!(path = %segment.log_path().display(), pos, error = %e, "keeping a batch compaction cannot read");
                        Some((bytes, header))
                    }
                };
                if let Some((bytes, header)) = kept {
                    write_all(&mut out, bytes, path)?;
                    outcome.horizon = min_some(outcome.horizon, header.delete_horizon());
                }
            }
        }
        let file = out
            .into_inner()
            .map_err(|e| StorageError::write_segment(path)(e.into_error()))?;
        file.sync_all().map_err(StorageError::flush(path))?;
        Ok((outcome, changed))
    }

    /// Whether `header` must stay even with no records left: it is its
    /// idempotent producer's newest batch (carrying the last sequence) or
    /// holds a leader epoch's start, which the epoch cache rebuilt on open
    /// can only learn from it.
    fn must_keep_empty(&self, header: &BatchHeader) -> bool {
        let last_of_producer = header.producer_id >= 0
            && !header.is_control()
            && self
                .producers
                .get(header.producer_id)
                .and_then(|entry| entry.batches.back())
                .is_some_and(|last| last.last_offset == header.last_offset());
        let (epoch, base, last) = (
            header.partition_leader_epoch,
            header.base_offset,
            header.last_offset(),
        );
        last_of_producer || self.epochs.starts_in(epoch, base, last)
    }

    #[cfg(test)]
    fn maybe_crash(&self, point: CrashPoint, path: &Path) -> Result<(), StorageError> {
        if self.crash_point == Some(point) {
            let crash = std::io::Error::other("injected crash");
            return Err(StorageError::delete(path)(crash));
        }
        Ok(())
    }
}

/// Completes compaction swaps that a crash interrupted (see module docs).
pub(super) fn complete_interrupted_swaps(dir: &Path) -> Result<(), StorageError> {
    let mut swaps = Vec::new();
    for entry in fs::read_dir(dir).map_err(StorageError::list_dir(dir))? {
        let entry = entry.map_err(StorageError::list_dir(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SWAP_SUFFIX)) else {
            continue;
        };
        match parse_segment_file_name(stem) {
            Some((base, LOG_EXT)) => swaps.push((base, entry.path())),
            _ => remove_file(&entry.path())?,
        }
    }
    if swaps.is_empty() {
        return Ok(());
    }
    swaps.sort();
    for (base, swap) in swaps {
        let last = last_offset_in(&swap)?.unwrap_or(base).max(base);
        for entry in fs::read_dir(dir).map_err(StorageError::list_dir(dir))? {
            let entry = entry.map_err(StorageError::list_dir(dir))?;
            let name = entry.file_name();
            let original =
                name.to_str()
                    .and_then(parse_segment_file_name)
                    .is_some_and(|(b, ext)| {
                        (base..=last).contains(&b)
                            && [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT].contains(&ext)
                    });
            if original {
                remove_file(&entry.path())?;
            }
        }
        let log_path = segment_path(dir, base, LOG_EXT);
        fs::rename(&swap, &log_path).map_err(StorageError::delete(&swap))?;
        info!(path = %log_path.display(), last, "completed interrupted compaction swap");
    }
    sync_dir(dir)
}

/// Last offset of the last whole batch in the file at `path`, if any.
fn last_offset_in(path: &Path) -> Result<Option<i64>, StorageError> {
    let file = File::open(path).map_err(StorageError::open_file(path))?;
    let len = file
        .metadata()
        .map_err(StorageError::read_segment(path))?
        .len();
    let mut scan = BatchScanner::new(&file, path, 0, len);
    let mut last = None;
    // The swap was fsynced before it was named `.swap`; a bad tail would be
    // disk damage, which opening the segment handles like any other.
    while let Scanned::Batch(_, header) = scan.next_batch()? {
        last = Some(header.last_offset());
    }
    Ok(last)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn write_all(out: &mut BufWriter<File>, bytes: &[u8], path: &Path) -> Result<(), StorageError> {
    out.write_all(bytes)
        .map_err(StorageError::write_segment(path))
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
