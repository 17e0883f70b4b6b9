//! Logs whose segments start with a batch at timestamp 0, reopened.
//!
//! Such a segment's time index starts with the entry (0, relative offset
//! 0): twelve zero bytes, the same as preallocated slack. These tests go
//! through the crate's [`Log`] because what matters is how a segment judges
//! its index files on open: a sealed segment's files are trusted, and left
//! untouched, only if both read back as trimmed. Index files that were
//! rebuilt are rewritten, so an unchanged modification time shows that the
//! open trusted them.

use std::{
    fs::{self, File},
    path::Path,
    time::{Duration, SystemTime},
};

use super::{IndexState, TimeIndex};
use crate::{
    files::{parse_segment_file_name, segment_path, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT},
    test_util::simple,
    Log, LogConfig,
};

/// Small segments and a dense index, so a few batches make several
/// segments each with a few index entries.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        index_interval_bytes: 100,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

/// Appends one single-record batch per timestamp; returns the stored bytes.
fn append_all(log: &mut Log, timestamps: &[i64]) -> Vec<Vec<u8>> {
    timestamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| {
            let mut buf = simple(1, ts, i as u8);
            log.append(&mut buf, 0, 0).unwrap();
            buf
        })
        .collect()
}

/// Base offsets of the segments in `dir`, in order.
fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            parse_segment_file_name(&name)
                .filter(|(_, ext)| *ext == LOG_EXT)
                .map(|(base, _)| base)
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// An old modification time that no write during the test can produce.
fn old() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
}

fn set_mtime(path: &Path, time: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

/// Closes `log`, reopens it and asserts that no sealed segment had its
/// indexes rebuilt, and that each sealed time index reads back as trimmed
/// and starting at the segment's base offset with timestamp 0.
fn reopen_trusting_sealed_indexes(log: Log, dir: &Path) -> Log {
    log.close().unwrap();
    let bases = segment_bases(dir);
    let sealed = &bases[..bases.len() - 1];
    assert!(
        sealed.len() >= 2,
        "the test needs sealed segments: {bases:?}"
    );
    for &base in sealed {
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            set_mtime(&segment_path(dir, base, ext), old());
        }
    }

    let log = Log::open(dir, config()).unwrap();
    for &base in sealed {
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            let path = segment_path(dir, base, ext);
            assert_eq!(mtime(&path), old(), "{} was rebuilt", path.display());
        }
        let (index, state) =
            TimeIndex::open(&segment_path(dir, base, TIME_INDEX_EXT), base).unwrap();
        assert_eq!(state, IndexState::Trimmed, "segment {base}");
        assert!(index.len() >= 1, "segment {base}");
        assert_eq!(index.lookup(0), Some(base), "segment {base}");
    }
    log
}

#[test]
fn sealed_segments_at_timestamp_zero_are_trusted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    // Every segment holds only timestamp 0: each sealed time index is the
    // single entry (0, 0).
    let stored = append_all(&mut log, &[0; 20]);
    let mut log = reopen_trusting_sealed_indexes(log, dir.path());

    assert_eq!(log.max_timestamp(), Some((0, 0)));
    let found = log.batch_for_timestamp(0).unwrap().unwrap();
    assert_eq!(&found[..], &stored[0][..]);
    assert_eq!(log.batch_for_timestamp(1).unwrap(), None);
    // The reopened log keeps working, then reopens the same way.
    append_all(&mut log, &[0; 10]);
    reopen_trusting_sealed_indexes(log, dir.path());
}

#[test]
fn zero_first_entry_followed_by_later_timestamps_is_trusted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    // Each run of six batches starts with three at timestamp 0 (so the
    // first time index entry of a segment starting there is (0, 0)) and
    // goes on with growing timestamps.
    let timestamps: Vec<i64> = (0..24)
        .map(|i| if i % 6 < 3 { 0 } else { 100 + i })
        .collect();
    let stored = append_all(&mut log, &timestamps);
    let log = reopen_trusting_sealed_indexes(log, dir.path());

    assert_eq!(log.max_timestamp(), Some((123, 23)));
    let found = log.batch_for_timestamp(0).unwrap().unwrap();
    assert_eq!(&found[..], &stored[0][..]);
    let found = log.batch_for_timestamp(104).unwrap().unwrap();
    assert_eq!(&found[..], &stored[4][..]);
    log.close().unwrap();
}
