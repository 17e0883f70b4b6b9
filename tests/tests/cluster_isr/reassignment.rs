//! Reassignments: a partition moved, shrunk and grown under a steady
//! idempotent producer, refused reassignments, and what happens to an
//! acks=all produce waiting on a broker that stops leading.

use std::{
    collections::BTreeSet,
    thread,
    time::{Duration, Instant},
};

use kafka_protocol::{records::Compression, ResponseError};
use rivulet_tests::{
    cluster::DevCluster,
    cluster_admin::{alter_reassignment, list_reassignment},
    cluster_checks::try_client,
    encode_batch, require_py, unique_topic, KafkaConn, Msg,
};

use crate::support::{
    assert_all_acked_present, assert_no_duplicates, assert_same_log, cluster, create_topic,
    elect_preferred, error_name, leader_of, partition_dir, partition_view, read_all, scratch,
    stored_log, wait_for, wait_partition, Stream,
};

/// Produces `msgs` with acks=all to the leader of `topic`-0 as broker
/// `via` names it, retrying while a new leader is still taking over
/// (NOT_LEADER_OR_FOLLOWER refuses before anything is written); any other
/// refusal fails the test.
fn produce_to_leader(cluster: &DevCluster, via: i32, topic: &str, msgs: &[Msg]) {
    let batch = encode_batch(msgs, Compression::None);
    wait_for(&format!("acks=all produce to {topic}-0"), || {
        let leader = partition_view(&mut try_client(cluster, via)?, topic)?.leader;
        let part = try_client(cluster, leader)?.produce_batch(topic, 0, batch.clone(), -1)?;
        Ok(match part.error_code {
            0 => Ok(()),
            code if code == ResponseError::NotLeaderOrFollower.code() => {
                Err(format!("broker {leader}: {}", error_name(code)))
            }
            code => panic!("acks=all produce to broker {leader}: {}", error_name(code)),
        })
    })
}

/// Sends a reassignment of `topic`-0 to `target` and waits until it is
/// done: the replica set is exactly `target`, all in sync, and no broker
/// left out of it keeps the partition's directory. Returns how long it took.
fn reassign(cluster: &DevCluster, via: i32, topic: &str, target: &[i32], all: &[i32]) -> Duration {
    let before = partition_view(&mut cluster.client(via), topic).expect("Metadata");
    let started = Instant::now();
    let (code, message) =
        alter_reassignment(&mut cluster.client(via), topic, 0, Some(target)).expect("reassign");
    assert_eq!(
        code,
        0,
        "reassigning {topic}-0 {:?} -> {target:?}: {} {message:?}",
        before.replicas,
        error_name(code)
    );
    let mut seen_ongoing = false;
    wait_for(
        &format!("reassignment of {topic}-0 to {target:?} finished"),
        || {
            let mut c = cluster.client(via);
            let ongoing = list_reassignment(&mut c, topic, 0)?;
            if let Some(o) = &ongoing {
                if !seen_ongoing {
                    eprintln!("in progress: {o:?}");
                }
                seen_ongoing = true;
                let adding: BTreeSet<i32> = target
                    .iter()
                    .copied()
                    .filter(|id| !before.replicas.contains(id))
                    .collect();
                let removing: BTreeSet<i32> = before
                    .replicas
                    .iter()
                    .copied()
                    .filter(|id| !target.contains(id))
                    .collect();
                anyhow::ensure!(
                    o.adding.iter().copied().collect::<BTreeSet<_>>() == adding
                        && o.removing.iter().copied().collect::<BTreeSet<_>>() == removing,
                    "ListPartitionReassignments reports {o:?} for {:?} -> {target:?}",
                    before.replicas
                );
            }
            let view = partition_view(&mut c, topic)?;
            let done = ongoing.is_none()
                && view.replicas == target
                && sorted(&view.isr) == sorted(target)
                && target.contains(&view.leader);
            Ok(if done { Ok(()) } else { Err((ongoing, view)) })
        },
    );
    let took = started.elapsed();
    let stored: Vec<(i32, Option<usize>)> = target
        .iter()
        .map(|&id| (id, stored_log(cluster, id, topic).map(|l| l.len())))
        .collect();
    eprintln!("bytes stored when the reassignment finished: {stored:?}");
    for id in all.iter().filter(|id| !target.contains(id)) {
        let dir = partition_dir(cluster, *id, topic);
        wait_for(&format!("broker {id} deletes {}", dir.display()), || {
            Ok(if dir.exists() { Err(()) } else { Ok(()) })
        });
    }
    eprintln!(
        "reassigned {topic}-0 {:?} -> {target:?} in {took:?} (seen in progress: {seen_ongoing})",
        before.replicas
    );
    took
}

fn sorted(ids: &[i32]) -> Vec<i32> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v
}

/// `follower.replication.throttled.rate` in the reassignment test, bytes/s.
const THROTTLE: u64 = 1 << 20;
/// Batches of preloaded records, so an added replica has about 3 MB to copy
/// (about 3 s at [`THROTTLE`]).
const PRELOAD_BATCHES: usize = 30;
/// Records per preloaded batch.
const PRELOAD_RECORDS: usize = 100;
/// Bytes per preloaded value.
const PRELOAD_VALUE: usize = 1000;

/// On four brokers, a partition moves from {0,1,2} to {1,2,3}, shrinks to
/// {1,2} and grows back to {1,2,3} while an idempotent acks=all producer
/// writes to it: each time the replica set ends exactly as asked, brokers
/// that left delete their copy, the added replica copies no faster than
/// `follower.replication.throttled.rate`, and no acknowledged record is
/// lost. Invalid and pointless requests are refused.
#[test]
fn reassignment_moves_and_resizes_a_partition_under_load() {
    require_py!("confluent_kafka");
    let started = Instant::now();
    let cluster = cluster(
        4,
        &[
            // Nothing is killed here: no need to detect a dead broker fast.
            ("broker.session.timeout.ms", "20000"),
            ("follower.replication.throttled.rate", &THROTTLE.to_string()),
            ("replica.fetch.max.bytes", "262144"),
        ],
    );
    let all = cluster.broker_ids();
    assert_eq!(all, [0, 1, 2, 3]);
    let topic = unique_topic("reassign");
    create_topic(&cluster, &topic, &[0, 1, 2]);

    // Refusals first, while nothing is moving.
    let mut admin = cluster.client(1);
    let (code, message) =
        alter_reassignment(&mut admin, &topic, 0, Some(&[1, 2, 99])).expect("reassign");
    assert_eq!(
        code,
        ResponseError::InvalidReplicaAssignment.code(),
        "reassigning to unknown broker 99: {} {message:?}",
        error_name(code)
    );
    let (code, message) = alter_reassignment(&mut admin, &topic, 0, None).expect("cancel");
    assert_eq!(
        code,
        ResponseError::NoReassignmentInProgress.code(),
        "cancelling with nothing in progress: {} {message:?}",
        error_name(code)
    );
    let view = partition_view(&mut admin, &topic).expect("Metadata");
    assert_eq!(view.replicas, [0, 1, 2], "after refused requests: {view:?}");
    assert_eq!(
        list_reassignment(&mut admin, &topic, 0).expect("list"),
        None
    );

    // Data for the added replica to copy under the throttle.
    let value = "x".repeat(PRELOAD_VALUE);
    for b in 0..PRELOAD_BATCHES {
        let msgs: Vec<Msg> = (0..PRELOAD_RECORDS)
            .map(|i| Msg::new(Some(&format!("pre-{b}-{i}")), &value))
            .collect();
        produce_to_leader(&cluster, 1, &topic, &msgs);
    }
    let preload_bytes = (PRELOAD_BATCHES * PRELOAD_RECORDS * PRELOAD_VALUE) as u64;

    let scratch = scratch();
    let stream = Stream::start(&cluster, scratch.path(), &topic);
    stream.wait_acked(100);

    let moved = reassign(&cluster, 1, &topic, &[1, 2, 3], &all);
    let resumed = stream.wait_more(100);
    eprintln!("100 more records acknowledged {resumed:?} after moving to {{1,2,3}}");
    reassign(&cluster, 1, &topic, &[1, 2], &all);
    let resumed = stream.wait_more(100);
    eprintln!("100 more records acknowledged {resumed:?} after shrinking to {{1,2}}");
    let regrown = reassign(&cluster, 1, &topic, &[1, 2, 3], &all);
    let resumed = stream.wait_more(100);
    eprintln!("100 more records acknowledged {resumed:?} after growing to {{1,2,3}}");

    let acked = stream.finish();
    let read = read_all(&cluster, 1, &topic);
    assert_all_acked_present(&read, &acked, "after three reassignments");
    assert_no_duplicates(&read, "s-");
    let preload_count = read.iter().filter(|(_, v)| *v == value).count();
    assert_eq!(
        preload_count,
        PRELOAD_BATCHES * PRELOAD_RECORDS,
        "preloaded records read back"
    );
    let leader = leader_of(&cluster, 1, &topic);
    for id in [1, 2, 3].into_iter().filter(|&id| id != leader) {
        assert_same_log(&cluster, leader, id, &topic);
    }
    // Checked last, so that a throttling problem hides no data problem.
    let floor = Duration::from_secs_f64(preload_bytes as f64 / THROTTLE as f64 / 2.0);
    for (what, took) in [("{0,1,2} -> {1,2,3}", moved), ("{1,2} -> {1,2,3}", regrown)] {
        assert!(
            took >= floor,
            "reassigning {what}: broker 3 copied over {preload_bytes} bytes and joined the ISR \
             in {took:?}, faster than half of follower.replication.throttled.rate={THROTTLE} \
             bytes/s allows ({floor:?}): the replica being added was not throttled"
        );
    }
    eprintln!(
        "{} streamed records acknowledged and read back; test took {:?}",
        acked.len(),
        started.elapsed()
    );
}

/// Sends one acks=all record to broker `id` on a thread and returns the
/// handle to its (error code, time to answer), after waiting until the
/// record is in broker `id`'s log: the produce is then waiting for followers.
fn produce_in_background(
    cluster: &DevCluster,
    id: i32,
    topic: &str,
) -> thread::JoinHandle<(i16, Duration)> {
    let before = stored_log(cluster, id, topic).map_or(0, |l| l.len());
    let addr = cluster.kafka_addr(id).to_string();
    let topic_owned = topic.to_string();
    let handle = thread::spawn(move || {
        let started = Instant::now();
        let part = KafkaConn::connect(&addr)
            .and_then(|mut c| {
                c.produce_batch(
                    &topic_owned,
                    0,
                    encode_batch(&[Msg::new(None, "waiting")], Compression::None),
                    -1,
                )
            })
            .unwrap_or_else(|e| panic!("acks=all produce to {addr}: {e:#}"));
        (part.error_code, started.elapsed())
    });
    wait_for(&format!("the record appended on broker {id}"), || {
        let now = stored_log(cluster, id, topic).map_or(0, |l| l.len());
        Ok(if now > before { Ok(()) } else { Err(now) })
    });
    handle
}

/// An acks=all produce waiting for a stopped follower is answered with
/// NOT_LEADER_OR_FOLLOWER once its broker stops leading: when a preferred
/// election demotes it, and when a reassignment moves the partition off it.
/// Held until its own timeout instead, it would stall idempotent producers
/// (which keep in-flight requests in order) for request.timeout.ms.
#[test]
fn a_waiting_acks_all_produce_is_answered_when_leadership_moves() {
    let started = Instant::now();
    let mut cluster = cluster(
        3,
        &[
            ("replica.lag.time.max.ms", "60000"),
            ("broker.session.timeout.ms", "60000"),
        ],
    );
    let demoted = unique_topic("isr-demoted");
    let moved_away = unique_topic("isr-away");
    create_topic(&cluster, &demoted, &[0, 1, 2]);
    create_topic(&cluster, &moved_away, &[0, 1, 2]);
    // Broker 1 is preferred from now on; broker 0 still leads.
    let (code, message) = alter_reassignment(&mut cluster.client(1), &demoted, 0, Some(&[1, 0, 2]))
        .expect("reassign");
    assert_eq!(code, 0, "{} {message:?}", error_name(code));
    wait_partition(&cluster, 1, &demoted, "replicas reordered", |v| {
        v.replicas == [1, 0, 2] && v.leader == 0
    });
    // Follower 2 stops fetching but stays in the ISR: nothing new commits.
    cluster.pause(2);

    let waiting = produce_in_background(&cluster, 0, &demoted);
    let code = elect_preferred(&cluster, 1, &demoted);
    assert_eq!(code, 0, "ElectLeaders: {}", error_name(code));
    let (demoted_code, took) = waiting.join().expect("producer thread");
    eprintln!(
        "broker 0 demoted by an election: the waiting produce was answered {} after {took:?}",
        error_name(demoted_code)
    );

    let waiting = produce_in_background(&cluster, 0, &moved_away);
    let (code, message) = alter_reassignment(&mut cluster.client(1), &moved_away, 0, Some(&[1, 2]))
        .expect("reassign");
    assert_eq!(code, 0, "{} {message:?}", error_name(code));
    let (away_code, took) = waiting.join().expect("producer thread");
    eprintln!(
        "broker 0 reassigned away: the waiting produce was answered {} after {took:?}",
        error_name(away_code)
    );
    cluster.resume(2);

    let not_leader = ResponseError::NotLeaderOrFollower.code();
    assert_eq!(
        demoted_code,
        not_leader,
        "a produce waiting on a leader demoted by an election was answered {}",
        error_name(demoted_code)
    );
    assert_eq!(
        away_code,
        not_leader,
        "a produce waiting on broker 0 when a reassignment moved the partition off it was \
         answered {} after {took:?} (its timeout is 10 s): the broker no longer hosts the \
         partition, so it should answer NOT_LEADER_OR_FOLLOWER at once",
        error_name(away_code)
    );
    eprintln!("test took {:?}", started.elapsed());
}
