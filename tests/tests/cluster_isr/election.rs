//! Leadership going back to the preferred replica after a failover: on
//! request (ElectLeaders) and by itself (auto.leader.rebalance.enable).

use std::{
    thread,
    time::{Duration, Instant},
};

use kafka_protocol::ResponseError;
use rivulet_tests::{cluster::DevCluster, require_py, unique_topic};

use crate::support::{
    assert_all_acked_present, cluster, controller, create_topic, delivered, elect_preferred,
    error_name, partition_view, read_all, wait_partition,
};

/// Kills the leader `preferred` of `topic`-0, waits for another replica to
/// take over, produces through the new leader, runs `while_down`, restarts
/// `preferred` and waits until it is back in the ISR.
fn fail_over_and_back(
    cluster: &mut DevCluster,
    preferred: i32,
    via: i32,
    topic: &str,
    while_down: impl FnOnce(&DevCluster),
) {
    cluster.kill9(preferred);
    let killed = Instant::now();
    let moved = wait_partition(cluster, via, topic, "a new leader", |v| {
        v.leader >= 0 && v.leader != preferred
    });
    eprintln!(
        "leadership moved to {} {:?} after killing {preferred}: {moved:?}",
        moved.leader,
        killed.elapsed()
    );
    delivered(cluster, topic, "all", 20, "failover");
    while_down(cluster);
    cluster.restart(preferred);
    let restarted = Instant::now();
    let back = wait_partition(
        cluster,
        via,
        topic,
        "the restarted preferred replica in sync",
        |v| v.isr.contains(&preferred),
    );
    eprintln!(
        "broker {preferred} rejoined the ISR {:?} after restarting: {back:?}",
        restarted.elapsed()
    );
}

/// Picks three replicas for a new topic whose preferred leader is not the
/// active controller (killing it is then about the partition only), and
/// a broker other than it to ask about the partition.
fn replicas_avoiding_controller(cluster: &DevCluster) -> (Vec<i32>, i32) {
    let controller = controller(cluster, 0);
    let mut ids = cluster.broker_ids();
    ids.sort_by_key(|&id| id == controller);
    let via = *ids.last().expect("brokers");
    eprintln!("controller {controller}; replicas {ids:?}");
    (ids, via)
}

/// ElectLeaders(PREFERRED) is refused with PREFERRED_LEADER_NOT_AVAILABLE
/// while the preferred leader is down; once it is restarted and back in
/// sync, it moves leadership back to it; asked again, the broker answers
/// ELECTION_NOT_NEEDED. No acknowledged record is lost.
#[test]
fn preferred_leader_election_moves_leadership_back() {
    require_py!("confluent_kafka");
    let started = Instant::now();
    let mut cluster = cluster(3, &[("auto.leader.rebalance.enable", "false")]);
    let (replicas, via) = replicas_avoiding_controller(&cluster);
    let preferred = replicas[0];
    let topic = unique_topic("elect");
    let view = create_topic(&cluster, &topic, &replicas);
    assert_eq!(
        view.leader, preferred,
        "a new topic is led by its first replica"
    );
    let before = delivered(&cluster, &topic, "all", 20, "before");

    fail_over_and_back(&mut cluster, preferred, via, &topic, |cluster| {
        let code = elect_preferred(cluster, via, &topic);
        assert_eq!(
            code,
            ResponseError::PreferredLeaderNotAvailable.code(),
            "ElectLeaders(PREFERRED) while broker {preferred} is down: {}",
            error_name(code)
        );
    });
    // Without auto rebalancing, leadership stays where it moved.
    thread::sleep(Duration::from_secs(2));
    let stayed = partition_view(&mut cluster.client(via), &topic).expect("Metadata");
    assert_ne!(
        stayed.leader, preferred,
        "leadership returned without an election although auto.leader.rebalance.enable=false"
    );

    let code = elect_preferred(&cluster, via, &topic);
    assert_eq!(
        code,
        0,
        "ElectLeaders(PREFERRED) with {stayed:?}: {}",
        error_name(code)
    );
    let elected = wait_partition(
        &cluster,
        via,
        &topic,
        "the preferred replica leading",
        |v| v.leader == preferred,
    );
    assert!(
        elected.leader_epoch > stayed.leader_epoch,
        "leader epoch did not grow: {stayed:?} -> {elected:?}"
    );
    let code = elect_preferred(&cluster, via, &topic);
    assert_eq!(
        code,
        ResponseError::ElectionNotNeeded.code(),
        "second ElectLeaders(PREFERRED): {}",
        error_name(code)
    );

    let after = delivered(&cluster, &topic, "all", 20, "after");
    let read = read_all(&cluster, via, &topic);
    assert_all_acked_present(&read, &before.acked_list(), "before");
    assert_all_acked_present(&read, &after.acked_list(), "after");
    eprintln!("test took {:?}", started.elapsed());
}

/// With auto.leader.rebalance.enable and a 2 s check interval, leadership
/// returns to the restarted preferred replica by itself.
#[test]
fn auto_leader_rebalance_returns_leadership_to_the_preferred_replica() {
    require_py!("confluent_kafka");
    let started = Instant::now();
    let mut cluster = cluster(
        3,
        &[
            ("auto.leader.rebalance.enable", "true"),
            ("leader.imbalance.check.interval.seconds", "2"),
        ],
    );
    let (replicas, via) = replicas_avoiding_controller(&cluster);
    let preferred = replicas[0];
    let topic = unique_topic("rebalance");
    let view = create_topic(&cluster, &topic, &replicas);
    assert_eq!(
        view.leader, preferred,
        "a new topic is led by its first replica"
    );

    fail_over_and_back(&mut cluster, preferred, via, &topic, |_| {});
    let rejoined = Instant::now();
    let view = wait_partition(
        &cluster,
        via,
        &topic,
        "leadership back on the preferred replica",
        |v| v.leader == preferred,
    );
    eprintln!(
        "leadership returned to {preferred} {:?} after it rejoined the ISR: {view:?}; test took {:?}",
        rejoined.elapsed(),
        started.elapsed()
    );
}
