//! Memory-mapped sparse indexes of a segment.
//!
//! Both indexes are arrays of fixed-size big-endian entries in a file that is
//! preallocated to `segment_index_bytes` while its segment is active (so
//! appends never grow the file or remap) and trimmed to the used entries when
//! the segment is rolled or closed. A file longer than its used entries
//! therefore tells recovery that its segment was not closed cleanly.
//!
//! Unused slack is zeroes, and one real entry can be all zeroes too: a time
//! index's first entry (timestamp 0, relative offset 0). Every later entry
//! is strictly greater than its predecessor, so no other zero entry is
//! valid, and only a zeroed first slot is ambiguous. As in Kafka, the
//! length of a trimmed file is its entry count, so a trimmed file's zeroed
//! first slot is that entry; in a file with slack it counts only if entries
//! follow it, and otherwise reads as slack (such a file is rebuilt from the
//! log anyway, which settles it).
//!
//! [`MmapIndex`] owns the file, the mapping and the count of used entries;
//! [`OffsetIndex`] and [`TimeIndex`] give the entries their meaning.

mod offset;
mod time;
mod txn;
#[cfg(test)]
mod zero_timestamp_tests;

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
};

use memmap2::MmapMut;

pub(crate) use self::{
    offset::OffsetIndex,
    time::TimeIndex,
    txn::{TxnIndex, TxnIndexState},
};
use crate::{
    error::StorageError,
    faults::{self, Site},
};

/// What opening an index file found, so the segment can decide whether it
/// must rebuild the index from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexState {
    /// The file did not exist (it has been created empty).
    Missing,
    /// Entries are well formed and the file was trimmed on close.
    Trimmed,
    /// Entries are well formed but followed by zeroed slack: the segment was
    /// active when the process stopped without closing it.
    Untrimmed,
    /// The file cannot be an index: odd length, entries out of order, or
    /// garbage after the last entry.
    Corrupt,
}

/// An index file of fixed-size entries, mapped read-write. The file is
/// closed once mapped (the mapping keeps it alive) and reopened only to
/// resize it, so a partition holds no descriptors for its indexes:
/// thousands of partitions fit the usual open-file limits.
pub(crate) struct MmapIndex {
    path: PathBuf,
    mmap: MmapMut,
    entry_size: usize,
    entries: usize,
    /// Bytes from the start of the file known to have disk space behind
    /// them (see [`MmapIndex::reserve`]).
    reserved: usize,
}

/// Index bytes allocated at a time ahead of the entries written: 64 KiB,
/// 8192 offset-index entries, about 32 MiB of log at the default
/// `index.interval.bytes`. Small, so a tiny or nearly full disk is not
/// taken by slack.
const RESERVE_BYTES: usize = 64 << 10;

impl MmapIndex {
    /// Opens or creates `path` and counts its used entries: the longest
    /// prefix where `follows(previous, entry)` holds, less a trailing
    /// all-zero entry when zero slack follows (see the module doc).
    /// `follows` receives `None` as the previous entry for the first one.
    fn open(
        path: &Path,
        entry_size: usize,
        follows: impl Fn(Option<&[u8]>, &[u8]) -> bool,
    ) -> Result<(MmapIndex, IndexState), StorageError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(StorageError::open_file(path))?;
        let mmap = map(&file, path)?;
        drop(file);
        let mut index = MmapIndex {
            path: path.to_path_buf(),
            mmap,
            entry_size,
            entries: 0,
            reserved: 0,
        };
        if !existed {
            return Ok((index, IndexState::Missing));
        }
        if !index.mmap.len().is_multiple_of(entry_size) {
            return Ok((index, IndexState::Corrupt));
        }
        let capacity = index.capacity();
        let mut used = 0;
        while used < capacity {
            let previous = used.checked_sub(1).map(|p| index.entry(p));
            if !follows(previous, index.entry(used)) {
                break;
            }
            used += 1;
        }
        // Slack is judged by its first and last slot only: a preallocated
        // index is megabytes of zeros, and scanning all of them for every
        // active segment made start-up after a crash cost tens of ms per
        // partition. Untrimmed and corrupt indexes are both rebuilt from the
        // log, so the distinction only names what was found.
        let state = if used == capacity {
            IndexState::Trimmed
        } else if is_zero(index.entry(used)) && is_zero(index.entry(capacity - 1)) {
            // Only a first entry can be all zero; followed by slack it is
            // indistinguishable from slack, so it is read as such.
            if used == 1 && is_zero(index.entry(0)) {
                used = 0;
            }
            IndexState::Untrimmed
        } else {
            IndexState::Corrupt
        };
        index.entries = used;
        Ok((index, state))
    }

    /// Bytes of entry `i`.
    fn entry(&self, i: usize) -> &[u8] {
        &self.mmap[i * self.entry_size..(i + 1) * self.entry_size]
    }

    /// Number of used entries.
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    /// Entries the current file size can hold.
    fn capacity(&self) -> usize {
        self.mmap.len() / self.entry_size
    }

    /// Entries that can still be appended without growing the file.
    pub(crate) fn remaining(&self) -> usize {
        self.capacity() - self.entries
    }

    /// Appends one entry; returns false (and writes nothing) when full,
    /// because a sparser index is still a correct one.
    fn push(&mut self, entry: &[u8]) -> bool {
        if self.remaining() == 0 {
            return false;
        }
        let at = self.entries * self.entry_size;
        self.mmap[at..at + self.entry_size].copy_from_slice(entry);
        self.entries += 1;
        true
    }

    /// Largest `i` in `0..len` with `key(i) <= target`, by binary search.
    /// Entries are increasing in every key the indexes use.
    fn floor(&self, target: i64, key: impl Fn(&[u8]) -> i64) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(self.entry(mid)) <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Forgets every entry and zeroes them, so a later open does not count
    /// stale entries as used.
    pub(crate) fn clear(&mut self) {
        let used = self.entries * self.entry_size;
        self.mmap[..used].fill(0);
        self.entries = 0;
    }

    /// Makes sure the next `entries` entries (as far as the file holds)
    /// have disk space allocated, a chunk at a time.
    ///
    /// Why: the file is grown with `set_len`, which leaves a hole, and an
    /// entry is written through the mapping. On a full disk the page fault
    /// that would allocate the hole's block cannot fail politely: the
    /// kernel sends SIGBUS, which kills the process. Allocating ahead with
    /// `fallocate` turns that into an error of the append that needs it,
    /// before anything of it is written.
    pub(crate) fn reserve(&mut self, entries: usize) -> Result<(), StorageError> {
        let need = ((self.entries + entries) * self.entry_size).min(self.mmap.len());
        if need <= self.reserved {
            return Ok(());
        }
        let upto = (need + RESERVE_BYTES).min(self.mmap.len());
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(StorageError::open_file(&self.path))?;
        faults::check(Site::Index, &self.path)
            .and_then(|()| allocate(&file, self.reserved as u64, (upto - self.reserved) as u64))
            .map_err(StorageError::map_index(&self.path))?;
        self.reserved = upto;
        Ok(())
    }

    /// Resizes the file to `bytes` (rounded down to whole entries, never
    /// below the used entries) and remaps it.
    pub(crate) fn resize(&mut self, bytes: usize) -> Result<(), StorageError> {
        let bytes = (bytes / self.entry_size).max(self.entries) * self.entry_size;
        if bytes == self.mmap.len() {
            return Ok(());
        }
        self.flush()?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(StorageError::open_file(&self.path))?;
        faults::check(Site::Index, &self.path)
            .and_then(|()| file.set_len(bytes as u64))
            .map_err(StorageError::map_index(&self.path))?;
        self.reserved = self.reserved.min(bytes);
        // The old mapping is not touched between set_len and this assignment,
        // which drops it; only the new mapping is read afterwards.
        self.mmap = map(&file, &self.path)?;
        Ok(())
    }

    /// Shrinks the file to the used entries (segment rolled or closed).
    pub(crate) fn trim(&mut self) -> Result<(), StorageError> {
        self.resize(self.entries * self.entry_size)
    }

    /// Writes dirty pages of the mapping to disk.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        faults::check(Site::Fsync, &self.path)
            .and_then(|()| self.mmap.flush())
            .map_err(StorageError::flush(&self.path))
    }

    /// The index file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Maps `file` read-write.
fn map(file: &File, path: &Path) -> Result<MmapMut, StorageError> {
    // SAFETY: the index file belongs to this partition directory, which only
    // this process writes, and the mapping lives inside the `MmapIndex` that
    // owns the file. The file is only shrunk through `MmapIndex::resize`,
    // which replaces the mapping right after without reading the old one,
    // so no access can fall past the end of the file.
    unsafe { MmapMut::map_mut(file) }.map_err(StorageError::map_index(path))
}

/// Allocates disk space for `len` bytes at `offset` of `file` (within its
/// size, which does not change).
#[cfg(target_os = "linux")]
fn allocate(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let convert = |n: u64| {
        libc::off_t::try_from(n).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (offset, len) = (convert(offset)?, convert(len)?);
    // SAFETY: plain integer arguments on a descriptor open for as long as
    // `file` is borrowed; the call touches no memory of ours.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
    match rc {
        0 => Ok(()),
        _ => {
            let e = std::io::Error::last_os_error();
            // A file system without fallocate allocates on write as before.
            match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) => Ok(()),
                _ => Err(e),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate(_: &File, _: u64, _: u64) -> std::io::Result<()> {
    Ok(())
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

fn u32_at(entry: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(entry[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(entry: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(entry[at..at + 8].try_into().expect("8 bytes"))
}
