//! Tests of the reassignment calls: what goes on the wire at each version
//! and how per-partition and request-level errors come back, against a
//! scripted in-process broker.

use kafka_protocol::messages::{
    alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    },
    list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    },
    AlterPartitionReassignmentsResponse, ApiKey, ListPartitionReassignmentsResponse, RequestKind,
    ResponseKind,
};

use super::*;
use crate::client::fake_broker::{count, fake_broker, Handler};

fn versions(alter_max: i16) -> Vec<(ApiKey, i16, i16)> {
    vec![
        (ApiKey::AlterPartitionReassignments, 0, alter_max),
        (ApiKey::ListPartitionReassignments, 0, 0),
    ]
}

/// Answers AlterPartitionReassignments for every partition asked, with
/// INVALID_REPLICA_ASSIGNMENT for targets naming broker 9 and
/// NO_REASSIGNMENT_IN_PROGRESS for cancellations.
fn alter_handler() -> Handler {
    Box::new(|req, _, _| match req {
        RequestKind::AlterPartitionReassignments(r) => {
            let responses = r
                .topics
                .iter()
                .map(|t| {
                    ReassignableTopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    let answer = ReassignablePartitionResponse::default()
                                        .with_partition_index(p.partition_index);
                                    match &p.replicas {
                                        Some(r) if r.contains(&BrokerId(9)) => {
                                            answer.with_error_code(39).with_error_message(Some(
                                                str_bytes("broker 9 is not registered"),
                                            ))
                                        }
                                        Some(_) => answer,
                                        None => answer.with_error_code(85),
                                    }
                                })
                                .collect(),
                        )
                })
                .collect();
            ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default()
                    .with_allow_replication_factor_change(r.allow_replication_factor_change)
                    .with_responses(responses),
            )
        }
        other => panic!("unscripted {other:?}"),
    })
}

fn target(topic: &str, partition: i32, replicas: Option<&[i32]>) -> ReassignTarget {
    (topic.into(), partition, replicas.map(<[i32]>::to_vec))
}

#[tokio::test]
async fn alter_groups_by_topic_and_returns_results_in_the_order_asked() {
    for max in [0, 1] {
        let (addr, seen) = fake_broker(versions(max), alter_handler()).await;
        let mut client = Client::connect(&addr).await.unwrap();
        let results = client
            .alter_partition_reassignments(vec![
                target("orders", 2, Some(&[1, 2, 3])),
                target("audit", 0, Some(&[9])),
                target("orders", 0, None),
            ])
            .await
            .unwrap();
        let codes: Vec<(&str, i32, i16)> = results
            .iter()
            .map(|r| (r.topic.as_str(), r.partition, r.error_code))
            .collect();
        assert_eq!(
            codes,
            [("orders", 2, 0), ("audit", 0, 39), ("orders", 0, 85)],
            "v{max}"
        );
        assert!(results[0].check().is_ok());
        let err = results[1].check().unwrap_err();
        assert_eq!(err.kafka_code(), Some(39));
        assert_eq!(
            err.to_string(),
            "INVALID_REPLICA_ASSIGNMENT (code 39): audit-0: broker 9 is not registered"
        );

        let (version, req) = seen.lock().unwrap()[0].clone();
        assert_eq!(version, max);
        let RequestKind::AlterPartitionReassignments(req) = req else {
            panic!()
        };
        assert!(req.allow_replication_factor_change);
        assert_eq!(req.timeout_ms, REASSIGN_TIMEOUT_MS);
        let sent: Vec<(String, i32, Option<Vec<i32>>)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.0.to_string(),
                        p.partition_index,
                        p.replicas.as_deref().map(from_ids),
                    )
                })
            })
            .collect();
        assert_eq!(
            sent,
            [
                ("audit".into(), 0, Some(vec![9])),
                ("orders".into(), 2, Some(vec![1, 2, 3])),
                ("orders".into(), 0, None),
            ],
            "one entry per topic, partitions in the order given"
        );
    }
}

#[tokio::test]
async fn alter_fails_as_a_whole_on_a_request_level_error() {
    let handler: Handler = Box::new(|req, _, _| match req {
        RequestKind::AlterPartitionReassignments(_) => ResponseKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(31)
                .with_error_message(Some(str_bytes("not allowed"))),
        ),
        other => panic!("unscripted {other:?}"),
    });
    let (addr, seen) = fake_broker(versions(1), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let err = client
        .alter_partition_reassignments(vec![target("t", 0, Some(&[1]))])
        .await
        .unwrap_err();
    assert_eq!(err.kafka_code(), Some(31), "{err}");
    assert!(err.to_string().contains("not allowed"), "{err}");

    // Nothing asked: nothing sent.
    let before = seen.lock().unwrap().len();
    assert!(client
        .alter_partition_reassignments(Vec::new())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[tokio::test]
async fn alter_without_an_answer_for_a_partition_is_a_protocol_error() {
    let handler: Handler = Box::new(|req, _, _| match req {
        RequestKind::AlterPartitionReassignments(_) => {
            ResponseKind::AlterPartitionReassignments(AlterPartitionReassignmentsResponse::default())
        }
        other => panic!("unscripted {other:?}"),
    });
    let (addr, _) = fake_broker(versions(1), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let err = client
        .alter_partition_reassignments(vec![target("t", 3, Some(&[1]))])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol(m) if m.contains("t-3")),
        "{err}"
    );
}

fn ongoing(
    partition: i32,
    replicas: &[i32],
    adding: &[i32],
    removing: &[i32],
) -> OngoingPartitionReassignment {
    OngoingPartitionReassignment::default()
        .with_partition_index(partition)
        .with_replicas(ids(replicas))
        .with_adding_replicas(ids(adding))
        .with_removing_replicas(ids(removing))
}

#[tokio::test]
async fn list_decodes_and_orders_reassignments_in_progress() {
    let handler: Handler = Box::new(|req, _, _| match req {
        RequestKind::ListPartitionReassignments(_) => ResponseKind::ListPartitionReassignments(
            ListPartitionReassignmentsResponse::default().with_topics(vec![
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes("orders")))
                    .with_partitions(vec![
                        ongoing(4, &[0, 1, 2], &[2], &[0]),
                        ongoing(1, &[3, 0, 1], &[0, 1], &[3]),
                    ]),
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes("audit")))
                    .with_partitions(vec![ongoing(0, &[1, 2], &[2], &[])]),
            ]),
        ),
        other => panic!("unscripted {other:?}"),
    });
    let (addr, seen) = fake_broker(versions(1), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let all = client.list_partition_reassignments(None).await.unwrap();
    let keys: Vec<(&str, i32)> = all
        .iter()
        .map(|o| (o.topic.as_str(), o.partition))
        .collect();
    assert_eq!(keys, [("audit", 0), ("orders", 1), ("orders", 4)]);
    assert_eq!(
        all[1],
        OngoingReassignment {
            topic: "orders".into(),
            partition: 1,
            replicas: vec![3, 0, 1],
            adding: vec![0, 1],
            removing: vec![3],
        }
    );
    assert_eq!(all[1].target(), [0, 1]);
    assert_eq!(all[0].target(), [1, 2], "growing: nothing leaves");

    client
        .list_partition_reassignments(Some(vec![("orders".into(), vec![1, 4])]))
        .await
        .unwrap();
    let requests: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, r)| match r {
            RequestKind::ListPartitionReassignments(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(requests[0].topics, None, "every partition");
    let filtered = requests[1].topics.as_ref().unwrap();
    assert_eq!(filtered[0].name.0.as_str(), "orders");
    assert_eq!(filtered[0].partition_indexes, [1, 4]);
    assert_eq!(
        count(&seen, |r| matches!(
            r,
            RequestKind::ListPartitionReassignments(_)
        )),
        2
    );
}

#[tokio::test]
async fn list_reports_a_request_level_error() {
    let handler: Handler = Box::new(|req, _, _| match req {
        RequestKind::ListPartitionReassignments(_) => ResponseKind::ListPartitionReassignments(
            ListPartitionReassignmentsResponse::default().with_error_code(41),
        ),
        other => panic!("unscripted {other:?}"),
    });
    let (addr, _) = fake_broker(versions(1), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let err = client.list_partition_reassignments(None).await.unwrap_err();
    assert_eq!(err.kafka_code(), Some(41));
}
