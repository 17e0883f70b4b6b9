//! Transaction version 2 (KIP-890 part 2) through the handlers, on the
//! in-memory harness: the feature in ApiVersions and the versions it
//! unlocks, partitions added by the leader (Produce v12) and by the group
//! coordinator (TxnOffsetCommit v5), and EndTxn v5's epoch bump up to the
//! decision (markers need a listening broker: `transactions_v2.rs` in the
//! black-box tests covers the rest).

use kafka_protocol::{
    messages::{
        produce_request::{PartitionProduceData, TopicProduceData},
        ApiKey, DescribeTransactionsRequest, EndTxnRequest, EndTxnResponse, ProduceRequest,
        ProducerId, TransactionalId,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{
    api_versions, produce, supported_versions,
    tests::{create, harness, name},
    transactions,
    txn_data_tests::txn_batch,
    txn_tests::{commit_offsets, init, offsets_and_input_topics, state_of},
    Node,
};
use crate::group::OFFSETS_TOPIC;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn max_version(r: &kafka_protocol::messages::ApiVersionsResponse, key: ApiKey) -> i16 {
    r.api_keys
        .iter()
        .find(|k| k.api_key == key as i16)
        .map(|k| k.max_version)
        .expect("advertised")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_report_the_feature_and_the_versions_it_unlocks() {
    let v2 = harness(&[], &[]);
    let r = api_versions::handle(&v2.node, Default::default(), 3);
    let feature = &r.supported_features[0];
    assert_eq!(
        (
            feature.name.as_str(),
            feature.min_version,
            feature.max_version
        ),
        ("transaction.version", 0, 2)
    );
    let finalized = &r.finalized_features[0];
    assert_eq!(
        (
            finalized.name.as_str(),
            finalized.min_version_level,
            finalized.max_version_level
        ),
        ("transaction.version", 2, 2),
        "new clusters finalize transaction version 2, as Kafka 4.0's"
    );
    assert!(r.finalized_features_epoch >= 0);
    let maxima = |r| {
        [
            ApiKey::Produce,
            ApiKey::AddPartitionsToTxn,
            ApiKey::EndTxn,
            ApiKey::TxnOffsetCommit,
        ]
        .map(|k| max_version(r, k))
    };
    assert_eq!(maxima(&r), [12, 5, 5, 5]);

    let v1 = harness(&[], &[("transaction.version", "1")]);
    let r = api_versions::handle(&v1.node, Default::default(), 3);
    assert_eq!(maxima(&r), [11, 4, 4, 3], "the classic protocol's versions");
    assert_eq!(r.finalized_features[0].max_version_level, 1);
    assert_eq!(r.supported_features[0].max_version, 2);
    let v0 = harness(&[], &[("transaction.version", "0")]);
    let r = api_versions::handle(&v0.node, Default::default(), 3);
    assert!(r.finalized_features.is_empty(), "level 0 is not finalized");
    // What the connection accepts follows the same table.
    assert_eq!(supported_versions(ApiKey::EndTxn, 1).unwrap().max, 4);
    assert_eq!(supported_versions(ApiKey::EndTxn, 2).unwrap().max, 5);
    assert_eq!(supported_versions(ApiKey::Fetch, 0).unwrap().max, 16);
}

/// Produces one transactional batch to `topic`-`partition` with Produce
/// `version`; returns the partition's error code.
async fn produce_txn(
    node: &Node,
    id: &str,
    (pid, epoch): (i64, i16),
    topic: &str,
    partition: i32,
    version: i16,
) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(txn_batch(pid, epoch, 0, 2)))])]);
    let resp = produce::handle(node, req, version).await.unwrap();
    resp.responses[0].partition_responses[0].error_code
}

async fn end_v5(node: &Node, id: &str, (pid, epoch): (i64, i16), commit: bool) -> EndTxnResponse {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    transactions::end(node, req, 5).await
}

async fn partitions_of(node: &Node, id: &str) -> Vec<(String, i32)> {
    let resp = transactions::describe(
        node,
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]),
    )
    .await;
    resp.transaction_states[0]
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_join_by_themselves_and_every_end_bumps_the_epoch() {
    let h = harness(
        &[],
        &[
            ("transaction.state.log.num.partitions", "1"),
            ("group.initial.rebalance.delay.ms", "0"),
        ],
    );
    let node = &h.node;
    offsets_and_input_topics(node).await;
    create(node, "out", &[&[0], &[0]], &[]).await;
    let producer = init(node, "v2").await.unwrap();

    // Produce v12 without AddPartitionsToTxn: the leader adds the partition.
    assert_eq!(produce_txn(node, "v2", producer, "out", 0, 12).await, 0);
    assert_eq!(state_of(node, "v2").await, "Ongoing");
    assert_eq!(partitions_of(node, "v2").await, [("out".to_string(), 0)]);
    // Produce v11 still only verifies: a partition never added is refused.
    assert_eq!(
        produce_txn(node, "v2", producer, "out", 1, 11).await,
        ResponseError::InvalidTxnState.code()
    );
    // TxnOffsetCommit v5 without AddOffsetsToTxn: the offsets partition joins.
    assert_eq!(commit_offsets(node, "v2", producer, 5).await, 0);
    assert_eq!(
        partitions_of(node, "v2").await,
        [(OFFSETS_TOPIC.to_string(), 0), ("out".to_string(), 0)]
    );

    // EndTxn v5: decided with the epoch bumped, answered with it.
    let resp = end_v5(node, "v2", producer, true).await;
    assert_eq!(resp.error_code, 0);
    let bumped = (producer.0, producer.1 + 1);
    assert_eq!((resp.producer_id.0, resp.producer_epoch), bumped);
    assert_eq!(state_of(node, "v2").await, "PrepareCommit");
    // Its retry while the markers are written: retriable.
    assert_eq!(
        end_v5(node, "v2", producer, true).await.error_code,
        ResponseError::ConcurrentTransactions.code()
    );
    // The next transaction's first batch waits for the markers too
    // (NOT_ENOUGH_REPLICAS: every producer retries it).
    assert_eq!(
        produce_txn(node, "v2", bumped, "out", 1, 12).await,
        ResponseError::NotEnoughReplicas.code()
    );
    // A producer id the coordinator never gave is not a retry of anything.
    let stranger = end_v5(node, "v2", (producer.0 + 1000, 0), true).await;
    assert_eq!(
        (
            stranger.error_code,
            stranger.producer_id.0,
            stranger.producer_epoch
        ),
        (ResponseError::InvalidProducerIdMapping.code(), -1, -1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_abort_with_nothing_produced_bumps_and_the_classic_end_does_not() {
    let h = harness(&[], &[("transaction.state.log.num.partitions", "1")]);
    let node = &h.node;
    let producer = init(node, "empty").await.unwrap();
    let resp = end_v5(node, "empty", producer, false).await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.producer_epoch, producer.1 + 1);
    // EndTxn v4 answers as before: no producer in the response.
    let classic = init(node, "classic").await.unwrap();
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s("classic")))
        .with_producer_id(ProducerId(classic.0))
        .with_producer_epoch(classic.1)
        .with_committed(false);
    let resp = transactions::end(node, req, 4).await;
    assert_eq!(
        resp.error_code,
        ResponseError::InvalidTxnState.code(),
        "the classic protocol has nothing to abort in Empty"
    );
}
