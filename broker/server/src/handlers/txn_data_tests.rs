//! The transaction data path through the handlers: transactional produce,
//! WriteTxnMarkers, read_committed Fetch (last stable offset, aborted
//! transactions), ListOffsets, DescribeProducers and the metrics, on the
//! harness of `tests.rs`, with markers written as the coordinator would.

use kafka_protocol::{
    messages::{
        describe_producers_request::TopicRequest,
        fetch_request::{FetchPartition, FetchTopic},
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        produce_request::{PartitionProduceData, TopicProduceData},
        write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic},
        DescribeProducersRequest, FetchRequest, ListOffsetsRequest, ProduceRequest, ProducerId,
        TransactionalId, WriteTxnMarkersRequest,
    },
    protocol::StrBytes,
    records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType},
    ResponseError,
};

use super::{
    describe_producers, fetch, list_offsets, produce,
    tests::{create, harness, name},
    write_txn_markers, Node,
};

/// A transactional batch of `n` records from producer `pid` (epoch
/// `epoch`) starting at sequence `seq`.
pub(super) fn txn_batch(pid: i64, epoch: i16, seq: i32, n: i32) -> bytes::Bytes {
    batch(pid, epoch, seq, n, true)
}

/// An idempotent (not transactional) batch, as [`txn_batch`].
pub(super) fn idempotent_batch(pid: i64, epoch: i16, seq: i32, n: i32) -> bytes::Bytes {
    batch(pid, epoch, seq, n, false)
}

fn batch(pid: i64, epoch: i16, seq: i32, n: i32, transactional: bool) -> bytes::Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: seq + i,
            timestamp: 1_700_000_000_000,
            key: Some(bytes::Bytes::from(format!("{pid}-{i}"))),
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

/// Produces `batch` to `topic`-0 (with a transactional id unless `None`);
/// returns (error code, base offset).
pub(super) async fn send(
    node: &Node,
    topic: &str,
    batch: bytes::Bytes,
    txn_id: Option<&str>,
) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_transactional_id(txn_id.map(|id| TransactionalId(StrBytes::from_string(id.into()))))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let resp = produce::handle(node, req, 9).await.unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Writes one marker to the given partitions of `topic`; returns their codes.
async fn marker(
    node: &Node,
    (pid, epoch): (i64, i16),
    commit: bool,
    topic: &str,
    partitions: &[i32],
) -> Vec<i16> {
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(1)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(name(topic))
            .with_partition_indexes(partitions.to_vec())])]);
    let resp = write_txn_markers::handle(node, req).await;
    assert_eq!(resp.markers[0].producer_id.0, pid);
    resp.markers[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

fn fetch_request(topic: &str, isolation: i8) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_isolation_level(isolation)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

async fn latest(node: &Node, topic: &str, isolation: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let resp = list_offsets::handle(node, req, 7);
    resp.topics[0].partitions[0].offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_stops_at_the_lso_and_lists_aborts() {
    let h = harness(
        &[1],
        &[("transaction.partition.verification.enable", "false")],
    );
    let node = &h.node;
    create(node, "tx", &[&[0], &[1]], &[]).await;
    let id = Some("app");
    // Producer 7 commits, 8 aborts, 9 stays open.
    assert_eq!(send(node, "tx", txn_batch(7, 0, 0, 2), id).await, (0, 0));
    assert_eq!(marker(node, (7, 0), true, "tx", &[0]).await, [0]);
    assert_eq!(send(node, "tx", txn_batch(8, 0, 0, 2), id).await, (0, 3));
    assert_eq!(marker(node, (8, 0), false, "tx", &[0]).await, [0]);
    assert_eq!(send(node, "tx", txn_batch(9, 0, 0, 1), id).await, (0, 6));
    let lso = 6;

    let resp = fetch::handle(node, fetch_request("tx", 1), 12).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.high_watermark, p.last_stable_offset),
        (0, 7, lso)
    );
    let aborted: Vec<(i64, i64)> = p
        .aborted_transactions
        .as_ref()
        .expect("read_committed gets the list")
        .iter()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    assert_eq!(aborted, [(8, 3)]);
    let records = p.records.clone().unwrap();
    let decoded =
        kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records.clone()).unwrap();
    let last = decoded
        .iter()
        .flat_map(|s| &s.records)
        .map(|r| r.offset)
        .max();
    assert_eq!(last, Some(5), "nothing at or past the LSO");

    let resp = fetch::handle(node, fetch_request("tx", 0), 12).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!((p.high_watermark, p.last_stable_offset), (7, lso));
    assert!(p.aborted_transactions.is_none());
    assert_eq!(latest(node, "tx", 1).await, lso);
    assert_eq!(latest(node, "tx", 0).await, 7);

    let text = node.metrics.render();
    assert!(
        text.contains(
            "kafka_cluster_partition_laststableoffsetlag{partition=\"0\",topic=\"tx\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("kafka_server_replicamanager_ongoingtransactions 1"));

    // DescribeProducers shows the open transaction.
    let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(name("tx"))
        .with_partition_indexes(vec![0, 1])]);
    let resp = describe_producers::handle(node, req);
    let parts = &resp.topics[0].partitions;
    assert_eq!(
        parts[1].error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
    let open: Vec<(i64, i32, i64)> = parts[0]
        .active_producers
        .iter()
        .map(|p| {
            (
                p.producer_id.0,
                p.coordinator_epoch,
                p.current_txn_start_offset,
            )
        })
        .collect();
    assert_eq!(open, [(7, 1, -1), (8, 1, -1), (9, -1, 6)]);

    // Committing 9 releases everything.
    assert_eq!(marker(node, (9, 0), true, "tx", &[0]).await, [0]);
    assert_eq!(latest(node, "tx", 1).await, 8);
    assert!(node
        .metrics
        .render()
        .contains("kafka_server_replicamanager_ongoingtransactions 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_marker_errors_are_kafkas() {
    let h = harness(
        &[1],
        &[("transaction.partition.verification.enable", "false")],
    );
    let node = &h.node;
    create(node, "e", &[&[0], &[1]], &[]).await;
    let id = Some("app");
    let no_id = send(node, "e", txn_batch(5, 2, 0, 1), None).await;
    assert_eq!(
        no_id.0,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(send(node, "e", txn_batch(5, 2, 0, 1), id).await.0, 0);
    // A fenced (older) epoch.
    let fenced = send(node, "e", txn_batch(5, 1, 0, 1), id).await;
    assert_eq!(fenced.0, ResponseError::InvalidProducerEpoch.code());
    // Plain idempotent data inside an open transaction.
    let inside = send(node, "e", batch(5, 2, 1, 1, false), id).await;
    assert_eq!(inside.0, ResponseError::InvalidTxnState.code());
    // Markers: an older producer epoch, led elsewhere, unknown partition.
    let codes = marker(node, (5, 1), false, "e", &[0, 1, 9]).await;
    assert_eq!(
        codes,
        [
            ResponseError::InvalidProducerEpoch.code(),
            ResponseError::NotLeaderOrFollower.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    let codes = marker(node, (5, 2), false, "nope", &[0]).await;
    assert_eq!(codes, [ResponseError::UnknownTopicOrPartition.code()]);
    assert_eq!(marker(node, (5, 2), false, "e", &[0]).await, [0]);
    assert_eq!(latest(node, "e", 1).await, 2);
}
