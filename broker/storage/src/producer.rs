//! Idempotent and transactional producer state: the last batches of every
//! producer id and the transaction each one has open.
//!
//! Kafka's idempotence lets a producer retry a batch without creating a
//! duplicate: each batch carries (producer id, epoch, base sequence), and the
//! partition remembers the last [`MAX_CACHED_BATCHES`] batches per producer.
//! A retry of one of them is answered with its original offsets; a gap or
//! reordering of sequences is refused so the producer can fail loudly.
//!
//! A transactional batch (attributes bit 4) opens a transaction for its
//! producer if none is open, at the batch's base offset; the producer's
//! next transaction marker (`txn.rs`) closes it. The open transactions'
//! first offsets are kept ordered, because the oldest one bounds the last
//! stable offset that read_committed consumers read up to.
//!
//! The log snapshots this state at segment rolls and on clean close
//! (`snapshot.rs`) and on open restores it from the newest snapshot plus the
//! batch headers after it; appends stage their changes in
//! [`ProducerAppend`] and commit only after the write succeeded.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::{
    batch::{wrapping_sequence_add, BatchHeader},
    error::StorageError,
    txn::{AbortedTxn, Marker},
};

/// Batches remembered per producer; Kafka producers keep at most five
/// requests in flight, so a retry is always among the last five.
pub const MAX_CACHED_BATCHES: usize = 5;

/// Kafka's `RecordBatch.NO_SEQUENCE`: the base sequence of batches a
/// coordinator writes on a producer's behalf.
pub const NO_SEQUENCE: i32 = -1;

/// Where one remembered batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset assigned to the first record.
    pub first_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
}

/// What the log knows about one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    /// Newest epoch seen.
    pub epoch: i16,
    /// Last batches of that epoch, oldest first (none after a marker that
    /// bumped the epoch).
    pub batches: VecDeque<BatchMetadata>,
    /// Epoch of the coordinator that wrote the producer's last marker, -1
    /// before any: markers from an older coordinator are refused.
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction, if one is open.
    pub current_txn_first_offset: Option<i64>,
    /// Max timestamp of the producer's last batch or marker, -1 if unknown.
    pub last_timestamp: i64,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            current_txn_first_offset: None,
            last_timestamp: -1,
        }
    }
}

impl ProducerEntry {
    /// Sequence of the last record written, -1 if none is remembered.
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_sequence)
    }
}

/// Verdict on one incoming batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data in sequence: append it.
    Append,
    /// A retry of a batch already in the log, with its original offsets.
    Duplicate(BatchMetadata),
}

/// All tracked producers of a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// (first offset, producer id) of every open transaction, so the
    /// oldest is at hand for the last stable offset.
    ongoing: BTreeSet<(i64, i64)>,
}

impl ProducerStateManager {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of one producer id.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Number of tracked producers.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Forgets every producer (before a rebuild).
    pub fn clear(&mut self) {
        self.producers.clear();
        self.ongoing.clear();
    }

    /// First offset of the oldest open transaction: the last stable offset
    /// cannot pass it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|&(offset, _)| offset)
    }

    /// Number of open transactions.
    pub fn ongoing_transactions(&self) -> usize {
        self.ongoing.len()
    }

    /// Every tracked producer with its entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> + '_ {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }

    /// Restores a producer's entry as a snapshot recorded it.
    pub(crate) fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        let old = self.producers.insert(producer_id, entry);
        let old_txn = old.and_then(|e| e.current_txn_first_offset);
        self.sync_ongoing(producer_id, old_txn);
    }

    /// Brings `ongoing` in line with the entry of `producer_id` after it
    /// changed from having `old_txn` open.
    fn sync_ongoing(&mut self, producer_id: i64, old_txn: Option<i64>) {
        let new_txn = self
            .producers
            .get(&producer_id)
            .and_then(|e| e.current_txn_first_offset);
        if old_txn != new_txn {
            if let Some(first) = old_txn {
                self.ongoing.remove(&(first, producer_id));
            }
            if let Some(first) = new_txn {
                self.ongoing.insert((first, producer_id));
            }
        }
    }

    /// Forgets producers idle since before `cutoff_ms` (their last batch's
    /// timestamp) with no transaction open: Kafka's
    /// `producer.id.expiration.ms`. Returns how many were forgotten. A
    /// forgotten producer's next batch is accepted as its first.
    pub fn remove_expired(&mut self, cutoff_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.current_txn_first_offset.is_some() || e.last_timestamp >= cutoff_ms);
        before - self.producers.len()
    }

    /// Forgets cached batches that start below `offset` and producers left
    /// with none and no open transaction. After older segments were
    /// deleted, this turns state built from the whole history into what a
    /// walk of the batches from `offset` on builds: each entry caches a run
    /// of its producer's newest batches, so dropping a prefix of the log
    /// drops a prefix of the run. An open transaction stays open (as in
    /// Kafka, the last stable offset is then held at the log start offset)
    /// until its marker comes, which a walk could not know.
    pub(crate) fn retain_from(&mut self, offset: i64) {
        self.producers.retain(|_, entry| {
            entry.batches.retain(|b| b.first_offset >= offset);
            !entry.batches.is_empty() || entry.current_txn_first_offset.is_some()
        });
    }

    /// The highest offset any cached batch or open transaction refers to.
    pub(crate) fn last_offset(&self) -> Option<i64> {
        let batches = self
            .producers
            .values()
            .filter_map(|entry| entry.batches.back())
            .map(|b| b.last_offset);
        batches.chain(self.ongoing.last().map(|&(o, _)| o)).max()
    }

    /// Records a data batch already in the log (offsets assigned) without
    /// checks; used when rebuilding state from the log and on followers.
    pub fn record(&mut self, header: &BatchHeader) {
        if let Some(producer_id) = tracked(header) {
            let entry = self.producers.entry(producer_id).or_default();
            let old_txn = entry.current_txn_first_offset;
            record_into(entry, header);
            self.sync_ongoing(producer_id, old_txn);
        }
    }

    /// Checks a marker the coordinator asks to write: refused if its
    /// producer epoch is older than the producer's (Kafka's
    /// INVALID_PRODUCER_EPOCH) or its coordinator epoch older than the
    /// last marker's (TRANSACTION_COORDINATOR_FENCED).
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), StorageError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                found: producer_epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(StorageError::CoordinatorFenced {
                producer_id,
                current: entry.coordinator_epoch,
                found: coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a marker already in the log (`header` is its control batch):
    /// the producer's open transaction ends. Returns the aborted-index
    /// entry when it aborted a transaction that wrote here, with the last
    /// stable offset as it is once this one is closed.
    pub fn end_transaction(&mut self, header: &BatchHeader, marker: Marker) -> Option<AbortedTxn> {
        if header.producer_id < 0 {
            return None;
        }
        let producer_id = header.producer_id;
        let entry = self.producers.entry(producer_id).or_default();
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        entry.last_timestamp = header.max_timestamp;
        let first = entry.current_txn_first_offset.take();
        self.sync_ongoing(producer_id, first);
        let first_offset = first.filter(|_| !marker.commit)?;
        let last_offset = header.base_offset;
        Some(AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset: self.first_unstable_offset().unwrap_or(last_offset + 1),
        })
    }
}

/// Producer state changes of one append, applied only if the append succeeds.
pub struct ProducerAppend<'a> {
    base: &'a ProducerStateManager,
    staged: HashMap<i64, ProducerEntry>,
}

impl<'a> ProducerAppend<'a> {
    /// Starts staging changes on top of `base`.
    pub fn new(base: &'a ProducerStateManager) -> Self {
        ProducerAppend {
            base,
            staged: HashMap::new(),
        }
    }

    /// Checks `header` against what is known of its producer. Untracked
    /// batches (producer id -1, control batches) always pass.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, StorageError> {
        let Some(producer_id) = tracked(header) else {
            return Ok(SequenceCheck::Append);
        };
        let entry = self
            .staged
            .get(&producer_id)
            .or_else(|| self.base.get(producer_id));
        let Some(entry) = entry else {
            // First batch we see from this producer: any sequence goes, as
            // its earlier batches may have been deleted by retention.
            return Ok(SequenceCheck::Append);
        };
        let found = header.base_sequence;
        if found == NO_SEQUENCE && header.producer_epoch >= entry.epoch {
            // Written by a coordinator (transactional offset commits), not
            // by the producer: no sequence to check (Kafka's coordinator
            // origin).
            return Ok(SequenceCheck::Append);
        }
        if header.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                found: header.producer_epoch,
            });
        }
        if !header.is_transactional() && entry.current_txn_first_offset.is_some() {
            // Kafka's INVALID_TXN_STATE: a plain write inside a transaction.
            return Err(StorageError::InvalidTxnState { producer_id });
        }
        if header.producer_epoch > entry.epoch {
            // A bumped epoch restarts sequences at 0.
            if found != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    found,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let last_sequence = header.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == found && b.last_sequence == last_sequence)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        if let Some(last) = entry.batches.back() {
            let expected = wrapping_sequence_add(last.last_sequence, 1);
            if found != expected {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id,
                    expected,
                    found,
                });
            }
        }
        Ok(SequenceCheck::Append)
    }

    /// Stages a checked batch whose offsets have been assigned.
    pub fn record(&mut self, header: &BatchHeader) {
        if let Some(producer_id) = tracked(header) {
            let base = self.base;
            let entry = self
                .staged
                .entry(producer_id)
                .or_insert_with(|| base.get(producer_id).cloned().unwrap_or_default());
            record_into(entry, header);
        }
    }

    /// Takes the staged changes, ending the borrow of the base state.
    pub fn into_staged(self) -> StagedProducers {
        StagedProducers(self.staged)
    }
}

/// Staged producer changes detached from the state they were checked against.
pub struct StagedProducers(HashMap<i64, ProducerEntry>);

impl StagedProducers {
    /// Applies the changes.
    pub fn commit(self, state: &mut ProducerStateManager) {
        for (producer_id, entry) in self.0 {
            state.insert(producer_id, entry);
        }
    }
}

/// The producer id of a batch whose sequence the log tracks.
fn tracked(header: &BatchHeader) -> Option<i64> {
    // Control batches are written by the transaction coordinator, not the
    // producer, and carry no sequence.
    (header.producer_id >= 0 && !header.is_control()).then_some(header.producer_id)
}

fn record_into(entry: &mut ProducerEntry, header: &BatchHeader) {
    if entry.epoch != header.producer_epoch {
        entry.epoch = header.producer_epoch;
        entry.batches.clear();
    }
    entry.last_timestamp = header.max_timestamp;
    if header.is_transactional() && entry.current_txn_first_offset.is_none() {
        entry.current_txn_first_offset = Some(header.base_offset);
    }
    if header.base_sequence == NO_SEQUENCE {
        // A coordinator's batch: it moves the epoch, not the sequences.
        return;
    }
    entry.batches.push_back(BatchMetadata {
        first_sequence: header.base_sequence,
        last_sequence: header.last_sequence(),
        first_offset: header.base_offset,
        last_offset: header.last_offset(),
    });
    if entry.batches.len() > MAX_CACHED_BATCHES {
        entry.batches.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::idempotent;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        let mut h = BatchHeader::parse(&idempotent(pid, epoch, seq, records)).unwrap();
        h.base_offset = base_offset;
        h
    }

    fn check(state: &ProducerStateManager, h: &BatchHeader) -> Result<SequenceCheck, StorageError> {
        ProducerAppend::new(state).check(h)
    }

    #[test]
    fn idle_producers_expire_unless_a_transaction_is_open() {
        let mut state = ProducerStateManager::new();
        let mut idle = header(1, 0, 0, 1, 0);
        idle.max_timestamp = 1_000;
        state.record(&idle);
        let mut recent = header(2, 0, 0, 1, 1);
        recent.max_timestamp = 9_000;
        state.record(&recent);
        let mut open = header(3, 0, 0, 1, 2);
        open.max_timestamp = 1_000;
        open.attributes |= 0x10; // transactional
        state.record(&open);
        assert_eq!(state.remove_expired(5_000), 1);
        assert!(state.get(1).is_none(), "idle since 1,000: forgotten");
        assert!(state.get(2).is_some());
        assert!(
            state.get(3).is_some(),
            "an open transaction keeps its producer"
        );
    }

    #[test]
    fn coordinator_batches_without_sequences_always_append() {
        let mut state = ProducerStateManager::new();
        for offset in [0, 3, 6] {
            let h = header(9, 2, NO_SEQUENCE, 3, offset);
            assert!(matches!(check(&state, &h), Ok(SequenceCheck::Append)));
            state.record(&h);
        }
        assert_eq!(state.get(9).map(|e| e.epoch), Some(2));
        // An older epoch is still fenced.
        assert!(check(&state, &header(9, 1, NO_SEQUENCE, 1, 9)).is_err());
    }

    #[test]
    fn sequences_must_follow() {
        let mut state = ProducerStateManager::new();
        let first = header(1, 0, 5, 3, 0);
        assert_eq!(check(&state, &first).unwrap(), SequenceCheck::Append);
        state.record(&first);
        assert!(matches!(
            check(&state, &header(1, 0, 9, 1, 3)),
            Err(StorageError::OutOfOrderSequence {
                expected: 8,
                found: 9,
                ..
            })
        ));
        assert_eq!(
            check(&state, &header(1, 0, 8, 1, 3)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn retries_are_duplicates_with_original_offsets() {
        let mut state = ProducerStateManager::new();
        for i in 0..7 {
            state.record(&header(1, 0, i * 2, 2, 100 + i64::from(i) * 2));
        }
        // Batch 2 (seq 4..5) is still among the last five.
        match check(&state, &header(1, 0, 4, 2, -1)).unwrap() {
            SequenceCheck::Duplicate(meta) => {
                assert_eq!((meta.first_offset, meta.last_offset), (104, 105))
            }
            other => panic!("expected duplicate, got {other:?}"),
        }
        // Batch 0 has been forgotten: it is now just out of order.
        assert!(check(&state, &header(1, 0, 0, 2, -1)).is_err());
    }

    #[test]
    fn epochs() {
        let mut state = ProducerStateManager::new();
        state.record(&header(1, 3, 0, 1, 0));
        assert!(matches!(
            check(&state, &header(1, 2, 1, 1, 1)),
            Err(StorageError::InvalidProducerEpoch {
                current: 3,
                found: 2,
                ..
            })
        ));
        assert!(matches!(
            check(&state, &header(1, 4, 1, 1, 1)),
            Err(StorageError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(
            check(&state, &header(1, 4, 0, 1, 1)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn sequence_wraps() {
        let mut state = ProducerStateManager::new();
        state.record(&header(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(
            check(&state, &header(1, 0, 0, 1, 2)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn staged_batches_are_seen_by_later_checks_and_commit() {
        let mut state = ProducerStateManager::new();
        state.record(&header(1, 0, 0, 1, 0));
        let mut append = ProducerAppend::new(&state);
        let next = header(1, 0, 1, 1, 1);
        append.check(&next).unwrap();
        append.record(&next);
        assert!(append
            .check(&header(1, 0, 1, 1, 2))
            .is_ok_and(|c| c != SequenceCheck::Append));
        let staged = append.into_staged();
        assert_eq!(state.get(1).unwrap().batches.len(), 1);
        staged.commit(&mut state);
        assert_eq!(state.get(1).unwrap().batches.len(), 2);
    }

    #[test]
    fn retain_from_drops_a_prefix_like_a_shorter_walk() {
        // Two producers of seven batches each: more than the cache holds.
        let all: Vec<BatchHeader> = (0..14)
            .map(|i| header(1 + i64::from(i % 2), 0, i / 2, 1, i64::from(i) * 10))
            .collect();
        let mut state = ProducerStateManager::new();
        all.iter().for_each(|h| state.record(h));
        assert_eq!(state.last_offset(), Some(130));
        for from in [0, 25, 50, 100, 130, 131] {
            let mut walked = ProducerStateManager::new();
            all.iter()
                .filter(|h| h.base_offset >= from)
                .for_each(|h| walked.record(h));
            let mut retained = state.clone();
            retained.retain_from(from);
            assert_eq!(retained, walked, "from {from}");
        }
        assert_eq!(ProducerStateManager::new().last_offset(), None);
    }

    #[test]
    fn untracked_producers_pass() {
        let state = ProducerStateManager::new();
        let h = BatchHeader::parse(&crate::test_util::simple(1, 0, 0)).unwrap();
        assert_eq!(check(&state, &h).unwrap(), SequenceCheck::Append);
    }
}
