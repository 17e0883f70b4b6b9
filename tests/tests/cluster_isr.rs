//! Replication in a `rivulet dev` cluster, seen from outside: followers
//! leave and rejoin the ISR and acks=all refuses what it cannot replicate
//! (here), reassignments move replicas without losing acknowledged records
//! ([`reassignment`]), and leadership goes back to the preferred replica
//! ([`election`]).
//!
//! Data flows through a real client (confluent-kafka, driven by
//! `tests/py/cluster_isr_produce.py`); what the controller decided is read
//! with raw requests ([`rivulet_tests::cluster_checks`],
//! [`rivulet_tests::cluster_admin`]), and what each broker stored straight
//! from its data directory. Every wait is a bounded poll and measured
//! durations are printed; only wrong behaviour fails a test.

// A test crate's root resolves modules beside it, so the path is explicit.
#[path = "cluster_isr/election.rs"]
mod election;
#[path = "cluster_isr/reassignment.rs"]
mod reassignment;
#[path = "cluster_isr/support.rs"]
mod support;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use kafka_protocol::{records::Compression, ResponseError};
use rivulet_tests::{
    cluster::DevCluster, cluster_checks::metric_sum, encode_batch, require_py, unique_topic, Msg,
};
use serde_json::Value;

use crate::support::{
    assert_all_acked_present, assert_no_duplicates, assert_same_log, burst, cluster, controller,
    create_topic, delivered, error_name, read_all, scratch, wait_metric_above, wait_partition,
    with_prefix, Burst, Stream,
};

const ISR_SHRINKS: &str = "kafka_server_replicamanager_isrshrinks_total";
const ISR_EXPANDS: &str = "kafka_server_replicamanager_isrexpands_total";

/// A follower that stops fetching (SIGSTOP, heartbeats included, but with a
/// session timeout far above `replica.lag.time.max.ms`) leaves the ISR for
/// lagging, not for being fenced; after SIGCONT it catches up, rejoins the
/// ISR, and stores exactly what the leader stores.
#[test]
fn a_paused_follower_leaves_the_isr_and_rejoins_after_catching_up() {
    require_py!("confluent_kafka");
    let started = Instant::now();
    let mut cluster = cluster(
        3,
        &[
            ("broker.session.timeout.ms", "60000"),
            ("replica.lag.time.max.ms", "3000"),
        ],
    );
    let topic = unique_topic("isr-pause");
    let view = create_topic(&cluster, &topic, &[0, 1, 2]);
    let leader = view.leader;
    let controller = controller(&cluster, leader);
    // Not the active controller: this test is about replication, not about
    // the quorum electing a new controller.
    let follower = *view
        .replicas
        .iter()
        .find(|&&id| id != leader && id != controller)
        .expect("a follower that is not the controller");
    eprintln!("leader {leader}, controller {controller}, pausing follower {follower}");

    let scratch = scratch();
    let stream = Stream::start(&cluster, scratch.path(), &topic);
    stream.wait_acked(200);
    let shrinks = metric_sum(&cluster.metrics_url(leader), ISR_SHRINKS).expect("scrape the leader");
    let expands = metric_sum(&cluster.metrics_url(leader), ISR_EXPANDS).expect("scrape the leader");

    cluster.pause(follower);
    let paused = Instant::now();
    let shrunk = wait_partition(
        &cluster,
        leader,
        &topic,
        "the paused follower out of the ISR",
        |v| !v.isr.contains(&follower),
    );
    let out_after = paused.elapsed();
    eprintln!("broker {follower} left the ISR {out_after:?} after SIGSTOP: {shrunk:?}");
    assert_eq!(shrunk.leader, leader, "leadership moved: {shrunk:?}");
    let brokers: BTreeSet<i32> = cluster
        .client(leader)
        .metadata(Some(&[]))
        .expect("Metadata")
        .brokers
        .iter()
        .map(|b| b.node_id.0)
        .collect();
    assert!(
        brokers.contains(&follower),
        "broker {follower} is no longer listed ({brokers:?}): it was fenced, so the ISR \
         shrink after {out_after:?} did not come from replica.lag.time.max.ms"
    );
    let log = cluster.log(leader);
    let line = log.lines().find(|l| l.contains("shrinking ISR"));
    assert!(
        line.is_some(),
        "the leader's log has no `shrinking ISR` line"
    );
    eprintln!("leader: {}", line.unwrap_or_default());
    let shrinks_now = wait_metric_above(&cluster, leader, ISR_SHRINKS, shrinks);
    eprintln!("{ISR_SHRINKS} on broker {leader}: {shrinks} -> {shrinks_now}");

    // Two in-sync replicas still satisfy min.insync.replicas=2.
    stream.wait_more(200);
    cluster.resume(follower);
    let resumed = Instant::now();
    let back = wait_partition(
        &cluster,
        leader,
        &topic,
        "the resumed follower back in the ISR",
        |v| v.isr.contains(&follower),
    );
    eprintln!(
        "broker {follower} rejoined the ISR {:?} after SIGCONT: {back:?}",
        resumed.elapsed()
    );
    let expands_now = wait_metric_above(&cluster, leader, ISR_EXPANDS, expands);
    eprintln!("{ISR_EXPANDS} on broker {leader}: {expands} -> {expands_now}");
    stream.wait_more(100);

    let acked = stream.finish();
    let read = read_all(&cluster, leader, &topic);
    assert_all_acked_present(&read, &acked, "after the follower caught up");
    assert_no_duplicates(&read, "s-");
    for id in view.replicas.iter().filter(|&&id| id != leader) {
        assert_same_log(&cluster, leader, *id, &topic);
    }
    eprintln!(
        "{} records acknowledged and read back; test took {:?}",
        acked.len(),
        started.elapsed()
    );
}

/// Produces one record with acks=all straight to broker `id` and returns
/// the error code (0: acknowledged) and how long the answer took.
fn raw_produce(
    cluster: &DevCluster,
    id: i32,
    topic: &str,
    value: &str,
    acks: i16,
) -> (i16, Duration) {
    let started = Instant::now();
    let part = cluster
        .client(id)
        .produce_batch(
            topic,
            0,
            encode_batch(&[Msg::new(None, value)], Compression::None),
            acks,
        )
        .unwrap_or_else(|e| panic!("produce {value} to broker {id}: {e:#}"));
    (part.error_code, started.elapsed())
}

/// Restarts the brokers `down`, waits until all three replicas of `topic`
/// are in sync again, and returns an acks=all produce that must succeed.
fn bring_back(cluster: &mut DevCluster, leader: i32, topic: &str, down: &[i32]) -> Burst {
    for &id in down {
        cluster.restart(id);
    }
    let restarted = Instant::now();
    let back = wait_partition(
        cluster,
        leader,
        topic,
        "all three replicas in sync again",
        |v| v.isr.len() == 3,
    );
    eprintln!(
        "ISR whole again {:?} after restarting {down:?}: {back:?}",
        restarted.elapsed()
    );
    delivered(cluster, topic, "all", 20, "after")
}

/// Two of three brokers killed, the controller quorum with them: acks=all
/// cannot be satisfied and is never acknowledged, records committed before
/// stay readable from the surviving leader while it holds its leader lease
/// (a session timeout; after that it leads nothing until the quorum is
/// back), nothing written in the outage becomes visible during it, and once
/// the two are back acks=all works and no acknowledged record is missing.
#[test]
fn acks_all_is_not_acknowledged_with_two_of_three_brokers_down() {
    require_py!("confluent_kafka");
    let started = Instant::now();
    let mut cluster = cluster(3, &[]);
    let topic = unique_topic("isr-down");
    let view = create_topic(&cluster, &topic, &[0, 1, 2]);
    let leader = view.leader;
    let followers: Vec<i32> = view
        .replicas
        .iter()
        .copied()
        .filter(|&id| id != leader)
        .collect();

    let before = delivered(&cluster, &topic, "all", 50, "before");
    for &id in &followers {
        cluster.kill9(id);
    }
    eprintln!("killed brokers {followers:?}; broker {leader} leads alone");

    // Within the leader lease (read first: the lease runs out a session
    // timeout after the quorum went away) the leader serves what was
    // committed, and nothing more.
    let (code_one, _) = raw_produce(&cluster, leader, &topic, "outage-one", 1);
    eprintln!("raw acks=1 produce: {}", error_name(code_one));
    let read = read_all(&cluster, leader, &topic);
    assert_all_acked_present(&read, &before.acked_list(), "during the outage");
    let visible = with_prefix(&read, "outage");
    assert!(
        visible.is_empty(),
        "records written during the outage are readable before they were replicated: {visible:?}"
    );

    let (code, took) = raw_produce(&cluster, leader, &topic, "outage-raw", -1);
    eprintln!("raw acks=all produce: {} after {took:?}", error_name(code));
    assert!(
        code == ResponseError::NotEnoughReplicas.code()
            || code == ResponseError::RequestTimedOut.code()
            || code == ResponseError::NotLeaderOrFollower.code(),
        "acks=all with two of three replicas down answered {}, expected NOT_ENOUGH_REPLICAS, \
         REQUEST_TIMED_OUT or (lease run out) NOT_LEADER_OR_FOLLOWER",
        error_name(code)
    );
    let outage = burst(&cluster, &topic, "all", 20, "outage-all", 6_000);
    assert!(
        outage.acked.is_empty(),
        "acks=all records were acknowledged with two of three replicas down: {:?}",
        outage.acked
    );

    let after = bring_back(&mut cluster, leader, &topic, &followers);
    let read = read_all(&cluster, leader, &topic);
    assert_all_acked_present(&read, &before.acked_list(), "after recovery");
    assert_all_acked_present(&read, &after.acked_list(), "after recovery");
    // Kafka semantics: a record whose acks=all produce timed out may still
    // be committed once the replicas return; only its acknowledgement was
    // withheld. Print what became of them.
    let late = with_prefix(&read, "outage");
    eprintln!(
        "{} records produced during the outage are in the log after recovery: {late:?}",
        late.len()
    );
    for &id in &followers {
        assert_same_log(&cluster, leader, id, &topic);
    }
    eprintln!("test took {:?}", started.elapsed());
}

/// Broker ids `rivulet dev` made controller voters (from `cluster.json`).
fn voters(cluster: &DevCluster) -> BTreeSet<i32> {
    let path = cluster.data_dir().join("cluster.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("cluster.json"))
        .expect("cluster.json is JSON");
    json["brokers"]
        .as_array()
        .expect("brokers")
        .iter()
        .filter(|b| b["voter"].as_bool() == Some(true))
        .map(|b| i32::try_from(b["id"].as_i64().expect("id")).expect("id fits i32"))
        .collect()
}

/// With the controller quorum intact, losing two of three replicas shrinks
/// the ISR below min.insync.replicas: acks=all is then refused up front
/// with NOT_ENOUGH_REPLICAS and the refused records are never written, while
/// acks=1 is accepted; when the replicas return, acks=all works again.
#[test]
fn acks_all_is_refused_below_min_insync_replicas() {
    require_py!("confluent_kafka");
    let started = Instant::now();
    let mut cluster = cluster(5, &[]);
    let voters = voters(&cluster);
    let others: Vec<i32> = cluster
        .broker_ids()
        .into_iter()
        .filter(|id| !voters.contains(id))
        .collect();
    assert!(
        voters.len() == 3 && others.len() == 2,
        "expected 3 voters among 5 brokers: {voters:?}"
    );
    let leader = *voters.iter().next().expect("a voter");
    let topic = unique_topic("isr-min");
    let view = create_topic(&cluster, &topic, &[leader, others[0], others[1]]);
    assert_eq!(
        view.leader, leader,
        "the preferred replica leads a new topic"
    );

    let before = delivered(&cluster, &topic, "all", 50, "before");
    for &id in &others {
        cluster.kill9(id);
    }
    let killed = Instant::now();
    let shrunk = wait_partition(
        &cluster,
        leader,
        &topic,
        "the ISR down to the leader",
        |v| v.isr == [leader],
    );
    eprintln!(
        "ISR shrank {:?} after killing {others:?}: {shrunk:?}",
        killed.elapsed()
    );
    assert_eq!(shrunk.leader, leader);

    let (code, took) = raw_produce(&cluster, leader, &topic, "refused-raw", -1);
    eprintln!("raw acks=all produce: {} after {took:?}", error_name(code));
    assert_eq!(
        code,
        ResponseError::NotEnoughReplicas.code(),
        "acks=all with ISR [{leader}] and min.insync.replicas=2 answered {}",
        error_name(code)
    );
    let refused = burst(&cluster, &topic, "all", 20, "refused-all", 5_000);
    assert!(
        refused.acked.is_empty(),
        "acks=all records acknowledged below min.insync.replicas: {:?}",
        refused.acked
    );
    // The leader is alive, so acks=1 is accepted.
    let one = delivered(&cluster, &topic, "1", 10, "one");
    let read = read_all(&cluster, leader, &topic);
    assert_all_acked_present(&read, &before.acked_list(), "with the ISR shrunk");
    assert_all_acked_present(&read, &one.acked_list(), "with the ISR shrunk");

    let after = bring_back(&mut cluster, leader, &topic, &others);
    let read = read_all(&cluster, leader, &topic);
    for (what, acked) in [("before", &before), ("acks=1", &one), ("after", &after)] {
        assert_all_acked_present(&read, &acked.acked_list(), what);
    }
    let written = with_prefix(&read, "refused");
    assert!(
        written.is_empty(),
        "records refused with NOT_ENOUGH_REPLICAS were written after all: {written:?}"
    );
    for &id in &others {
        assert_same_log(&cluster, leader, id, &topic);
    }
    eprintln!("test took {:?}", started.elapsed());
}
