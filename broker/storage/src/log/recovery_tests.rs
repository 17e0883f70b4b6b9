//! Tests of recovery (torn writes, corrupt tails, damaged indexes, clean
//! close) and of idempotent producers. Faults are injected by editing the
//! partition's files with `std::fs` between a drop and a reopen, which is
//! exactly what a crash or a bad disk leaves behind.

use std::fs::{self, OpenOptions};

use super::{
    tests::{append, exists, fill, read_all, small_config},
    *,
};
use crate::{
    files::{segment_path, INDEX_EXT, TIME_INDEX_EXT},
    test_util::{idempotent, simple},
};

pub(super) fn active_base(log: &Log) -> i64 {
    *log.segments.keys().next_back().unwrap()
}

pub(super) fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn clean_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let stored = fill(&mut log, 25);
    let (end, count, max) = (
        log.log_end_offset(),
        log.segment_count(),
        log.max_timestamp(),
    );
    let active = active_base(&log);
    log.close().unwrap();
    assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    // The active segment's indexes were trimmed on close.
    let index_len = fs::metadata(segment_path(dir.path(), active, INDEX_EXT))
        .unwrap()
        .len();
    assert!(index_len < 4096);

    let mut log = Log::open(dir.path(), small_config()).unwrap();
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert_eq!((log.log_end_offset(), log.segment_count()), (end, count));
    assert_eq!(log.max_timestamp(), max);
    assert_eq!(read_all(&log, 0), stored.concat());
    let (_, info) = append(&mut log, &simple(1, 0, 0), 0);
    assert_eq!(info.first_offset, end);
}

#[test]
fn clean_marker_does_not_hide_a_bad_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let stored = fill(&mut log, 3);
    log.close().unwrap();
    let path = segment_path(dir.path(), 0, LOG_EXT);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(read_all(&log, 0), stored[..2].concat());
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let stored = fill(&mut log, 12);
    let active = active_base(&log);
    let active_size = log.active().size();
    drop(log); // a crash: no close, indexes untrimmed

    // Cut the last batch in half.
    let last = stored.last().unwrap();
    let path = segment_path(dir.path(), active, LOG_EXT);
    set_len(&path, active_size - (last.len() as u64) / 2);

    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let cut = BatchHeader::parse(last).unwrap().base_offset;
    assert_eq!(log.log_end_offset(), cut);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        active_size - last.len() as u64
    );
    assert_eq!(read_all(&log, 0), stored[..11].concat());

    let (bytes, info) = append(&mut log, &simple(2, 0, 42), 0);
    assert_eq!(info.first_offset, cut);
    let r = log.read(cut, 10_000, i64::MAX, true).unwrap();
    assert_eq!(&r.bytes[..], &bytes[..]);
}

#[test]
fn zeroed_tail_is_cut() {
    // Some filesystems leave a crashed append as zeros rather than short.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let stored = fill(&mut log, 3);
    let size = log.size_bytes();
    drop(log);
    set_len(&segment_path(dir.path(), 0, LOG_EXT), size + 200);
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.size_bytes(), size);
    assert_eq!(read_all(&log, 0), stored.concat());
}

#[test]
fn corrupt_crc_in_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let stored = fill(&mut log, 5);
    drop(log);
    let path = segment_path(dir.path(), 0, LOG_EXT);
    let mut bytes = fs::read(&path).unwrap();
    // Flip a body byte of the fourth batch: everything from it goes.
    let at = stored[..3].iter().map(Vec::len).sum::<usize>() + 70;
    bytes[at] ^= 0x55;
    fs::write(&path, &bytes).unwrap();

    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let next = BatchHeader::parse(&stored[3]).unwrap().base_offset;
    assert_eq!(log.log_end_offset(), next);
    assert_eq!(read_all(&log, 0), stored[..3].concat());
}

#[test]
fn damaged_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let stored = fill(&mut log, 30);
    let bases: Vec<i64> = log.segments.keys().copied().collect();
    log.close().unwrap();
    assert!(bases.len() >= 4);
    let index = |b: i64| segment_path(dir.path(), b, INDEX_EXT);
    let time_index = |b: i64| segment_path(dir.path(), b, TIME_INDEX_EXT);
    let good_index = fs::read(index(bases[0])).unwrap();
    let good_time = fs::read(time_index(bases[0])).unwrap();
    assert!(!good_index.is_empty() && !good_time.is_empty());

    // Deleted offset index, garbled time index, an entry past the end of
    // the log, and entries in the wrong order.
    fs::remove_file(index(bases[0])).unwrap();
    fs::write(time_index(bases[1]), [0xab; 13]).unwrap();
    let mut past_end = fs::read(index(bases[2])).unwrap();
    let n = past_end.len();
    past_end[n - 4..].copy_from_slice(&100_000u32.to_be_bytes());
    fs::write(index(bases[2]), &past_end).unwrap();
    let mut swapped = fs::read(index(bases[3])).unwrap();
    assert!(swapped.len() >= 16);
    swapped.copy_within(0..8, 8);
    fs::write(index(bases[3]), &swapped).unwrap();

    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(fs::read(index(bases[0])).unwrap(), good_index);
    assert_eq!(fs::read(time_index(bases[0])).unwrap(), good_time);
    assert_eq!(fs::metadata(time_index(bases[1])).unwrap().len() % 12, 0);
    assert_eq!(read_all(&log, 0), stored.concat());
    for (i, bytes) in stored.iter().enumerate() {
        let h = BatchHeader::parse(bytes).unwrap();
        let r = log.read(h.last_offset(), 1, i64::MAX, true).unwrap();
        assert_eq!(&r.bytes[..], &bytes[..]);
        let t = log.batch_for_timestamp(1000 + i as i64).unwrap().unwrap();
        assert_eq!(&t[..], &bytes[..]);
    }
}

#[test]
fn leftovers_and_orphans_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let stored = fill(&mut log, 2);
    log.close().unwrap();
    let leftover = dir.path().join("00000000000000000000.log.deleted");
    let cleaned = dir.path().join("00000000000000000000.log.cleaned");
    let orphan = segment_path(dir.path(), 999, INDEX_EXT);
    for p in [&leftover, &cleaned, &orphan] {
        fs::write(p, b"junk").unwrap();
    }
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(!leftover.exists() && !cleaned.exists() && !orphan.exists());
    assert_eq!(log.segment_count(), 1);
    assert_eq!(read_all(&log, 0), stored.concat());
}

#[test]
fn reopen_after_crash_rebuilds_active_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let stored = fill(&mut log, 30);
    let active = active_base(&log);
    drop(log);
    // Untrimmed (preallocated) index of the active segment.
    assert_eq!(
        fs::metadata(segment_path(dir.path(), active, INDEX_EXT))
            .unwrap()
            .len(),
        4096
    );
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert!(exists(dir.path(), active, INDEX_EXT));
    assert_eq!(read_all(&log, 0), stored.concat());
}

#[test]
fn duplicates_return_original_offsets_and_are_not_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    fill(&mut log, 1);
    let (_, first) = append(&mut log, &idempotent(9, 0, 0, 3), 0);
    let (_, second) = append(&mut log, &idempotent(9, 0, 3, 2), 0);
    let (end, size) = (log.log_end_offset(), log.size_bytes());

    let (_, retry) = append(&mut log, &idempotent(9, 0, 0, 3), 0);
    assert!(retry.duplicate);
    assert_eq!(
        (retry.first_offset, retry.last_offset),
        (first.first_offset, first.last_offset)
    );
    let (_, retry) = append(&mut log, &idempotent(9, 0, 3, 2), 0);
    assert_eq!(
        (retry.first_offset, retry.last_offset),
        (second.first_offset, second.last_offset)
    );
    assert_eq!((log.log_end_offset(), log.size_bytes()), (end, size));
}

#[test]
fn sequence_and_epoch_errors_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    append(&mut log, &idempotent(9, 2, 0, 3), 0);
    let (end, size) = (log.log_end_offset(), log.size_bytes());
    let mut gap = idempotent(9, 2, 5, 1);
    assert!(matches!(
        log.append(&mut gap, 0, 0),
        Err(StorageError::OutOfOrderSequence {
            producer_id: 9,
            expected: 3,
            found: 5
        })
    ));
    let mut stale = idempotent(9, 1, 3, 1);
    assert!(matches!(
        log.append(&mut stale, 0, 0),
        Err(StorageError::InvalidProducerEpoch {
            current: 2,
            found: 1,
            ..
        })
    ));
    let mut new_epoch_bad = idempotent(9, 3, 3, 1);
    assert!(log.append(&mut new_epoch_bad, 0, 0).is_err());
    // A second batch in the same buffer is checked against the first.
    let mut two = idempotent(9, 2, 3, 1);
    two.extend(idempotent(9, 2, 5, 1));
    assert!(log.append(&mut two, 0, 0).is_err());
    assert_eq!((log.log_end_offset(), log.size_bytes()), (end, size));

    append(&mut log, &idempotent(9, 3, 0, 1), 0);
    append(&mut log, &idempotent(10, 0, 77, 1), 0); // unknown producer
    let mut two = idempotent(9, 3, 1, 1);
    two.extend(idempotent(9, 3, 2, 2));
    let info = log.append(&mut two, 0, 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (end + 2, end + 4));
}

#[test]
fn producer_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let (_, first) = append(&mut log, &idempotent(4, 1, 0, 2), 0);
    fill(&mut log, 10);
    append(&mut log, &idempotent(4, 1, 2, 2), 0);
    drop(log);

    let mut log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.producers().get(4).unwrap().batches.len(), 2);
    let (_, retry) = append(&mut log, &idempotent(4, 1, 0, 2), 0);
    assert!(retry.duplicate);
    assert_eq!(retry.first_offset, first.first_offset);
    let mut gap = idempotent(4, 1, 7, 1);
    assert!(matches!(
        log.append(&mut gap, 0, 0),
        Err(StorageError::OutOfOrderSequence { expected: 4, .. })
    ));
}

#[test]
fn append_refuses_malformed_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let mut empty = Vec::new();
    assert!(matches!(
        log.append(&mut empty, 0, 0),
        Err(StorageError::InvalidBatch(_))
    ));
    let mut partial = simple(1, 0, 0);
    partial.truncate(40);
    assert!(matches!(
        log.append(&mut partial, 0, 0),
        Err(StorageError::InvalidBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn start_offset_past_recovered_end_restarts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let stored = fill(&mut log, 4);
    let start = log.delete_records_before(log.log_end_offset()).unwrap();
    drop(log);
    set_len(
        &segment_path(dir.path(), 0, LOG_EXT),
        stored[0].len() as u64,
    );
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (start, start)
    );
    assert!(!exists(dir.path(), 0, LOG_EXT));
}
