//! Tests of the leader epoch cache as the log maintains it: appends (as
//! leader and as follower), truncation, log start moves, reopen after a
//! clean close and after a crash, and compaction.

use kafka_protocol::records::Compression;

use super::{
    compact_tests::compact_config,
    recovery_tests::set_len,
    replica_tests::{lead, stored},
    tests::small_config,
    *,
};
use crate::{
    files::segment_path,
    test_util::{idempotent, keyed_batch, simple},
};

/// Batches of 3, 2, 2 and 3 records in epochs 0, 0, 2 and 5: epoch 0
/// starts at 0, epoch 2 at 5, epoch 5 at 7, and the log ends at 10.
fn four_batches(log: &mut Log) {
    for (records, epoch) in [(3, 0), (2, 0), (2, 2), (3, 5)] {
        lead(log, &simple(records, 0, 0), epoch);
    }
}

/// `end_offset_for_epoch` for epochs 0 to 6.
fn answers(log: &Log) -> Vec<Option<(i32, i64)>> {
    (0..=6)
        .map(|epoch| log.end_offset_for_epoch(epoch))
        .collect()
}

#[test]
fn epochs_follow_appends_truncation_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(
        (log.latest_epoch(), log.end_offset_for_epoch(0)),
        (None, None)
    );
    four_batches(&mut log);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 5), (5, 7)]);
    assert_eq!(log.latest_epoch(), Some(5));
    let expected = vec![
        Some((0, 5)),
        Some((0, 5)),
        Some((2, 7)),
        Some((2, 7)),
        Some((2, 7)),
        Some((5, 10)),
        None,
    ];
    assert_eq!(answers(&log), expected);
    drop(log);
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 5), (5, 7)]);
    assert_eq!(answers(&log), expected);

    // Epoch 5's only batch goes: epoch 2 is the latest again.
    log.truncate_to(7).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 5)]);
    let expected = vec![
        Some((0, 5)),
        Some((0, 5)),
        Some((2, 7)),
        None,
        None,
        None,
        None,
    ];
    assert_eq!(answers(&log), expected);
    log.close().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 5)]);
    assert_eq!(answers(&log), expected);

    // Inside epoch 2's batch: the whole batch, and the epoch, go.
    log.truncate_to(6).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0)]);
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 5)));
    lead(&mut log, &simple(1, 0, 0), 6);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (6, 5)]);
    assert_eq!(log.end_offset_for_epoch(2), Some((0, 5)));
}

#[test]
fn batches_without_an_epoch_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    lead(&mut log, &simple(1, 0, 0), -1);
    log.append_replicated(&stored(&simple(1, 0, 0), 1, -1), 0)
        .unwrap();
    assert_eq!(log.latest_epoch(), None);
    lead(&mut log, &simple(1, 0, 0), 3);
    lead(&mut log, &simple(1, 0, 0), -1);
    assert_eq!(log.epoch_entries(), vec![(3, 2)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 4)));
}

#[test]
fn a_torn_tail_takes_its_epoch_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    four_batches(&mut log);
    let size = log.size_bytes();
    let last_len = simple(3, 0, 0).len() as u64;
    drop(log); // a crash: no close

    // The first batch of epoch 5 was only half written.
    set_len(&segment_path(dir.path(), 0, LOG_EXT), size - last_len / 2);
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 7);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 5)]);
    assert_eq!(log.latest_epoch(), Some(2));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 7)));
    assert_eq!(log.end_offset_for_epoch(5), None);
    lead(&mut log, &simple(1, 0, 0), 6);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 5), (6, 7)]);
}

#[test]
fn log_start_moves_collapse_older_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    for i in 0..30 {
        lead(&mut log, &simple(1, 0, i as u8), 1 + i / 10);
    }
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 10), (3, 20)]);

    log.delete_records_before(4).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 4), (2, 10), (3, 20)]);
    log.delete_records_before(15).unwrap();
    assert_eq!(log.epoch_entries(), vec![(2, 15), (3, 20)]);
    drop(log);
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.epoch_entries(), vec![(2, 15), (3, 20)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 15)));

    // Retention deletes whole segments; the start lands on a segment base.
    let mut config = small_config();
    config.retention_bytes = 0;
    log.set_config(config);
    assert!(log.apply_retention(0).unwrap() > 0);
    let end = log.log_end_offset();
    assert_eq!((log.log_start_offset(), log.size_bytes()), (end, 0));
    assert_eq!(log.epoch_entries(), vec![(3, end)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((3, end)));
    // An entry starting at the log end offset is trimmed on open, as Kafka
    // trims its checkpoint to the recovered end.
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.epoch_entries(), vec![]);
}

#[test]
fn an_entry_at_the_log_end_is_trimmed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    four_batches(&mut log);
    // The batches stay in the active segment, below the start offset.
    log.delete_records_before(10).unwrap();
    assert_eq!(log.epoch_entries(), vec![(5, 10)]);
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.log_start_offset(), log.size_bytes() > 0), (10, true));
    assert_eq!(log.epoch_entries(), vec![]);
}

#[test]
fn truncating_fully_forgets_epochs_and_producers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    lead(&mut log, &idempotent(9, 0, 0, 2), 4);
    for _ in 0..10 {
        lead(&mut log, &simple(2, 0, 0), 5);
    }
    log.truncate_fully_and_start_at(1_000).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (1_000, 1_000)
    );
    assert_eq!((log.segment_count(), log.size_bytes()), (1, 0));
    assert!(log.producers().is_empty());
    assert_eq!(
        (log.latest_epoch(), log.end_offset_for_epoch(5)),
        (None, None)
    );
    drop(log);
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (1_000, 1_000)
    );
    assert!(log.epoch_entries().is_empty());

    // Backwards too: a follower whose leader restarted lower.
    log.truncate_fully_and_start_at(10).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 10));
    assert_eq!(lead(&mut log, &simple(1, 0, 0), 7).first_offset, 10);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.epoch_entries()),
        (10, vec![(7, 10)])
    );
}

#[test]
fn compaction_keeps_the_batch_that_starts_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    // Key "a" is rewritten in every epoch: compaction empties the first
    // two batches, which alone say where epochs 1 and 2 began.
    for (value, epoch) in [("1", 1), ("2", 2), ("3", 3)] {
        let batch = keyed_batch(&[(Some("a"), Some(value))], 1_000, Compression::None);
        lead(&mut log, &batch, epoch);
    }
    log.roll().unwrap();
    let batch = keyed_batch(&[(Some("z"), Some("active"))], 2_000, Compression::None);
    lead(&mut log, &batch, 3);
    let entries = vec![(1, 0), (2, 1), (3, 2)];
    assert_eq!(log.epoch_entries(), entries);

    let stats = log.compact(10_000).unwrap();
    assert_eq!(stats.records_removed, 2);
    let counts: Vec<i32> = log
        .batch_headers(0)
        .unwrap()
        .iter()
        .map(|h| h.records_count)
        .collect();
    assert_eq!(counts, vec![0, 0, 1, 1]);
    drop(log);
    let log = Log::open(dir.path(), compact_config()).unwrap();
    assert_eq!(log.epoch_entries(), entries);
}
