//! Handlers on a full disk and on a failed log directory (faults injected
//! at the storage I/O sites): Produce answers KAFKA_STORAGE_ERROR, an
//! offset commit an error its clients retry, and both succeed again once
//! the disk has space; after a device error nothing is served.

use std::time::Duration;

use kafka_protocol::ResponseError;
use rivulet_storage::faults::{self, Action, Rule, Site};

use super::{
    produce,
    tests::{commit_offset, create, create_offsets_topic, harness, produce_request},
    Node,
};

fn fault(node: &Node, site: Site, action: Action) -> faults::Injected {
    faults::inject(Rule {
        site: Some(site),
        action,
        path_fragment: node.config.data_dir.to_string_lossy().into_owned(),
    })
}

async fn produce_code(node: &Node, topic: &str) -> i16 {
    let resp = produce::handle(node, produce_request(topic, &[0], -1), 9)
        .await
        .expect("acks=all answers");
    resp.responses[0].partition_responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_produce_and_commits_until_space_returns() {
    let h = harness(&[], &[("group.initial.rebalance.delay.ms", "0")]);
    let node = &h.node;
    create_offsets_topic(node).await;
    create(node, "t", &[&[0]], &[]).await;
    assert_eq!(produce_code(node, "t").await, 0);
    assert_eq!(commit_offset(node, "t", 0, 1).await, 0);

    let full = fault(node, Site::Write, Action::Enospc);
    assert_eq!(
        produce_code(node, "t").await,
        ResponseError::KafkaStorageError.code()
    );
    assert_eq!(
        commit_offset(node, "t", 0, 2).await,
        ResponseError::CoordinatorNotAvailable.code()
    );
    drop(full);

    assert!(!node.broker.log_dir.is_offline());
    assert_eq!(produce_code(node, "t").await, 0);
    assert_eq!(commit_offset(node, "t", 0, 3).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_error_takes_every_partition_offline() {
    let h = harness(&[], &[]);
    let node = &h.node;
    create(node, "t", &[&[0], &[0]], &[]).await;
    assert_eq!(produce_code(node, "t").await, 0);
    let broken = fault(node, Site::Fsync, Action::Eio);
    // acks=all fsyncs (acks.all.fsync): the fsync fails.
    assert_eq!(
        produce_code(node, "t").await,
        ResponseError::KafkaStorageError.code()
    );
    drop(broken);
    assert!(node.broker.log_dir.is_offline());
    let failed = tokio::time::timeout(Duration::from_secs(1), node.broker.log_dir.failed())
        .await
        .expect("the failure is announced");
    assert!(failed.contains("Input/output error"), "{failed}");
    // The disk is fine again, but nothing on it is trusted before a restart.
    assert_eq!(
        produce_code(node, "t").await,
        ResponseError::KafkaStorageError.code()
    );
}
