//! The aborted-transaction index of a segment: `<base>.txnindex`, Kafka's
//! format, one 34-byte big-endian entry per transaction aborted by a
//! marker in the segment, in marker order:
//!
//! ```text
//! version i16 = 0, producer id i64, first offset i64, last offset i64,
//! last stable offset i64
//! ```
//!
//! Unlike the offset and time indexes it is not memory-mapped: aborts are
//! rare, so the entries live in memory and the file is only appended to
//! (or rewritten when truncated). Every segment has the file, empty when
//! nothing aborted, so a missing one means it was lost and must be rebuilt
//! from the log; a file that is not whole entries in increasing marker
//! order is rebuilt too. Appends are not fsynced one by one: the file is
//! fsynced when its segment is sealed, and the active segment's entries
//! are rebuilt from the log after a crash.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use crate::{error::StorageError, txn::AbortedTxn};

/// Bytes per entry.
pub(crate) const ENTRY_SIZE: usize = 34;
/// The only entry version.
const VERSION: i16 = 0;

/// What opening found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnIndexState {
    /// Whole, ordered entries.
    Valid,
    /// No file (now created empty).
    Missing,
    /// Not whole entries, a wrong version or out of order (now emptied).
    Corrupt,
}

/// A segment's aborted transactions and their file.
pub(crate) struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// Creates an empty index at `path`, replacing any file there.
    pub(crate) fn create(path: &Path) -> Result<TxnIndex, StorageError> {
        File::create(path).map_err(StorageError::open_file(path))?;
        Ok(TxnIndex {
            path: path.to_path_buf(),
            entries: Vec::new(),
        })
    }

    /// Reads the index at `path`; a missing or damaged file is replaced by
    /// an empty one and reported, so the log rebuilds the entries.
    pub(crate) fn open(path: &Path) -> Result<(TxnIndex, TxnIndexState), StorageError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((TxnIndex::create(path)?, TxnIndexState::Missing))
            }
            Err(e) => return Err(StorageError::read_segment(path)(e)),
        };
        match decode(&bytes) {
            Some(entries) => Ok((
                TxnIndex {
                    path: path.to_path_buf(),
                    entries,
                },
                TxnIndexState::Valid,
            )),
            None => Ok((TxnIndex::create(path)?, TxnIndexState::Corrupt)),
        }
    }

    /// The entries, in marker order.
    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// Appends an entry for a marker after every entry already here.
    pub(crate) fn append(&mut self, entry: AbortedTxn) -> Result<(), StorageError> {
        debug_assert!(self
            .entries
            .last()
            .is_none_or(|last| last.last_offset < entry.last_offset));
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(StorageError::open_file(&self.path))?;
        file.write_all(&encode(&[entry]))
            .map_err(StorageError::write_segment(&self.path))?;
        self.entries.push(entry);
        Ok(())
    }

    /// Forgets the entries whose marker is at or after `offset`.
    pub(crate) fn truncate_from(&mut self, offset: i64) -> Result<(), StorageError> {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(StorageError::open_file(&self.path))?;
        file.set_len((keep * ENTRY_SIZE) as u64)
            .map_err(StorageError::truncate(&self.path))?;
        self.entries.truncate(keep);
        Ok(())
    }

    /// Makes the entries those with markers below `from` followed by
    /// `rebuilt`, writing only if that changes anything. Returns whether
    /// it did.
    pub(crate) fn rebuild_from(
        &mut self,
        from: i64,
        rebuilt: &[AbortedTxn],
    ) -> Result<bool, StorageError> {
        let keep = self.entries.partition_point(|e| e.last_offset < from);
        if self.entries[keep..] == *rebuilt {
            return Ok(false);
        }
        self.truncate_from(from)?;
        for entry in rebuilt {
            self.append(*entry)?;
        }
        Ok(true)
    }

    /// Replaces every entry (compaction: the entries of the segments a
    /// cleaned one replaced), writing a temp file renamed into place.
    pub(crate) fn replace(&mut self, entries: Vec<AbortedTxn>) -> Result<(), StorageError> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&encode(&entries))?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().map_err(StorageError::write_segment(&self.path))?;
        self.entries = entries;
        Ok(())
    }

    /// fsyncs the file.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(StorageError::flush(&self.path))
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn encode(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_SIZE);
    for e in entries {
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&e.producer_id.to_be_bytes());
        out.extend_from_slice(&e.first_offset.to_be_bytes());
        out.extend_from_slice(&e.last_offset.to_be_bytes());
        out.extend_from_slice(&e.last_stable_offset.to_be_bytes());
    }
    out
}

/// Whole entries of version 0 with markers in increasing order, each
/// after its transaction's first offset; `None` otherwise.
fn decode(bytes: &[u8]) -> Option<Vec<AbortedTxn>> {
    if !bytes.len().is_multiple_of(ENTRY_SIZE) {
        return None;
    }
    let i64_at = |chunk: &[u8], at: usize| {
        i64::from_be_bytes(chunk[at..at + 8].try_into().expect("8 bytes"))
    };
    let mut entries: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / ENTRY_SIZE);
    for chunk in bytes.chunks_exact(ENTRY_SIZE) {
        if i16::from_be_bytes([chunk[0], chunk[1]]) != VERSION {
            return None;
        }
        let entry = AbortedTxn {
            producer_id: i64_at(chunk, 2),
            first_offset: i64_at(chunk, 10),
            last_offset: i64_at(chunk, 18),
            last_stable_offset: i64_at(chunk, 26),
        };
        let ordered = entries
            .last()
            .is_none_or(|last| last.last_offset < entry.last_offset);
        if !ordered || entry.first_offset > entry.last_offset || entry.first_offset < 0 {
            return None;
        }
        entries.push(entry);
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn entries_are_kafkas_34_bytes() {
        let bytes = encode(&[AbortedTxn {
            producer_id: 0x0102,
            first_offset: 3,
            last_offset: 4,
            last_stable_offset: 5,
        }]);
        let mut expected = vec![0, 0];
        for v in [0x0102i64, 3, 4, 5] {
            expected.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(bytes, expected);
        assert_eq!(decode(&bytes).unwrap()[0].producer_id, 0x0102);
    }

    #[test]
    fn append_truncate_rebuild_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let (mut index, state) = TxnIndex::open(&path).unwrap();
        assert_eq!(state, TxnIndexState::Missing);
        assert!(path.exists());
        for (pid, first, last) in [(1, 0, 5), (2, 3, 9), (1, 10, 12)] {
            index.append(entry(pid, first, last)).unwrap();
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), 3 * 34);
        index.truncate_from(9).unwrap();
        assert_eq!(index.entries(), &[entry(1, 0, 5)]);
        let (reopened, state) = TxnIndex::open(&path).unwrap();
        assert_eq!(state, TxnIndexState::Valid);
        assert_eq!(reopened.entries(), index.entries());
        assert!(!index.rebuild_from(6, &[]).unwrap());
        assert!(index.rebuild_from(6, &[entry(3, 6, 7)]).unwrap());
        index.replace(vec![entry(4, 1, 2)]).unwrap();
        assert_eq!(
            TxnIndex::open(&path).unwrap().0.entries(),
            &[entry(4, 1, 2)]
        );
    }

    #[test]
    fn damaged_files_are_reported_and_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txnindex");
        let good = encode(&[entry(1, 0, 5), entry(2, 6, 8)]);
        for bad in [
            good[..40].to_vec(),
            encode(&[entry(2, 6, 8), entry(1, 0, 5)]),
            encode(&[entry(1, 6, 5)]),
            {
                let mut v = good.clone();
                v[1] = 1;
                v
            },
        ] {
            fs::write(&path, bad).unwrap();
            let (index, state) = TxnIndex::open(&path).unwrap();
            assert_eq!(state, TxnIndexState::Corrupt);
            assert!(index.entries().is_empty());
            assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        }
    }
}
