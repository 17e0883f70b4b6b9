//! The leader lease in a three-broker `rivulet dev` cluster: a partition
//! leader whose quorum is gone (the two other brokers frozen with SIGSTOP,
//! while its clients still reach it) stops acting as leader after about
//! `broker.session.timeout.ms`: Produce answers NOT_LEADER_OR_FOLLOWER,
//! Metadata reports its partitions without a leader (LEADER_NOT_AVAILABLE)
//! and names no controller, and its lease gauge drops to 0. Once the others
//! resume, it serves again.
//!
//! A real network partition (clients on both sides, the majority electing
//! new leaders) needs network namespaces and is left to the fault harness;
//! freezing the majority cuts the quorum off the same way from the point
//! of view of the broker left alone.

use std::time::{Duration, Instant};

use kafka_protocol::records::Compression;
use rivulet_tests::{
    cluster::DevCluster,
    cluster_checks::{
        create_replicated_topic, metric_over, poll_until, topic_partitions, try_client,
        wait_agreed_controller, wait_fully_in_sync,
    },
    kafka::encode_batch,
    unique_topic, Msg,
};

const SESSION: Duration = Duration::from_millis(3000);
const HEARTBEAT: Duration = Duration::from_millis(500);
const BOUND: Duration = Duration::from_secs(30);
const LEASE_GAUGE: &str = "kafka_server_replicamanager_leaderlease";

/// Kafka's NOT_LEADER_OR_FOLLOWER and LEADER_NOT_AVAILABLE error codes.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const LEADER_NOT_AVAILABLE: i16 = 5;

/// The error code of producing one record to `partition` of `topic` on
/// broker `id` with `acks`.
fn produce_code(cluster: &DevCluster, id: i32, topic: &str, partition: i32, acks: i16) -> i16 {
    let batch = encode_batch(&[Msg::new(None, "lease")], Compression::None);
    cluster
        .client(id)
        .produce_batch(topic, partition, batch, acks)
        .map(|p| p.error_code)
        .unwrap_or_else(|e| panic!("Produce to broker {id}: {e:#}"))
}

/// Waits (briefly: it is refreshed several times a second) until broker
/// `id`'s lease gauge reads `value`.
fn wait_gauge(cluster: &DevCluster, id: i32, value: f64) {
    poll_until(
        Duration::from_secs(3),
        "the lease gauge",
        || match metric_over(cluster, &[id], LEASE_GAUGE) {
            Ok(v) if v == value => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn a_leader_without_its_quorum_stops_leading_and_resumes_when_it_returns() {
    let mut cluster = DevCluster::builder(3)
        .config(
            "broker.session.timeout.ms",
            &SESSION.as_millis().to_string(),
        )
        .config(
            "broker.heartbeat.interval.ms",
            &HEARTBEAT.as_millis().to_string(),
        )
        .config("replica.lag.time.max.ms", "4000")
        .config("auto.leader.rebalance.enable", "false")
        .start();
    let all = cluster.broker_ids();
    wait_agreed_controller(&cluster, &all, BOUND);
    let topic = unique_topic("lease");
    create_replicated_topic(
        &mut cluster.client(all[0]),
        &topic,
        3,
        3,
        &[("min.insync.replicas", "2")],
    )
    .expect("CreateTopics");
    let (parts, _) = wait_fully_in_sync(&cluster, &all, &topic, 3, BOUND);
    let (&partition, info) = parts.iter().next().expect("a partition");
    let alone = info.leader;
    assert_eq!(produce_code(&cluster, alone, &topic, partition, -1), 0);
    assert_eq!(metric_over(&cluster, &[alone], LEASE_GAUGE), Ok(1.0));

    let others: Vec<i32> = all.iter().copied().filter(|&id| id != alone).collect();
    for &id in &others {
        cluster.pause(id);
    }
    let frozen = Instant::now();
    eprintln!("froze brokers {others:?}; broker {alone} leads {topic}-{partition}");

    // acks=1 so that a record is acknowledged for as long as it still leads.
    let (_, took) = poll_until(
        BOUND,
        "Produce refused by the lone leader",
        || match produce_code(&cluster, alone, &topic, partition, 1) {
            NOT_LEADER_OR_FOLLOWER => Ok(()),
            code => Err(format!("error code {code}")),
        },
    );
    let lost = frozen.elapsed();
    eprintln!("broker {alone} refused to lead {lost:?} after the freeze ({took:?} polling)");
    assert!(
        lost + HEARTBEAT + Duration::from_millis(500) >= SESSION,
        "refused before a session timeout could have passed: {lost:?}"
    );
    assert!(
        lost <= SESSION + Duration::from_secs(2),
        "led for too long without its quorum: {lost:?}"
    );
    let mut conn = try_client(&cluster, alone).expect("the lone broker answers");
    let md = conn.metadata(Some(&[topic.as_str()])).expect("Metadata");
    assert_eq!(md.controller_id.0, -1, "no controller it can vouch for");
    let p = md.topics[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .expect("the partition");
    assert_eq!(
        (p.leader_id.0, p.error_code, p.leader_epoch),
        (-1, LEADER_NOT_AVAILABLE, info.leader_epoch),
        "its own leadership withheld, its epoch kept"
    );
    wait_gauge(&cluster, alone, 0.0);

    for &id in &others {
        cluster.resume(id);
    }
    let resumed = Instant::now();
    let (leader, _) = poll_until(BOUND, "a leader reported by the lone broker again", || {
        let parts = topic_partitions(&mut try_client(&cluster, alone)?, &topic)?;
        match parts.get(&partition) {
            Some(p) if p.leader >= 0 => Ok(p.leader),
            other => Err(anyhow::anyhow!("{other:?}")),
        }
    });
    wait_agreed_controller(&cluster, &all, BOUND);
    poll_until(
        BOUND,
        "an acks=all record accepted again",
        || match produce_code(&cluster, leader, &topic, partition, -1) {
            0 => Ok(()),
            code => Err(format!("broker {leader}: error code {code}")),
        },
    );
    wait_gauge(&cluster, alone, 1.0);
    eprintln!(
        "serving again {:?} after the resume, partition led by {leader}",
        resumed.elapsed()
    );
}
