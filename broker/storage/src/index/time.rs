//! The time index (`.timeindex`): max timestamp so far -> relative offset.
//!
//! Entry layout (12 bytes, big endian): `i64` largest timestamp seen in the
//! segment up to and including the batch, `u32` base offset (relative) of the
//! batch that first reached that timestamp. Timestamps strictly increase
//! from entry to entry, so every batch before an entry's batch has a smaller
//! max timestamp: a lookup may start scanning at that batch. The last entry
//! always holds the segment's largest timestamp once the segment is rolled
//! or closed, which is what time retention and `max_timestamp` read.
//!
//! A segment whose first batch has max timestamp 0 gets the first entry
//! (0, 0): twelve zero bytes, like unused slack. [`MmapIndex`] counts it
//! from the trimmed file's length (see the `index` module doc), so such a
//! sealed segment is trusted on open like any other.

use std::path::Path;

use super::{i64_at, u32_at, IndexState, MmapIndex};
use crate::error::StorageError;

/// Size of one `.timeindex` entry.
const ENTRY_SIZE: usize = 12;

/// Memory-mapped time index of one segment.
pub(crate) struct TimeIndex {
    inner: MmapIndex,
    base_offset: i64,
}

impl TimeIndex {
    /// Opens or creates the time index of the segment at `base_offset`.
    pub(crate) fn open(
        path: &Path,
        base_offset: i64,
    ) -> Result<(TimeIndex, IndexState), StorageError> {
        // A first entry may be (0, 0), all zeroes; every later one is
        // greater in both fields, so never all zeroes.
        let follows = |previous: Option<&[u8]>, entry: &[u8]| match previous {
            None => i64_at(entry, 0) >= 0,
            Some(p) => i64_at(entry, 0) > i64_at(p, 0) && u32_at(entry, 8) > u32_at(p, 8),
        };
        let (inner, state) = MmapIndex::open(path, ENTRY_SIZE, follows)?;
        Ok((TimeIndex { inner, base_offset }, state))
    }

    /// Base offset of the batch to start scanning from for the first batch
    /// with max timestamp >= `timestamp`; `None` means the segment start.
    pub(crate) fn lookup(&self, timestamp: i64) -> Option<i64> {
        self.inner
            .floor(timestamp, |e| i64_at(e, 0))
            .map(|i| self.decode(i).1)
    }

    /// The last entry as (timestamp, absolute offset).
    pub(crate) fn last_entry(&self) -> Option<(i64, i64)> {
        self.inner.len().checked_sub(1).map(|i| self.decode(i))
    }

    fn decode(&self, i: usize) -> (i64, i64) {
        let entry = self.inner.entry(i);
        (
            i64_at(entry, 0),
            self.base_offset + i64::from(u32_at(entry, 8)),
        )
    }

    /// Adds (timestamp, offset) if `timestamp` is newer than the last entry.
    /// Returns false when nothing was written (not newer, or full).
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> bool {
        if timestamp < 0 || self.last_entry().is_some_and(|(ts, _)| ts >= timestamp) {
            return false;
        }
        let Ok(relative) = u32::try_from(offset - self.base_offset) else {
            return false;
        };
        let mut entry = [0u8; ENTRY_SIZE];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&relative.to_be_bytes());
        self.inner.push(&entry)
    }
}

// The file-level operations (remaining, clear, resize, trim, flush, path)
// are the shared mmap index's own.
impl std::ops::Deref for TimeIndex {
    type Target = MmapIndex;

    fn deref(&self) -> &MmapIndex {
        &self.inner
    }
}

impl std::ops::DerefMut for TimeIndex {
    fn deref_mut(&mut self) -> &mut MmapIndex {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_only_grow_and_lookup_floors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        let (mut index, _) = TimeIndex::open(&path, 1000).unwrap();
        index.resize(120).unwrap();
        assert!(index.maybe_append(50, 1000));
        assert!(!index.maybe_append(40, 1003));
        assert!(!index.maybe_append(50, 1004));
        assert!(index.maybe_append(90, 1010));
        assert_eq!(index.lookup(10), None);
        assert_eq!(index.lookup(50), Some(1000));
        assert_eq!(index.lookup(89), Some(1000));
        assert_eq!(index.lookup(1_000), Some(1010));
        assert_eq!(index.last_entry(), Some((90, 1010)));
        index.trim().unwrap();
        drop(index);

        let (index, state) = TimeIndex::open(&path, 1000).unwrap();
        assert_eq!(state, IndexState::Trimmed);
        assert_eq!(index.last_entry(), Some((90, 1010)));
    }

    /// A first entry (timestamp 0, relative offset 0) is twelve zero bytes,
    /// like preallocated slack; once trimmed it is still an entry.
    #[test]
    fn zero_entry_at_the_base_offset_survives_trim_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        let (mut index, _) = TimeIndex::open(&path, 1000).unwrap();
        index.resize(120).unwrap();
        assert!(index.maybe_append(0, 1000));
        index.trim().unwrap();
        drop(index);
        assert_eq!(std::fs::read(&path).unwrap(), [0u8; ENTRY_SIZE]);

        let (index, state) = TimeIndex::open(&path, 1000).unwrap();
        assert_eq!(state, IndexState::Trimmed);
        assert_eq!(index.len(), 1);
        assert_eq!(index.last_entry(), Some((0, 1000)));
        assert_eq!(index.lookup(0), Some(1000));
        assert_eq!(index.lookup(-1), None);
    }

    /// Entries after a zero first entry are well ordered, not garbage.
    #[test]
    fn zero_entry_followed_by_others_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        let (mut index, _) = TimeIndex::open(&path, 1000).unwrap();
        index.resize(120).unwrap();
        assert!(index.maybe_append(0, 1000));
        assert!(index.maybe_append(70, 1004));
        drop(index);

        // Not closed: zero slack follows the two entries.
        let (mut index, state) = TimeIndex::open(&path, 1000).unwrap();
        assert_eq!(state, IndexState::Untrimmed);
        assert_eq!(index.len(), 2);
        index.trim().unwrap();
        drop(index);

        let (index, state) = TimeIndex::open(&path, 1000).unwrap();
        assert_eq!(state, IndexState::Trimmed);
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(0), Some(1000));
        assert_eq!(index.lookup(69), Some(1000));
        assert_eq!(index.lookup(70), Some(1004));
    }

    /// In an untrimmed file a zero first slot followed by zero slack cannot
    /// be told from an empty index. It is read as empty: an untrimmed index
    /// is never trusted (the segment rebuilds it from the log).
    #[test]
    fn untrimmed_zero_slots_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        let (mut index, _) = TimeIndex::open(&path, 1000).unwrap();
        index.resize(120).unwrap();
        drop(index);
        let (index, state) = TimeIndex::open(&path, 1000).unwrap();
        assert_eq!((state, index.len()), (IndexState::Untrimmed, 0));

        let (mut index, _) = TimeIndex::open(&path, 1000).unwrap();
        assert!(index.maybe_append(0, 1000));
        drop(index);
        let (mut index, state) = TimeIndex::open(&path, 1000).unwrap();
        assert_eq!((state, index.len()), (IndexState::Untrimmed, 0));
        assert_eq!(index.remaining(), 10);
        assert!(index.maybe_append(0, 1000));
    }

    /// A zero entry anywhere but first breaks the order: it is slack if
    /// only zeros follow, garbage otherwise.
    #[test]
    fn zero_entry_after_the_first_is_not_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.timeindex");
        let entry = |ts: i64, rel: u32| [&ts.to_be_bytes()[..], &rel.to_be_bytes()].concat();
        let file = [entry(5, 0), entry(0, 0), entry(9, 3)].concat();
        std::fs::write(&path, file).unwrap();
        let (_, state) = TimeIndex::open(&path, 0).unwrap();
        assert_eq!(state, IndexState::Corrupt);

        let file = [entry(5, 0), entry(0, 0)].concat();
        std::fs::write(&path, file).unwrap();
        let (index, state) = TimeIndex::open(&path, 0).unwrap();
        assert_eq!((state, index.len()), (IndexState::Untrimmed, 1));
    }
}
