//! Unit tests of a hosted partition: high watermark rules, roles, and
//! storage failures (a full disk refuses one write; a failed log dir takes
//! every partition offline), plus batch and replica-state helpers for
//! other tests of this crate.

use std::time::Instant;

use rivulet_storage::faults::{self, Action, Site};

use super::*;

/// One uncompressed v2 batch of `n` keyed records (`k0`/`v0`, ...), for
/// tests in this crate.
pub(crate) fn test_batch(n: i64) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(bytes::Bytes::from(format!("k{i}"))),
            value: Some(bytes::Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("v2 batches encode");
    buf.freeze()
}

/// A leader's replica state (replicas 0, 1, 2; epochs 1) with the given
/// ISR and followers as (id, log end, ms since last caught up) at `now`,
/// for tests in this crate.
pub(crate) fn leader_state(
    isr: &[i32],
    followers: &[(i32, i64, u64)],
    now: Instant,
) -> ReplicaState {
    ReplicaState {
        role: Role::Leader,
        leader_epoch: 1,
        partition_epoch: 1,
        replicas: vec![0, 1, 2],
        isr: isr.to_vec(),
        followers: followers
            .iter()
            .map(|&(id, end, ago)| {
                (
                    id,
                    FollowerProgress {
                        log_end: end,
                        last_caught_up: now - std::time::Duration::from_millis(ago),
                    },
                )
            })
            .collect(),
        isr_change_pending: false,
        isr_retry: None,
        epoch_start_offset: 0,
    }
}

fn state(isr: &[i32], followers: &[(i32, i64)]) -> ReplicaState {
    let with_age: Vec<_> = followers.iter().map(|&(id, end)| (id, end, 1)).collect();
    leader_state(isr, &with_age, Instant::now())
}

#[test]
fn high_watermark_is_the_slowest_in_sync_replica() {
    let s = state(&[0, 1, 2], &[(1, 70), (2, 90)]);
    assert_eq!(s.high_watermark(100), 70);
    // Out of the ISR, a slow follower no longer holds it back.
    let s = state(&[0, 2], &[(1, 10), (2, 90)]);
    assert_eq!(s.high_watermark(100), 90);
    // Alone in the ISR, the leader's end is the high watermark.
    let s = state(&[0], &[(1, 10)]);
    assert_eq!(s.high_watermark(100), 100);
    // A follower not heard from yet holds it back.
    let s = state(&[0, 1], &[(1, -1)]);
    assert_eq!(s.high_watermark(100), -1);
}

/// A partition of topic `t` in `dir`, its log directory's health, and
/// the metrics both report to.
pub(crate) fn open_partition(
    dir: &Path,
    config: LogConfig,
) -> (Partition, Arc<LogDirHealth>, crate::metrics::Metrics) {
    let metrics = crate::metrics::Metrics::new(&[]);
    let health = Arc::new(LogDirHealth::new(
        dir,
        metrics.series.offline_log_dirs.clone(),
    ));
    let p = Partition::open(
        0,
        &dir.join("t-0"),
        config,
        metrics.partition("t", 0),
        health.clone(),
    )
    .unwrap();
    (p, health, metrics)
}

#[test]
fn a_replica_just_opened_leads_nothing_and_a_leader_alone_commits_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (p, ..) = open_partition(dir.path(), LogConfig::default());
    assert!(
        !p.replica().is_leader(),
        "no role before the image gives one"
    );
    p.become_leader(0, 3, 1, &[0], &[0]);
    let info = p.append(&test_batch(2), 1).unwrap();
    assert_eq!(p.high_watermark(), info.last_offset + 1);
    p.become_follower(Some(1), 4, 2, &[0, 1], &[1]);
    assert!(!p.replica().is_leader());
}

fn fault(dir: &Path, site: Site, action: Action) -> rivulet_storage::faults::Injected {
    faults::inject(faults::Rule {
        site: Some(site),
        action,
        path_fragment: dir.to_string_lossy().into_owned(),
    })
}

#[tokio::test]
async fn a_full_disk_refuses_the_write_and_the_next_one_succeeds_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (p, health, metrics) = open_partition(dir.path(), LogConfig::default());
    p.become_leader(0, 1, 1, &[0], &[0]);
    let first = p.append(&test_batch(2), 1).unwrap();
    let full = fault(dir.path(), Site::Write, Action::Enospc);
    let err = p.append(&test_batch(3), 2).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert!(!health.is_offline());
    // Reads go on while the disk is full.
    let read = p.read(0, usize::MAX, true).unwrap();
    assert_eq!(read.log_end_offset, first.last_offset + 1);
    drop(full);
    let next = p.append(&test_batch(3), 3).unwrap();
    assert_eq!(next.first_offset, first.last_offset + 1);
    p.flush_to(next.last_offset + 1).await.unwrap();
    assert_eq!(metrics.series.offline_log_dirs.get(), 0);
}

#[tokio::test]
async fn a_failed_fsync_takes_the_log_dir_offline_for_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (p, health, metrics) = open_partition(dir.path(), LogConfig::default());
    let other = Partition::open(
        1,
        &dir.path().join("u-0"),
        LogConfig::default(),
        metrics.partition("u", 0),
        health.clone(),
    )
    .unwrap();
    p.become_leader(0, 1, 1, &[0], &[0]);
    other.become_leader(0, 1, 1, &[0], &[0]);
    let info = p.append(&test_batch(2), 1).unwrap();
    let broken = fault(&dir.path().join("t-0"), Site::Fsync, Action::Eio);
    let err = p.flush_to(info.last_offset + 1).await.unwrap_err();
    assert!(err.is_log_dir_failure(), "{err}");
    drop(broken);
    assert!(health.is_offline());
    assert_eq!(metrics.series.offline_log_dirs.get(), 1);
    // The fault is gone, but nothing on this directory is trusted again
    // before a restart: the other partition refuses too, reads included.
    for partition in [&p, &other] {
        let refused = partition.append(&test_batch(1), 2).unwrap_err();
        assert!(
            matches!(refused, StorageError::LogDirOffline { .. }),
            "{refused}"
        );
        assert!(matches!(
            partition.read(0, usize::MAX, true),
            Err(StorageError::LogDirOffline { .. })
        ));
    }
    let reason = tokio::time::timeout(std::time::Duration::from_secs(1), health.failed())
        .await
        .unwrap();
    assert!(reason.contains("flushing"), "{reason}");
}
