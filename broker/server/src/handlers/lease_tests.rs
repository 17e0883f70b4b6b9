//! A broker whose leader lease ran out stops acting as leader: the
//! partitions it leads answer NOT_LEADER_OR_FOLLOWER to Produce, Fetch,
//! ListOffsets and OffsetForLeaderEpoch, and Metadata reports them without
//! a leader (keeping the leader epoch), while partitions led by others are
//! reported as the image has them. Regained, it serves again. An acks=all
//! produce waiting for followers is answered NOT_LEADER_OR_FOLLOWER as
//! soon as the lease is published as lost.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use kafka_protocol::{
    messages::{
        fetch_request::{FetchPartition, FetchTopic},
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        metadata_request::MetadataRequestTopic,
        offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic},
        FetchRequest, ListOffsetsRequest, MetadataRequest, OffsetForLeaderEpochRequest,
    },
    ResponseError,
};

use super::{
    fetch, list_offsets, metadata, offset_for_leader_epoch, produce,
    tests::{create, harness, name, produce_request},
    Node,
};

/// The error codes of Produce, Fetch, ListOffsets and OffsetForLeaderEpoch
/// on partition `p` of `t`.
async fn codes(node: &Node, p: i32) -> [i16; 4] {
    let produced = produce::handle(node, produce_request("t", &[p], 1), 9)
        .await
        .expect("acks=1 answers");
    let fetch_req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(p)
                .with_partition_max_bytes(1 << 20)])]);
    let fetched = fetch::handle(node, fetch_req, 12).await;
    let list_req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name("t"))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(p)
            .with_timestamp(-1)])]);
    let listed = list_offsets::handle(node, list_req, 7);
    let epoch_req =
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(p)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(0)])]);
    let epochs = offset_for_leader_epoch::handle(node, epoch_req);
    [
        produced.responses[0].partition_responses[0].error_code,
        fetched.responses[0].partitions[0].error_code,
        listed.topics[0].partitions[0].error_code,
        epochs.topics[0].partitions[0].error_code,
    ]
}

/// (leader, leader epoch, error code) of each partition of `t` in a
/// Metadata answer, and its controller.
async fn leaders(node: &Node) -> (Vec<(i32, i32, i16)>, i32) {
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("t")))
    ]));
    let resp = metadata::handle(node, req, 12, "PLAINTEXT").await;
    let partitions = resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.leader_id.0, p.leader_epoch, p.error_code))
        .collect();
    (partitions, resp.controller_id.0)
}

/// The harness's node, shareable with spawned requests.
fn shared(h: &super::tests::Harness) -> Arc<Node> {
    Arc::new(Node {
        broker: h.node.broker.clone(),
        cluster: h.node.cluster.clone(),
        groups: h.node.groups.clone(),
        txns: h.node.txns.clone(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_lease_a_broker_leads_nothing_until_it_is_back() {
    let h = harness(&[1], &[]);
    let node = &h.node;
    // Partition 0 led here, partition 1 by broker 1.
    create(node, "t", &[&[0, 1], &[1, 0]], &[]).await;
    let held = Arc::new(AtomicBool::new(true));
    let flag = held.clone();
    node.broker
        .lease
        .install(move || flag.load(Ordering::Acquire));
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let unavailable = ResponseError::LeaderNotAvailable.code();

    assert_eq!(codes(node, 0).await, [0; 4]);
    let (before, controller) = leaders(node).await;
    assert_eq!(before, vec![(0, 0, 0), (1, 0, 0)]);

    held.store(false, Ordering::Release);
    assert_eq!(codes(node, 0).await, [not_leader; 4]);
    let (during, during_controller) = leaders(node).await;
    assert_eq!(
        during,
        vec![(-1, 0, unavailable), (1, 0, 0)],
        "its own leadership withheld, the epoch kept; others' as the image says"
    );
    // The in-memory log names a controller of its own; only the quorum's
    // leader is subject to vouching (see the quorum's partition tests).
    assert_eq!(during_controller, controller);

    held.store(true, Ordering::Release);
    assert_eq!(codes(node, 0).await, [0; 4]);
    assert_eq!(leaders(node).await.0, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acks_all_produce_ends_when_the_lease_runs_out() {
    let h = harness(&[1], &[]);
    let node = shared(&h);
    // Broker 1 is in the ISR but never fetches: acks=all waits.
    create(&node, "t", &[&[0, 1]], &[]).await;
    let held = Arc::new(AtomicBool::new(true));
    let flag = held.clone();
    node.broker
        .lease
        .install(move || flag.load(Ordering::Acquire));
    let waiting = {
        let node = node.clone();
        tokio::spawn(async move { produce::handle(&node, produce_request("t", &[0], -1), 9).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "acks=all waits for the follower");
    held.store(false, Ordering::Release);
    let lost = Instant::now();
    assert!(!node.broker.lease.publish());
    let resp = waiting.await.unwrap().expect("acks=all answers");
    assert!(
        lost.elapsed() < Duration::from_secs(2),
        "{:?}",
        lost.elapsed()
    );
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
}

/// The coordinators answer only while the lease holds: a broker cut off
/// from the quorum must not serve committed offsets (a stale read of
/// offsets the new coordinator has moved past) nor name itself coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_lease_a_broker_coordinates_nothing() {
    use kafka_protocol::messages::FindCoordinatorRequest;

    use super::find_coordinator;

    let h = harness(&[], &[]);
    let node = &h.node;
    let held = Arc::new(AtomicBool::new(true));
    let flag = held.clone();
    node.broker
        .lease
        .install(move || flag.load(Ordering::Acquire));
    let find = || async {
        let req = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![kafka_protocol::protocol::StrBytes::from_static_str(
                "g",
            )]);
        find_coordinator::handle(node, req, 4, "PLAINTEXT")
            .await
            .coordinators[0]
            .error_code
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while find().await != 0 || node.groups.check_serving("g").is_err() {
        assert!(
            Instant::now() < deadline,
            "the group coordinator never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    held.store(false, Ordering::Release);
    assert_eq!(
        node.groups.check_serving("g"),
        Err(ResponseError::NotCoordinator)
    );
    assert_eq!(find().await, ResponseError::CoordinatorNotAvailable.code());
    assert_eq!(node.txns.serving("t"), Err(ResponseError::NotCoordinator));

    held.store(true, Ordering::Release);
    assert_eq!(node.groups.check_serving("g"), Ok(()));
    assert_eq!(find().await, 0);
}

/// A client's pipelined produce requests straddling a lost and regained
/// lease: the first is refused (nothing written), the second arrives once
/// the lease is back. It must be refused alike, not with
/// OUT_OF_ORDER_SEQUENCE_NUMBER: librdkafka answers that gap by bumping
/// its epoch and renumbering every message it retries, duplicating any
/// whose earlier send was already in a log (seen in the fault campaign).
/// Retried in order, both are written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pipelined_behind_a_lease_refusal_are_refused_alike() {
    use super::{produce_pipeline::Pipeline, txn_data_tests::idempotent_batch};

    let h = harness(&[], &[]);
    let node = &h.node;
    create(node, "t", &[&[0]], &[]).await;
    let held = Arc::new(AtomicBool::new(true));
    let flag = held.clone();
    node.broker
        .lease
        .install(move || flag.load(Ordering::Acquire));
    let connection = Pipeline::default();
    let send = |seq: i32| {
        let req = produce_request("t", &[0], -1);
        let mut req = req;
        req.topic_data[0].partition_data[0].records = Some(idempotent_batch(5, 0, seq, 2));
        let connection = &connection;
        async move {
            let resp = produce::handle_in(node, req, 9, connection).await.unwrap();
            let p = &resp.responses[0].partition_responses[0];
            (p.error_code, p.base_offset)
        }
    };
    assert_eq!(send(0).await, (0, 0));

    held.store(false, Ordering::Release);
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    assert_eq!(send(2).await.0, not_leader, "refused without the lease");
    held.store(true, Ordering::Release);
    assert_eq!(
        send(4).await.0,
        not_leader,
        "pipelined behind the refusal: refused alike, not OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // The client's retries, in order: each written once.
    assert_eq!(send(2).await, (0, 2));
    assert_eq!(send(4).await, (0, 4));
    assert_eq!(send(4).await, (0, 4), "a repeat is deduplicated");
    // Another connection never saw the refusal.
    let other = Pipeline::default();
    let mut req = produce_request("t", &[0], -1);
    req.topic_data[0].partition_data[0].records = Some(idempotent_batch(5, 0, 6, 2));
    let resp = produce::handle_in(node, req, 9, &other).await.unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
}

/// OffsetFetch reports only offsets every in-sync replica of the group's
/// `__consumer_offsets` partition has. A commit this coordinator appended
/// but could not replicate (its follower cut off) may be lost when the
/// coordinator moves; serving it made a member see its committed offsets
/// go back (seed 1100 of the campaign: 2636, then 2633 from the new
/// coordinator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_fetch_never_reports_an_unreplicated_commit() {
    use kafka_protocol::{
        messages::{offset_fetch_request::OffsetFetchRequestTopic, GroupId, OffsetFetchRequest},
        protocol::StrBytes,
    };

    use super::{offset_fetch, tests::commit_offset};
    use crate::group::OFFSETS_TOPIC;

    let h = harness(&[1], &[]);
    let node = shared(&h);
    // Broker 1 is in the offsets partition's ISR and never fetches: every
    // commit is appended here and never replicated.
    create(
        &node,
        OFFSETS_TOPIC,
        &[&[0, 1]],
        &[("cleanup.policy", "compact")],
    )
    .await;
    create(&node, "t", &[&[0]], &[]).await;
    let committing = {
        let node = node.clone();
        tokio::spawn(async move { commit_offset(&node, "t", 0, 9).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name("t"))
            .with_partition_indexes(vec![0])]));
    let resp = offset_fetch::handle(&node, req, 7).await;
    let p = &resp.topics[0].partitions[0];
    assert_ne!(
        p.committed_offset, 9,
        "OffsetFetch reported a commit no follower has (code {})",
        p.error_code
    );
    assert_ne!(
        committing.await.unwrap(),
        0,
        "the unreplicated commit is not acknowledged"
    );
}
