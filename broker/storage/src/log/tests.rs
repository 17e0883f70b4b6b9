//! Tests of appending, reading, rolling and retention.
//!
//! Recovery and idempotence tests live in `recovery_tests.rs`; shared
//! helpers are here.

use std::path::Path;

use super::*;
use crate::{
    files::{segment_path, INDEX_EXT, LOG_START_OFFSET_FILE, TIME_INDEX_EXT},
    test_util::simple,
};

/// Small segments and dense indexes so a few batches span several segments.
pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        index_interval_bytes: 100,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

/// Appends a copy of `batch` and returns the stored bytes and the result.
pub(super) fn append(log: &mut Log, batch: &[u8], now_ms: i64) -> (Vec<u8>, AppendInfo) {
    let mut buf = batch.to_vec();
    let info = log.append(&mut buf, 7, now_ms).unwrap();
    (buf, info)
}

/// Appends `n` one- to three-record batches with timestamps 1000, 1001, ...
/// and returns the stored bytes of each.
pub(super) fn fill(log: &mut Log, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| append(log, &simple(i as i32 % 3 + 1, 1000 + i as i64, i as u8), 0).0)
        .collect()
}

/// Reads everything from `from` on, one read per segment.
pub(super) fn read_all(log: &Log, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let r = log.read(offset, usize::MAX, i64::MAX, true).unwrap();
        assert!(!r.bytes.is_empty());
        let headers = crate::batch::validate_batches(&r.bytes).unwrap();
        offset = headers.last().unwrap().last_offset() + 1;
        out.extend_from_slice(&r.bytes);
    }
    out
}

pub(super) fn exists(dir: &Path, base: i64, ext: &str) -> bool {
    segment_path(dir, base, ext).exists()
}

#[test]
fn round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let stored = fill(&mut log, 30);
    assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
    assert_eq!(
        log.size_bytes(),
        stored.iter().map(Vec::len).sum::<usize>() as u64
    );

    let mut offset = 0;
    for bytes in &stored {
        let h = BatchHeader::parse(bytes).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (offset, 7));
        offset = h.last_offset() + 1;
    }
    assert_eq!(log.log_end_offset(), offset);
    assert_eq!(read_all(&log, 0), stored.concat());
    for base in log.segments.keys() {
        assert!(exists(dir.path(), *base, LOG_EXT) && exists(dir.path(), *base, INDEX_EXT));
    }
}

#[test]
fn read_inside_a_batch_returns_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let (first, _) = append(&mut log, &simple(5, 0, 1), 0);
    let (second, info) = append(&mut log, &simple(2, 0, 2), 0);
    assert_eq!((info.first_offset, info.last_offset), (5, 6));
    let r = log.read(3, first.len(), i64::MAX, false).unwrap();
    assert_eq!(&r.bytes[..], &first[..]);
    let r = log.read(6, 10_000, i64::MAX, false).unwrap();
    assert_eq!(&r.bytes[..], &second[..]);
    assert_eq!((r.log_start_offset, r.log_end_offset), (0, 7));
}

#[test]
fn read_respects_max_bytes_and_min_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let stored = fill(&mut log, 3);
    let two = stored[0].len() + stored[1].len();
    let r = log
        .read(0, two + stored[2].len() - 1, i64::MAX, false)
        .unwrap();
    assert_eq!(&r.bytes[..], &stored[..2].concat()[..]);
    assert!(log
        .read(0, stored[0].len() - 1, i64::MAX, false)
        .unwrap()
        .bytes
        .is_empty());
    let r = log.read(0, 1, i64::MAX, true).unwrap();
    assert_eq!(&r.bytes[..], &stored[0][..]);
}

#[test]
fn read_stops_at_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let stored = fill(&mut log, 3);
    let second_base = BatchHeader::parse(&stored[1]).unwrap().base_offset;
    let r = log.read(0, usize::MAX, second_base, true).unwrap();
    assert_eq!(&r.bytes[..], &stored[0][..]);
    assert!(log.read(0, usize::MAX, 0, true).unwrap().bytes.is_empty());
}

#[test]
fn out_of_range_offsets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    fill(&mut log, 2);
    let end = log.log_end_offset();
    assert!(log.read(end, 100, i64::MAX, true).unwrap().bytes.is_empty());
    for offset in [-1, end + 1] {
        assert!(matches!(
            log.read(offset, 100, i64::MAX, true),
            Err(StorageError::OffsetOutOfRange { start: 0, end: e, .. }) if e == end
        ));
    }
    assert!(log.batch_headers(end + 1).is_err());
}

#[test]
fn rolls_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    // 81 bytes each, 82 for the two three-record batches.
    let stored = fill(&mut log, 8);
    // Every segment stays within segment_bytes.
    let mut per_segment = Vec::new();
    for segment in log.segments.values() {
        assert!(segment.size() <= 500);
        per_segment.push(segment.size());
    }
    assert!(per_segment.len() >= 2);
    assert_eq!(per_segment, [488, 162]);
    assert_eq!(stored.iter().map(Vec::len).sum::<usize>(), 650);
    // Rolled segments had their indexes trimmed to the used entries.
    let first = *log.segments.keys().next().unwrap();
    let len = std::fs::metadata(segment_path(dir.path(), first, INDEX_EXT))
        .unwrap()
        .len();
    assert!(len < 4096 && len.is_multiple_of(8));
}

#[test]
fn rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 100,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config).unwrap();
    append(&mut log, &simple(1, 0, 0), 1_000);
    append(&mut log, &simple(1, 0, 0), 1_050);
    assert_eq!(log.segment_count(), 1);
    let (_, info) = append(&mut log, &simple(1, 0, 0), 1_100);
    assert_eq!(log.segment_count(), 2);
    assert!(exists(dir.path(), info.first_offset, LOG_EXT));

    log.maybe_roll(1_150).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.maybe_roll(1_200).unwrap();
    assert_eq!(log.segment_count(), 3);
    // An empty active segment never rolls.
    log.maybe_roll(10_000).unwrap();
    assert_eq!(log.segment_count(), 3);
}

#[test]
fn rolls_when_index_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 0,
        segment_index_bytes: 24,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config).unwrap();
    fill(&mut log, 8);
    assert!(log.segment_count() > 1);
    assert_eq!(read_all(&log, 0).len() as u64, log.size_bytes());
}

#[test]
fn size_retention_deletes_oldest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    fill(&mut log, 30);
    let before = log.segment_count();
    let oldest = *log.segments.keys().next().unwrap();
    log.config.retention_bytes = 1000;
    let deleted = log.apply_retention(0).unwrap();
    assert!(deleted > 0);
    assert_eq!(log.segment_count(), before - deleted);
    assert!(log.size_bytes() >= 1000 && log.size_bytes() < 1500);
    let first = *log.segments.keys().next().unwrap();
    assert_eq!(log.log_start_offset(), first);
    assert!(!exists(dir.path(), oldest, LOG_EXT) && !exists(dir.path(), oldest, TIME_INDEX_EXT));
    assert!(log.read(0, 100, i64::MAX, true).is_err());
    assert_eq!(read_all(&log, first).len() as u64, log.size_bytes());
}

#[test]
fn time_retention_deletes_expired_segments_and_rolls_active() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            retention_ms: 1_000,
            ..small_config()
        },
    )
    .unwrap();
    let stored = fill(&mut log, 30); // timestamps 1000..1029
    let count = log.segment_count();
    // Only the first segment's newest timestamp is older than 2015 - 1000.
    let first_end = log
        .segments
        .values()
        .next()
        .unwrap()
        .max_timestamp()
        .unwrap()
        .0;
    assert_eq!(log.apply_retention(first_end + 1_001).unwrap(), 1);
    assert_eq!(log.segment_count(), count - 1);
    assert_eq!(log.log_start_offset(), *log.segments.keys().next().unwrap());

    // Everything expired: the active segment is rolled and deleted too.
    let end = log.log_end_offset();
    assert_eq!(log.apply_retention(100_000).unwrap(), count - 1);
    assert_eq!(log.segment_count(), 1);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
    assert_eq!(log.size_bytes(), 0);
    assert!(stored.len() == 30);
    let (_, info) = append(&mut log, &simple(1, 5, 0), 0);
    assert_eq!(info.first_offset, end);
}

#[test]
fn delete_records_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    fill(&mut log, 30);
    let second = *log.segments.keys().nth(2).unwrap();
    let target = second + 1;
    assert_eq!(log.delete_records_before(target).unwrap(), target);
    // Never backwards, clamped to the end.
    assert_eq!(log.delete_records_before(1).unwrap(), target);
    assert_eq!(*log.segments.keys().next().unwrap(), second);
    let end = log.log_end_offset();
    drop(log);

    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), target);
    assert!(dir.path().join(LOG_START_OFFSET_FILE).exists());
    assert!(matches!(
        log.read(target - 1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // The batch holding the start offset is still readable.
    let r = log.read(target, 10_000, i64::MAX, true).unwrap();
    assert!(BatchHeader::parse(&r.bytes).unwrap().last_offset() >= target);
    let mut log = log;
    assert_eq!(log.delete_records_before(i64::MAX).unwrap(), end);
}

#[test]
fn batch_for_timestamp_uses_time_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let stored = fill(&mut log, 30); // timestamps 1000..1029
    for (i, bytes) in stored.iter().enumerate() {
        let found = log.batch_for_timestamp(1000 + i as i64).unwrap().unwrap();
        assert_eq!(&found[..], &bytes[..], "timestamp {}", 1000 + i);
    }
    assert_eq!(
        &log.batch_for_timestamp(0).unwrap().unwrap()[..],
        &stored[0][..]
    );
    assert!(log.batch_for_timestamp(2000).unwrap().is_none());

    let last = BatchHeader::parse(&stored[29]).unwrap().base_offset;
    assert_eq!(log.max_timestamp(), Some((1029, last)));
}

#[test]
fn timestamps_that_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let a = append(&mut log, &simple(1, 500, 0), 0).0;
    let b = append(&mut log, &simple(1, 100, 0), 0).0;
    let c = append(&mut log, &simple(1, 600, 0), 0).0;
    assert_eq!(&log.batch_for_timestamp(50).unwrap().unwrap()[..], &a[..]);
    assert_eq!(&log.batch_for_timestamp(550).unwrap().unwrap()[..], &c[..]);
    assert_eq!(log.max_timestamp(), Some((600, 2)));
    assert_eq!(
        log.batch_headers(1).unwrap()[0],
        BatchHeader::parse(&b).unwrap()
    );
}

#[test]
fn batch_headers_cover_all_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let stored = fill(&mut log, 20);
    let headers = log.batch_headers(0).unwrap();
    assert_eq!(headers.len(), 20);
    assert_eq!(headers[19], BatchHeader::parse(&stored[19]).unwrap());
    assert!(log.batch_headers(log.log_end_offset()).unwrap().is_empty());
}

#[test]
fn truncate_to_cuts_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let stored = fill(&mut log, 30);
    let segments = log.segment_count();
    let h = BatchHeader::parse(&stored[10]).unwrap();
    // Inside batch 10: the whole batch goes.
    log.truncate_to(h.last_offset()).unwrap();
    assert_eq!(log.log_end_offset(), h.base_offset);
    assert!(log.segment_count() < segments);
    assert_eq!(read_all(&log, 0), stored[..10].concat());
    let (bytes, info) = append(&mut log, &simple(1, 0, 9), 0);
    assert_eq!(info.first_offset, h.base_offset);
    drop(log);

    let log = Log::open(dir.path(), small_config()).unwrap();
    let mut expected = stored[..10].concat();
    expected.extend_from_slice(&bytes);
    assert_eq!(read_all(&log, 0), expected);
}

#[test]
fn truncate_below_start_restarts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    fill(&mut log, 5);
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!((log.segment_count(), log.size_bytes()), (1, 0));
}

#[test]
fn flush_messages_triggers_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            flush_messages: 3,
            flush_ms: 1_000,
            ..LogConfig::default()
        },
    )
    .unwrap();
    append(&mut log, &simple(2, 0, 0), 0);
    assert_eq!(log.unflushed_messages, 2);
    append(&mut log, &simple(1, 0, 0), 0);
    assert_eq!(log.unflushed_messages, 0);
    append(&mut log, &simple(1, 0, 0), 10);
    log.maybe_flush(500).unwrap();
    assert_eq!(log.unflushed_messages, 1);
    log.maybe_flush(1_010).unwrap();
    assert_eq!(log.unflushed_messages, 0);
}

#[test]
fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let mut log = Log::open(&path, LogConfig::default()).unwrap();
    fill(&mut log, 2);
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn log_can_be_shared_between_threads() {
    // The server keeps each log behind an RwLock and reads from many tasks.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
}

#[test]
fn sync_handle_covers_appends_so_far_and_outlives_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    fill(&mut log, 3);
    let handle = log.sync_handle().unwrap();
    assert_eq!(handle.end_offset(), log.log_end_offset());
    // Appends after the handle was taken are not claimed by it.
    fill(&mut log, 2);
    assert!(handle.end_offset() < log.log_end_offset());
    drop(log);
    handle.sync().unwrap();
}
