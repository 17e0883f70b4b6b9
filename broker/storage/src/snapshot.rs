//! Producer state snapshots: the state a log derives from its batch
//! headers (idempotent producers and the leader epoch cache), as of an
//! offset, in a `<offset, 20 digits>.snapshot` file.
//!
//! Without a snapshot, opening a log walks every batch header of every
//! segment to rebuild that state. A snapshot at offset `S` holds what the
//! walk of the batches below `S` produces, so open loads the newest usable
//! snapshot and walks only the batches from `S` on. It is Kafka's
//! `<offset>.snapshot` with the `leader-epoch-checkpoint` folded in: both
//! describe the same prefix of the log, so one file with one CRC and one
//! fsync keeps them consistent with each other. When the log takes,
//! keeps and uses snapshots is in `log/snapshots.rs`.
//!
//! Format, version 2, big-endian like Kafka's:
//!
//! ```text
//! magic       4 bytes "RVPS"
//! version     u16     2
//! crc         u32     CRC-32C of everything after this field
//! offset      i64     the offset in the file name
//! producers   u32     count, then per producer, in increasing id order:
//!   producer id   i64
//!   epoch         i16
//!   coordinator epoch  i32  of its last transaction marker, -1 if none
//!   txn first offset   i64  first offset of its open transaction, or -1
//!   last timestamp     i64  of its last batch or marker, -1 if unknown
//!   batches       u8  0 to 5, then per batch, oldest first:
//!     first sequence i32, last sequence i32, first offset i64, last offset i64
//! epochs      u32     count, then per entry, oldest first:
//!   epoch i32, start offset i64
//! ```
//!
//! Version 1 (before transactions) lacks the three producer fields after
//! the epoch and has 1 to 5 batches; it is still read, as a producer
//! without a marker or an open transaction.
//!
//! Decoding checks more than the CRC: the offset must match the file name,
//! producers and batches must be ordered, every batch must end below the
//! snapshot offset and the epoch entries must be strictly increasing, with
//! nothing after the last one. A snapshot failing any check is an error as
//! a whole; the caller ignores it and walks more batches instead.
//! Snapshots are written to a temp file, fsynced and renamed into place.

use std::{collections::VecDeque, fs, io, path::Path};

use crate::{
    epochs::LeaderEpochCache,
    error::StorageError,
    files::{parse_segment_file_name, remove_file, segment_path, write_atomically, SNAPSHOT_EXT},
    producer::{BatchMetadata, ProducerEntry, ProducerStateManager, MAX_CACHED_BATCHES},
};

/// First bytes of every snapshot file.
const MAGIC: &[u8; 4] = b"RVPS";
/// Format version written.
const VERSION: u16 = 2;
/// The version before transactions, still read.
const VERSION_1: u16 = 1;
/// Magic, version and CRC: the bytes the CRC does not cover.
const HEADER_LEN: usize = 10;

/// A decoded snapshot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Everything below this offset is accounted for.
    pub offset: i64,
    pub producers: ProducerStateManager,
    pub epochs: LeaderEpochCache,
}

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error("reading snapshot: {0}")]
    Read(#[source] io::Error),
    #[error("not a version {VERSION} snapshot")]
    Version,
    #[error("CRC mismatch")]
    Crc,
    #[error("malformed snapshot: {0}")]
    Malformed(&'static str),
}

/// Encodes the state describing every batch below `offset`.
pub(crate) fn encode(
    offset: i64,
    producers: &ProducerStateManager,
    epochs: &LeaderEpochCache,
) -> Vec<u8> {
    let mut ids: Vec<(i64, &ProducerEntry)> = producers.iter().collect();
    ids.sort_unstable_by_key(|&(id, _)| id);
    let entries = epochs.entries();
    let mut out = Vec::with_capacity(HEADER_LEN + 16 + ids.len() * 151 + entries.len() * 12);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    for (id, entry) in ids {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&entry.epoch.to_be_bytes());
        out.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
        let txn = entry.current_txn_first_offset.unwrap_or(-1);
        out.extend_from_slice(&txn.to_be_bytes());
        out.extend_from_slice(&entry.last_timestamp.to_be_bytes());
        out.push(entry.batches.len() as u8);
        for b in &entry.batches {
            out.extend_from_slice(&b.first_sequence.to_be_bytes());
            out.extend_from_slice(&b.last_sequence.to_be_bytes());
            out.extend_from_slice(&b.first_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
    }
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (epoch, start) in entries {
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&start.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[HEADER_LEN..]);
    out[6..HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a snapshot that its file name says was taken at `offset`.
pub(crate) fn decode(bytes: &[u8], offset: i64) -> Result<Snapshot, SnapshotError> {
    let mut r = Reader(bytes);
    if r.take::<4>()? != *MAGIC {
        return Err(SnapshotError::Version);
    }
    let version = u16::from_be_bytes(r.take()?);
    if version != VERSION && version != VERSION_1 {
        return Err(SnapshotError::Version);
    }
    let crc = u32::from_be_bytes(r.take()?);
    if crc32c::crc32c(r.0) != crc {
        return Err(SnapshotError::Crc);
    }
    if r.i64()? != offset {
        return Err(SnapshotError::Malformed(
            "offset differs from the file name",
        ));
    }
    let mut producers = ProducerStateManager::new();
    let mut previous_id = -1;
    for _ in 0..r.u32()? {
        let id = r.i64()?;
        if id <= previous_id {
            return Err(SnapshotError::Malformed("producer ids out of order"));
        }
        previous_id = id;
        let epoch = i16::from_be_bytes(r.take()?);
        let mut entry = ProducerEntry {
            epoch,
            ..ProducerEntry::default()
        };
        if version != VERSION_1 {
            entry.coordinator_epoch = r.i32()?;
            let txn = r.i64()?;
            if txn < -1 || txn >= offset {
                return Err(SnapshotError::Malformed("transaction first offset"));
            }
            entry.current_txn_first_offset = (txn >= 0).then_some(txn);
            entry.last_timestamp = r.i64()?;
        }
        let count = usize::from(u8::from_be_bytes(r.take()?));
        let least = usize::from(version == VERSION_1);
        if !(least..=MAX_CACHED_BATCHES).contains(&count) {
            return Err(SnapshotError::Malformed("cached batch count"));
        }
        let mut batches = VecDeque::with_capacity(count);
        let mut previous_last = -1;
        for _ in 0..count {
            let batch = BatchMetadata {
                first_sequence: r.i32()?,
                last_sequence: r.i32()?,
                first_offset: r.i64()?,
                last_offset: r.i64()?,
            };
            if batch.first_offset <= previous_last
                || batch.last_offset < batch.first_offset
                || batch.last_offset >= offset
            {
                return Err(SnapshotError::Malformed("batch offsets"));
            }
            previous_last = batch.last_offset;
            batches.push_back(batch);
        }
        entry.batches = batches;
        producers.insert(id, entry);
    }
    let mut entries = Vec::new();
    for _ in 0..r.u32()? {
        entries.push((r.i32()?, r.i64()?));
    }
    if entries.last().is_some_and(|&(_, start)| start > offset) {
        return Err(SnapshotError::Malformed("epoch starts past the offset"));
    }
    let epochs = LeaderEpochCache::from_entries(entries)
        .ok_or(SnapshotError::Malformed("epoch entries out of order"))?;
    if !r.0.is_empty() {
        return Err(SnapshotError::Malformed("trailing bytes"));
    }
    Ok(Snapshot {
        offset,
        producers,
        epochs,
    })
}

/// Writes the snapshot at `offset` atomically (temp file, fsync, rename,
/// directory fsync), replacing any snapshot at that offset.
pub(crate) fn write(
    dir: &Path,
    offset: i64,
    producers: &ProducerStateManager,
    epochs: &LeaderEpochCache,
) -> Result<(), StorageError> {
    let name = format!("{offset:020}.{SNAPSHOT_EXT}");
    write_atomically(dir, &name, &encode(offset, producers, epochs))
}

/// Reads and decodes the snapshot at `offset`.
pub(crate) fn read(dir: &Path, offset: i64) -> Result<Snapshot, SnapshotError> {
    let bytes = fs::read(path(dir, offset)).map_err(SnapshotError::Read)?;
    decode(&bytes, offset)
}

/// Offsets of the snapshots in `dir`, in increasing order.
pub(crate) fn list(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut offsets = Vec::new();
    for entry in fs::read_dir(dir).map_err(StorageError::list_dir(dir))? {
        let entry = entry.map_err(StorageError::list_dir(dir))?;
        let name = entry.file_name();
        if let Some((offset, SNAPSHOT_EXT)) = name.to_str().and_then(parse_segment_file_name) {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Removes the snapshot at `offset` (no directory fsync; the caller syncs).
pub(crate) fn delete(dir: &Path, offset: i64) -> Result<(), StorageError> {
    remove_file(&path(dir, offset))
}

/// `dir/<offset, 20 digits>.snapshot`.
pub(crate) fn path(dir: &Path, offset: i64) -> std::path::PathBuf {
    segment_path(dir, offset, SNAPSHOT_EXT)
}

/// Big-endian reads from a shrinking slice; running out is malformed.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(SnapshotError::Malformed("truncated"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.take().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, SnapshotError> {
        self.take().map(i32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{batch::BatchHeader, test_util::idempotent};

    /// Producers 1 to 3 with one to six batches (so producer 3 wrapped
    /// around the cache) and three epochs; everything below offset 100.
    fn sample() -> (ProducerStateManager, LeaderEpochCache) {
        let mut producers = ProducerStateManager::new();
        let mut offset = 0;
        for (pid, batches) in [(3, 6), (1, 1), (2, 2)] {
            for seq in 0..batches {
                let mut h = BatchHeader::parse(&idempotent(pid, 2, seq * 2, 2)).unwrap();
                h.base_offset = offset;
                offset += 3;
                producers.record(&h);
            }
        }
        let epochs = LeaderEpochCache::from_entries(vec![(0, 0), (3, 10), (4, 99)]).unwrap();
        (producers, epochs)
    }

    /// Re-seals `bytes` with a correct CRC after a test edited the body.
    fn reseal(bytes: &mut [u8]) {
        let crc = crc32c::crc32c(&bytes[HEADER_LEN..]);
        bytes[6..HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let (producers, epochs) = sample();
        let bytes = encode(100, &producers, &epochs);
        let snapshot = decode(&bytes, 100).unwrap();
        assert_eq!(snapshot.producers, producers);
        assert_eq!(snapshot.epochs, epochs);
        assert_eq!(snapshot.producers.get(3).unwrap().batches.len(), 5);
        // The same state built in another order encodes the same bytes.
        let mut again = ProducerStateManager::new();
        let mut ids: Vec<_> = producers.iter().collect();
        ids.sort_by_key(|&(id, _)| std::cmp::Reverse(id));
        for (id, entry) in ids {
            again.insert(id, entry.clone());
        }
        assert_eq!(encode(100, &again, &epochs), bytes);

        let empty = encode(
            0,
            &ProducerStateManager::new(),
            &LeaderEpochCache::default(),
        );
        let snapshot = decode(&empty, 0).unwrap();
        assert!(snapshot.producers.is_empty() && snapshot.epochs.entries().is_empty());
    }

    #[test]
    fn any_damage_is_an_error_never_a_panic() {
        let (producers, epochs) = sample();
        let bytes = encode(100, &producers, &epochs);
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert!(decode(&flipped, 100).is_err(), "flip at {at}");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len], 100).is_err(), "cut at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        reseal(&mut longer);
        assert!(matches!(
            decode(&longer, 100),
            Err(SnapshotError::Malformed("trailing bytes"))
        ));
        assert!(matches!(
            decode(&bytes, 101),
            Err(SnapshotError::Malformed(_))
        ));
        let mut v3 = bytes.clone();
        v3[5] = 3;
        assert!(matches!(decode(&v3, 100), Err(SnapshotError::Version)));
    }

    #[test]
    fn well_sealed_nonsense_is_refused() {
        let (producers, epochs) = sample();
        // A batch at or past the snapshot offset.
        assert!(matches!(
            decode(&encode(25, &producers, &epochs), 25),
            Err(SnapshotError::Malformed("batch offsets"))
        ));
        // An epoch starting past the snapshot offset.
        let late = LeaderEpochCache::from_entries(vec![(0, 0), (1, 200)]).unwrap();
        assert!(matches!(
            decode(&encode(100, &producers, &late), 100),
            Err(SnapshotError::Malformed("epoch starts past the offset"))
        ));
        // Producer ids out of order: swap the first two producers' ids.
        let mut bytes = encode(100, &producers, &epochs);
        let first_id = HEADER_LEN + 12;
        let second_id = first_id + 8 + 2 + 20 + 1 + 24;
        let (a, b) = (bytes[first_id + 7], bytes[second_id + 7]);
        (bytes[first_id + 7], bytes[second_id + 7]) = (b, a);
        reseal(&mut bytes);
        assert!(matches!(
            decode(&bytes, 100),
            Err(SnapshotError::Malformed("producer ids out of order"))
        ));
    }

    #[test]
    fn transactions_round_trip_and_version_1_still_reads() {
        let (mut producers, epochs) = sample();
        let mut open = BatchHeader::parse(&crate::test_util::transactional(7, 1, 0, 2)).unwrap();
        open.base_offset = 90;
        producers.record(&open);
        let marker_only = ProducerEntry {
            epoch: 4,
            coordinator_epoch: 9,
            last_timestamp: 55,
            ..ProducerEntry::default()
        };
        producers.insert(8, marker_only.clone());
        let snapshot = decode(&encode(100, &producers, &epochs), 100).unwrap();
        assert_eq!(snapshot.producers, producers);
        assert_eq!(snapshot.producers.first_unstable_offset(), Some(90));
        assert_eq!(snapshot.producers.get(8), Some(&marker_only));
        // A transaction open at or past the snapshot offset is nonsense.
        assert!(matches!(
            decode(&encode(91, &producers, &epochs), 91),
            Err(SnapshotError::Malformed(_))
        ));

        // Version 1: the same producers without the transaction fields.
        let (producers, epochs) = sample();
        let mut v1 = encode(100, &producers, &epochs);
        v1[5] = 1;
        let mut at = HEADER_LEN + 12;
        for _ in 0..3 {
            v1.drain(at + 10..at + 30);
            let batches = usize::from(v1[at + 10]);
            at += 11 + batches * 24;
        }
        reseal(&mut v1);
        let mut expected = ProducerStateManager::new();
        for (id, entry) in producers.iter() {
            let last_timestamp = -1;
            expected.insert(
                id,
                ProducerEntry {
                    last_timestamp,
                    ..entry.clone()
                },
            );
        }
        assert_eq!(decode(&v1, 100).unwrap().producers, expected);
    }

    #[test]
    fn files_are_written_listed_read_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (producers, epochs) = sample();
        assert_eq!(list(dir.path()).unwrap(), Vec::<i64>::new());
        for offset in [200, 100] {
            write(dir.path(), offset, &producers, &epochs).unwrap();
        }
        fs::write(dir.path().join("00000000000000000100.log"), b"").unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![100, 200]);
        assert!(path(dir.path(), 200).ends_with("00000000000000000200.snapshot"));
        assert_eq!(read(dir.path(), 200).unwrap().producers, producers);
        delete(dir.path(), 200).unwrap();
        assert!(matches!(read(dir.path(), 200), Err(SnapshotError::Read(_))));
        assert_eq!(list(dir.path()).unwrap(), vec![100]);
    }
}
