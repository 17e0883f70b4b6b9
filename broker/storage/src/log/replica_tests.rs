//! Tests of follower appends: batches fetched from a leader log are stored
//! byte for byte with their offsets and epochs, offsets must move forward,
//! gaps and partial tails are handled, and the follower keeps the producer
//! state it needs to take over as leader.

use super::{
    recovery_tests::active_base,
    tests::{read_all, small_config},
    *,
};
use crate::{
    batch::set_base_offset_and_epoch,
    files::segment_path,
    test_util::{idempotent, simple},
};

/// `batch` as a leader stores it: at `base_offset`, written in leader
/// epoch `epoch`.
pub(super) fn stored(batch: &[u8], base_offset: i64, epoch: i32) -> Vec<u8> {
    let mut bytes = batch.to_vec();
    set_base_offset_and_epoch(&mut bytes, base_offset, epoch);
    bytes
}

/// Appends `batch` to `log` as the leader of `epoch`.
pub(super) fn lead(log: &mut Log, batch: &[u8], epoch: i32) -> AppendInfo {
    log.append(&mut batch.to_vec(), epoch, 0).unwrap()
}

fn open(dir: &tempfile::TempDir) -> Log {
    Log::open(dir.path(), small_config()).unwrap()
}

#[test]
fn follower_copies_the_leader_byte_for_byte() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = open(&leader_dir);
    for i in 0..20 {
        lead(
            &mut leader,
            &simple(i % 3 + 1, 1_000 + i64::from(i), i as u8),
            1 + i / 10 * 2,
        );
    }
    let mut follower = open(&follower_dir);
    while follower.log_end_offset() < leader.log_end_offset() {
        // Followers read up to the leader's log end offset.
        let from = follower.log_end_offset();
        let end = leader.log_end_offset();
        let fetched = leader.read(from, 300, end, true).unwrap().bytes;
        let info = follower.append_replicated(&fetched, 0).unwrap();
        assert_eq!(info.first_offset, from);
        assert_eq!(info.last_offset + 1, follower.log_end_offset());
        assert!(!info.duplicate);
    }
    assert_eq!(read_all(&follower, 0), read_all(&leader, 0));
    assert!(follower.segment_count() > 1);
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
    assert_eq!(follower.epoch_entries().len(), 2);
    assert_eq!(follower.max_timestamp(), leader.max_timestamp());

    drop(follower);
    let follower = open(&follower_dir);
    assert_eq!(read_all(&follower, 0), read_all(&leader, 0));
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
}

#[test]
fn replicated_producer_state_lets_a_follower_lead() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = open(&leader_dir);
    lead(&mut leader, &idempotent(9, 0, 0, 2), 1);
    lead(&mut leader, &idempotent(9, 0, 2, 3), 1);
    let mut follower = open(&follower_dir);
    follower
        .append_replicated(&read_all(&leader, 0), 0)
        .unwrap();
    drop(leader);

    // The follower is now leader; the producer retries its last batch.
    let retry = lead(&mut follower, &idempotent(9, 0, 2, 3), 2);
    assert!(retry.duplicate);
    assert_eq!((retry.first_offset, retry.last_offset), (2, 4));
    assert!(matches!(
        follower.append(&mut idempotent(9, 0, 9, 1), 2, 0),
        Err(StorageError::OutOfOrderSequence {
            expected: 5,
            found: 9,
            ..
        })
    ));
    let next = lead(&mut follower, &idempotent(9, 0, 5, 1), 2);
    assert_eq!((next.first_offset, next.duplicate), (5, false));
}

#[test]
fn replicated_appends_skip_sequence_checks() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    // A sequence gap and a repeated sequence: the leader decided, not us.
    let buf = [
        stored(&idempotent(9, 0, 0, 1), 0, 1),
        stored(&idempotent(9, 0, 7, 1), 1, 1),
        stored(&idempotent(9, 0, 7, 1), 2, 1),
    ]
    .concat();
    let info = log.append_replicated(&buf, 0).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.duplicate),
        (0, 2, false)
    );
    assert_eq!(log.producers().get(9).unwrap().batches.len(), 3);
}

#[test]
fn offsets_must_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    log.append_replicated(&stored(&simple(2, 0, 0), 0, 1), 0)
        .unwrap();
    let (size, entries) = (log.size_bytes(), log.epoch_entries());

    let below_end = stored(&simple(1, 0, 1), 1, 1);
    assert!(matches!(
        log.append_replicated(&below_end, 0),
        Err(StorageError::NonMonotonicOffset {
            expected_at_least: 2,
            found: 1
        })
    ));
    // The first batch is fine, the second overlaps it: nothing is written.
    let overlapping = [
        stored(&simple(2, 0, 2), 5, 2),
        stored(&simple(1, 0, 3), 6, 2),
    ]
    .concat();
    assert!(matches!(
        log.append_replicated(&overlapping, 0),
        Err(StorageError::NonMonotonicOffset {
            expected_at_least: 7,
            found: 6
        })
    ));
    assert_eq!((log.log_end_offset(), log.size_bytes()), (2, size));
    assert_eq!(log.epoch_entries(), entries);
}

#[test]
fn gaps_from_a_compacted_leader_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    let (a, b) = (
        stored(&simple(3, 0, 0), 0, 1),
        stored(&simple(2, 0, 1), 10, 2),
    );
    let info = log.append_replicated(&[a, b.clone()].concat(), 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 11));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 12));
    // An offset in the gap is served from the next batch.
    assert_eq!(
        &log.read(5, 10_000, i64::MAX, true).unwrap().bytes[..],
        &b[..]
    );
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 10)]);
}

#[test]
fn a_partial_trailing_batch_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    let empty = log.append_replicated(&[], 0).unwrap();
    assert_eq!((empty.first_offset, empty.last_offset), (0, -1));

    let (a, b, c) = (
        stored(&simple(1, 0, 0), 0, 1),
        stored(&simple(2, 0, 1), 1, 1),
        stored(&simple(1, 0, 2), 3, 1),
    );
    let mut fetched = [a.clone(), b.clone()].concat();
    fetched.extend_from_slice(&c[..c.len() / 2]);
    let info = log.append_replicated(&fetched, 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    assert_eq!(read_all(&log, 0), [a.clone(), b.clone()].concat());

    // Only a fragment of a header: nothing to do.
    let info = log.append_replicated(&c[..10], 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (3, 2));
    log.append_replicated(&c, 0).unwrap();
    assert_eq!(read_all(&log, 0), [a, b, c].concat());
}

#[test]
fn damaged_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    let good = stored(&simple(1, 0, 0), 0, 1);
    let mut bad_crc = stored(&simple(1, 0, 1), 1, 1);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let mut bad_magic = stored(&simple(1, 0, 1), 1, 1);
    bad_magic[16] = 1;
    for bad in [bad_crc, bad_magic] {
        let err = log
            .append_replicated(&[good.clone(), bad].concat(), 0)
            .unwrap_err();
        assert!(matches!(err, StorageError::InvalidBatch(_)), "{err:?}");
        assert_eq!((log.log_end_offset(), log.size_bytes()), (0, 0));
    }
}

#[test]
fn an_empty_log_starts_at_the_leaders_first_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    // The leader's retention moved its start to 500 before we fetched.
    log.append_replicated(&stored(&simple(2, 0, 0), 500, 4), 0)
        .unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 502));
    assert_eq!((log.segment_count(), active_base(&log)), (1, 500));
    assert_eq!(log.epoch_entries(), vec![(4, 500)]);
    drop(log);
    let mut log = open(&dir);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 502));

    // Emptied by DeleteRecords: records below the start are gone for good.
    log.delete_records_before(502).unwrap();
    log.append_replicated(&stored(&simple(1, 0, 1), 900, 5), 0)
        .unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (900, 901));
    assert_eq!(
        (log.segment_count(), log.epoch_entries()),
        (1, vec![(5, 900)])
    );
}

#[test]
fn gaps_wider_than_a_segment_can_index_start_new_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    let far = 5_000_000_000;
    let (a, b) = (
        stored(&simple(1, 0, 0), 0, 1),
        stored(&simple(1, 0, 1), far, 1),
    );
    log.append_replicated(&[a, b.clone()].concat(), 0).unwrap();
    assert_eq!(
        log.segments.keys().copied().collect::<Vec<_>>(),
        vec![0, far]
    );
    assert_eq!(log.log_end_offset(), far + 1);
    assert_eq!(
        &log.read(1, 10_000, i64::MAX, true).unwrap().bytes[..],
        &b[..]
    );

    // An empty active segment below a gap is replaced, not left behind.
    log.roll().unwrap();
    let empty = log.log_end_offset();
    let c = stored(&simple(1, 0, 2), 2 * far, 1);
    log.append_replicated(&c, 0).unwrap();
    assert_eq!(active_base(&log), 2 * far);
    assert!(!segment_path(dir.path(), empty, LOG_EXT).exists());
    drop(log);
    let log = open(&dir);
    assert_eq!(log.segment_count(), 3);
    assert_eq!(
        &log.read(empty, 10_000, i64::MAX, true).unwrap().bytes[..],
        &c[..]
    );
}

#[test]
fn replicated_appends_count_toward_flush_messages() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 3,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config).unwrap();
    log.append_replicated(&stored(&simple(2, 0, 0), 0, 1), 0)
        .unwrap();
    assert_eq!(log.unflushed_messages, 2);
    log.append_replicated(&stored(&simple(1, 0, 0), 2, 1), 0)
        .unwrap();
    assert_eq!(log.unflushed_messages, 0);
}
