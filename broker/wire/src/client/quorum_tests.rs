//! Tests of the quorum calls against a scripted in-process broker: what
//! each version of DescribeQuorum carries, what AddRaftVoter and
//! RemoveRaftVoter put on the wire, and how Kafka errors come back.

use kafka_protocol::messages::{
    describe_quorum_response::{self, Listener, Node},
    AddRaftVoterResponse, ApiKey, BrokerId, DescribeQuorumResponse, RemoveRaftVoterResponse,
    RequestKind, ResponseKind,
};

use super::*;
use crate::client::fake_broker::{fake_broker, Handler};

const CLUSTER: &str = "MkU3OEVBNTcwNTJENDM2Qk";

fn dir(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

fn versions(describe_max: i16) -> Vec<(ApiKey, i16, i16)> {
    vec![
        (ApiKey::DescribeQuorum, 0, describe_max),
        (ApiKey::AddRaftVoter, 0, 0),
        (ApiKey::RemoveRaftVoter, 0, 0),
    ]
}

fn state(id: i32, directory: u8, leo: i64, version: i16) -> ReplicaState {
    let state = ReplicaState::default()
        .with_replica_id(BrokerId(id))
        .with_log_end_offset(leo);
    let state = if version >= 1 {
        state
            .with_last_fetch_timestamp(1_000 + i64::from(id))
            .with_last_caught_up_timestamp(900)
    } else {
        state
    };
    if version >= 2 {
        state.with_replica_directory_id(dir(directory))
    } else {
        state
    }
}

/// Answers DescribeQuorum with leader 1 of voters 1, 0 (listed out of
/// order) and observer 2 lagging; AddRaftVoter refuses broker 2 as not
/// caught up and any other cluster id as inconsistent; RemoveRaftVoter
/// refuses the last voter.
fn quorum_handler() -> Handler {
    Box::new(|req, version, _| match req {
        RequestKind::DescribeQuorum(r) => {
            assert_eq!(r.topics[0].topic_name.0.as_str(), METADATA_TOPIC);
            assert_eq!(r.topics[0].partitions[0].partition_index, 0);
            let partition = describe_quorum_response::PartitionData::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(1))
                .with_leader_epoch(7)
                .with_high_watermark(120)
                .with_current_voters(vec![state(1, 11, 120, version), state(0, 10, 118, version)])
                .with_observers(vec![state(2, 12, 40, version)]);
            let response = DescribeQuorumResponse::default().with_topics(vec![
                describe_quorum_response::TopicData::default()
                    .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
                    .with_partitions(vec![partition]),
            ]);
            let response = if version >= 2 {
                response.with_nodes(vec![Node::default()
                    .with_node_id(BrokerId(1))
                    .with_listeners(vec![Listener::default()
                        .with_name(str_bytes("CONTROLLER"))
                        .with_host(str_bytes("broker-1"))
                        .with_port(9093)])])
            } else {
                response
            };
            ResponseKind::DescribeQuorum(response)
        }
        RequestKind::AddRaftVoter(r) => {
            let answer = AddRaftVoterResponse::default();
            ResponseKind::AddRaftVoter(
                if r.cluster_id.as_ref().map(|c| c.as_str()) != Some(CLUSTER) {
                    answer.with_error_code(104)
                } else if r.voter_id == 2 {
                    answer
                        .with_error_code(7)
                        .with_error_message(Some(str_bytes("voter 2 is not caught up")))
                } else {
                    answer
                },
            )
        }
        RequestKind::RemoveRaftVoter(r) => {
            let answer = RemoveRaftVoterResponse::default();
            ResponseKind::RemoveRaftVoter(if r.voter_id == 1 {
                answer
                    .with_error_code(42)
                    .with_error_message(Some(str_bytes("cannot remove the last voter")))
            } else {
                answer
            })
        }
        other => panic!("unscripted {other:?}"),
    })
}

#[tokio::test]
async fn describe_quorum_reads_every_version() {
    for max in [0, 1, 2] {
        let (addr, seen) = fake_broker(versions(max), quorum_handler()).await;
        let mut client = Client::connect(&addr).await.unwrap();
        let quorum = client.describe_quorum().await.unwrap();
        assert_eq!(seen.lock().unwrap()[0].0, max, "sent at v{max}");
        assert_eq!(
            (quorum.leader_id, quorum.leader_epoch, quorum.high_watermark),
            (1, 7, 120)
        );
        let ids = |list: &[QuorumReplica]| list.iter().map(|r| r.node_id).collect::<Vec<_>>();
        assert_eq!(ids(&quorum.voters), [0, 1], "ordered by node id");
        assert_eq!(ids(&quorum.observers), [2]);
        assert_eq!(quorum.voter(0).unwrap().log_end_offset, 118);
        assert!(quorum.voter(2).is_none());
        let observer = &quorum.observers[0];
        if max >= 2 {
            assert_eq!(observer.directory_id, dir(12));
            assert_eq!(quorum.voters[1].directory_id, dir(11));
            assert_eq!(
                quorum.nodes,
                [(
                    1,
                    vec![QuorumListener {
                        name: "CONTROLLER".into(),
                        host: "broker-1".into(),
                        port: 9093
                    }]
                )]
            );
        } else {
            assert!(observer.directory_id.is_nil(), "no directory ids before v2");
            assert!(quorum.nodes.is_empty());
        }
        if max >= 1 {
            assert_eq!(observer.last_fetch_timestamp, 1_002);
            assert_eq!(observer.last_caught_up_timestamp, 900);
        }
    }
}

#[tokio::test]
async fn describe_quorum_errors_are_kafka_errors() {
    let handler: Handler = Box::new(|req, _, _| match req {
        RequestKind::DescribeQuorum(_) => {
            ResponseKind::DescribeQuorum(DescribeQuorumResponse::default().with_topics(vec![
                describe_quorum_response::TopicData::default()
                    .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
                    .with_partitions(vec![describe_quorum_response::PartitionData::default()
                        .with_partition_index(0)
                        .with_error_code(6)]),
            ]))
        }
        other => panic!("unscripted {other:?}"),
    });
    let (addr, _) = fake_broker(versions(2), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let err = client.describe_quorum().await.unwrap_err();
    assert_eq!(err.kafka_code(), Some(6), "{err}");

    let top_level: Handler = Box::new(|_, _, _| {
        ResponseKind::DescribeQuorum(DescribeQuorumResponse::default().with_error_code(41))
    });
    let (addr, _) = fake_broker(versions(2), top_level).await;
    let mut client = Client::connect(&addr).await.unwrap();
    assert_eq!(
        client.describe_quorum().await.unwrap_err().kafka_code(),
        Some(41)
    );

    let empty: Handler =
        Box::new(|_, _, _| ResponseKind::DescribeQuorum(DescribeQuorumResponse::default()));
    let (addr, _) = fake_broker(versions(2), empty).await;
    let mut client = Client::connect(&addr).await.unwrap();
    assert!(matches!(
        client.describe_quorum().await,
        Err(ClientError::Protocol(_))
    ));
}

#[tokio::test]
async fn add_and_remove_voters_send_the_cluster_id_and_directory() {
    let (addr, seen) = fake_broker(versions(2), quorum_handler()).await;
    let mut client = Client::connect(&addr).await.unwrap();
    client.add_raft_voter(CLUSTER, 3, dir(13)).await.unwrap();
    client.remove_raft_voter(CLUSTER, 0, dir(10)).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    let RequestKind::AddRaftVoter(add) = &seen[0].1 else {
        panic!("{seen:?}")
    };
    assert_eq!(add.cluster_id.as_ref().map(|c| c.as_str()), Some(CLUSTER));
    assert_eq!((add.voter_id, add.voter_directory_id), (3, dir(13)));
    assert_eq!(add.timeout_ms, VOTER_CHANGE_TIMEOUT_MS);
    assert!(
        add.listeners.is_empty(),
        "the leader uses the observer's own"
    );
    let RequestKind::RemoveRaftVoter(remove) = &seen[1].1 else {
        panic!("{seen:?}")
    };
    assert_eq!(
        remove.cluster_id.as_ref().map(|c| c.as_str()),
        Some(CLUSTER)
    );
    assert_eq!((remove.voter_id, remove.voter_directory_id), (0, dir(10)));
}

#[tokio::test]
async fn voter_changes_fail_with_the_leaders_error() {
    let (addr, _) = fake_broker(versions(2), quorum_handler()).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let lagging = client
        .add_raft_voter(CLUSTER, 2, dir(12))
        .await
        .unwrap_err();
    assert_eq!(lagging.kafka_code(), Some(7));
    assert_eq!(
        lagging.to_string(),
        "REQUEST_TIMED_OUT (code 7): voter 2 is not caught up"
    );
    let elsewhere = client
        .add_raft_voter("another-cluster", 3, dir(13))
        .await
        .unwrap_err();
    assert_eq!(elsewhere.kafka_code(), Some(104));
    let last = client
        .remove_raft_voter(CLUSTER, 1, dir(11))
        .await
        .unwrap_err();
    assert_eq!(last.kafka_code(), Some(42));
}
