//! Tests of disk faults injected at each I/O site (`faults.rs`): a full
//! disk (`ENOSPC`) on append, roll, index allocation and checkpoints, and
//! device errors (`EIO`) on writes, fsyncs and recovery. After each, the
//! log must show nothing of the failed write (no torn tail on disk, no
//! offsets, producer sequences or epochs taken), take the next write once
//! the fault is gone, and reopen to exactly what was acknowledged.

use std::fs;

use super::{
    recovery_tests::active_base,
    tests::{append, read_all, small_config},
    *,
};
use crate::{
    faults::{inject, Action, Injected, Rule, Site},
    files::{segment_path, INDEX_EXT},
    test_util::{idempotent, simple},
};

/// Injects `action` at `site` for files under `dir` only.
fn fault(dir: &Path, site: Site, action: Action) -> Injected {
    inject(Rule {
        site: Some(site),
        action,
        path_fragment: dir.to_string_lossy().into_owned(),
    })
}

fn try_append(log: &mut Log, batch: &[u8]) -> Result<AppendInfo, StorageError> {
    let mut buf = batch.to_vec();
    log.append(&mut buf, 7, 0)
}

fn active_log_len(log: &Log) -> u64 {
    let path = segment_path(log.dir(), active_base(log), LOG_EXT);
    fs::metadata(path).unwrap().len()
}

#[test]
fn a_full_disk_on_append_leaves_no_torn_tail_and_the_next_append_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let (first, _) = append(&mut log, &simple(2, 1000, 1), 0);
    let len = active_log_len(&log);

    let full = fault(dir.path(), Site::Write, Action::Enospc);
    let err = try_append(&mut log, &simple(3, 1001, 2)).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert!(!err.is_log_dir_failure());
    // The injected short write put half a batch in the file; it is gone.
    assert_eq!(active_log_len(&log), len);
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(read_all(&log, 0), first);
    drop(full);

    let (second, info) = append(&mut log, &simple(3, 1001, 2), 0);
    assert_eq!((info.first_offset, info.last_offset), (2, 4));
    drop(log);
    // As after a crash: recovery finds exactly the two acknowledged batches.
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(read_all(&log, 0), [first, second].concat());
}

#[test]
fn a_failed_append_takes_no_producer_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    append(&mut log, &idempotent(9, 0, 0, 2), 0);
    let full = fault(dir.path(), Site::Write, Action::Enospc);
    assert!(try_append(&mut log, &idempotent(9, 0, 2, 2)).is_err());
    drop(full);
    // The producer's retry of the same batch is the next in sequence, not
    // a duplicate of something never written.
    let info = try_append(&mut log, &idempotent(9, 0, 2, 2)).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.first_offset, 2);
}

#[test]
fn a_full_disk_on_roll_refuses_the_append_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let mut stored = Vec::new();
    while log.segment_count() == 1 {
        stored.push(append(&mut log, &simple(1, 1000, 3), 0).0);
    }
    // Fill the new active segment up to the next roll.
    let base = active_base(&log);
    let batch = simple(1, 1000, 4);
    while log.active().size() + batch.len() as u64 <= log.config().segment_bytes {
        stored.push(append(&mut log, &batch, 0).0);
    }
    let end = log.log_end_offset();

    let full = fault(dir.path(), Site::Roll, Action::Enospc);
    for _ in 0..3 {
        let err = try_append(&mut log, &batch).unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert_eq!((log.log_end_offset(), active_base(&log)), (end, base));
    }
    drop(full);
    stored.push(append(&mut log, &batch, 0).0);
    assert_eq!(active_base(&log), end, "rolled at the log end");
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&log, 0), stored.concat());
}

#[test]
fn a_full_disk_on_index_allocation_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let (first, _) = append(&mut log, &simple(1, 1000, 5), 0);
    let len = active_log_len(&log);
    // Index space is allocated a chunk ahead: a fresh segment has its
    // first chunk only once an append needs it, so roll to get one.
    log.roll().unwrap();
    let full = fault(dir.path(), Site::Index, Action::Enospc);
    let err = try_append(&mut log, &simple(1, 1001, 6)).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(active_log_len(&log), 0);
    drop(full);
    let (second, _) = append(&mut log, &simple(1, 1001, 6), 0);
    assert_eq!(len as usize, first.len());
    assert_eq!(read_all(&log, 0), [first, second].concat());
}

#[test]
fn index_space_is_allocated_before_entries_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    append(&mut log, &simple(1, 1000, 7), 0);
    let index = segment_path(dir.path(), active_base(&log), INDEX_EXT);
    let allocated = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&index).unwrap().blocks() * 512
    };
    // The whole preallocated file (4 KiB in the small config) is backed
    // by blocks, not a hole the mapping would fault in later.
    assert!(allocated >= 4096, "only {allocated} bytes allocated");
}

#[test]
fn a_failed_fsync_is_a_log_dir_failure_and_recovery_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 1,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    let (first, _) = append(&mut log, &simple(1, 1000, 8), 0);
    let handle = log.sync_handle().unwrap();

    let broken = fault(dir.path(), Site::Fsync, Action::Eio);
    let err = try_append(&mut log, &simple(1, 1001, 9)).unwrap_err();
    assert!(err.is_log_dir_failure(), "{err}");
    assert!(!err.is_disk_full());
    assert!(handle.sync().unwrap_err().is_log_dir_failure());
    drop(broken);
    drop(log);

    let log = Log::open(dir.path(), config).unwrap();
    // The batch whose fsync failed was written; whether it is kept is
    // recovery's call (the broker never acknowledged it). What is there
    // is whole batches starting with the acknowledged one.
    let all = read_all(&log, 0);
    assert!(all.starts_with(&first));
    assert!(log.log_end_offset() == 1 || log.log_end_offset() == 2);
}

#[test]
fn a_device_error_on_write_is_a_log_dir_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let (first, _) = append(&mut log, &simple(1, 1000, 10), 0);
    let broken = fault(dir.path(), Site::Write, Action::Eio);
    let err = try_append(&mut log, &simple(1, 1001, 11)).unwrap_err();
    assert!(err.is_log_dir_failure() && !err.is_disk_full(), "{err}");
    drop(broken);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&log, 0), first);
}

#[test]
fn recovery_that_cannot_cut_a_torn_tail_fails_the_open_and_a_later_open_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let (first, _) = append(&mut log, &simple(1, 1000, 12), 0);
    let path = segment_path(dir.path(), active_base(&log), LOG_EXT);
    drop(log);
    let torn = &simple(2, 1001, 13)[..30];
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(torn);
    fs::write(&path, &bytes).unwrap();

    let broken = fault(dir.path(), Site::Truncate, Action::Eio);
    let err = Log::open(dir.path(), small_config()).err().unwrap();
    assert!(err.is_log_dir_failure(), "{err}");
    drop(broken);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(read_all(&log, 0), first);
    assert_eq!(fs::metadata(&path).unwrap().len(), first.len() as u64);
}

#[test]
fn a_full_disk_on_a_checkpoint_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    append(&mut log, &simple(3, 1000, 14), 0);
    let full = fault(dir.path(), Site::Checkpoint, Action::Enospc);
    let err = log.delete_records_before(2).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(full);
    log.delete_records_before(2).unwrap();
    assert_eq!(log.log_start_offset(), 2);
}

#[test]
fn appends_that_may_wait_on_the_disk_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let batch = simple(1, 1000, 15);
    assert!(!log.append_may_block(batch.len(), 0), "a plain append");
    while log.active().size() + batch.len() as u64 <= log.config().segment_bytes {
        append(&mut log, &batch, 0);
    }
    assert!(log.append_may_block(batch.len(), 0), "this one rolls");
    log.roll().unwrap();
    log.set_config(LogConfig {
        flush_messages: 1,
        ..small_config()
    });
    assert!(log.append_may_block(batch.len(), 0), "this one fsyncs");
}
