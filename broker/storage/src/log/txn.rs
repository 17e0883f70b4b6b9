//! Transactions in the log: appending markers, the first unstable offset
//! (what bounds the last stable offset) and the aborted transactions a
//! read_committed fetch must report.
//!
//! Producer state (`producer.rs`) knows each producer's open transaction;
//! a marker closes it, and an abort of a transaction that wrote here is
//! recorded in the `.txnindex` of the segment the marker went to. Leader
//! appends ([`Log::append_marker`]), follower appends
//! ([`Log::append_replicated`]) and the walk that rebuilds state on open
//! (`snapshots.rs`) all go through [`ProducerStateManager::end_transaction`],
//! so they build the same entries.
//!
//! [`ProducerStateManager::end_transaction`]: crate::producer::ProducerStateManager::end_transaction

use super::Log;
use crate::{
    batch::{set_base_offset_and_epoch, BatchHeader},
    error::StorageError,
    txn::{encode_marker_batch, parse_marker, AbortedTxn, Marker},
};

impl Log {
    /// Appends a transaction marker for `producer_id` as leader (stamping
    /// `leader_epoch`) and returns its offset. The producer's open
    /// transaction ends; an abort is recorded in the aborted index.
    ///
    /// Refused with [`StorageError::InvalidProducerEpoch`] when
    /// `producer_epoch` is older than the producer's, and with
    /// [`StorageError::CoordinatorFenced`] when `coordinator_epoch` is
    /// older than that of its last marker; nothing is written then.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<i64, StorageError> {
        self.producers
            .check_marker(producer_id, producer_epoch, marker.coordinator_epoch)?;
        let offset = self.log_end_offset();
        let mut batch = encode_marker_batch(producer_id, producer_epoch, marker, now_ms);
        set_base_offset_and_epoch(&mut batch, offset, leader_epoch);
        let header = BatchHeader::parse(&batch)?;
        if self.should_roll(batch.len(), 1, offset, now_ms) {
            self.roll()?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut()
            .append(&batch, &[header], interval, now_ms)?;
        self.end_transaction(&header, marker)?;
        self.epochs.assign(leader_epoch, offset);
        self.count_unflushed(1, now_ms)?;
        Ok(offset)
    }

    /// Applies a marker just written to the active segment: producer state
    /// and, for an abort, the aborted index.
    pub(super) fn end_transaction(
        &mut self,
        header: &BatchHeader,
        marker: Marker,
    ) -> Result<(), StorageError> {
        match self.producers.end_transaction(header, marker) {
            Some(aborted) => self.active_mut().append_aborted(aborted),
            None => Ok(()),
        }
    }

    /// Applies the control batch `batch` (whole, header `header`) just
    /// written to the active segment, if it is a transaction marker.
    pub(super) fn note_control_batch(
        &mut self,
        header: &BatchHeader,
        batch: &[u8],
    ) -> Result<(), StorageError> {
        match parse_marker(batch) {
            Some(marker) => self.end_transaction(header, marker),
            None => Ok(()),
        }
    }

    /// First offset of the oldest open transaction, never below the log
    /// start offset (as in Kafka, a transaction whose start was deleted
    /// holds the last stable offset there); `None` when none is open. The
    /// last stable offset is this or the high watermark, the lower.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .first_unstable_offset()
            .map(|first| first.max(self.log_start_offset))
    }

    /// Number of open transactions in this partition.
    pub fn ongoing_transactions(&self) -> usize {
        self.producers.ongoing_transactions()
    }

    /// The aborted transactions a read_committed fetch of `[from, upper)`
    /// must report: those whose marker is at or after `from` and whose
    /// first offset is below `upper`. Segments are searched from the one
    /// holding `from` until an entry's last stable offset reaches `upper`
    /// (every transaction that started below it had ended by then), as
    /// Kafka does.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        let mut found = Vec::new();
        for segment in self.segments.range(start..).map(|(_, s)| s) {
            for entry in segment.aborted_txns() {
                if entry.last_offset >= from && entry.first_offset < upper {
                    found.push(*entry);
                }
                if entry.last_stable_offset >= upper {
                    return found;
                }
            }
        }
        found
    }

    /// Every aborted transaction recorded in the log, oldest marker first.
    pub fn all_aborted_transactions(&self) -> Vec<AbortedTxn> {
        self.segments
            .values()
            .flat_map(|s| s.aborted_txns().iter().copied())
            .collect()
    }

    /// Makes the aborted indexes agree with a walk of the log from `from`
    /// that produced `rebuilt` (entries for markers at or after `from`).
    pub(super) fn apply_rebuilt_aborted(
        &mut self,
        from: i64,
        rebuilt: &[AbortedTxn],
    ) -> Result<(), StorageError> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for (i, base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let segment = self.segments.get_mut(base).expect("listed");
            if segment.next_offset() <= from && !segment.txn_index_lost() {
                continue;
            }
            let mine: Vec<AbortedTxn> = rebuilt
                .iter()
                .filter(|e| (*base..next).contains(&e.last_offset))
                .copied()
                .collect();
            segment.rebuild_aborted_from(from.max(*base), &mine)?;
        }
        Ok(())
    }

    /// Whether some segment's aborted index must be rebuilt from the whole
    /// log (it was missing or damaged on open).
    pub(super) fn aborted_index_lost(&self) -> bool {
        self.segments.values().any(|s| s.txn_index_lost())
    }
}
