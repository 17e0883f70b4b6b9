//! openraft's own storage conformance suite, run against the on-disk log
//! store and state machine (each case in a fresh temporary directory).

use openraft::testing::{StoreBuilder, Suite};
use rivulet_quorum::{
    log_store::LogStore,
    raft_types::{StorageError, TypeConfig},
    state_machine::StateMachineStore,
};
use tempfile::TempDir;

struct DiskStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for DiskStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("log")).expect("open log");
        let (sm, _rx) =
            StateMachineStore::open(&dir.path().join("state")).expect("open state machine");
        // The temp dir is the suite's guard value: dropped after each case.
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    // Each case runs on its own runtime inside the suite.
    if let Err(e) = Suite::test_all(DiskStoreBuilder) {
        panic!("storage conformance failed: {e}");
    }
}
