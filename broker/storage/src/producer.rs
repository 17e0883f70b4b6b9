//! Idempotent-producer state: the last batches of every producer id.
//!
//! Kafka's idempotence lets a producer retry a batch without creating a
//! duplicate: each batch carries (producer id, epoch, base sequence), and the
//! partition remembers the last [`MAX_CACHED_BATCHES`] batches per producer.
//! A retry of one of them is answered with its original offsets; a gap or
//! reordering of sequences is refused so the producer can fail loudly.
//!
//! The log snapshots this state at segment rolls and on clean close
//! (`snapshot.rs`) and on open restores it from the newest snapshot plus the
//! batch headers after it; appends stage their changes in
//! [`ProducerAppend`] and commit only after the write succeeded.

use std::collections::{HashMap, VecDeque};

use crate::{
    batch::{wrapping_sequence_add, BatchHeader},
    error::StorageError,
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    /// Newest epoch seen.
    pub epoch: i16,
    /// Last batches of that epoch, oldest first.
    pub batches: VecDeque<BatchMetadata>,
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
    }

    /// Every tracked producer with its entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> + '_ {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }

    /// Restores a producer's entry as a snapshot recorded it.
    pub(crate) fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.producers.insert(producer_id, entry);
    }

    /// Forgets cached batches that start below `offset` and producers left
    /// with none. After older segments were deleted, this turns state built
    /// from the whole history into what a walk of the batches from `offset`
    /// on builds: each entry caches a run of its producer's newest batches,
    /// so dropping a prefix of the log drops a prefix of the run.
    pub(crate) fn retain_from(&mut self, offset: i64) {
        self.producers.retain(|_, entry| {
            entry.batches.retain(|b| b.first_offset >= offset);
            !entry.batches.is_empty()
        });
    }

    /// The highest offset of any cached batch, if any.
    pub(crate) fn last_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|entry| entry.batches.back())
            .map(|b| b.last_offset)
            .max()
    }

    /// Records a batch already in the log (offsets assigned) without checks;
    /// used when rebuilding state from the log and to commit appends.
    pub fn record(&mut self, header: &BatchHeader) {
        if let Some(entry) = tracked(header) {
            record_into(self.producers.entry(entry).or_default(), header);
        }
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
        state.producers.extend(self.0);
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
