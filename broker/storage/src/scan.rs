//! Sequential batch walking over a segment file with positional reads.
//!
//! Recovery, index rebuilds, reads and timestamp lookups all walk batch
//! headers from some file position. [`BatchScanner`] reads the file in
//! chunks so that walking many small batches costs one syscall per chunk,
//! not one per header, and it takes `&File` so readers sharing a log through
//! `&self` never move a shared file cursor.

use std::{fs::File, os::unix::fs::FileExt, path::Path};

use crate::{
    batch::{check_stored_fields, BatchError, BatchHeader},
    error::StorageError,
};

/// Bytes read per refill; big enough to hold many typical batches.
const CHUNK: usize = 64 * 1024;

/// One step of a walk.
#[derive(Debug)]
pub(crate) enum Scanned {
    /// A structurally valid batch header at a file position.
    Batch(u64, BatchHeader),
    /// The walk reached exactly the end of the file.
    End,
    /// The bytes at this position are not a valid batch (torn or corrupt).
    Invalid(u64, BatchError),
}

/// Walks batches of one segment file from a start position to `end`.
pub(crate) struct BatchScanner<'a> {
    file: &'a File,
    path: &'a Path,
    end: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> BatchScanner<'a> {
    /// A scanner over `file[start..end]`; `start` must be a batch boundary.
    pub(crate) fn new(file: &'a File, path: &'a Path, start: u64, end: u64) -> Self {
        BatchScanner {
            file,
            path,
            end,
            pos: start,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// Reads the next batch header and moves past its batch. After
    /// `Invalid` or `End` the scanner keeps returning the same answer.
    pub(crate) fn next_batch(&mut self) -> Result<Scanned, StorageError> {
        if self.pos >= self.end {
            return Ok(Scanned::End);
        }
        let available = self.end - self.pos;
        if available < BatchHeader::SIZE as u64 {
            return Ok(Scanned::Invalid(self.pos, BatchError::Truncated));
        }
        let at = self.pos;
        let header = BatchHeader::parse(self.bytes(at, BatchHeader::SIZE)?)?;
        if let Err(e) = check_stored_fields(&header, available) {
            return Ok(Scanned::Invalid(at, e));
        }
        self.pos += header.total_size() as u64;
        Ok(Scanned::Batch(at, header))
    }

    /// The bytes `file[pos..pos + len]`, from the chunk buffer when it holds
    /// them, otherwise after refilling it from `pos`.
    pub(crate) fn bytes(&mut self, pos: u64, len: usize) -> Result<&[u8], StorageError> {
        let buffered_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || pos + len as u64 > buffered_end {
            let want = len.max(CHUNK) as u64;
            let take = want.min(self.end.saturating_sub(pos)).max(len as u64);
            self.buf.resize(take as usize, 0);
            self.file
                .read_exact_at(&mut self.buf, pos)
                .map_err(StorageError::read_segment(self.path))?;
            self.buf_start = pos;
        }
        let from = (pos - self.buf_start) as usize;
        Ok(&self.buf[from..from + len])
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::test_util::simple;

    #[test]
    fn walks_batches_and_reports_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (a, b) = (simple(1, 1, 0), simple(3, 2, 9));
        let mut f = File::create(&path).unwrap();
        f.write_all(&a).unwrap();
        f.write_all(&b).unwrap();
        f.write_all(&b[..30]).unwrap();
        let f = File::open(&path).unwrap();
        let end = f.metadata().unwrap().len();
        let mut scan = BatchScanner::new(&f, &path, 0, end);
        assert!(matches!(scan.next_batch().unwrap(), Scanned::Batch(0, _)));
        match scan.next_batch().unwrap() {
            Scanned::Batch(pos, h) => {
                assert_eq!(pos, a.len() as u64);
                assert_eq!(h.records_count, 3);
                assert_eq!(scan.bytes(pos, b.len()).unwrap(), &b[..]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            scan.next_batch().unwrap(),
            Scanned::Invalid(_, BatchError::Truncated)
        ));

        let mut exact = BatchScanner::new(&f, &path, 0, (a.len() + b.len()) as u64);
        exact.next_batch().unwrap();
        exact.next_batch().unwrap();
        assert!(matches!(exact.next_batch().unwrap(), Scanned::End));
    }
}
