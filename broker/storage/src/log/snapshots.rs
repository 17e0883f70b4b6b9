//! Producer state snapshots of the log: when they are taken, which are
//! kept, and how opening and truncating use them. The file format is in
//! `snapshot.rs`; a snapshot at offset `S` holds the producer state and
//! leader epoch cache describing every batch below `S`.
//!
//! Taken: when a segment rolls, at the new segment's base offset, and on
//! clean close, at the log end offset. A failed write is logged and
//! otherwise ignored: it only makes the next open walk more batches. No
//! snapshot is taken while the state describes offsets at or past the log
//! end offset, as it does for a moment inside [`Log::truncate_to`], which
//! may roll before the state is trimmed.
//!
//! Kept: the two newest between the first segment's base offset and the
//! log end offset. Removed: those above the log end offset, on open (a
//! crash may have cut the log below them) and on truncation, because they
//! describe batches that are gone and would be picked up once the log grew
//! past them again; those below the first segment's base offset (nothing
//! left to continue from), on open and whenever a new one is taken; one
//! that fails to read or decode, when found.
//!
//! Used: open takes the newest snapshot between the first segment's base
//! offset and the recovered log end offset that decodes, drops the cached
//! producer batches below the first segment (retention may have deleted
//! segments since), walks the batches from the snapshot offset on and trims
//! the epoch cache to the log start and end offsets. Those are the steps of
//! a full walk, started from the state that walk has at the snapshot
//! offset, so the result is the same. Truncation rebuilds producer state
//! the same way.
//!
//! The same walk rebuilds the aborted-transaction indexes of the batches
//! it reads (`txn.rs`): after a crash the active segment's `.txnindex` may
//! lack entries, or hold entries of markers recovery cut. When a segment's
//! `.txnindex` was missing or damaged, the walk starts from the first
//! segment instead of a snapshot, since only the producer state at that
//! segment's start tells which transactions its markers closed.
//!
//! Compaction never touches snapshots, as Kafka's cleaner does not. A
//! snapshot describes the batches as they were appended; compaction then
//! removes records and drops emptied batches, but keeps each producer's
//! newest batch and the batch holding each epoch's start (see
//! `Log::compact_below`), so the sequence to continue from, the producer
//! epoch and the epoch cache are the same from a snapshot as from a walk of
//! the compacted log. Only the older cached batches of a producer (up to
//! four) may differ: a snapshot still lists batches that compaction emptied
//! and dropped, so a retry of one is answered as the duplicate it is, with
//! its original offsets, where a full walk would refuse it as out of order.

use tracing::{debug, warn};

use super::Log;
use crate::{
    batch::BatchHeader,
    epochs::LeaderEpochCache,
    error::StorageError,
    files::sync_dir,
    producer::ProducerStateManager,
    scan::Scanned,
    snapshot::{self, Snapshot},
    txn::{parse_marker, AbortedTxn, Marker},
};

/// Snapshots kept per partition: when the newest is unusable (damaged, or
/// above the end of a log that recovery cut), the one before it still
/// spares the walk of all but the last segments.
const SNAPSHOTS_KEPT: usize = 2;

/// Batch-derived state rebuilt from a snapshot and the batches after it.
pub(super) struct BatchState {
    pub producers: ProducerStateManager,
    pub epochs: LeaderEpochCache,
    /// Offset of the snapshot the walk started from; `None` for a full walk.
    pub snapshot: Option<i64>,
    /// Batch headers read.
    pub walked: u64,
    /// Aborted-index entries of the markers the walk read.
    pub aborted: Vec<AbortedTxn>,
}

impl Log {
    /// Restores producer state and the epoch cache on open, after recovery
    /// settled the segments and the log start offset. Returns the snapshot
    /// offset used and the number of batch headers read.
    pub(super) fn restore_batch_state(&mut self) -> Result<(Option<i64>, u64), StorageError> {
        let (first, end) = (self.first_segment_base(), self.log_end_offset());
        let offsets = snapshot::list(&self.dir)?;
        self.delete_snapshots(&offsets, |offset| offset < first || offset > end)?;
        let snapshot = if self.aborted_index_lost() {
            warn!(dir = %self.dir.display(), "aborted transaction index lost; walking every batch");
            None
        } else {
            self.newest_usable_snapshot(&offsets)
        };
        let state = self.rebuild_batch_state(snapshot)?;
        self.apply_rebuilt_aborted(state.snapshot.unwrap_or(i64::MIN), &state.aborted)?;
        self.producers = state.producers;
        self.epochs = state.epochs;
        Ok((state.snapshot, state.walked))
    }

    /// Rebuilds producer state after a truncation, deleting the snapshots
    /// above the new log end offset first.
    pub(super) fn rebuild_producer_state(&mut self) -> Result<(), StorageError> {
        let end = self.log_end_offset();
        let offsets = snapshot::list(&self.dir)?;
        self.delete_snapshots(&offsets, |offset| offset > end)?;
        let snapshot = self.newest_usable_snapshot(&offsets);
        let state = self.rebuild_batch_state(snapshot)?;
        self.apply_rebuilt_aborted(state.snapshot.unwrap_or(i64::MIN), &state.aborted)?;
        self.producers = state.producers;
        Ok(())
    }

    /// Deletes every snapshot. [`Log::truncate_fully_and_start_at`] must
    /// call this after removing the segments: the snapshots describe
    /// batches that are gone, and the new log may grow past their offsets.
    pub(super) fn delete_all_snapshots(&self) -> Result<(), StorageError> {
        let offsets = snapshot::list(&self.dir)?;
        self.delete_snapshots(&offsets, |_| true)
    }

    /// Snapshots the state at the log end offset (segment roll, close) and
    /// deletes the snapshots no longer kept. Never fails: see module docs.
    pub(super) fn take_snapshot(&self) {
        let (dir, offset) = (&self.dir, self.log_end_offset());
        let ahead = self
            .producers
            .last_offset()
            .is_some_and(|last| last >= offset)
            || self
                .epochs
                .latest_start()
                .is_some_and(|start| start > offset);
        if ahead {
            debug!(dir = %dir.display(), offset, "producer state runs past the log end; no snapshot");
            return;
        }
        if let Err(e) = snapshot::write(dir, offset, &self.producers, &self.epochs) {
            warn!(dir = %dir.display(), offset, error = %e, "cannot write producer snapshot");
            return;
        }
        debug!(dir = %dir.display(), offset, producers = self.producers.len(), "took producer snapshot");
        let first = self.first_segment_base();
        let pruned = snapshot::list(dir).and_then(|offsets| {
            let kept: Vec<i64> = offsets
                .iter()
                .copied()
                .filter(|o| (first..=offset).contains(o))
                .rev()
                .take(SNAPSHOTS_KEPT)
                .collect();
            self.delete_snapshots(&offsets, |o| !kept.contains(&o))
        });
        if let Err(e) = pruned {
            warn!(dir = %dir.display(), error = %e, "cannot delete old producer snapshots");
        }
    }

    /// Deletes the snapshots among `offsets` that `doomed` picks.
    fn delete_snapshots(
        &self,
        offsets: &[i64],
        doomed: impl Fn(i64) -> bool,
    ) -> Result<(), StorageError> {
        let mut deleted = false;
        for &offset in offsets.iter().filter(|o| doomed(**o)) {
            debug!(dir = %self.dir.display(), offset, "deleting producer snapshot");
            snapshot::delete(&self.dir, offset)?;
            deleted = true;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The newest snapshot among `offsets` between the first segment's base
    /// offset and the log end offset that reads and decodes. Newer ones that
    /// fail are logged and deleted (best effort: they stay unusable).
    fn newest_usable_snapshot(&self, offsets: &[i64]) -> Option<Snapshot> {
        let (first, end) = (self.first_segment_base(), self.log_end_offset());
        for &offset in offsets.iter().rev().filter(|o| (first..=end).contains(*o)) {
            let path = snapshot::path(&self.dir, offset);
            match snapshot::read(&self.dir, offset) {
                Ok(snapshot) => return Some(snapshot),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "ignoring unusable producer snapshot")
                }
            }
            if let Err(e) = snapshot::delete(&self.dir, offset) {
                warn!(path = %path.display(), error = %e, "cannot delete unusable producer snapshot");
            }
        }
        None
    }

    /// Producer state and epoch cache from `snapshot` (or from nothing) and
    /// the batches after it, as a full walk of the log would build them.
    pub(super) fn rebuild_batch_state(
        &self,
        snapshot: Option<Snapshot>,
    ) -> Result<BatchState, StorageError> {
        let from = snapshot.as_ref().map(|s| s.offset);
        let (mut producers, mut epochs) =
            snapshot.map_or_else(Default::default, |s| (s.producers, s.epochs));
        // Retention may have deleted the segments some batches were in.
        producers.retain_from(self.first_segment_base());
        let mut aborted = Vec::new();
        let walked = self.walk_batches_from(from.unwrap_or(i64::MIN), |header, marker| {
            match marker {
                Some(marker) => aborted.extend(producers.end_transaction(header, marker)),
                None => producers.record(header),
            }
            epochs.assign(header.partition_leader_epoch, header.base_offset);
        })?;
        let Some(walked) = walked else {
            warn!(dir = %self.dir.display(), snapshot = from, "snapshot offset falls inside a batch; walking every batch");
            return self.rebuild_batch_state(None);
        };
        // Batches below the start offset still sit in the first segment.
        epochs.truncate_from_start(self.log_start_offset);
        epochs.truncate_from_end(self.log_end_offset());
        Ok(BatchState {
            producers,
            epochs,
            snapshot: from,
            walked,
            aborted,
        })
    }

    /// Calls `visit` with every batch header at or after `from`, oldest
    /// first, with the marker of a transaction marker batch (whose record
    /// is read for it), and returns how many there were; `None` if a batch
    /// starts below `from` and ends at or after it, so that no state
    /// describes exactly the batches below `from`.
    fn walk_batches_from(
        &self,
        from: i64,
        mut visit: impl FnMut(&BatchHeader, Option<Marker>),
    ) -> Result<Option<u64>, StorageError> {
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map(|(base, _)| *base);
        let mut walked = 0;
        for segment in self.segments.range(first.unwrap_or(from)..).map(|(_, s)| s) {
            let mut scan = if segment.base_offset() < from {
                // The segment holding `from`: the index finds the batch.
                match segment.find_batch(from)? {
                    None => continue,
                    Some((_, header, _)) if header.base_offset < from => return Ok(None),
                    Some((pos, header, mut scan)) => {
                        visit(&header, marker_at(&mut scan, pos, &header)?);
                        walked += 1;
                        scan
                    }
                }
            } else {
                segment.scanner_from(0)
            };
            loop {
                match scan.next_batch()? {
                    Scanned::Batch(pos, header) => {
                        visit(&header, marker_at(&mut scan, pos, &header)?);
                        walked += 1;
                    }
                    Scanned::End => break,
                    Scanned::Invalid(pos, e) => return Err(segment.corrupt(pos, e)),
                }
            }
        }
        Ok(Some(walked))
    }

    fn first_segment_base(&self) -> i64 {
        *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment")
    }
}

/// The transaction marker of the batch at `pos`, if it is a control batch
/// holding one.
fn marker_at(
    scan: &mut crate::scan::BatchScanner<'_>,
    pos: u64,
    header: &BatchHeader,
) -> Result<Option<Marker>, StorageError> {
    if !header.is_control() {
        return Ok(None);
    }
    Ok(parse_marker(scan.bytes(pos, header.total_size())?))
}
