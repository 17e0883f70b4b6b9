//! The operator's scale-out rebalance against real brokers. A 4-broker
//! `rivulet dev` cluster has a topic that lives on brokers 0-2 only, as if
//! broker 3 had just joined. The operator's own planner
//! (`reassign::spread`) and admin client (`WireAdmin`, the Kafka protocol)
//! then take turns, exactly as the KafkaCluster reconcile does, until the
//! planner finds nothing left to move. Afterwards every broker must hold
//! an even share of the replicas, every replica must be in sync, and every
//! record must still be there, at its offset. A second test drains the
//! replicas a stopped broker still holds onto the brokers that stay.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use kafka_protocol::records::Compression;
use rivulet_operator::controller::{
    kafka::{AdminTarget, KafkaAdmin, ReplicaAssignment, WireAdmin},
    reassign::{drain, spread, Drain, Spread},
};
use rivulet_tests::{
    cluster::DevCluster,
    cluster_admin::create_assigned_topic,
    cluster_checks::{poll_until, try_client, wait_fully_in_sync, PartitionInfo},
    encode_batch, unique_topic, KafkaConn, Msg,
};
use rivulet_wire::client::{OngoingReassignment, ReassignTarget};

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

/// A topic laid out as `layout` (replicas by partition index, two each,
/// min.insync.replicas 1) on a 4-broker cluster, in sync on every broker
/// and filled through each leader; returns its name and what was written.
fn filled_topic(
    cluster: &DevCluster,
    prefix: &str,
    layout: &[&[i32]],
) -> (String, Vec<Vec<String>>) {
    let topic = unique_topic(prefix);
    create_assigned_topic(
        &mut cluster.client(0),
        &topic,
        layout,
        &[("min.insync.replicas", "1")],
    )
    .expect("create the topic");
    let (before, _) = wait_fully_in_sync(
        cluster,
        &[0, 1, 2, 3],
        &topic,
        layout.len(),
        Duration::from_secs(30),
    );
    let written = before
        .iter()
        .map(|(p, info)| fill(cluster, &topic, *p, info.leader))
        .collect();
    (topic, written)
}

/// The reconcile loop: ask the brokers where the replicas are, `plan` the
/// next moves (`None`: done, `Some(empty)`: wait), start them, and again,
/// until the plan is done. Returns how many batches were started.
fn drive(
    bootstrap: &str,
    what: &str,
    plan: impl Fn(&ReplicaAssignment, &[OngoingReassignment]) -> Option<Vec<ReassignTarget>>,
) -> usize {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let mut batches = 0;
    let target = AdminTarget::plaintext(bootstrap);
    runtime.block_on(async {
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{what} did not finish"
            );
            // As the operator reads them: the moves first, so one that
            // finishes in between never looks like a widened replica list.
            let ongoing = WireAdmin
                .reassignments_in_progress(&target)
                .await
                .expect("ask the brokers which moves are under way");
            let assignment = WireAdmin
                .replica_assignment(&target)
                .await
                .expect("ask the brokers where the replicas are");
            let Some(moves) = plan(&assignment, &ongoing) else {
                break;
            };
            if !moves.is_empty() {
                batches += 1;
                for result in WireAdmin
                    .reassign(&target, moves)
                    .await
                    .expect("AlterPartitionReassignments")
                {
                    result.check().expect("the brokers accept every move");
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    eprintln!(
        "{what}: done in {:.1}s, {batches} batch(es)",
        started.elapsed().as_secs_f64()
    );
    batches
}

#[test]
fn scale_out_rebalance_spreads_replicas_onto_the_new_broker() {
    let cluster = DevCluster::builder(4).start();
    // Six partitions of two replicas on brokers 0-2: four each, none on 3.
    let layout: [&[i32]; 6] = [&[0, 1], &[1, 2], &[2, 0], &[0, 1], &[1, 2], &[2, 0]];
    let (topic, written) = filled_topic(&cluster, "spread", &layout);

    let batches = drive(
        &cluster.bootstrap(),
        "the rebalance",
        |assignment, ongoing| match spread(assignment, ongoing, 4) {
            Spread::Balanced => None,
            Spread::Moves(moves) => Some(moves),
            Spread::Waiting(_) | Spread::Blocked(_) => Some(Vec::new()),
        },
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
    assert_every_record_at_its_offset(&cluster, &topic, &after, &written);
}

/// Every record written to `topic` (by partition index), at its offset,
/// read from each partition's leader in `partitions`.
fn assert_every_record_at_its_offset(
    cluster: &DevCluster,
    topic: &str,
    partitions: &BTreeMap<i32, PartitionInfo>,
    written: &[Vec<String>],
) {
    for (p, info) in partitions {
        let values: Vec<String> = KafkaConn::connect(&cluster.kafka_addr(info.leader).to_string())
            .and_then(|mut c| c.fetch_all(topic, *p, 0))
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

/// The other half of a scale-in: broker 3 has stopped (the StatefulSet
/// shrank) while partitions still name it, as when a topic is created
/// during the shrink. The operator's drain planner (`reassign::drain`) and
/// admin client move those replicas to the brokers that stay, with the
/// stopped broker unable to help: the new replicas copy from the leaders.
#[test]
fn replicas_on_a_stopped_broker_move_to_the_brokers_that_stay() {
    let mut cluster = DevCluster::builder(4).start();
    let layout: [&[i32]; 3] = [&[3, 0], &[1, 3], &[2, 0]];
    let (topic, written) = filled_topic(&cluster, "orphan", &layout);
    cluster.terminate(3);

    // The brokers that stay, as the operator's bootstrap Service would
    // route: the stopped one is not asked.
    let bootstrap = [0, 1, 2]
        .map(|id| cluster.kafka_addr(id).to_string())
        .join(",");
    let batches = drive(&bootstrap, "the drain", |assignment, ongoing| {
        match drain(assignment, ongoing, 3) {
            Drain::Drained => None,
            Drain::Refused(topics) => panic!("nothing here is too wide: {topics:?}"),
            Drain::Draining { moves, .. } => Some(moves),
        }
    });
    assert!(batches >= 1, "two partitions named broker 3");

    let (after, _) = wait_fully_in_sync(&cluster, &[0, 1, 2], &topic, 3, Duration::from_secs(30));
    for info in after.values() {
        assert_eq!(info.replicas.len(), 2, "replication factor kept: {info:?}");
        assert!(!info.replicas.contains(&3), "still on broker 3: {info:?}");
    }
    assert_every_record_at_its_offset(&cluster, &topic, &after, &written);
}
