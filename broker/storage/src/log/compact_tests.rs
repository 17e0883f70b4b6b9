//! Tests of log compaction on real Kafka batches (built with
//! `kafka-protocol`'s encoder, read back with its decoder): what survives,
//! offsets and gaps, tombstones, codecs, crash safety of the swap, and the
//! cleanup policy flags. Crashes during compaction are in
//! `compact_crash_tests.rs`.

use std::fs;

use kafka_protocol::records::Compression;

use super::*;
use crate::{
    batch::check_crc,
    files::{segment_path, CLEANER_CHECKPOINT_FILE},
    test_util::{decode_records, keyed_batch, keyed_batch_from, Decoded},
    CompactionStats,
};

type Kv<'a> = (Option<&'a str>, Option<&'a str>);

/// Small segments, compaction on, retention off (policy `compact`).
pub(super) fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        segment_index_bytes: 4096,
        compact: true,
        delete: false,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

pub(super) fn put(
    log: &mut Log,
    records: &[Kv<'_>],
    timestamp: i64,
    codec: Compression,
) -> AppendInfo {
    let mut buf = keyed_batch(records, timestamp, codec);
    log.append(&mut buf, 3, timestamp).unwrap()
}

/// Appends `n` one-record batches cycling over `keys` keys, then rolls so
/// they are all in closed segments, then one batch with key "z" in the
/// active segment.
pub(super) fn fill_keys(log: &mut Log, n: usize, keys: usize) {
    for i in 0..n {
        let (k, v) = (format!("k{}", i % keys), format!("v{i}"));
        put(
            log,
            &[(Some(&k), Some(&v))],
            1_000 + i as i64,
            Compression::None,
        );
    }
    log.roll().unwrap();
    put(
        log,
        &[(Some("z"), Some("active"))],
        2_000,
        Compression::None,
    );
}

/// Every batch of the log, read as a consumer would, with CRCs checked.
fn batches(log: &Log) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1, i64::MAX, true).unwrap().bytes;
        if bytes.is_empty() {
            break;
        }
        let header = BatchHeader::parse(&bytes).unwrap();
        check_crc(&bytes, &header).unwrap();
        offset = header.last_offset() + 1;
        out.push(header);
    }
    out
}

/// Every record of the log, read one batch at a time from the start.
pub(super) fn records(log: &Log) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1, i64::MAX, true).unwrap().bytes;
        if bytes.is_empty() {
            break;
        }
        offset = BatchHeader::parse(&bytes).unwrap().last_offset() + 1;
        out.extend(decode_records(&bytes));
    }
    out
}

/// The records that compaction must keep: the latest per key.
pub(super) fn latest_per_key(all: &[Decoded]) -> Vec<Decoded> {
    all.iter()
        .filter(|(offset, _, key, _)| {
            !all.iter()
                .any(|(o, _, k, _)| k.is_some() && k == key && o > offset)
        })
        .cloned()
        .collect()
}

fn kv(offset: i64, timestamp: i64, key: &str, value: Option<&str>) -> Decoded {
    (offset, timestamp, Some(key.into()), value.map(Into::into))
}

#[test]
fn repeated_keys_keep_only_the_latest_with_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    fill_keys(&mut log, 40, 4);
    let (before, end, segments) = (records(&log), log.log_end_offset(), log.segment_count());
    assert!(segments > 4, "segments: {segments}");
    assert!(log.needs_compaction(0));

    let stats = log.compact(10_000).unwrap();
    let after = records(&log);
    assert_eq!(after, latest_per_key(&before));
    assert_eq!(after.len(), 5);
    assert_eq!(after[0], kv(36, 1_036, "k0", Some("v36")));
    assert_eq!(stats.records_removed, 36);
    assert_eq!(stats.segments_cleaned, segments - 1);
    assert!(stats.bytes_after < stats.bytes_before);
    // Offsets are unchanged, the small cleaned segments were merged.
    assert_eq!(log.log_end_offset(), end);
    assert!(log.segment_count() < segments);
    assert_eq!(log.log_start_offset(), 0);

    // What was written reopens (indexes rebuilt, batch headers accepted).
    log.close().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    assert_eq!(records(&log), after);
    let info = put(
        &mut log,
        &[(Some("k0"), Some("new"))],
        3_000,
        Compression::None,
    );
    assert_eq!(info.first_offset, end);
}

#[test]
fn a_key_updated_in_the_active_segment_leaves_the_cleaned_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    put(
        &mut log,
        &[(Some("a"), Some("old")), (Some("b"), Some("1"))],
        100,
        Compression::None,
    );
    log.roll().unwrap();
    put(
        &mut log,
        &[(Some("a"), Some("new"))],
        200,
        Compression::None,
    );
    log.compact(1_000).unwrap();
    assert_eq!(
        records(&log),
        [kv(1, 101, "b", Some("1")), kv(2, 200, "a", Some("new"))]
    );
    // The rewritten batch still spans offsets 0..=1: only a record went.
    let first = batches(&log)[0];
    assert_eq!(
        (first.base_offset, first.last_offset(), first.records_count),
        (0, 1, 1)
    );
}

#[test]
fn compaction_never_touches_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    put(
        &mut log,
        &[(Some("a"), Some("1")), (Some("a"), Some("2"))],
        100,
        Compression::None,
    );
    log.roll().unwrap();
    for i in 0..3 {
        put(
            &mut log,
            &[(Some("a"), Some("x")), (Some("b"), None)],
            200 + i,
            Compression::None,
        );
    }
    let active = *log.segments.keys().next_back().unwrap();
    let path = segment_path(dir.path(), active, LOG_EXT);
    let active_bytes = fs::read(&path).unwrap();

    let stats = log.compact(100_000).unwrap();
    assert_eq!(stats.records_removed, 2);
    assert_eq!(fs::read(&path).unwrap(), active_bytes);
    assert_eq!(records(&log).len(), 6);
    // Nothing but the active segment is left to clean: a rerun is a no-op.
    assert_eq!(log.compact(100_000).unwrap(), CompactionStats::default());
}

#[test]
fn tombstones_survive_delete_retention_then_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    put(
        &mut log,
        &[(Some("a"), Some("1")), (Some("b"), Some("1"))],
        100,
        Compression::None,
    );
    put(&mut log, &[(Some("a"), None)], 102, Compression::Gzip);
    log.roll().unwrap();
    put(&mut log, &[(Some("c"), Some("1"))], 200, Compression::None);

    log.compact(10_000).unwrap();
    let tombstone = kv(2, 102, "a", None);
    let live = [
        kv(1, 101, "b", Some("1")),
        tombstone.clone(),
        kv(3, 200, "c", Some("1")),
    ];
    assert_eq!(records(&log), live);
    assert_eq!(batches(&log)[1].delete_horizon(), Some(11_000));
    assert!(!log.needs_compaction(10_999));
    assert!(log.needs_compaction(11_000));

    // A later run before the horizon keeps it; the horizon was stamped once.
    log.compact(10_500).unwrap();
    assert_eq!(records(&log), live);
    log.close().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    assert!(log.needs_compaction(11_000), "horizon persisted");

    let stats = log.compact(11_000).unwrap();
    assert_eq!(stats.records_removed, 1);
    assert_eq!(records(&log), [live[0].clone(), live[2].clone()]);
    assert!(!log.needs_compaction(i64::MAX - 1));
}

#[test]
fn compressed_batches_are_compacted_and_still_decode() {
    for codec in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Snappy,
        Compression::Lz4,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), compact_config()).unwrap();
        let first = [
            (Some("a"), Some("1")),
            (Some("b"), Some("1")),
            (Some("a"), Some("2")),
        ];
        put(&mut log, &first, 100, codec);
        put(
            &mut log,
            &[(Some("b"), Some("2")), (Some("c"), Some("1"))],
            200,
            codec,
        );
        log.roll().unwrap();
        put(&mut log, &[(Some("d"), Some("1"))], 300, codec);

        let stats = log.compact(1_000).unwrap();
        assert_eq!(stats.records_removed, 2, "{codec:?}");
        let expected = [
            kv(2, 102, "a", Some("2")),
            kv(3, 200, "b", Some("2")),
            kv(4, 201, "c", Some("1")),
            kv(5, 300, "d", Some("1")),
        ];
        assert_eq!(records(&log), expected, "{codec:?}");
        for header in batches(&log) {
            assert_eq!(header.compression(), codec as u8, "{codec:?}");
        }
    }
}

#[test]
fn reads_across_compacted_segments_return_records_with_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    fill_keys(&mut log, 30, 3);
    log.compact(10_000).unwrap();
    let survivors: Vec<i64> = records(&log).iter().map(|r| r.0).collect();
    assert_eq!(survivors, [27, 28, 29, 30]);

    // A fetch at a removed offset returns the next batch that has records
    // at or after it, and a consumer continues from its last offset.
    let r = log.read(5, usize::MAX, i64::MAX, true).unwrap();
    let got = decode_records(&r.bytes);
    assert_eq!(got.first().map(|r| r.0), Some(27));
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [27, 28, 29]);
    let next = log.read(30, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(decode_records(&next.bytes)[0].0, 30);
    assert!(log
        .read(31, usize::MAX, i64::MAX, true)
        .unwrap()
        .bytes
        .is_empty());
}

#[test]
fn compact_alone_disables_retention_and_delete_alone_disables_compaction() {
    let old = |delete, compact| {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_ms: 10,
            delete,
            compact,
            ..compact_config()
        };
        let mut log = Log::open(dir.path(), config).unwrap();
        fill_keys(&mut log, 12, 2);
        (dir, log)
    };
    let (_dir, mut compact_only) = old(false, true);
    let count = compact_only.segment_count();
    assert_eq!(compact_only.apply_retention(1_000_000).unwrap(), 0);
    assert_eq!(compact_only.segment_count(), count);

    let (_dir, mut both) = old(true, true);
    assert!(both.apply_retention(1_000_000).unwrap() > 0);

    let (_dir, mut delete_only) = old(true, false);
    let before = records(&delete_only);
    assert!(!delete_only.needs_compaction(1_000_000));
    assert_eq!(
        delete_only.compact(1_000_000).unwrap(),
        CompactionStats::default()
    );
    assert_eq!(records(&delete_only), before);
}

#[test]
fn an_idempotent_producers_last_batch_is_kept_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    let produce = |log: &mut Log, seq, value| {
        let mut buf = keyed_batch_from(
            &[(Some("a"), Some(value))],
            100,
            Compression::None,
            (5, 0, seq),
        );
        // No leader epoch: the batch that starts one would be kept too.
        log.append(&mut buf, -1, 100).unwrap()
    };
    produce(&mut log, 0, "1");
    produce(&mut log, 1, "2");
    log.roll().unwrap();
    put(&mut log, &[(Some("a"), Some("3"))], 200, Compression::None);

    let stats = log.compact(1_000).unwrap();
    assert_eq!(stats.records_removed, 2);
    let headers = batches(&log);
    assert_eq!(headers.len(), 2);
    assert_eq!(
        (
            headers[0].base_offset,
            headers[0].records_count,
            headers[0].producer_id
        ),
        (1, 0, 5)
    );
    assert_eq!(records(&log), [kv(2, 200, "a", Some("3"))]);

    // The producer's sequence survives a restart through the empty batch.
    log.close().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    assert!(produce(&mut log, 1, "2").duplicate);
    assert_eq!(produce(&mut log, 2, "4").first_offset, 3);
}

#[test]
fn dirty_ratio_checkpoint_and_compaction_lag() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_compaction_lag_ms: 5_000,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    fill_keys(&mut log, 20, 2);
    assert_eq!(log.dirty_ratio(), 1.0);
    // The newest closed segment holds timestamp 1_019: too young before 6_019.
    assert!(!log.needs_compaction(6_000));
    let young = log.compact(2_000).unwrap();
    assert!(young.segments_cleaned < log.segment_count() - 1);
    assert!(log.needs_compaction(6_019));
    log.compact(6_019).unwrap();
    let active = *log.segments.keys().next_back().unwrap();
    assert_eq!((log.dirty_ratio(), log.first_dirty_offset()), (0.0, active));
    assert!(!log.needs_compaction(6_019));
    assert!(dir.path().join(CLEANER_CHECKPOINT_FILE).exists());

    // New data makes part of the log dirty again; the checkpoint persists.
    fill_keys(&mut log, 20, 2);
    let ratio = log.dirty_ratio();
    assert!(ratio > 0.5 && ratio < 1.0, "ratio {ratio}");
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.first_dirty_offset(), active);
    assert_eq!(log.dirty_ratio(), ratio);

    // Truncating below the checkpoint pulls it back.
    log.truncate_to(5).unwrap();
    assert_eq!(log.first_dirty_offset(), log.log_end_offset());
}
