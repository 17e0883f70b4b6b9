//! Tests of transactions in the log: open transactions and the first
//! unstable offset, markers and fencing, the aborted index and what a
//! read_committed fetch is told, followers, truncation, retention,
//! compaction, and recovery after a crash at any point (a drop without
//! close, files edited with `std::fs` as a crash or a bad disk leaves them).

use std::fs;

use kafka_protocol::records::Compression;

use super::{
    compact_tests::{compact_config, records},
    recovery_tests::{active_base, set_len},
    *,
};
use crate::{
    files::{segment_path, TXN_INDEX_EXT},
    test_util::{idempotent, keyed_batch_from, simple, transactional},
    txn::{AbortedTxn, Marker},
};

/// Two or three batches per segment.
fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 200,
        index_interval_bytes: 100,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

const COMMIT: Marker = Marker {
    commit: true,
    coordinator_epoch: 0,
};
const ABORT: Marker = Marker {
    commit: false,
    coordinator_epoch: 0,
};

fn write(log: &mut Log, batch: &[u8]) -> AppendInfo {
    log.append(&mut batch.to_vec(), 1, 0).unwrap()
}

fn aborted(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
        last_stable_offset: lso,
    }
}

/// What recovery must reproduce exactly.
fn txn_state(log: &Log) -> (Option<i64>, usize, Vec<AbortedTxn>, i64) {
    (
        log.first_unstable_offset(),
        log.ongoing_transactions(),
        log.all_aborted_transactions(),
        log.log_end_offset(),
    )
}

/// Three producers over several segments: producer 1 commits, producer 2
/// aborts while 1's next transaction is open, producer 3 stays open.
/// Returns the state and the aborted entries expected.
fn scenario(log: &mut Log) -> Vec<AbortedTxn> {
    let mut seq = [0i32; 4];
    let mut txn = |log: &mut Log, pid: i64, records: i32| {
        let info = write(log, &transactional(pid, 0, seq[pid as usize], records));
        seq[pid as usize] += records;
        info.first_offset
    };
    let p1 = txn(log, 1, 2);
    write(log, &simple(1, 0, 0));
    txn(log, 1, 3);
    log.append_marker(1, 0, COMMIT, 1, 0).unwrap();
    let p2 = txn(log, 2, 2);
    let p1_again = txn(log, 1, 1);
    txn(log, 2, 4);
    let abort_at = log.append_marker(2, 0, ABORT, 1, 0).unwrap();
    let p3 = txn(log, 3, 2);
    log.append_marker(1, 0, COMMIT, 1, 0).unwrap();
    assert!(p1 < p2 && p2 < p1_again && p1_again < abort_at && abort_at < p3);
    assert!(log.segment_count() > 2, "markers span segments");
    vec![aborted(2, p2, abort_at, p1_again)]
}

#[test]
fn open_transactions_bound_the_first_unstable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    let first = write(&mut log, &transactional(1, 0, 0, 2)).first_offset;
    let second = write(&mut log, &transactional(2, 0, 0, 1)).first_offset;
    write(&mut log, &transactional(1, 0, 2, 1));
    assert_eq!(log.first_unstable_offset(), Some(first));
    assert_eq!(log.ongoing_transactions(), 2);
    assert_eq!(
        log.producers().get(1).unwrap().current_txn_first_offset,
        Some(first)
    );
    let commit = log.append_marker(1, 0, COMMIT, 1, 0).unwrap();
    assert_eq!(log.first_unstable_offset(), Some(second));
    let abort = log.append_marker(2, 0, ABORT, 1, 0).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    assert!(commit < abort);
    assert_eq!(
        log.all_aborted_transactions(),
        vec![aborted(2, second, abort, abort + 1)]
    );
    // A marker of a producer with nothing open records nothing.
    log.append_marker(2, 0, ABORT, 1, 0).unwrap();
    assert_eq!(log.all_aborted_transactions().len(), 1);
}

#[test]
fn fencing_and_transaction_state_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    write(&mut log, &transactional(1, 3, 0, 1));
    let end = log.log_end_offset();
    let refused = |log: &mut Log, batch: Vec<u8>| log.append(&mut batch.clone(), 1, 0).unwrap_err();
    assert!(matches!(
        refused(&mut log, transactional(1, 2, 1, 1)),
        StorageError::InvalidProducerEpoch {
            current: 3,
            found: 2,
            ..
        }
    ));
    assert!(matches!(
        refused(&mut log, idempotent(1, 3, 1, 1)),
        StorageError::InvalidTxnState { producer_id: 1 }
    ));
    assert!(matches!(
        log.append_marker(1, 2, COMMIT, 1, 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    let newer = Marker {
        commit: true,
        coordinator_epoch: 5,
    };
    assert_eq!(log.log_end_offset(), end, "nothing written");
    log.append_marker(1, 3, newer, 1, 0).unwrap();
    assert!(matches!(
        log.append_marker(1, 3, COMMIT, 1, 0),
        Err(StorageError::CoordinatorFenced {
            current: 5,
            found: 0,
            ..
        })
    ));
    // A marker with a bumped epoch (the coordinator fencing the producer)
    // is taken, and the producer restarts its sequences under it.
    let bumped = Marker {
        commit: false,
        coordinator_epoch: 5,
    };
    log.append_marker(1, 4, bumped, 1, 0).unwrap();
    assert_eq!(log.producers().get(1).unwrap().epoch, 4);
    write(&mut log, &transactional(1, 4, 0, 1));
    write(&mut log, &idempotent(9, 0, 0, 1));
}

#[test]
fn read_committed_fetches_get_the_overlapping_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let expected = scenario(&mut log);
    let a = expected[0];
    assert_eq!(log.all_aborted_transactions(), expected);
    let end = log.log_end_offset();
    assert_eq!(log.aborted_transactions(0, end), expected);
    assert_eq!(
        log.aborted_transactions(a.first_offset, a.first_offset + 1),
        expected
    );
    assert_eq!(log.aborted_transactions(a.last_offset, end), expected);
    assert!(log.aborted_transactions(0, a.first_offset).is_empty());
    assert!(log.aborted_transactions(a.last_offset + 1, end).is_empty());
}

#[test]
fn recovery_after_a_crash_gives_the_same_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let expected = scenario(&mut log);
    let before = txn_state(&log);
    assert_eq!(before.2, expected);
    assert!(before.0.is_some(), "producer 3 is still open");
    drop(log); // a crash: no clean close
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(txn_state(&log), before);

    // Clean close and reopen, from the snapshot alone.
    log.close().unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.restored_from.1, 0, "nothing walked");
    assert_eq!(txn_state(&log), before);

    // Every aborted index lost, and every snapshot: rebuilt from the log.
    drop(log);
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().unwrap_or_default().to_owned();
        if ext == TXN_INDEX_EXT || ext == "snapshot" {
            fs::remove_file(path).unwrap();
        }
    }
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(txn_state(&log), before);
    drop(log);

    // One damaged index forces a full walk even with snapshots present.
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    log.roll().unwrap();
    let marker_segment = *log
        .segments
        .range(..=expected[0].last_offset)
        .next_back()
        .unwrap()
        .0;
    drop(log);
    fs::write(
        segment_path(dir.path(), marker_segment, TXN_INDEX_EXT),
        b"junk",
    )
    .unwrap();
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.restored_from.0, None);
    assert_eq!(txn_state(&log), before);
}

#[test]
fn a_torn_marker_reopens_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let first = write(&mut log, &transactional(1, 0, 0, 1)).first_offset;
    let marker = log.append_marker(1, 0, ABORT, 1, 0).unwrap();
    assert_eq!(log.all_aborted_transactions().len(), 1);
    assert_eq!(log.first_unstable_offset(), None);
    let active = active_base(&log);
    drop(log);
    // The marker's last bytes never reached the disk.
    let path = segment_path(dir.path(), active, LOG_EXT);
    set_len(&path, fs::metadata(&path).unwrap().len() - 3);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), marker);
    assert_eq!(log.first_unstable_offset(), Some(first));
    assert!(log.all_aborted_transactions().is_empty());
}

#[test]
fn truncation_and_retention_take_their_entries_along() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let expected = scenario(&mut log);
    let a = expected[0];
    log.truncate_to(a.last_offset).unwrap();
    assert!(log.all_aborted_transactions().is_empty());
    assert_eq!(log.first_unstable_offset(), Some(a.first_offset));
    assert_eq!(log.ongoing_transactions(), 2);
    // The follower gets the leader's marker again.
    log.append_marker(2, 0, ABORT, 1, 0).unwrap();
    assert_eq!(log.all_aborted_transactions(), expected);

    // Retention deletes the segment, its `.txnindex` included.
    let marker_segment = *log.segments.range(..=a.last_offset).next_back().unwrap().0;
    log.roll().unwrap();
    let end = log.log_end_offset();
    log.delete_records_before(end).unwrap();
    assert!(!segment_path(dir.path(), marker_segment, TXN_INDEX_EXT).exists());
    assert!(log.all_aborted_transactions().is_empty());
    // Producer 1's transaction was open past the new start: held there.
    assert_eq!(log.first_unstable_offset(), Some(end));
}

#[test]
fn followers_build_the_same_state_from_the_leaders_bytes() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(leader_dir.path(), small_config()).unwrap();
    scenario(&mut leader);
    let mut follower = Log::open(follower_dir.path(), small_config()).unwrap();
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let bytes = leader.read(offset, 300, i64::MAX, true).unwrap().bytes;
        let info = follower.append_replicated(&bytes, 0).unwrap();
        offset = info.last_offset + 1;
    }
    assert_eq!(txn_state(&follower), txn_state(&leader));
    assert_eq!(follower.producers(), leader.producers());
}

/// Appends a one-record transactional batch `kv` of producer `pid`
/// (epoch 0) at sequence `seq`; returns its offset.
fn put_txn(log: &mut Log, pid: i64, seq: i32, kv: (&str, &str)) -> i64 {
    let mut batch = keyed_batch_from(
        &[(Some(kv.0), Some(kv.1))],
        1_000,
        Compression::None,
        (pid, 0, seq),
    );
    batch[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    log.append(&mut batch, 1, 1_000).unwrap().first_offset
}

/// Appends a plain one-record batch `kv`.
fn put_plain(log: &mut Log, kv: (&str, &str)) {
    let mut batch = keyed_batch_from(
        &[(Some(kv.0), Some(kv.1))],
        2_000,
        Compression::None,
        (-1, -1, -1),
    );
    log.append(&mut batch, 1, 2_000).unwrap();
}

/// Whether a control batch starts at `offset`.
fn marker_at(log: &Log, offset: i64) -> bool {
    let bytes = log.read(offset, 1, i64::MAX, true).unwrap().bytes;
    !bytes.is_empty() && {
        let header = BatchHeader::parse(&bytes).unwrap();
        header.base_offset == offset && header.is_control()
    }
}

#[test]
fn compaction_removes_markers_of_emptied_transactions_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    // Segments roll only where the test rolls them.
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    // The leader epoch starts at a batch that stays (as does a marker that
    // holds an epoch's start).
    put_plain(&mut log, ("x", "first"));
    put_txn(&mut log, 1, 0, ("a", "superseded"));
    let commit_1 = log.append_marker(1, 0, COMMIT, 1, 1_000).unwrap();
    put_txn(&mut log, 2, 0, ("b", "aborted"));
    let abort_2 = log.append_marker(2, 0, ABORT, 1, 1_000).unwrap();
    put_txn(&mut log, 3, 0, ("c", "kept"));
    let commit_3 = log.append_marker(3, 0, COMMIT, 1, 1_000).unwrap();
    // Producer 5's only batch stays (empty) for its sequence, so its
    // marker must stay too, or a replay would find the batch open.
    put_txn(&mut log, 5, 0, ("g", "superseded"));
    let commit_5 = log.append_marker(5, 0, COMMIT, 1, 1_000).unwrap();
    // Producer 4's transaction is open across the roll: the snapshot taken
    // there holds it open, so its marker must stay for a replay from it.
    put_txn(&mut log, 4, 0, ("d", "superseded"));
    log.roll().unwrap();
    let commit_4 = log.append_marker(4, 0, COMMIT, 1, 1_000).unwrap();
    // Producers 1 and 2 go on, so their first batches are not their last.
    put_txn(&mut log, 1, 1, ("e", "later"));
    log.append_marker(1, 0, COMMIT, 1, 1_000).unwrap();
    put_txn(&mut log, 2, 1, ("f", "later"));
    log.append_marker(2, 0, COMMIT, 1, 1_000).unwrap();
    for key in ["a", "d", "g"] {
        put_plain(&mut log, (key, "new"));
    }
    log.roll().unwrap();
    put_plain(&mut log, ("z", "active"));
    assert_eq!(log.all_aborted_transactions().len(), 1);

    // The first run removes the data; the markers of the emptied
    // transactions get their delete horizon (now + delete.retention.ms).
    let stats = log.compact(10_000).unwrap();
    assert_eq!(stats.records_removed, 4, "a, b (aborted), d and g");
    for offset in [commit_1, abort_2, commit_3, commit_4, commit_5] {
        assert!(marker_at(&log, offset), "marker {offset} still there");
    }
    assert!(!log.needs_compaction(10_999));
    assert!(log.needs_compaction(11_000), "a marker's horizon is due");
    assert_eq!(log.compact(10_999).unwrap().records_removed, 0);

    // Once delete.retention.ms has passed they go, the abort's index entry
    // with them; the others stay.
    let stats = log.compact(11_000).unwrap();
    assert_eq!(stats.records_removed, 2, "two markers");
    assert!(!marker_at(&log, commit_1));
    assert!(!marker_at(&log, abort_2));
    assert!(marker_at(&log, commit_3), "its transaction has data left");
    assert!(marker_at(&log, commit_4), "after the oldest snapshot");
    assert!(
        marker_at(&log, commit_5),
        "its producer's last batch is left"
    );
    assert!(log.all_aborted_transactions().is_empty());
    assert_eq!(log.first_unstable_offset(), None);
    let kept: Vec<_> = records(&log)
        .into_iter()
        .filter_map(|(_, _, k, v)| Some((k?, v?)))
        .filter(|(k, _)| k.chars().all(|c| c.is_ascii_alphabetic()))
        .collect();
    let expected = [
        ("x", "first"),
        ("c", "kept"),
        ("e", "later"),
        ("f", "later"),
        ("a", "new"),
        ("d", "new"),
        ("g", "new"),
        ("z", "active"),
    ];
    assert_eq!(kept, expected.map(|(k, v)| (k.to_string(), v.to_string())));
    // Reopened, from the snapshots or from a walk of the whole log,
    // nothing is open.
    drop(log);
    let log = Log::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    assert!(log.all_aborted_transactions().is_empty());
    drop(log);
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            fs::remove_file(path).unwrap();
        }
    }
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(log.ongoing_transactions(), 0);
}

#[test]
fn compaction_removes_aborted_records_and_keeps_markers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    let put = put_txn;
    let committed = put(&mut log, 1, 0, ("a", "committed"));
    log.append_marker(1, 0, COMMIT, 1, 1_000).unwrap();
    put(&mut log, 2, 0, ("a", "aborted"));
    put(&mut log, 2, 1, ("b", "aborted"));
    let abort = log.append_marker(2, 0, ABORT, 1, 1_000).unwrap();
    // An open transaction: neither cleaned nor allowed to supersede.
    let open = put(&mut log, 3, 0, ("a", "open"));
    log.roll().unwrap();
    put(&mut log, 4, 0, ("c", "later"));
    log.append_marker(4, 0, COMMIT, 1, 1_000).unwrap();
    log.roll().unwrap();
    let mut last = keyed_batch_from(
        &[(Some("d"), Some("x"))],
        2_000,
        Compression::None,
        (-1, -1, -1),
    );
    log.append(&mut last, 1, 2_000).unwrap();

    let stats = log.compact(10_000).unwrap();
    assert_eq!(stats.records_removed, 2);
    let kept: Vec<_> = records(&log)
        .into_iter()
        .map(|(o, _, k, v)| (o, k.unwrap_or_default(), v.unwrap_or_default()))
        .collect();
    assert!(kept.contains(&(committed, "a".into(), "committed".into())));
    assert!(kept.contains(&(open, "a".into(), "open".into())));
    assert!(!kept.iter().any(|(_, _, v)| v == "aborted"));
    // Markers stay, and so does the aborted index (moved to the cleaned segment).
    let marker = log.read(abort, 1, i64::MAX, true).unwrap().bytes;
    assert!(BatchHeader::parse(&marker).unwrap().is_control());
    assert_eq!(log.all_aborted_transactions().len(), 1);
    assert_eq!(log.first_unstable_offset(), Some(open));
    drop(log);
    let log = Log::open(dir.path(), compact_config()).unwrap();
    assert_eq!(log.all_aborted_transactions().len(), 1);
    assert_eq!(log.first_unstable_offset(), Some(open));
}
