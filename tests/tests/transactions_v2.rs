//! Transaction version 2 (KIP-890 part 2) against the real broker, in raw
//! Kafka protocol (no installed client speaks it yet): ApiVersions shows
//! the `transaction.version` feature; a producer runs transactions with
//! Produce v12, TxnOffsetCommit v5 and EndTxn v5 only (no
//! AddPartitionsToTxn, no AddOffsetsToTxn), every end bumps its epoch,
//! read_committed sees exactly the committed records and the group exactly
//! the committed offset; the old epoch is fenced everywhere; the
//! coordinator killed with kill -9 between transactions keeps the state;
//! on three brokers leaders add their partitions at a coordinator on
//! another broker; with the feature finalized at 1 the broker speaks the
//! classic protocol only.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        add_partitions_to_txn_request::AddPartitionsToTxnTopic,
        produce_request::{PartitionProduceData, TopicProduceData},
        AddPartitionsToTxnRequest, ApiKey, ApiVersionsRequest, EndTxnRequest,
        FindCoordinatorRequest, ProduceRequest, ProducerId, TransactionalId,
    },
    ResponseError,
};
use rivulet_tests::{
    cluster::DevCluster,
    cluster_checks::{create_replicated_topic, group_coordinator, poll_until, topic_partitions},
    kafka::topic_name,
    txn_raw::{committed, read_committed, retry, s, values, Producer},
    unique_topic, BrokerProcess, KafkaConn,
};

fn broker(transaction_version: &str) -> BrokerProcess {
    BrokerProcess::builder()
        .config("transaction.version", transaction_version)
        .config("transaction.state.log.num.partitions", "1")
        .config("offsets.topic.num.partitions", "1")
        .config("group.initial.rebalance.delay.ms", "0")
        .start()
}

#[test]
fn a_transaction_version_2_producer_needs_no_add_requests() {
    let broker = broker("2");
    let mut c = broker.client();
    // ApiVersions v3: the feature, finalized at 2, and the versions it unlocks.
    let req = ApiVersionsRequest::default()
        .with_client_software_name(s("rivulet-tests"))
        .with_client_software_version(s("0"));
    let av = c.send(&req, 3).expect("ApiVersions");
    let feature = &av.supported_features[0];
    assert_eq!(
        (
            feature.name.as_str(),
            feature.min_version,
            feature.max_version
        ),
        ("transaction.version", 0, 2)
    );
    let finalized = &av.finalized_features[0];
    assert_eq!(
        (finalized.name.as_str(), finalized.max_version_level),
        ("transaction.version", 2)
    );
    for (key, max) in [
        (ApiKey::Produce, 12),
        (ApiKey::EndTxn, 5),
        (ApiKey::TxnOffsetCommit, 5),
        (ApiKey::AddPartitionsToTxn, 5),
    ] {
        assert_eq!(c.api_versions()[&(key as i16)].1, max, "{key:?}");
    }

    let (out, input, group) = (unique_topic("tv2-out"), unique_topic("tv2-in"), "tv2-g");
    broker.create_topic(&out, 3, &[]);
    broker.create_topic(&input, 1, &[]);
    let mut p = Producer::init(&mut c, "tv2-app");
    let first_epoch = p.epoch;

    // 1: three partitions and the offsets, committed.
    let parts1: Vec<(i32, Vec<String>)> =
        (0..3).map(|i| (i, values(&format!("c1-{i}"), 2))).collect();
    p.produce(&mut c, &out, &parts1);
    assert_eq!(p.commit_offset(&mut c, group, &input, 10), 0);
    p.end(&mut c, true);
    // A retry of that end with the old epoch: success with the bumped one.
    let retried = p.end_as(&mut c, p.pid, first_epoch, true);
    assert_eq!(
        (retried.error_code, retried.producer_epoch),
        (0, first_epoch + 1)
    );
    // The zombie with the old epoch: fenced at a partition of the
    // transaction (its marker carries the bumped epoch) and at a new one
    // (the coordinator refuses to add it).
    let fenced = ResponseError::InvalidProducerEpoch.code();
    let zombie = p.produce_with(&mut c, 12, first_epoch, &out, &[(0, values("z", 1))]);
    assert_eq!(
        zombie,
        [fenced],
        "stale write to a partition of the transaction"
    );
    let side = unique_topic("tv2-side");
    broker.create_topic(&side, 1, &[]);
    let zombie = p.produce_with(&mut c, 12, first_epoch, &side, &[(0, values("z", 1))]);
    assert_eq!(zombie, [fenced], "stale write to a new partition");

    // 2: two partitions and a newer offset, aborted.
    let parts2: Vec<(i32, Vec<String>)> =
        (0..2).map(|i| (i, values(&format!("a2-{i}"), 3))).collect();
    p.produce(&mut c, &out, &parts2);
    assert_eq!(p.commit_offset(&mut c, group, &input, 20), 0);
    p.end(&mut c, false);

    // 3: one partition, committed.
    p.produce(&mut c, &out, &[(2, values("c3-2", 1))]);
    p.end(&mut c, true);
    assert_eq!(p.epoch, first_epoch + 3);
    // An EndTxn of an epoch two ends back is a zombie's.
    let stale = p.end_as(&mut c, p.pid, first_epoch, true);
    assert_eq!(
        stale.error_code,
        ResponseError::ProducerFenced.code(),
        "an old epoch is fenced"
    );

    assert_eq!(read_committed(&mut c, &out, 0), values("c1-0", 2));
    assert_eq!(read_committed(&mut c, &out, 1), values("c1-1", 2));
    let mut third = values("c1-2", 2);
    third.extend(values("c3-2", 1));
    assert_eq!(read_committed(&mut c, &out, 2), third);
    // read_uncommitted sees the aborted records too.
    let all = c.fetch_all(&out, 0, 0).expect("fetch").len();
    assert_eq!(all, 2 + 3, "committed and aborted records of partition 0");
    assert_eq!(
        committed(&mut c, group, &input),
        10,
        "the aborted offset never counts"
    );
    assert_eq!(read_committed(&mut c, &side, 0), Vec::<String>::new());
}

/// The value of the last `__transaction_state` record of `id`.
fn stored_state(c: &mut KafkaConn, id: &str) -> Bytes {
    let records = c
        .fetch_all("__transaction_state", 0, 0)
        .expect("read __transaction_state");
    let key_of = |k: &Bytes| k.len() > 4 && &k[4..] == id.as_bytes();
    records
        .into_iter()
        .filter(|r| r.key.as_ref().is_some_and(key_of))
        .filter_map(|r| r.value)
        .last()
        .expect("a record of the transactional id")
}

#[test]
fn the_coordinator_killed_between_transactions_keeps_transaction_version_2() {
    let mut broker = broker("2");
    let out = unique_topic("tv2-crash");
    broker.create_topic(&out, 2, &[]);
    let mut c = broker.client();
    let mut p = Producer::init(&mut c, "tv2-crash");
    let first_epoch = p.epoch;
    p.produce(
        &mut c,
        &out,
        &[(0, values("c1-0", 2)), (1, values("c1-1", 2))],
    );
    p.end(&mut c, true);
    // Killed right after the answer: the markers may not all be written.
    broker.kill9();
    broker.restart();
    let mut c = broker.client();
    // The state as Kafka stores it: TransactionLogValue v1 whose last
    // tagged field is ClientTransactionVersion (tag 2, 2 bytes) = 2.
    let value = stored_state(&mut c, "tv2-crash");
    assert_eq!(&value[..2], &[0, 1], "value version 1");
    assert_eq!(&value[value.len() - 4..], &[2, 2, 0, 2]);
    // The new coordinator knows the bumped epoch: the retry of the end
    // gets it, and the producer goes on with it.
    let retried = p.end_as(&mut c, p.pid, first_epoch, true);
    assert_eq!(
        (
            retried.error_code,
            retried.producer_id.0,
            retried.producer_epoch
        ),
        (0, p.pid, first_epoch + 1)
    );
    let zombie = p.produce_with(&mut c, 12, first_epoch, &out, &[(0, values("z", 1))]);
    assert_eq!(zombie, [ResponseError::InvalidProducerEpoch.code()]);
    p.produce(&mut c, &out, &[(1, values("c2-1", 1))]);
    p.end(&mut c, true);
    assert_eq!(read_committed(&mut c, &out, 0), values("c1-0", 2));
    let mut second = values("c1-1", 2);
    second.extend(values("c2-1", 1));
    assert_eq!(read_committed(&mut c, &out, 1), second);
}

#[test]
fn at_transaction_version_1_the_broker_speaks_the_classic_protocol() {
    let broker = broker("1");
    let out = unique_topic("tv1");
    broker.create_topic(&out, 1, &[]);
    let mut c = broker.client();
    let req = ApiVersionsRequest::default()
        .with_client_software_name(s("rivulet-tests"))
        .with_client_software_version(s("0"));
    let av = c.send(&req, 3).expect("ApiVersions");
    assert_eq!(av.finalized_features[0].max_version_level, 1);
    for (key, max) in [
        (ApiKey::Produce, 11),
        (ApiKey::EndTxn, 4),
        (ApiKey::TxnOffsetCommit, 3),
        (ApiKey::AddPartitionsToTxn, 4),
    ] {
        assert_eq!(c.api_versions()[&(key as i16)].1, max, "{key:?}");
    }
    let mut p = Producer::init(&mut c, "tv1-app");
    // The transaction version 2 forms are refused like any unknown version.
    let end_v5 = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s("tv1-app")))
        .with_producer_id(ProducerId(p.pid))
        .with_producer_epoch(p.epoch)
        .with_committed(false);
    assert!(c.send(&end_v5, 5).is_err(), "EndTxn v5 is not accepted");
    let mut c = broker.client();
    let batch = p.batch(&out, 0, p.epoch, &values("x", 1));
    let v12 = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_transactional_id(Some(TransactionalId(s("tv1-app"))))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&out))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    assert!(c.send(&v12, 12).is_err(), "Produce v12 is not accepted");
    let mut c = broker.client();
    p.sequences.clear();

    // The classic protocol: the partition added by the client, no bump.
    for round in 0..2 {
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s("tv1-app")))
            .with_v3_and_below_producer_id(ProducerId(p.pid))
            .with_v3_and_below_producer_epoch(p.epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(&out))
                .with_partitions(vec![0])]);
        let (code, _) = retry("AddPartitionsToTxn", || {
            let r = c.send(&add, 3).expect("AddPartitionsToTxn v3");
            (
                r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
                (),
            )
        });
        assert_eq!(code, 0);
        let epoch = p.epoch;
        let codes = p.produce_with(
            &mut c,
            11,
            epoch,
            &out,
            &[(0, values(&format!("r{round}"), 2))],
        );
        assert_eq!(codes, [0]);
        let end = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s("tv1-app")))
            .with_producer_id(ProducerId(p.pid))
            .with_producer_epoch(p.epoch)
            .with_committed(round == 0);
        let (code, _) = retry("EndTxn", || {
            (c.send(&end, 4).expect("EndTxn v4").error_code, ())
        });
        assert_eq!(code, 0, "EndTxn v4 keeps the epoch");
    }
    assert_eq!(read_committed(&mut c, &out, 0), values("r0", 2));
}

/// The transaction coordinator of `id` (FindCoordinator, key type 1),
/// retried while `__transaction_state` is created.
fn transaction_coordinator(c: &mut KafkaConn, id: &str) -> i32 {
    let req = FindCoordinatorRequest::default()
        .with_key(s(id))
        .with_key_type(1);
    let (code, node) = retry("FindCoordinator", || {
        let r = c.call(&req, 3).expect("FindCoordinator");
        (r.error_code, r.node_id.0)
    });
    assert_eq!(code, 0, "FindCoordinator");
    node
}

#[test]
fn transaction_version_2_across_brokers() {
    let cluster = DevCluster::start(
        3,
        &[
            ("transaction.state.log.num.partitions", "3"),
            ("offsets.topic.num.partitions", "3"),
            ("group.initial.rebalance.delay.ms", "0"),
        ],
    );
    let first = cluster.broker_ids()[0];
    let mut any = cluster.client(first);
    let (out, input, group) = (unique_topic("tv2-spread"), unique_topic("tv2-in"), "tv2-g");
    create_replicated_topic(&mut any, &out, 6, 1, &[]).expect("create");
    create_replicated_topic(&mut any, &input, 1, 1, &[]).expect("create");
    let (leaders, _) = poll_until(
        Duration::from_secs(30),
        "leaders of every partition",
        || {
            let parts = topic_partitions(&mut any, &out)?;
            let leaders: Vec<(i32, i32)> = parts.iter().map(|(p, i)| (*p, i.leader)).collect();
            anyhow::ensure!(leaders.iter().all(|(_, l)| *l >= 0), "no leader yet");
            Ok(leaders)
        },
    );
    let coordinator = transaction_coordinator(&mut any, "tv2-spread");
    assert!(
        leaders.iter().any(|(_, l)| *l != coordinator),
        "some leader must ask the coordinator over the network: {leaders:?}"
    );
    let mut coord = cluster.client(coordinator);
    let mut p = Producer::init(&mut coord, "tv2-spread");
    let first_epoch = p.epoch;
    for round in ["c1", "a2", "c3"] {
        // Each partition's batch goes to its leader, which adds it.
        for (partition, leader) in &leaders {
            let mut c = cluster.client(*leader);
            p.produce(
                &mut c,
                &out,
                &[(*partition, values(&format!("{round}-{partition}"), 1))],
            );
        }
        let (offsets, _) = poll_until(Duration::from_secs(30), "the group coordinator", || {
            group_coordinator(&mut any, group)
        });
        let mut gc = cluster.client(offsets);
        let offset = if round == "a2" { 20 } else { 10 };
        assert_eq!(p.commit_offset(&mut gc, group, &input, offset), 0);
        p.end(&mut coord, !round.starts_with('a'));
    }
    assert_eq!(p.epoch, first_epoch + 3);
    for (partition, leader) in &leaders {
        let mut c = cluster.client(*leader);
        assert_eq!(
            read_committed(&mut c, &out, *partition),
            [format!("c1-{partition}-0"), format!("c3-{partition}-0")]
        );
    }
    let offsets = group_coordinator(&mut any, group).expect("group coordinator");
    assert_eq!(committed(&mut cluster.client(offsets), group, &input), 10);
}
