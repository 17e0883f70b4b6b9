//! The sparse offset index (`.index`): relative offset -> file position.
//!
//! Entry layout (8 bytes, big endian): `u32` offset relative to the segment's
//! base offset, `u32` byte position of the batch with that base offset. An
//! entry is added once at least `index_interval_bytes` of log have been
//! written since the previous one, so the first batch (position 0) never
//! has an entry; position 0 therefore marks unused, zeroed slack.

use std::path::Path;

use super::{u32_at, IndexState, MmapIndex};
use crate::error::StorageError;

/// Size of one `.index` entry.
const ENTRY_SIZE: usize = 8;

/// Memory-mapped offset index of one segment.
pub(crate) struct OffsetIndex {
    inner: MmapIndex,
    base_offset: i64,
}

impl OffsetIndex {
    /// Opens or creates the index of the segment starting at `base_offset`.
    pub(crate) fn open(
        path: &Path,
        base_offset: i64,
    ) -> Result<(OffsetIndex, IndexState), StorageError> {
        let follows = |previous: Option<&[u8]>, entry: &[u8]| {
            let (offset, position) = (u32_at(entry, 0), u32_at(entry, 4));
            match previous {
                None => position > 0,
                Some(p) => offset > u32_at(p, 0) && position > u32_at(p, 4),
            }
        };
        let (inner, state) = MmapIndex::open(path, ENTRY_SIZE, follows)?;
        Ok((OffsetIndex { inner, base_offset }, state))
    }

    /// Position of the last indexed batch whose base offset is <= `offset`,
    /// as (that batch's base offset, position); the segment start if none.
    pub(crate) fn lookup(&self, offset: i64) -> (i64, u64) {
        let relative = offset - self.base_offset;
        if relative < 0 {
            return (self.base_offset, 0);
        }
        let target = relative.min(i64::from(u32::MAX));
        match self.inner.floor(target, |e| i64::from(u32_at(e, 0))) {
            Some(i) => self.decode(i),
            None => (self.base_offset, 0),
        }
    }

    /// The last entry as (absolute offset, position).
    pub(crate) fn last_entry(&self) -> Option<(i64, u64)> {
        self.inner.len().checked_sub(1).map(|i| self.decode(i))
    }

    fn decode(&self, i: usize) -> (i64, u64) {
        let entry = self.inner.entry(i);
        (
            self.base_offset + i64::from(u32_at(entry, 0)),
            u64::from(u32_at(entry, 4)),
        )
    }

    /// Records that the batch with base offset `offset` starts at `position`.
    /// Returns false when the entry is skipped: the index is full, or the
    /// values do not fit 32 bits (the log rolls before that happens).
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> bool {
        let (Ok(relative), Ok(position)) = (
            u32::try_from(offset - self.base_offset),
            u32::try_from(position),
        ) else {
            return false;
        };
        let mut entry = [0u8; ENTRY_SIZE];
        entry[..4].copy_from_slice(&relative.to_be_bytes());
        entry[4..].copy_from_slice(&position.to_be_bytes());
        self.inner.push(&entry)
    }
}

// The file-level operations (remaining, clear, resize, trim, flush, path)
// are the shared mmap index's own.
impl std::ops::Deref for OffsetIndex {
    type Target = MmapIndex;

    fn deref(&self) -> &MmapIndex {
        &self.inner
    }
}

impl std::ops::DerefMut for OffsetIndex {
    fn deref_mut(&mut self) -> &mut MmapIndex {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let (mut index, state) = OffsetIndex::open(&path, 100).unwrap();
        assert_eq!(state, IndexState::Missing);
        index.resize(80).unwrap();
        assert!(index.append(110, 4000));
        assert!(index.append(120, 8000));
        assert_eq!(index.lookup(105), (100, 0));
        assert_eq!(index.lookup(110), (110, 4000));
        assert_eq!(index.lookup(119), (110, 4000));
        assert_eq!(index.lookup(500), (120, 8000));
        assert_eq!(index.lookup(50), (100, 0));
        assert_eq!(index.remaining(), 8);
        drop(index);

        let (index, state) = OffsetIndex::open(&path, 100).unwrap();
        assert_eq!(state, IndexState::Untrimmed);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn trimmed_and_corrupt_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let (mut index, _) = OffsetIndex::open(&path, 0).unwrap();
        index.resize(64).unwrap();
        index.append(5, 100);
        index.append(9, 200);
        index.trim().unwrap();
        drop(index);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        let (_, state) = OffsetIndex::open(&path, 0).unwrap();
        assert_eq!(state, IndexState::Trimmed);

        // Entries out of order: the second goes backwards.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&1u32.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (_, state) = OffsetIndex::open(&path, 0).unwrap();
        assert_eq!(state, IndexState::Corrupt);

        std::fs::write(&path, [1u8; 13]).unwrap();
        let (_, state) = OffsetIndex::open(&path, 0).unwrap();
        assert_eq!(state, IndexState::Corrupt);
    }

    #[test]
    fn full_index_skips_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut index, _) = OffsetIndex::open(&dir.path().join("x.index"), 0).unwrap();
        index.resize(8).unwrap();
        assert!(index.append(1, 10));
        assert!(!index.append(2, 20));
        assert_eq!(index.len(), 1);
    }
}
