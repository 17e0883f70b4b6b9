//! Tests of the group admin calls: the consumer assignment decoder on valid,
//! truncated and hostile bytes, and each call's request/response mapping
//! against a scripted in-process broker.

use bytes::Bytes;
use kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult,
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
    find_coordinator_response::Coordinator,
    list_groups_response::ListedGroup,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic},
    offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    },
    DeleteGroupsResponse, DescribeGroupsResponse, FindCoordinatorResponse, ListGroupsResponse,
    OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse, RequestKind, ResponseKind,
};

use super::*;
use crate::client::fake_broker::{count, fake_broker, Handler};

// ---- the assignment decoder ----

/// Encodes a ConsumerProtocolAssignment the way Kafka's consumer does.
fn assignment(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
    let mut out = version.to_be_bytes().to_vec();
    out.extend((topics.len() as i32).to_be_bytes());
    for (name, partitions) in topics {
        out.extend((name.len() as i16).to_be_bytes());
        out.extend(name.as_bytes());
        out.extend((partitions.len() as i32).to_be_bytes());
        for p in *partitions {
            out.extend(p.to_be_bytes());
        }
    }
    match user_data {
        Some(d) => {
            out.extend((d.len() as i32).to_be_bytes());
            out.extend(d);
        }
        None => out.extend((-1i32).to_be_bytes()),
    }
    out
}

#[test]
fn decodes_assignments_of_every_version() {
    let v0 = assignment(0, &[("a", &[0, 2]), ("b", &[])], None);
    assert_eq!(
        decode_consumer_assignment(&v0).unwrap(),
        vec![("a".to_owned(), vec![0, 2]), ("b".to_owned(), vec![])]
    );
    // v3 with user data, and bytes a later version might append.
    let mut v3 = assignment(3, &[("orders", &[5])], Some(b"sticky"));
    v3.extend([0xde, 0xad]);
    assert_eq!(
        decode_consumer_assignment(&v3).unwrap(),
        vec![("orders".to_owned(), vec![5])]
    );
    let empty = assignment(1, &[], Some(b""));
    assert!(decode_consumer_assignment(&empty).unwrap().is_empty());
}

#[test]
fn truncated_assignments_fail_at_every_length() {
    let full = assignment(1, &[("topic", &[1, 2, 3]), ("x", &[9])], Some(b"data"));
    for len in 0..full.len() {
        let err = decode_consumer_assignment(&full[..len]).unwrap_err();
        assert!(matches!(err, ClientError::Protocol(_)), "{len}: {err}");
    }
}

#[test]
fn hostile_lengths_fail_without_allocating() {
    let version = 0i16.to_be_bytes();
    let cat = |parts: &[&[u8]]| parts.concat();
    let huge = i32::MAX.to_be_bytes();
    let minus = (-1i32).to_be_bytes();
    let one = 1i32.to_be_bytes();
    let name = cat(&[&1i16.to_be_bytes(), b"t"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("topic count", cat(&[&version, &huge])),
        ("negative topic count", cat(&[&version, &minus])),
        (
            "partition count",
            cat(&[&version, &one, &name, &huge, &[0; 64]]),
        ),
        (
            "negative partition count",
            cat(&[&version, &one, &name, &minus]),
        ),
        (
            "name length",
            cat(&[&version, &one, &i16::MAX.to_be_bytes(), b"t"]),
        ),
        (
            "negative name length",
            cat(&[&version, &one, &(-1i16).to_be_bytes()]),
        ),
        (
            "user data length",
            cat(&[&version, &0i32.to_be_bytes(), &huge]),
        ),
        (
            "user data -2",
            cat(&[&version, &0i32.to_be_bytes(), &(-2i32).to_be_bytes()]),
        ),
        (
            "negative version",
            cat(&[&(-1i16).to_be_bytes(), &0i32.to_be_bytes(), &minus]),
        ),
        (
            "not utf-8",
            cat(&[
                &version,
                &one,
                &1i16.to_be_bytes(),
                &[0xff],
                &0i32.to_be_bytes(),
                &minus,
            ]),
        ),
    ];
    for (what, bytes) in cases {
        let err = decode_consumer_assignment(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("malformed consumer assignment"),
            "{what}: {err}"
        );
    }
}

// ---- the fake broker's answers ----

/// A FindCoordinator answer to `req` in the form of `version`: node `node`
/// at `addr`, or `error` if non-zero.
fn coordinator(
    version: i16,
    req: &FindCoordinatorRequest,
    node: i32,
    addr: &str,
    error: i16,
) -> ResponseKind {
    let group = match req.coordinator_keys.first() {
        Some(key) if version >= 4 => key.as_str(),
        _ => req.key.as_str(),
    };
    let (host, port) = addr.rsplit_once(':').unwrap();
    let port: i32 = port.parse().unwrap();
    let (node, host, port) = if error == 0 {
        (node, host, port)
    } else {
        (-1, "", -1)
    };
    let response = if version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(vec![
            Coordinator::default()
                .with_key(str_bytes("some-other-group"))
                .with_node_id(1.into())
                .with_host(str_bytes(host))
                .with_port(port),
            Coordinator::default()
                .with_key(str_bytes(group))
                .with_node_id(node.into())
                .with_host(str_bytes(host))
                .with_port(port)
                .with_error_code(error),
        ])
    } else {
        FindCoordinatorResponse::default()
            .with_node_id(node.into())
            .with_host(str_bytes(host))
            .with_port(port)
            .with_error_code(error)
    };
    ResponseKind::FindCoordinator(response)
}

fn group_versions(find_coordinator_max: i16, offset_fetch_max: i16) -> Vec<(ApiKey, i16, i16)> {
    vec![
        (ApiKey::FindCoordinator, 0, find_coordinator_max),
        (ApiKey::ListGroups, 0, 5),
        (ApiKey::DescribeGroups, 0, 5),
        (ApiKey::DeleteGroups, 0, 2),
        (ApiKey::OffsetFetch, 1, offset_fetch_max),
        (ApiKey::OffsetCommit, 2, 9),
        (ApiKey::OffsetDelete, 0, 0),
    ]
}

// ---- the calls ----

#[tokio::test]
async fn find_coordinator_speaks_single_key_and_batched_forms() {
    for max in [3, 4] {
        let handler: Handler = Box::new(|req, v, addr| match req {
            RequestKind::FindCoordinator(f) => coordinator(v, f, 1, addr, 0),
            other => panic!("unscripted {other:?}"),
        });
        let (addr, seen) = fake_broker(group_versions(max, 9), handler).await;
        let mut client = Client::connect(&addr).await.unwrap();
        assert_eq!(client.find_coordinator("g").await.unwrap(), 1);
        let (version, req) = seen.lock().unwrap()[0].clone();
        assert_eq!(version, max);
        let RequestKind::FindCoordinator(req) = req else {
            panic!()
        };
        if max >= 4 {
            assert_eq!(req.coordinator_keys, vec![str_bytes("g")]);
            assert!(req.key.is_empty());
        } else {
            assert_eq!(req.key.as_str(), "g");
            assert!(req.coordinator_keys.is_empty());
        }
        assert_eq!(req.key_type, 0);
    }
}

#[tokio::test]
async fn find_coordinator_waits_while_the_coordinator_loads() {
    let mut failures = [15, 14].into_iter();
    let handler: Handler = Box::new(move |req, v, addr| match req {
        RequestKind::FindCoordinator(f) => coordinator(v, f, 1, addr, failures.next().unwrap_or(0)),
        other => panic!("unscripted {other:?}"),
    });
    let (addr, seen) = fake_broker(group_versions(4, 9), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    assert_eq!(client.find_coordinator("g").await.unwrap(), 1);
    assert_eq!(
        count(&seen, |r| matches!(r, RequestKind::FindCoordinator(_))),
        3
    );
}

fn described(group: &str, state: &str, protocol_type: &str, error: i16) -> DescribedGroup {
    let member = DescribedGroupMember::default()
        .with_member_id(str_bytes("m-1"))
        .with_group_instance_id(Some(str_bytes("static-1")))
        .with_client_id(str_bytes("cli"))
        .with_client_host(str_bytes("/127.0.0.1"))
        .with_member_assignment(Bytes::from(assignment(3, &[("t", &[1, 0])], Some(b"u"))));
    DescribedGroup::default()
        .with_group_id(group_id(group))
        .with_error_code(error)
        .with_group_state(str_bytes(state))
        .with_protocol_type(str_bytes(protocol_type))
        .with_protocol_data(str_bytes("range"))
        .with_members(if state == "Stable" {
            vec![member]
        } else {
            vec![]
        })
}

#[tokio::test]
async fn describe_groups_follows_the_coordinator_and_decodes_assignments() {
    // The coordinator is node 7, unknown to Metadata, at the same address;
    // the first DescribeGroups says NOT_COORDINATOR.
    let mut not_coordinator = 1;
    let handler: Handler = Box::new(move |req, v, addr| match req {
        RequestKind::FindCoordinator(f) => coordinator(v, f, 7, addr, 0),
        RequestKind::DescribeGroups(d) => {
            let name = d.groups[0].0.as_str();
            let g = match name {
                "g" if not_coordinator > 0 => {
                    not_coordinator -= 1;
                    described(name, "", "", 16)
                }
                "g" => described(name, "Stable", "consumer", 0),
                "connect" => described(name, "Stable", "connect", 0),
                _ => described(name, "Dead", "", 0),
            };
            ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(vec![g]))
        }
        other => panic!("unscripted {other:?}"),
    });
    let (addr, seen) = fake_broker(group_versions(4, 9), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let groups = client
        .describe_groups(&["g", "connect", "gone"])
        .await
        .unwrap();
    assert_eq!(
        count(&seen, |r| matches!(r, RequestKind::DescribeGroups(_))),
        4
    );
    assert_eq!(
        count(&seen, |r| matches!(r, RequestKind::FindCoordinator(_))),
        4
    );
    assert!(
        client.brokers().any(|b| b.node_id == 7),
        "coordinator learnt"
    );

    let g = &groups[0];
    assert_eq!((g.state.as_str(), g.protocol.as_str()), ("Stable", "range"));
    assert!(g.exists());
    assert_eq!(
        g.members,
        vec![MemberDescription {
            member_id: "m-1".into(),
            group_instance_id: Some("static-1".into()),
            client_id: "cli".into(),
            client_host: "/127.0.0.1".into(),
            assignment: vec![("t".into(), vec![1, 0])],
        }]
    );
    // Not the consumer protocol: the assignment bytes mean something else.
    assert!(groups[1].members[0].assignment.is_empty());
    assert!(!groups[2].exists());
}

#[tokio::test]
async fn not_coordinator_is_retried_only_once() {
    let handler: Handler = Box::new(|req, v, addr| match req {
        RequestKind::FindCoordinator(f) => coordinator(v, f, 1, addr, 0),
        RequestKind::DescribeGroups(_) => ResponseKind::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(vec![described("g", "", "", 16)]),
        ),
        other => panic!("unscripted {other:?}"),
    });
    let (addr, seen) = fake_broker(group_versions(4, 9), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let err = client.describe_groups(&["g"]).await.unwrap_err();
    assert_eq!(err.kafka_code(), Some(16), "{err}");
    assert_eq!(
        count(&seen, |r| matches!(r, RequestKind::DescribeGroups(_))),
        2
    );
}

#[tokio::test]
async fn list_groups_merges_and_orders() {
    let handler: Handler = Box::new(|req, _, _| match req {
        RequestKind::ListGroups(_) => {
            let g = |id: &str, kind: &str, state: &str| {
                ListedGroup::default()
                    .with_group_id(group_id(id))
                    .with_protocol_type(str_bytes(kind))
                    .with_group_state(str_bytes(state))
            };
            ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(vec![
                g("zeta", "consumer", "Empty"),
                g("alpha", "consumer", "Stable"),
            ]))
        }
        other => panic!("unscripted {other:?}"),
    });
    let (addr, _) = fake_broker(group_versions(4, 9), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let groups = client.list_groups().await.unwrap();
    assert_eq!(
        groups,
        vec![
            GroupListing {
                group_id: "alpha".into(),
                protocol_type: "consumer".into(),
                state: "Stable".into()
            },
            GroupListing {
                group_id: "zeta".into(),
                protocol_type: "consumer".into(),
                state: "Empty".into()
            },
        ]
    );
}

#[tokio::test]
async fn delete_groups_reports_the_first_failing_group() {
    let handler: Handler = Box::new(|req, v, addr| match req {
        RequestKind::FindCoordinator(f) => coordinator(v, f, 1, addr, 0),
        RequestKind::DeleteGroups(d) => {
            let name = d.groups_names[0].0.as_str();
            let code = if name == "busy" { 68 } else { 0 };
            ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(vec![
                DeletableGroupResult::default()
                    .with_group_id(group_id(name))
                    .with_error_code(code),
            ]))
        }
        other => panic!("unscripted {other:?}"),
    });
    let (addr, seen) = fake_broker(group_versions(3, 9), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    client.delete_groups(&["a"]).await.unwrap();
    let err = client.delete_groups(&["b", "busy", "c"]).await.unwrap_err();
    assert_eq!(err.kafka_code(), Some(68));
    assert_eq!(err.to_string(), "NON_EMPTY_GROUP (code 68): group `busy`");
    let deleted: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, r)| match r {
            RequestKind::DeleteGroups(d) => Some(d.groups_names[0].0.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["a", "b", "busy"]);
}

#[tokio::test]
async fn fetch_committed_offsets_speaks_both_forms() {
    for max in [7, 9] {
        let handler: Handler = Box::new(|req, v, addr| match req {
            RequestKind::FindCoordinator(f) => coordinator(v, f, 1, addr, 0),
            RequestKind::OffsetFetch(_) if v >= 8 => {
                ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(vec![
                    OffsetFetchResponseGroup::default()
                        .with_group_id(group_id("g"))
                        .with_topics(vec![OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes("t")))
                            .with_partitions(vec![
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(1)
                                    .with_committed_offset(42)
                                    .with_committed_leader_epoch(3)
                                    .with_metadata(Some(str_bytes("m"))),
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(2)
                                    .with_committed_offset(-1),
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(3)
                                    .with_committed_offset(9)
                                    .with_error_code(3),
                            ])]),
                ]))
            }
            RequestKind::OffsetFetch(_) => {
                ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_topics(vec![
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes("t")))
                        .with_partitions(vec![
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(1)
                                .with_committed_offset(42)
                                .with_committed_leader_epoch(3)
                                .with_metadata(Some(str_bytes("m"))),
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(2)
                                .with_committed_offset(-1),
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(3)
                                .with_committed_offset(9)
                                .with_error_code(3),
                        ]),
                ]))
            }
            other => panic!("unscripted {other:?}"),
        });
        let (addr, seen) = fake_broker(group_versions(4, max), handler).await;
        let mut client = Client::connect(&addr).await.unwrap();
        let offsets = client.fetch_committed_offsets("g").await.unwrap();
        assert_eq!(
            offsets,
            BTreeMap::from([(
                ("t".to_owned(), 1),
                CommittedOffset {
                    offset: 42,
                    leader_epoch: 3,
                    metadata: Some("m".into())
                }
            )]),
            "v{max}"
        );
        let (version, req) = seen.lock().unwrap()[1].clone();
        assert_eq!(version, max);
        let RequestKind::OffsetFetch(req) = req else {
            panic!()
        };
        if max >= 8 {
            assert_eq!(req.groups.len(), 1);
            assert_eq!(req.groups[0].group_id.0.as_str(), "g");
            assert_eq!(req.groups[0].topics, None, "all topics");
        } else {
            assert_eq!(req.group_id.0.as_str(), "g");
            assert_eq!(req.topics, None, "all topics");
        }
    }
}

#[tokio::test]
async fn commit_offsets_is_an_admin_commit() {
    let handler: Handler = Box::new(|req, v, addr| match req {
        RequestKind::FindCoordinator(f) => coordinator(v, f, 1, addr, 0),
        RequestKind::OffsetCommit(c) => {
            // A group with members refuses a commit without a member id.
            let code = if c.group_id.0.as_str() == "active" {
                25
            } else {
                0
            };
            ResponseKind::OffsetCommit(
                OffsetCommitResponse::default().with_topics(
                    c.topics
                        .iter()
                        .map(|t| {
                            OffsetCommitResponseTopic::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            OffsetCommitResponsePartition::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        other => panic!("unscripted {other:?}"),
    });
    let (addr, seen) = fake_broker(group_versions(4, 9), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    let offsets = BTreeMap::from([
        (("a".to_owned(), 0), 5),
        (("a".to_owned(), 1), 6),
        (("b".to_owned(), 0), 7),
    ]);
    client.commit_offsets("g", &offsets).await.unwrap();
    let (version, req) = seen.lock().unwrap()[1].clone();
    assert_eq!(version, 9);
    let RequestKind::OffsetCommit(req) = req else {
        panic!()
    };
    assert_eq!(req.group_id.0.as_str(), "g");
    assert_eq!(req.generation_id_or_member_epoch, -1);
    assert!(req.member_id.is_empty());
    assert_eq!(req.group_instance_id, None);
    let sent: Vec<(String, i32, i64)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index, p.committed_offset))
        })
        .collect();
    assert_eq!(
        sent,
        [("a".into(), 0, 5), ("a".into(), 1, 6), ("b".into(), 0, 7)]
    );

    let err = client.commit_offsets("active", &offsets).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "UNKNOWN_MEMBER_ID (code 25): group `active`, partition a-0"
    );
    // Nothing to commit: no request at all.
    let before = seen.lock().unwrap().len();
    client.commit_offsets("g", &BTreeMap::new()).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[tokio::test]
async fn delete_committed_offsets_maps_partition_errors() {
    let handler: Handler = Box::new(|req, v, addr| match req {
        RequestKind::FindCoordinator(f) => coordinator(v, f, 1, addr, 0),
        RequestKind::OffsetDelete(d) => ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default().with_topics(
                d.topics
                    .iter()
                    .map(|t| {
                        let code = if t.name.0.as_str() == "busy" { 86 } else { 0 };
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        other => panic!("unscripted {other:?}"),
    });
    let (addr, seen) = fake_broker(group_versions(4, 9), handler).await;
    let mut client = Client::connect(&addr).await.unwrap();
    client
        .delete_committed_offsets("g", &[("t".into(), 2), ("t".into(), 0), ("u".into(), 1)])
        .await
        .unwrap();
    let (_, req) = seen.lock().unwrap()[1].clone();
    let RequestKind::OffsetDelete(req) = req else {
        panic!()
    };
    assert_eq!(req.group_id.0.as_str(), "g");
    let sent: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    assert_eq!(sent, [("t".into(), vec![2, 0]), ("u".into(), vec![1])]);

    let err = client
        .delete_committed_offsets("g", &[("busy".into(), 0)])
        .await
        .unwrap_err();
    assert_eq!(err.kafka_code(), Some(86));
    assert!(err.to_string().contains("partition busy-0"), "{err}");
}
