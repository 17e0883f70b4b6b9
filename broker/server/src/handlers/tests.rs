//! Handlers, the registry, the applier and the group coordinator on a temp
//! directory over an in-memory metadata log: no sockets, no quorum. Other
//! brokers exist only as registrations in the image, which is all a
//! handler can know of them.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use kafka_protocol::{
    messages::{
        fetch_request::{FetchPartition, FetchTopic},
        offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
        offset_fetch_request::OffsetFetchRequestTopic,
        produce_request::{PartitionProduceData, TopicProduceData},
        FetchRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::metadata::{ApplyOutcome, Endpoint, MetadataCommand};

use super::{fetch, offset_commit, offset_fetch, produce, Node};
use crate::{
    broker::Broker,
    cluster::{admin::NewTopic, source::InMemoryMetadata, Cluster},
    config::{BrokerConfig, ListenerConfig},
    group::{Coordinator, CoordinatorConfig, OFFSETS_TOPIC},
    metrics::Metrics,
};

/// A broker (id 0) over an in-memory log in which brokers `others` are
/// registered and live too; the group coordinator's task runs.
pub(super) struct Harness {
    pub(super) node: Node,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

pub(super) fn harness(others: &[i32], configs: &[(&str, &str)]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let raw: BTreeMap<String, String> = configs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = BrokerConfig::new(
        0,
        vec![ListenerConfig::plaintext("127.0.0.1:0".parse().unwrap())],
        dir.path().to_path_buf(),
        None,
        raw,
    )
    .unwrap();
    let broker = Broker::open(config, Metrics::new(&super::api_names())).unwrap();
    broker.set_bound("PLAINTEXT", ("127.0.0.1".into(), 9092));
    let log = Arc::new(InMemoryMetadata::new(0));
    let cluster = Cluster::in_memory(&broker, log.clone());
    for &id in others {
        let endpoints = BTreeMap::from([(
            "PLAINTEXT".to_string(),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 9100 + id as u16,
            },
        )]);
        let register = MetadataCommand::RegisterBroker {
            broker_id: id,
            incarnation_id: uuid::Uuid::new_v4(),
            rack: None,
            endpoints,
            directory_id: None,
        };
        let Ok((_, ApplyOutcome::Registered { broker_epoch })) = log.apply(&register) else {
            panic!("registering broker {id}");
        };
        log.apply(&MetadataCommand::BrokerHeartbeat {
            broker_id: id,
            broker_epoch,
        })
        .unwrap();
    }
    let groups = Arc::new(Coordinator::new(
        CoordinatorConfig::from_broker(&broker.config),
        broker.metrics.groups.clone(),
        cluster.clone(),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let txns = Arc::new(crate::txn::TxnCoordinator::new(
        broker.config.transactions.clone(),
        cluster.clone(),
        broker.metrics.txns.clone(),
    ));
    tokio::spawn(txns.clone().run(stopped.clone()));
    tokio::spawn(crate::group::run(groups.clone(), stopped));
    Harness {
        node: Node {
            txns,
            broker,
            cluster,
            groups,
        },
        _dir: dir,
        _stop: stop,
    }
}

/// Creates `name` with explicit replica lists (and topic configs).
pub(super) async fn create(
    node: &Node,
    name: &str,
    assignments: &[&[i32]],
    configs: &[(&str, &str)],
) {
    let new = NewTopic {
        name: name.to_string(),
        partitions: -1,
        replication_factor: -1,
        assignments: Some(assignments.iter().map(|a| a.to_vec()).collect()),
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    node.cluster
        .create_topic(&node.broker, new, false)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}

pub(super) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Creates `__consumer_offsets` with one partition on this broker.
pub(super) async fn create_offsets_topic(node: &Node) {
    create(
        node,
        OFFSETS_TOPIC,
        &[&[0]],
        &[("cleanup.policy", "compact")],
    )
    .await;
}

/// Commits `offset` for partition `partition` of `topic` in group `g`,
/// retrying while the coordinator loads its partition (in the
/// background); the partition's error code.
pub(super) async fn commit_offset(node: &Node, topic: &str, partition: i32, offset: i64) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)])]);
    let mut code = -1;
    for _ in 0..100 {
        let resp = offset_commit::handle(node, req.clone()).await;
        code = resp.topics[0].partitions[0].error_code;
        if code != ResponseError::CoordinatorLoadInProgress.code() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    code
}

pub(super) fn produce_request(topic: &str, partitions: &[i32], acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(
                partitions
                    .iter()
                    .map(|&p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(crate::partition::test_batch(3)))
                    })
                    .collect(),
            )])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_answers_for_every_partition_of_the_cluster() {
    // A broker default of min.insync.replicas=2, as rivulet dev sets it.
    let h = harness(&[1, 2], &[("min.insync.replicas", "2")]);
    let node = &h.node;
    create(node, "t", &[&[0], &[1], &[0], &[2]], &[]).await;
    let req = produce_request("t", &[0, 1, 2, 3, 7], -1);
    let resp = produce::handle(node, req, 9)
        .await
        .expect("acks=all answers");
    let codes: Vec<(i32, i16, i64)> = resp.responses[0]
        .partition_responses
        .iter()
        .map(|p| (p.index, p.error_code, p.base_offset))
        .collect();
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(
        codes,
        vec![
            // Replication factor 1 below the broker count: acks=all
            // succeeds (the default is capped at the replica count).
            (0, 0, 0),
            // Exists in the cluster, led elsewhere: retriable.
            (1, not_leader, -1),
            (2, 0, 0),
            (3, not_leader, -1),
            // Does not exist anywhere.
            (7, unknown, -1),
        ]
    );
    // A topic's own min.insync.replicas above its replication factor is
    // refused at creation.
    let refused = node
        .cluster
        .create_topic(
            &node.broker,
            NewTopic {
                name: "strict".into(),
                partitions: 1,
                replication_factor: 1,
                assignments: None,
                configs: BTreeMap::from([("min.insync.replicas".into(), "2".into())]),
            },
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code, ResponseError::InvalidConfig, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_commit_for_partitions_hosted_elsewhere() {
    let h = harness(&[1], &[("group.initial.rebalance.delay.ms", "0")]);
    let node = &h.node;
    // The group's offsets partition is here; the data partition is not.
    create_offsets_topic(node).await;
    create(node, "remote", &[&[1]], &[]).await;
    let code = commit_offset(node, "remote", 0, 5).await;
    assert_eq!(code, 0, "commit for a partition led by broker 1");
    assert_eq!(
        commit_offset(node, "remote", 9, 5).await,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name("remote"))
            .with_partition_indexes(vec![0])]));
    let resp = offset_fetch::handle(node, fetch, 7).await;
    assert_eq!(resp.topics[0].partitions[0].committed_offset, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_fetch_is_woken_by_an_append_to_its_partition() {
    let h = harness(&[], &[]);
    let node = Arc::new(h.node);
    create(&node, "w", &[&[0], &[0]], &[]).await;
    let topic_id = node.cluster.image().topics["w"].id;
    let fetch = FetchRequest::default()
        .with_max_wait_ms(20_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("w"))
            .with_topic_id(topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(1)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let parked = {
        let node = node.clone();
        tokio::spawn(async move { fetch::handle(&node, fetch, 12).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !parked.is_finished(),
        "nothing to read yet: the fetch waits"
    );
    // An append to another partition does not answer it...
    produce::handle(&node, produce_request("w", &[0], 1), 9).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !parked.is_finished(),
        "answered after another partition's append"
    );
    // ...one to its own partition does, long before its max wait.
    produce::handle(&node, produce_request("w", &[1], 1), 9).await;
    let resp = tokio::time::timeout(Duration::from_secs(10), parked)
        .await
        .expect("woken by the append")
        .unwrap();
    let part = &resp.responses[0].partitions[0];
    assert_eq!((part.error_code, part.high_watermark), (0, 3));
    assert!(part.records.as_ref().is_some_and(|r| !r.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_waits_for_the_in_sync_follower_and_its_fetch_releases_it() {
    let h = harness(&[1], &[]);
    let node = Arc::new(h.node);
    // Led here, replicated to broker 1, both in sync.
    create(&node, "r", &[&[0, 1]], &[]).await;
    let topic_id = node.cluster.image().topics["r"].id;
    let produced = {
        let node = node.clone();
        tokio::spawn(async move { produce::handle(&node, produce_request("r", &[0], -1), 9).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !produced.is_finished(),
        "acks=all answers only once the in-sync follower has the records"
    );
    // Consumers see nothing above the high watermark meanwhile.
    let partition = node.topic("r").unwrap().partition(0).unwrap();
    assert_eq!(partition.high_watermark(), 0);
    // The follower's fetch from offset 3 says it has offsets 0..3.
    let follower_fetch = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(1))
        .with_max_wait_ms(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("r"))
            .with_topic_id(topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(3)
                .with_partition_max_bytes(1 << 20)])]);
    fetch::handle(&node, follower_fetch, 12).await;
    let resp = tokio::time::timeout(Duration::from_secs(10), produced)
        .await
        .expect("released by the follower's fetch")
        .unwrap()
        .unwrap();
    let part = &resp.responses[0].partition_responses[0];
    assert_eq!((part.error_code, part.base_offset), (0, 0));
    assert_eq!(partition.high_watermark(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_follower_is_not_proposed_for_the_isr_again_and_again() {
    let h = harness(&[1], &[]);
    let node = &h.node;
    create(node, "t", &[&[0, 1]], &[]).await;
    node.cluster
        .propose(MetadataCommand::FenceBroker { broker_id: 1 })
        .await
        .expect("fence broker 1");
    let partition = node.topic("t").unwrap().partition(0).unwrap();
    assert_eq!(
        partition.replica().isr,
        vec![0],
        "the fenced follower left the ISR"
    );
    // The fenced broker keeps fetching and is caught up: the controller
    // would refuse it in the ISR, so the leader must not keep asking.
    for _ in 0..20 {
        crate::cluster::replication::expand_isr(&node.cluster, "t", &partition, 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        node.metrics.isr_expands.get(),
        0,
        "no ISR expansion proposed"
    );
    assert_eq!(partition.replica().isr, vec![0]);
}
