//! Crash-recovery of the on-disk stores: what reopening a directory brings
//! back after appends, votes, truncation, purges, snapshots and a torn
//! write at the end of the log.

use std::{fs::OpenOptions, io::Write, path::Path};

use openraft::{
    storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine},
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote,
};
use rivulet_quorum::{
    log_store::LogStore,
    metadata::MetadataCommand,
    raft_types::{self, TypeConfig},
    state_machine::StateMachineStore,
};

fn log_id(term: u64, index: u64) -> raft_types::LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> raft_types::Entry {
    let command = MetadataCommand::DeleteTopic {
        name: format!("t{index}"),
    };
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(command),
    }
}

async fn indexes(store: &mut LogStore) -> Vec<u64> {
    store
        .try_get_log_entries(0..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn reopen(dir: &Path) -> LogStore {
    LogStore::open(dir).unwrap()
}

#[tokio::test]
async fn log_survives_reopen_with_truncate_purge_and_vote() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = reopen(dir.path());
    store
        .blocking_append((1..=10).map(|i| entry(1, i)))
        .await
        .unwrap();
    store.truncate(log_id(1, 8)).await.unwrap();
    store.blocking_append([entry(2, 8)]).await.unwrap();
    store.purge(log_id(1, 3)).await.unwrap();
    store.save_vote(&Vote::new(2, 1)).await.unwrap();
    store.save_committed(Some(log_id(2, 8))).await.unwrap();
    drop(store);

    let mut store = reopen(dir.path());
    assert_eq!(indexes(&mut store).await, vec![4, 5, 6, 7, 8]);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(
        (state.last_purged_log_id, state.last_log_id),
        (Some(log_id(1, 3)), Some(log_id(2, 8)))
    );
    assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 8)));
    // Appends after a purge-rewrite and a reopen land after the survivors.
    store.blocking_append([entry(2, 9)]).await.unwrap();
    drop(store);
    assert_eq!(
        indexes(&mut reopen(dir.path())).await,
        vec![4, 5, 6, 7, 8, 9]
    );
}

#[tokio::test]
async fn torn_tail_is_dropped_and_the_log_stays_appendable() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = reopen(dir.path());
    store
        .blocking_append((1..=3).map(|i| entry(1, i)))
        .await
        .unwrap();
    drop(store);
    let path = dir.path().join("entries.log");
    let good_len = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of writing a frame: header and half a payload.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"'])
        .unwrap();
    drop(f);

    let mut store = reopen(dir.path());
    assert_eq!(indexes(&mut store).await, vec![1, 2, 3]);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        good_len,
        "torn bytes cut off"
    );
    store.blocking_append([entry(1, 4)]).await.unwrap();
    drop(store);
    assert_eq!(indexes(&mut reopen(dir.path())).await, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_log_with_a_foreign_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("entries.log"), b"NOTALOG!").unwrap();
    assert!(LogStore::open(dir.path()).is_err());
}

#[tokio::test]
async fn snapshot_survives_reopen_and_seeds_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sm, _rx) = StateMachineStore::open(dir.path()).unwrap();
    let broker = rivulet_quorum::metadata::MetadataCommand::FenceBroker { broker_id: 1 };
    let applied = sm
        .apply([Entry::<TypeConfig> {
            log_id: log_id(1, 1),
            payload: EntryPayload::Normal(broker),
        }])
        .await;
    let responses = applied.unwrap();
    assert_eq!(responses[0].offset, 1);
    assert!(
        responses[0].result.is_err(),
        "unknown broker is rejected, not a storage error"
    );
    let snapshot = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    drop(sm);

    let (mut sm, rx) = StateMachineStore::open(dir.path()).unwrap();
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot on disk");
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 1)));
    assert_eq!(rx.borrow().offset, 1);
}
