//! The group coordinator end to end, in process: a broker started with
//! `server::run`, driven with raw kafka-protocol requests through
//! `rivulet_wire::client::Connection`, stopped and started again on the same
//! data directory to check that committed offsets and groups are reloaded.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        create_topics_request::CreatableTopic,
        join_group_request::JoinGroupRequestProtocol,
        offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
        offset_fetch_request::OffsetFetchRequestTopic,
        sync_group_request::SyncGroupRequestAssignment,
        CreateTopicsRequest, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
        GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
        ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_wire::client::Connection;

mod common;
use common::Running;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

async fn join(conn: &mut Connection, group: &str, member: &str) -> JoinGroupResponse {
    let req = JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(
                b"\x00\x00\x00\x00\x00\x01\x00\x06orders\xff\xff\xff\xff",
            ))]);
    conn.send(req).await.unwrap()
}

async fn fetch_offsets(conn: &mut Connection, group: &str) -> (i16, Vec<(i32, i64, String)>) {
    // Retry while the coordinator is loading after a start.
    for _ in 0..100 {
        let req = OffsetFetchRequest::default().with_groups(vec![
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(gid(group))
                .with_topics(Some(vec![kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("orders")))
                    .with_partition_indexes(vec![0, 1])])),
        ]);
        let resp = conn.send(req).await.unwrap();
        let g = &resp.groups[0];
        if g.error_code == code(ResponseError::CoordinatorLoadInProgress) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let parts = g.topics[0]
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.committed_offset,
                    p.metadata.as_deref().unwrap_or("").to_string(),
                )
            })
            .collect();
        return (g.error_code, parts);
    }
    panic!("coordinator never finished loading");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lifecycle_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path()).await;
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    let topic = CreatableTopic::default()
        .with_name(TopicName(s("orders")))
        .with_num_partitions(2)
        .with_replication_factor(1);
    conn.send(
        CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(5000),
    )
    .await
    .unwrap();

    // FindCoordinator (batched form at the negotiated version) names this broker.
    let found = conn
        .send(FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g1")]))
        .await
        .unwrap();
    let port: i32 = broker.addr.rsplit(':').next().unwrap().parse().unwrap();
    let c = &found.coordinators[0];
    assert_eq!((c.key.as_str(), c.error_code, c.port), ("g1", 0, port));
    // The single-key form (v3).
    let found = conn
        .send_with_version(FindCoordinatorRequest::default().with_key(s("g1")), 3)
        .await
        .unwrap();
    assert_eq!((found.error_code, found.port), (0, port));
    // A transactional id's coordinator is this broker too (its
    // __transaction_state partition is created on first use).
    let txn = conn
        .send(
            FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![s("t")]),
        )
        .await
        .unwrap();
    let c = &txn.coordinators[0];
    assert_eq!((c.key.as_str(), c.error_code, c.port), ("t", 0, port));

    // Empty group ids and bad session timeouts are refused.
    assert_eq!(
        join(&mut conn, "", "").await.error_code,
        code(ResponseError::InvalidGroupId)
    );
    let bad_session = JoinGroupRequest::default()
        .with_group_id(gid("g1"))
        .with_session_timeout_ms(1)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range"))
        ]);
    assert_eq!(
        conn.send(bad_session).await.unwrap().error_code,
        code(ResponseError::InvalidSessionTimeout)
    );

    // Two-step join, then sync as the leader of a one-member group.
    let first = join(&mut conn, "g1", "").await;
    assert_eq!(first.error_code, code(ResponseError::MemberIdRequired));
    let member = first.member_id.to_string();
    let joined = join(&mut conn, "g1", &member).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), member);
    assert_eq!(joined.members.len(), 1);
    let sync = SyncGroupRequest::default()
        .with_group_id(gid("g1"))
        .with_generation_id(1)
        .with_member_id(s(&member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s(&member))
            .with_assignment(Bytes::from_static(b"assigned"))]);
    let synced = conn.send(sync).await.unwrap();
    assert_eq!(
        (synced.error_code, &synced.assignment[..]),
        (0, &b"assigned"[..])
    );
    let hb = |generation| {
        HeartbeatRequest::default()
            .with_group_id(gid("g1"))
            .with_generation_id(generation)
            .with_member_id(s(&member))
    };
    assert_eq!(conn.send(hb(1)).await.unwrap().error_code, 0);
    assert_eq!(
        conn.send(hb(7)).await.unwrap().error_code,
        code(ResponseError::IllegalGeneration)
    );

    // Commit and fetch.
    let commit = OffsetCommitRequest::default()
        .with_group_id(gid("g1"))
        .with_generation_id_or_member_epoch(1)
        .with_member_id(s(&member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42)
                        .with_committed_metadata(Some(s("m0"))),
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(7),
                ]),
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("missing")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_partition_index(0)
                ]),
        ]);
    let committed = conn.send(commit).await.unwrap();
    assert_eq!(
        committed.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect::<Vec<_>>(),
        vec![0, 0]
    );
    assert_eq!(
        committed.topics[1].partitions[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        fetch_offsets(&mut conn, "g1").await,
        (0, vec![(0, 42, "m0".into()), (1, 7, String::new())])
    );

    // Describe and list.
    let described = conn
        .send(DescribeGroupsRequest::default().with_groups(vec![gid("g1")]))
        .await
        .unwrap();
    let g = &described.groups[0];
    assert_eq!(
        (
            g.group_state.as_str(),
            g.protocol_data.as_str(),
            g.members.len()
        ),
        ("Stable", "range", 1)
    );
    assert_eq!(&g.members[0].member_assignment[..], b"assigned");
    let listed = conn.send(ListGroupsRequest::default()).await.unwrap();
    assert!(listed.groups.iter().any(|l| l.group_id.as_str() == "g1"));
    let deleting = conn
        .send(DeleteGroupsRequest::default().with_groups_names(vec![gid("g1"), gid("nope")]))
        .await
        .unwrap();
    let codes: Vec<i16> = deleting.results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![
            code(ResponseError::NonEmptyGroup),
            code(ResponseError::GroupIdNotFound)
        ]
    );

    // Restart: the group (Stable, generation 1) and its offsets are back.
    drop(conn);
    broker.stop().await;
    let broker = Running::start(dir.path()).await;
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    assert_eq!(
        fetch_offsets(&mut conn, "g1").await,
        (0, vec![(0, 42, "m0".into()), (1, 7, String::new())])
    );
    assert_eq!(
        conn.send(hb(1)).await.unwrap().error_code,
        0,
        "the member keeps its generation"
    );

    // Leaving empties the group; then it can be deleted, offsets and all.
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("g1"))
        .with_members(vec![
            kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                .with_member_id(s(&member)),
        ]);
    let left = conn.send(leave).await.unwrap();
    assert_eq!(left.error_code, 0);
    let deleting = conn
        .send(DeleteGroupsRequest::default().with_groups_names(vec![gid("g1")]))
        .await
        .unwrap();
    assert_eq!(deleting.results[0].error_code, 0);
    assert_eq!(
        fetch_offsets(&mut conn, "g1").await,
        (0, vec![(0, -1, String::new()), (1, -1, String::new())])
    );

    // Deleted stays deleted across a restart (tombstones).
    drop(conn);
    broker.stop().await;
    let broker = Running::start(dir.path()).await;
    let mut conn = Connection::connect(&broker.addr).await.unwrap();
    assert_eq!(fetch_offsets(&mut conn, "g1").await.1[0].1, -1);
    let old = OffsetFetchRequest::default()
        .with_group_id(gid("g1"))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partition_indexes(vec![0])]));
    let old = conn.send_with_version(old, 5).await.unwrap();
    assert_eq!(
        (old.error_code, old.topics[0].partitions[0].committed_offset),
        (0, -1)
    );
    drop(conn);
    broker.stop().await;
}
