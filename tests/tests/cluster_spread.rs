//! The operator's scale-out rebalance against real brokers. A 4-broker
//! `rivulet dev` cluster has a topic that lives on brokers 0-2 only, as if
//! broker 3 had just joined. The operator's own planner
//! (`reassign::spread`) and admin client (`WireAdmin`, the Kafka protocol)
//! then take turns, exactly as the KafkaCluster reconcile does, until the
//! planner finds nothing left to move. Afterwards every broker must hold
//! an even share of the replicas, every replica must be in sync, and every
//! record must still be there, at its offset.

use std::time::{Duration, Instant};

use kafka_protocol::records::Compression;
use rivulet_operator::controller::{
    kafka::{replicas_and_moves, KafkaAdmin, WireAdmin},
    reassign::{spread, Spread},
};
use rivulet_tests::{
    cluster::DevCluster,
    cluster_admin::create_assigned_topic,
    cluster_checks::{poll_until, try_client, wait_fully_in_sync},
    encode_batch, unique_topic, KafkaConn, Msg,
};

const RECORDS: usize = 200;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// acks=all produce of `RECORDS` values to `topic`-`partition` through its
/// leader; returns the values.
fn fill(cluster: &DevCluster, topic: &str, partition: i32, leader: i32) -> Vec<String> {
    let values: Vec<String> = (0..RECORDS).map(|i| format!("p{partition}-{i}")).collect();
    let msgs: Vec<Msg> = values.iter().map(|v| Msg::new(None, v)).collect();
    let batch = encode_batch(&msgs, Compression::None);
    // The leader may not have applied the metadata that makes it leader yet
    // (other brokers report it first): NOT_LEADER_OR_FOLLOWER writes
    // nothing, so asking again is safe.
    poll_until(
        Duration::from_secs(15),
        &format!("acks=all produce to {topic}-{partition} on broker {leader}"),
        || {
            let answer = try_client(cluster, leader)
                .and_then(|mut c| c.produce_batch(topic, partition, batch.clone(), -1))
                .map_err(|e| format!("{e:#}"))?;
            match answer.error_code {
                0 => Ok(()),
                NOT_LEADER_OR_FOLLOWER => Err("NOT_LEADER_OR_FOLLOWER".to_string()),
                code => panic!("produce to {topic}-{partition}: error code {code}"),
            }
        },
    );
    values
}

#[test]
fn scale_out_rebalance_spreads_replicas_onto_the_new_broker() {
    let cluster = DevCluster::builder(4).start();
    let topic = unique_topic("spread");
    // Six partitions of two replicas on brokers 0-2: four each, none on 3.
    let layout: [&[i32]; 6] = [&[0, 1], &[1, 2], &[2, 0], &[0, 1], &[1, 2], &[2, 0]];
    create_assigned_topic(
        &mut cluster.client(0),
        &topic,
        &layout,
        &[("min.insync.replicas", "1")],
    )
    .expect("create the topic on brokers 0-2");
    let (before, _) =
        wait_fully_in_sync(&cluster, &[0, 1, 2, 3], &topic, 6, Duration::from_secs(30));
    let written: Vec<Vec<String>> = before
        .iter()
        .map(|(p, info)| fill(&cluster, &topic, *p, info.leader))
        .collect();

    // The reconcile loop: plan, start, wait, until balanced.
    let bootstrap = cluster.bootstrap();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let mut batches = 0;
    runtime.block_on(async {
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the rebalance did not converge"
            );
            let (assignment, ongoing) = replicas_and_moves(&WireAdmin, &bootstrap)
                .await
                .expect("ask the brokers where the replicas are");
            match spread(&assignment, &ongoing, 4) {
                Spread::Balanced => break,
                Spread::Moves(moves) => {
                    batches += 1;
                    for result in WireAdmin
                        .reassign(&bootstrap, moves)
                        .await
                        .expect("AlterPartitionReassignments")
                    {
                        result.check().expect("the brokers accept every move");
                    }
                }
                Spread::Waiting(_) | Spread::Blocked(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    eprintln!(
        "balanced in {:.1}s, {batches} batch(es)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        batches >= 1,
        "broker 3 started empty: something had to move"
    );

    // Even: 12 replicas over 4 brokers, 3 each, all in sync everywhere.
    let (after, _) =
        wait_fully_in_sync(&cluster, &[0, 1, 2, 3], &topic, 6, Duration::from_secs(30));
    let mut load = [0usize; 4];
    for info in after.values() {
        assert_eq!(info.replicas.len(), 2, "replication factor kept: {info:?}");
        for r in &info.replicas {
            load[usize::try_from(*r).unwrap()] += 1;
        }
    }
    assert_eq!(load, [3, 3, 3, 3], "{after:?}");

    // Every record, at its offset, from each partition's leader.
    for (p, info) in &after {
        let values: Vec<String> = KafkaConn::connect(&cluster.kafka_addr(info.leader).to_string())
            .and_then(|mut c| c.fetch_all(&topic, *p, 0))
            .expect("fetch from the leader")
            .into_iter()
            .map(|r| String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned())
            .collect();
        assert_eq!(
            values,
            written[usize::try_from(*p).unwrap()],
            "{topic}-{p} after the move"
        );
    }
}
