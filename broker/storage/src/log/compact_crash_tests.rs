//! Crash-safety tests of compaction: a run stopped at an injected crash
//! point (as if the process died there) and the log reopened must be
//! consistent: the originals when the cleaned segment was not committed
//! yet, the swap completed when it was.

use kafka_protocol::records::Compression;

use super::{
    compact::CrashPoint,
    compact_tests::{compact_config, fill_keys, latest_per_key, put, records},
    tests::exists,
    *,
};
use crate::files::{INDEX_EXT, SWAP_SUFFIX};

#[test]
fn a_crash_before_the_swap_leaves_the_original_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    fill_keys(&mut log, 20, 2);
    let before = records(&log);
    log.crash_point = Some(CrashPoint::BeforeSwap);
    assert!(log.compact(10_000).is_err());
    let cleaned = dir.path().join("00000000000000000000.log.cleaned");
    assert!(cleaned.exists());
    drop(log);

    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    assert!(!cleaned.exists());
    assert_eq!(records(&log), before);
    log.compact(10_000).unwrap();
    assert_eq!(records(&log), latest_per_key(&before));
}

/// Appends one-record batches with these keys, rolling after every two so
/// that the first compaction group spans several small segments, then one
/// batch in the active segment.
fn fill_small_segments(log: &mut Log, keys: &[&str]) {
    for (i, key) in keys.iter().enumerate() {
        put(
            log,
            &[(Some(key), Some(&format!("v{i}")))],
            1_000 + i as i64,
            Compression::None,
        );
        if i % 2 == 1 {
            log.roll().unwrap();
        }
    }
    put(
        log,
        &[(Some("z"), Some("active"))],
        2_000,
        Compression::None,
    );
}

#[test]
fn a_crash_during_the_swap_is_completed_on_open() {
    // The first group is segments 0 and 2 (offsets 0..=3), of which
    // "a"@0 and "b"@1 have later values.
    let keys = ["a", "b", "a", "c", "d", "d", "b", "e", "d", "f"];
    for deleted in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), compact_config()).unwrap();
        fill_small_segments(&mut log, &keys);
        let (before, end) = (records(&log), log.log_end_offset());
        log.crash_point = Some(CrashPoint::AfterDeleting(deleted));
        assert!(log.compact(10_000).is_err());
        let swap = dir
            .path()
            .join(format!("00000000000000000000.log{SWAP_SUFFIX}"));
        assert!(swap.exists());
        drop(log);

        let mut log = Log::open(dir.path(), compact_config()).unwrap();
        assert!(!swap.exists());
        assert!(!exists(dir.path(), 2, LOG_EXT), "original 2 is replaced");
        assert!(exists(dir.path(), 0, INDEX_EXT), "index rebuilt");
        // The swap took effect for its range and nothing else changed.
        let latest = latest_per_key(&before);
        let expected: Vec<_> = before
            .iter()
            .filter(|r| r.0 >= 4 || latest.contains(r))
            .cloned()
            .collect();
        assert_eq!(expected.len(), before.len() - 2);
        assert_eq!(records(&log), expected, "crash after deleting {deleted}");
        assert_eq!(log.log_end_offset(), end);

        log.compact(10_000).unwrap();
        assert_eq!(records(&log), latest_per_key(&before));
        let info = put(
            &mut log,
            &[(Some("a"), Some("after"))],
            5_000,
            Compression::None,
        );
        assert_eq!(info.first_offset, end);
    }
}

#[test]
fn a_swap_left_without_any_original_is_renamed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    fill_small_segments(&mut log, &["a", "b", "a", "c"]);
    let before = records(&log);
    log.crash_point = Some(CrashPoint::BeforeRename);
    assert!(log.compact(10_000).is_err());
    assert!(!exists(dir.path(), 0, LOG_EXT) && !exists(dir.path(), 2, LOG_EXT));
    drop(log);

    let log = Log::open(dir.path(), compact_config()).unwrap();
    assert_eq!(records(&log), latest_per_key(&before));
    assert!(exists(dir.path(), 0, LOG_EXT));
}
