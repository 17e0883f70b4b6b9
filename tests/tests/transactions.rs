//! Transactions on the data path without a transaction coordinator: a
//! producer id from InitProducerId, transactional batches written with it,
//! markers written directly with WriteTxnMarkers (as the coordinator
//! would), then confluent-kafka consumers: read_committed sees only the
//! committed records and stops at the open transaction, read_uncommitted
//! sees everything. The broker is then killed and restarted, and the
//! answer must not change.

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        produce_request::{PartitionProduceData, TopicProduceData},
        write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic},
        InitProducerIdRequest, ProduceRequest, ProducerId, TransactionalId, WriteTxnMarkersRequest,
    },
    protocol::StrBytes,
};
use rivulet_tests::{
    kafka::topic_name, require_py, run_py, unique_topic, BrokerProcess, KafkaConn,
};

/// One transactional batch of `values` from `pid` (epoch 0) at sequence `seq`.
fn txn_batch(pid: i64, seq: i32, values: &[&str]) -> Bytes {
    rivulet_tests::txn_raw::txn_batch(pid, 0, seq, values)
}

fn produce(c: &mut KafkaConn, topic: &str, batch: Bytes) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("bb"))))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    // v11 at most: from v12 (transaction version 2) the leader adds the
    // partition at the transaction coordinator, which knows nothing of
    // these hand-made producers.
    let resp = c.call(&req, 11).expect("produce");
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "produce: {:?}", p.error_message);
}

fn marker(c: &mut KafkaConn, topic: &str, pid: i64, commit: bool) {
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(0)
        .with_transaction_result(commit)
        .with_coordinator_epoch(0)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(vec![0])])]);
    let resp = c.call(&req, 1).expect("write markers");
    let code = resp.markers[0].topics[0].partitions[0].error_code;
    assert_eq!(code, 0, "marker for producer {pid}");
}

fn new_producer_id(c: &mut KafkaConn) -> i64 {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let resp = c.call(&req, 4).expect("init producer id");
    assert_eq!(resp.error_code, 0);
    resp.producer_id.0
}

#[test]
fn read_committed_consumers_see_only_committed_records() {
    require_py!("confluent_kafka");
    // Markers are written here as the coordinator would, for producers no
    // coordinator knows: partition verification (KIP-890) is off.
    let mut broker = BrokerProcess::builder()
        .config("transaction.partition.verification.enable", "false")
        .start();
    let topic = unique_topic("txn");
    broker.create_topic(&topic, 1, &[]);
    let mut c = broker.client();
    let (a, b, open) = (
        new_producer_id(&mut c),
        new_producer_id(&mut c),
        new_producer_id(&mut c),
    );
    produce(&mut c, &topic, txn_batch(a, 0, &["a1", "a2"]));
    produce(&mut c, &topic, txn_batch(b, 0, &["b1"]));
    produce(&mut c, &topic, txn_batch(a, 2, &["a3"]));
    marker(&mut c, &topic, a, true);
    produce(&mut c, &topic, txn_batch(b, 1, &["b2"]));
    marker(&mut c, &topic, b, false);
    // Offsets: 6 records and 2 markers, then the open transaction at 7.
    let end = 8;
    produce(&mut c, &topic, txn_batch(open, 0, &["o1"]));

    let check = |broker: &BrokerProcess| {
        let out = run_py(
            "read_committed.py",
            &[&broker.bootstrap(), &topic, &end.to_string()],
        );
        let read: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(
            read["committed"],
            serde_json::json!(["a1", "a2", "a3"]),
            "{out}"
        );
        assert_eq!(
            read["uncommitted"],
            serde_json::json!(["a1", "a2", "b1", "a3", "b2", "o1"]),
            "{out}"
        );
    };
    check(&broker);
    broker.kill9();
    broker.restart();
    check(&broker);
}
