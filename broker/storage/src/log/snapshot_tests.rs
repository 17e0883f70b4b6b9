//! Tests of producer state snapshots as the log takes and uses them. The
//! rule: an open that continues from a snapshot ends with exactly the
//! state a walk of every batch of the same log builds, and, where nothing
//! was lost, the state the log had before. Checked after a clean close, a
//! crash after several rolls, a torn tail below a snapshot, truncation,
//! corrupt snapshots, log start moves, follower appends and compaction
//! (where the snapshot knows more than the walk, on purpose).

use std::fs;

use kafka_protocol::records::Compression;

use super::{
    compact_tests::compact_config,
    recovery_tests::{active_base, set_len},
    replica_tests::stored,
    tests::small_config,
    *,
};
use crate::{
    files::segment_path,
    snapshot,
    test_util::{idempotent, keyed_batch_from, simple},
};

/// Producer state and leader epoch entries.
type State = (ProducerStateManager, Vec<(i32, i64)>);

fn state(log: &Log) -> State {
    (log.producers().clone(), log.epoch_entries())
}

/// What a walk of every batch of `log` builds, ignoring snapshots.
fn full_walk(log: &Log) -> State {
    let walked = log.rebuild_batch_state(None).unwrap();
    (walked.producers, walked.epochs.entries())
}

fn snapshots(log_dir: &Path) -> Vec<i64> {
    snapshot::list(log_dir).unwrap()
}

fn open(dir: &tempfile::TempDir) -> Log {
    Log::open(dir.path(), small_config()).unwrap()
}

/// A producing workload: producers 1 to 3 take turns with a
/// non-idempotent client, producer 3 bumps its epoch at batch 30, and the
/// leader epoch goes up every 7 batches.
struct Workload {
    next_sequence: [i32; 4],
    producer3_epoch: i16,
    batches: usize,
}

impl Workload {
    fn new() -> Self {
        Workload {
            next_sequence: [0; 4],
            producer3_epoch: 0,
            batches: 0,
        }
    }

    fn run(&mut self, log: &mut Log, n: usize) {
        for _ in 0..n {
            let i = self.batches;
            let (pid, records) = (i % 4, (i % 3 + 1) as i32);
            if pid == 3 && i >= 30 && self.producer3_epoch == 0 {
                self.producer3_epoch = 1;
                self.next_sequence[3] = 0;
            }
            let mut batch = match pid {
                0 => simple(records, 1_000 + i as i64, i as u8),
                _ => {
                    let epoch = if pid == 3 { self.producer3_epoch } else { 0 };
                    let seq = self.next_sequence[pid];
                    self.next_sequence[pid] += records;
                    idempotent(pid as i64, epoch, seq, records)
                }
            };
            let info = log.append(&mut batch, (i / 7) as i32, 0).unwrap();
            assert!(!info.duplicate);
            self.batches += 1;
        }
    }
}

/// Retries producer `pid`'s last batch: it must be a duplicate.
fn assert_retry_is_duplicate(log: &mut Log, pid: i64) {
    let entry = log.producers().get(pid).unwrap().clone();
    let last = *entry.batches.back().unwrap();
    let records = last.last_sequence - last.first_sequence + 1;
    let mut retry = idempotent(pid, entry.epoch, last.first_sequence, records);
    let info = log.append(&mut retry, 99, 0).unwrap();
    assert!(info.duplicate);
    assert_eq!(
        (info.first_offset, info.last_offset),
        (last.first_offset, last.last_offset)
    );
}

#[test]
fn clean_close_snapshots_the_end_and_open_walks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    Workload::new().run(&mut log, 40);
    assert!(log.segment_count() > 5);
    let before = state(&log);
    assert!(before.0.len() == 3 && before.1.len() == 6, "{before:?}");
    let end = log.log_end_offset();
    log.close().unwrap();
    let on_disk = snapshots(dir.path());
    assert_eq!((on_disk.len(), on_disk.last()), (2, Some(&end)));

    let mut log = open(&dir);
    assert_eq!(log.restored_from, (Some(end), 0));
    assert_eq!(state(&log), before);
    assert_eq!(full_walk(&log), before);
    assert_retry_is_duplicate(&mut log, 2);
}

#[test]
fn crash_after_rolls_walks_only_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    let mut workload = Workload::new();
    workload.run(&mut log, 40);
    let before = state(&log);
    let active = active_base(&log);
    let in_active = log.batch_headers(active).unwrap().len() as u64;
    assert!(in_active > 0 && active > 0);
    drop(log); // kill -9: no close, no snapshot at the end

    let mut log = open(&dir);
    assert_eq!(log.restored_from, (Some(active), in_active));
    assert_eq!(state(&log), before);
    assert_eq!(full_walk(&log), before);
    // Appends go on from the restored state, across more rolls and crashes.
    assert_retry_is_duplicate(&mut log, 3);
    workload.run(&mut log, 20);
    let before = state(&log);
    drop(log);
    let log = open(&dir);
    assert_eq!(state(&log), before);
    assert_eq!(full_walk(&log), before);
}

#[test]
fn snapshot_above_a_torn_tail_is_ignored_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    Workload::new().run(&mut log, 40);
    let active = active_base(&log);
    let headers = log.batch_headers(active).unwrap();
    let size = log.active().size();
    let end = log.log_end_offset();
    log.close().unwrap();
    assert!(snapshots(dir.path()).contains(&end));

    // The disk lost the end of the active segment after the close: cut its
    // last batch in half and drop the marker, as a crash would leave it.
    let last = headers.last().unwrap();
    set_len(
        &segment_path(dir.path(), active, LOG_EXT),
        size - last.total_size() as u64 / 2,
    );
    fs::remove_file(dir.path().join(CLEAN_SHUTDOWN_FILE)).unwrap();

    let log = open(&dir);
    assert_eq!(log.log_end_offset(), last.base_offset);
    assert_eq!(log.restored_from, (Some(active), headers.len() as u64 - 1));
    assert!(!snapshots(dir.path()).contains(&end));
    assert_eq!(state(&log), full_walk(&log));
    let producer = last.producer_id;
    if producer >= 0 {
        let cached = &log.producers().get(producer).unwrap().batches;
        assert!(cached.back().unwrap().last_offset < last.base_offset);
    }
}

#[test]
fn truncation_deletes_snapshots_above_the_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    Workload::new().run(&mut log, 40);
    let old = snapshots(dir.path());
    let bases: Vec<i64> = log.segments.keys().copied().collect();
    log.truncate_to(bases[2] + 1).unwrap();
    let end = log.log_end_offset();
    assert!(old.iter().any(|&o| o > end));
    assert!(snapshots(dir.path()).iter().all(|&o| o <= end));
    assert_eq!(state(&log), full_walk(&log));

    // Grow past where the old snapshots were, with new producers, crash.
    for i in 0..80 {
        let mut batch = idempotent(7 + i % 2, 0, i as i32 / 2, 1);
        log.append(&mut batch, 20, 0).unwrap();
    }
    assert!(log.log_end_offset() > *old.last().unwrap());
    let before = state(&log);
    drop(log);
    let log = open(&dir);
    assert!(log.restored_from.0.is_some());
    assert_eq!(state(&log), before);
    assert_eq!(full_walk(&log), before);
}

#[test]
fn no_snapshot_while_state_runs_past_the_end() {
    // `truncate_to` may roll before it trims the state: that roll must not
    // persist state describing batches that are being cut.
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    Workload::new().run(&mut log, 3);
    let end = log.log_end_offset();
    let mut beyond = BatchHeader::parse(&idempotent(5, 0, 0, 1)).unwrap();
    beyond.base_offset = end;
    log.producers.record(&beyond);
    log.take_snapshot();
    assert_eq!(snapshots(dir.path()), Vec::<i64>::new());
    log.rebuild_producer_state().unwrap();
    log.epochs.assign(9, end + 1);
    log.take_snapshot();
    assert_eq!(snapshots(dir.path()), Vec::<i64>::new());
    log.epochs.truncate_from_end(end);
    log.take_snapshot();
    assert_eq!(snapshots(dir.path()), vec![end]);
}

#[test]
fn corrupt_snapshots_fall_back_to_older_ones_then_to_a_full_walk() {
    type Damage = fn(&Path, &Path);
    let damages: [(&str, Damage); 4] = [
        ("flipped byte", |p, _| {
            let mut bytes = fs::read(p).unwrap();
            bytes[20] ^= 1;
            fs::write(p, bytes).unwrap();
        }),
        ("cut short", |p, _| set_len(p, 9)),
        ("empty", |p, _| set_len(p, 0)),
        ("another offset's", |p, older| {
            fs::copy(older, p).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(&dir);
        Workload::new().run(&mut log, 40);
        let before = state(&log);
        log.close().unwrap();
        let on_disk = snapshots(dir.path());
        let (older, newest) = (on_disk[0], on_disk[1]);
        let path = snapshot::path(dir.path(), newest);
        damage(&path, &snapshot::path(dir.path(), older));

        let log = open(&dir);
        assert_eq!(log.restored_from.0, Some(older), "{what}");
        assert!(!path.exists(), "{what}");
        assert_eq!(state(&log), before, "{what}");
        assert_eq!(full_walk(&log), before, "{what}");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    Workload::new().run(&mut log, 40);
    let before = state(&log);
    drop(log);
    for offset in snapshots(dir.path()) {
        fs::write(snapshot::path(dir.path(), offset), b"RVPS garbage").unwrap();
    }
    let log = open(&dir);
    assert_eq!(log.restored_from.0, None);
    assert_eq!(state(&log), before);
}

#[test]
fn log_start_moves_keep_open_equal_to_a_full_walk() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 800,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    let mut workload = Workload::new();
    workload.run(&mut log, 60);
    // DeleteRecords into the middle of the third segment.
    let bases: Vec<i64> = log.segments.keys().copied().collect();
    log.delete_records_before(bases[2] + 2).unwrap();
    drop(log);
    let log = Log::open(dir.path(), config.clone()).unwrap();
    assert!(log.restored_from.0.is_some());
    assert_eq!(state(&log), full_walk(&log));
    log.close().unwrap();
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.restored_from.1, 0);
    assert_eq!(state(&log), full_walk(&log));

    // Size retention deletes segments holding cached batches, which the
    // live state (and so the next snapshot) still lists.
    workload.run(&mut log, 30);
    assert!(log.apply_retention(0).unwrap() > 0);
    assert_ne!(log.producers(), &full_walk(&log).0);
    log.roll().unwrap();
    let first = *log.segments.keys().next().unwrap();
    drop(log);
    let log = Log::open(dir.path(), config.clone()).unwrap();
    assert_eq!(state(&log), full_walk(&log));
    assert!(snapshots(dir.path()).iter().all(|&o| o >= first));

    // DeleteRecords up to the end: no epoch is left.
    let mut log = log;
    let end = log.log_end_offset();
    log.delete_records_before(end).unwrap();
    log.close().unwrap();
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.restored_from, (Some(end), 0));
    assert_eq!(state(&log), full_walk(&log));
    assert_eq!(log.epoch_entries(), vec![]);
}

#[test]
fn follower_logs_snapshot_too() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = open(&leader_dir);
    Workload::new().run(&mut leader, 40);
    let mut follower = open(&follower_dir);
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let bytes = leader
            .read(offset, usize::MAX, i64::MAX, true)
            .unwrap()
            .bytes;
        offset = follower.append_replicated(&bytes, 0).unwrap().last_offset + 1;
    }
    assert_eq!(state(&follower), state(&leader));
    drop(follower);
    assert!(snapshots(follower_dir.path()).len() == 2);
    let follower = open(&follower_dir);
    assert!(follower.restored_from.0.is_some());
    assert_eq!(state(&follower), state(&leader));
    assert_eq!(full_walk(&follower), state(&leader));
    // A replicated batch past a gap (the leader's log is compacted).
    let mut follower = follower;
    let gap = follower.log_end_offset() + 100;
    follower
        .append_replicated(&stored(&simple(1, 0, 0), gap, 30), 0)
        .unwrap();
    drop(follower);
    let follower = open(&follower_dir);
    assert_eq!(state(&follower), full_walk(&follower));
}

#[test]
fn compaction_leaves_snapshots_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    let produce = |log: &mut Log, seq: i32| {
        let (key, value) = (format!("k{}", seq % 3), format!("v{seq}"));
        let records = [(Some(key.as_str()), Some(value.as_str()))];
        let mut buf = keyed_batch_from(&records, 100, Compression::None, (5, 0, seq));
        log.append(&mut buf, 1, 100).unwrap()
    };
    let first: Vec<AppendInfo> = (0..12).map(|seq| produce(&mut log, seq)).collect();
    log.roll().unwrap();
    produce(&mut log, 12);
    log.compact(1_000).unwrap();
    let before = state(&log);
    // Batches 8 and 9 (among the five cached) were emptied and dropped; a
    // walk of the compacted log no longer knows them.
    let walked = full_walk(&log);
    assert_eq!(walked.1, before.1);
    let cached = |s: &State| s.0.get(5).unwrap().batches.clone();
    assert!(cached(&walked).len() < cached(&before).len());
    assert_eq!(cached(&walked).back(), cached(&before).back());

    log.close().unwrap();
    let mut log = Log::open(dir.path(), compact_config()).unwrap();
    assert_eq!(state(&log), before);
    let retry = produce(&mut log, 8);
    assert!(retry.duplicate);
    assert_eq!(retry.first_offset, first[8].first_offset);
    assert!(!produce(&mut log, 13).duplicate);
}

#[test]
fn truncating_fully_deletes_every_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir);
    Workload::new().run(&mut log, 40);
    let old = snapshots(dir.path());
    // The follower restarts below its old snapshots, grows past one of
    // them and crashes.
    log.truncate_fully_and_start_at(old[0] - 3).unwrap();
    assert_eq!(snapshots(dir.path()), Vec::<i64>::new());
    for seq in 0..4 {
        log.append(&mut idempotent(8, 0, seq, 1), 30, 0).unwrap();
    }
    assert!(log.log_end_offset() > old[0]);
    let before = state(&log);
    drop(log);
    let log = open(&dir);
    assert_eq!(state(&log), before);
}
