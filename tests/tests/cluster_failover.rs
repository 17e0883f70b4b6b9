//! Failover in a three-broker `rivulet dev` cluster, driven by confluent-kafka
//! and kcat: a partition leader killed with `kill -9` under an idempotent
//! acks=all producer (no acknowledged record lost, duplicated or moved, and
//! the broker catches up when it comes back), the active controller killed (a
//! new one is elected and serves topic creation), a leader stopped with
//! SIGTERM (controlled shutdown hands its leaderships over before it exits,
//! without failing a delivery), and a group coordinator killed (the group's
//! next member resumes exactly at the committed offsets, and a live member
//! goes on committing through the new coordinator). Two more pin down what
//! leadership moves must not do: a new leader reporting a lower high
//! watermark than its predecessor acknowledged, and a stopping broker
//! holding acks=all requests until its drain timeout.
//!
//! Brokers are fenced 3 s after their heartbeats stop, so failovers take
//! seconds; every wait below is bounded well above that, and the measured
//! times are printed.

#[path = "cluster_failover/clients.rs"]
mod clients;
#[path = "cluster_failover/groups.rs"]
mod groups;
#[path = "cluster_failover/leaders.rs"]
mod leaders;

use std::time::{Duration, Instant};

use clients::{producer_leaders, verify, StreamProducer};
use kafka_protocol::records::Compression;
use leaders::{leaders, led_by, sigterm_leader, start_sigterm_run, LeaderLoss};
use rivulet_tests::{
    cluster::DevCluster,
    cluster_checks::{
        controller_and_brokers, create_replicated_topic, elect_preferred_leaders, metric_over,
        partitions_from, poll_until, try_client, wait_agreed_controller, wait_fully_in_sync,
    },
    groups::wait_json_line,
    kcat, require_py, require_tools, run_cmd, unique_topic, Msg, LATEST,
};

/// Short cluster timeouts, so failovers happen within seconds.
const CONFIGS: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "4000"),
    ("offsets.topic.num.partitions", "3"),
    ("group.initial.rebalance.delay.ms", "0"),
    // Leaders move only when a test moves them.
    ("auto.leader.rebalance.enable", "false"),
];

/// Bound on anything that takes a session timeout or two (fencing, a new
/// leader, a new controller, catching up): far above what a healthy cluster
/// needs, so only a broken one reaches it.
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

/// Configs of every topic created here.
const TOPIC_CONFIGS: &[(&str, &str)] = &[("min.insync.replicas", "2")];

/// Partitions of the topics the leader tests produce to.
const PARTITIONS: i32 = 6;

const UNDER_REPLICATED: &str = "kafka_server_replicamanager_underreplicatedpartitions";
const ACTIVE_CONTROLLER: &str = "kafka_controller_kafkacontroller_activecontrollercount";

/// Kafka's ELECTION_NOT_NEEDED error code.
const ELECTION_NOT_NEEDED: i16 = 84;

/// A three-broker cluster with [`CONFIGS`], except where `overrides` say
/// otherwise.
fn start_cluster(overrides: &[(&str, &str)]) -> DevCluster {
    let mut builder = DevCluster::builder(3);
    for (key, value) in CONFIGS {
        if !overrides.iter().any(|(k, _)| k == key) {
            builder = builder.config(key, value);
        }
    }
    for (key, value) in overrides {
        builder = builder.config(key, value);
    }
    builder.start()
}

#[test]
fn acked_writes_survive_a_leader_kill9_and_the_broker_rejoins() {
    require_py!("confluent_kafka");
    let mut cluster = start_cluster(&[]);
    let all = cluster.broker_ids();
    let bootstrap = cluster.bootstrap();
    let mut run = LeaderLoss::start(&cluster, "failover-kill");
    let (victim, topic) = (run.victim, run.topic.clone());

    cluster.kill9(victim);
    let killed = Instant::now();
    // The old leader may still have answered a few in-flight requests;
    // wait_beyond asks for more than that.
    let last_before = run.producer.last_offsets();
    let (after, took) = run.wait_moved(&cluster, FAILOVER_BOUND);
    eprintln!("new leaders {:?} {took:?} after the kill", leaders(&after));
    for p in &run.victim_parts {
        let (was, now) = (&run.before[p], &after[p]);
        assert!(
            now.leader_epoch > was.leader_epoch,
            "partition {p}: a new leader without a new epoch: {was:?} then {now:?}"
        );
        assert!(
            !now.isr.contains(&victim),
            "partition {p}: the dead broker stayed in the ISR: {now:?}"
        );
    }
    let (urp, _) = poll_until(
        FAILOVER_BOUND,
        "under-replicated partitions reported",
        || {
            let sum = metric_over(&cluster, &run.survivors, UNDER_REPLICATED)?;
            if sum > 0.0 {
                Ok(sum)
            } else {
                Err(format!("sum {sum}"))
            }
        },
    );
    eprintln!("under-replicated partitions while broker {victim} is down: {urp}");
    run.producer
        .wait_beyond(&run.victim_parts, &last_before, 50);
    eprintln!(
        "the producer carried on {:?} after the kill",
        killed.elapsed()
    );
    let first_run = run.producer.finish();
    for p in &run.victim_parts {
        let seen = producer_leaders(&first_run, *p);
        let moved = seen
            .iter()
            .position(|&l| l == victim)
            .is_some_and(|i| seen[i + 1..].contains(&after[p].leader));
        assert!(
            moved,
            "the producer never saw partition {p} move from {victim} to {}: leaders {seen:?}",
            after[p].leader
        );
    }
    verify(&bootstrap, &topic, PARTITIONS, &[&run.producer]);

    // The killed broker comes back, catches up, and rejoins every ISR.
    cluster.restart(victim);
    let (_, took) = wait_fully_in_sync(&cluster, &all, &topic, PARTITIONS as usize, FAILOVER_BOUND);
    eprintln!("broker {victim} back in every ISR {took:?} after its restart");
    let (_, took) = poll_until(FAILOVER_BOUND, "no under-replicated partitions", || {
        let sum = metric_over(&cluster, &all, UNDER_REPLICATED)?;
        if sum == 0.0 {
            Ok(())
        } else {
            Err(format!("sum {sum}"))
        }
    });
    eprintln!("under-replicated partitions back to 0 after {took:?}");

    // More records with the broker back, then its preferred leaderships
    // back to it: reading everything from it shows it holds every record,
    // those written while it was down included.
    let next_seq = first_run["next_seq"].as_u64().expect("next_seq");
    let mut second =
        StreamProducer::start(&bootstrap, &topic, next_seq, run.dir.path(), "producer2");
    second.wait_everywhere(PARTITIONS, 200);
    second.finish();
    let all_parts: Vec<i32> = (0..PARTITIONS).collect();
    let results = elect_preferred_leaders(&mut cluster.client(victim), &topic, &all_parts)
        .expect("ElectLeaders");
    assert!(
        results
            .values()
            .all(|&c| c == 0 || c == ELECTION_NOT_NEEDED),
        "preferred leader election: {results:?}"
    );
    let (preferred, took) = poll_until(FAILOVER_BOUND, "preferred leaders", || {
        let parts = partitions_from(&cluster, &all, &topic)?;
        if parts
            .values()
            .all(|p| Some(&p.leader) == p.replicas.first())
        {
            Ok(parts)
        } else {
            Err(format!("{parts:?}"))
        }
    });
    let back = led_by(&preferred, victim);
    eprintln!("broker {victim} leads {back:?} again {took:?} after the election");
    assert!(
        !back.is_empty(),
        "broker {victim} is no preferred leader: {preferred:?}"
    );
    // A new leader's high watermark lags for a moment (a test of its own
    // below); this one is about the data, so it reads once they are back.
    let ends = second.last_offsets();
    let (_, took) = poll_until(
        FAILOVER_BOUND,
        "high watermarks at the acknowledged ends",
        || {
            for (p, last) in &ends {
                let leader = preferred[p].leader;
                let latest = try_client(&cluster, leader)
                    .and_then(|mut c| c.list_offset(&topic, *p, LATEST))
                    .map_err(|e| format!("partition {p} at broker {leader}: {e:#}"))?;
                if latest <= *last {
                    return Err(format!(
                        "partition {p}: latest {latest}, acknowledged {last}"
                    ));
                }
            }
            Ok(())
        },
    );
    eprintln!("high watermarks at the acknowledged ends {took:?} after the election");
    verify(&bootstrap, &topic, PARTITIONS, &[&run.producer, &second]);
}

/// The active-controller gauge of each of `ids`.
fn active_controller_by_broker(cluster: &DevCluster, ids: &[i32]) -> Result<Vec<f64>, String> {
    ids.iter()
        .map(|&id| metric_over(cluster, &[id], ACTIVE_CONTROLLER))
        .collect()
}

#[test]
fn a_new_controller_takes_over_after_a_controller_kill9() {
    require_tools!("kcat");
    let mut cluster = start_cluster(&[]);
    let all = cluster.broker_ids();
    let (old, _) = wait_agreed_controller(&cluster, &all, FAILOVER_BOUND);
    let only = |ids: &[i32], controller: i32| -> Vec<f64> {
        ids.iter()
            .map(|&id| if id == controller { 1.0 } else { 0.0 })
            .collect()
    };
    poll_until(
        FAILOVER_BOUND,
        "the controller metric on the controller only",
        || {
            let values = active_controller_by_broker(&cluster, &all)?;
            if values == only(&all, old) {
                Ok(())
            } else {
                Err(format!("{ACTIVE_CONTROLLER} by broker: {values:?}"))
            }
        },
    );
    let survivors: Vec<i32> = all.iter().copied().filter(|&id| id != old).collect();
    eprintln!("killing controller {old}");
    cluster.kill9(old);
    let killed = Instant::now();

    let (new, took) = wait_agreed_controller(&cluster, &survivors, FAILOVER_BOUND);
    eprintln!("controller {new} elected {took:?} after the kill");
    assert_ne!(new, old);
    poll_until(
        FAILOVER_BOUND,
        "the new controller's metric, and the dead one fenced",
        || {
            let values = active_controller_by_broker(&cluster, &survivors)?;
            let mut live = Vec::new();
            for &id in &survivors {
                let (_, brokers) = try_client(&cluster, id)
                    .and_then(|mut c| controller_and_brokers(&mut c))
                    .map_err(|e| format!("{e:#}"))?;
                live.push(brokers);
            }
            if values == only(&survivors, new) && live.iter().all(|b| *b == survivors) {
                Ok(())
            } else {
                Err(format!(
                    "{ACTIVE_CONTROLLER} {values:?}, live brokers {live:?}"
                ))
            }
        },
    );
    eprintln!(
        "broker {old} fenced and the metric moved {:?} after the kill",
        killed.elapsed()
    );

    // Topic creation goes through the new controller, asked via the other
    // survivor.
    let via = survivors
        .iter()
        .copied()
        .find(|&id| id != new)
        .expect("two survivors");
    let topic = unique_topic("failover-ctrl");
    create_replicated_topic(&mut cluster.client(via), &topic, 3, 2, TOPIC_CONFIGS)
        .unwrap_or_else(|e| panic!("CreateTopics via broker {via}: {e:#}"));
    let (parts, took) = wait_fully_in_sync(&cluster, &survivors, &topic, 3, FAILOVER_BOUND);
    eprintln!(
        "new topic led by {:?} {took:?} after its creation",
        leaders(&parts)
    );
    for (p, info) in &parts {
        assert!(
            !info.replicas.contains(&old),
            "partition {p} placed on the dead broker: {info:?}"
        );
    }

    let bootstrap = survivors
        .iter()
        .map(|&id| cluster.kafka_addr(id).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let lines: String = (0..60).map(|i| format!("k{i}:m{i}\n")).collect();
    run_cmd(
        kcat(&bootstrap).args(["-P", "-t", &topic, "-K", ":", "-X", "acks=all"]),
        Some(lines.as_bytes()),
        Duration::from_secs(30),
    )
    .assert_success("kcat produce");
    let out = run_cmd(
        kcat(&bootstrap).args(["-C", "-t", &topic, "-o", "beginning", "-e", "-f", "%s\\n"]),
        None,
        Duration::from_secs(30),
    );
    out.assert_success("kcat consume");
    let mut read: Vec<&str> = out.stdout.lines().collect();
    read.sort_unstable();
    let mut expected: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    expected.sort_unstable();
    assert_eq!(read, expected, "records read back");

    // The old controller comes back as a member of the quorum.
    cluster.restart(old);
    let (agreed, took) = wait_agreed_controller(&cluster, &all, FAILOVER_BOUND);
    eprintln!("after broker {old}'s restart all agree on controller {agreed} ({took:?})");
    let (_, brokers) = controller_and_brokers(&mut cluster.client(old)).expect("Metadata");
    assert_eq!(brokers, all, "live brokers according to broker {old}");
}

/// A new leader must not answer ListOffsets(LATEST) below what its
/// predecessor acknowledged with acks=all and reported: a reader would miss
/// committed records. (Kafka answers OFFSET_NOT_AVAILABLE until the new
/// leader's high watermark is known again.) The preferred leader takes its
/// leadership back right after the last acknowledgement, as in a preferred
/// leader election after a restart, and every answer it gives is checked.
#[test]
fn a_new_leader_never_reports_a_lower_high_watermark() {
    let mut cluster = start_cluster(&[]);
    let all = cluster.broker_ids();
    let topic = unique_topic("failover-hw");
    create_replicated_topic(&mut cluster.client(0), &topic, 3, 3, TOPIC_CONFIGS)
        .expect("create the topic");
    let (parts, _) = wait_fully_in_sync(&cluster, &all, &topic, 3, FAILOVER_BOUND);
    let (controller, _) = wait_agreed_controller(&cluster, &all, FAILOVER_BOUND);
    let (&partition, preferred) = parts
        .iter()
        .map(|(p, info)| (p, info.replicas[0]))
        .find(|&(_, r)| r != controller)
        .expect("a partition whose preferred leader is not the controller");
    let others: Vec<i32> = all.iter().copied().filter(|&id| id != preferred).collect();

    // Its leadership moves away and the broker comes back as a follower.
    cluster.terminate(preferred);
    let (moved, _) = poll_until(
        FAILOVER_BOUND,
        "a leader other than the stopped one",
        || {
            let parts = partitions_from(&cluster, &others, &topic)?;
            match parts.get(&partition) {
                Some(info) if others.contains(&info.leader) => Ok(info.leader),
                info => Err(format!("{info:?}")),
            }
        },
    );
    cluster.restart(preferred);
    wait_fully_in_sync(&cluster, &all, &topic, 3, FAILOVER_BOUND);

    let mut producer = cluster.client(moved);
    let mut end = 0;
    for batch in 0..5 {
        let msgs: Vec<Msg> = (0..10)
            .map(|i| Msg::new(None, &format!("b{batch}-{i}")))
            .collect();
        end = producer
            .produce(&topic, partition, &msgs, Compression::None)
            .expect("produce with acks=all")
            + 10;
    }
    let reported = producer
        .list_offset(&topic, partition, LATEST)
        .expect("ListOffsets at the leader");
    assert_eq!(reported, end, "the leader's own latest offset");

    let mut probe = cluster.client(preferred);
    let results = elect_preferred_leaders(&mut cluster.client(controller), &topic, &[partition])
        .expect("ElectLeaders");
    assert_eq!(results.get(&partition), Some(&0), "{results:?}");
    let elected = Instant::now();
    let mut answers: Vec<(Duration, i64)> = Vec::new();
    // Every answer from the first on, for a second after that.
    while answers
        .first()
        .is_none_or(|(first, _)| elected.elapsed() < *first + Duration::from_secs(1))
    {
        assert!(
            elected.elapsed() < FAILOVER_BOUND,
            "broker {preferred} never answered as the leader"
        );
        if let Ok(offset) = probe.list_offset(&topic, partition, LATEST) {
            answers.push((elected.elapsed(), offset));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let lower: Vec<&(Duration, i64)> = answers.iter().filter(|(_, o)| *o < end).collect();
    let caught_up = answers.iter().find(|(_, o)| *o >= end).map(|(t, _)| *t);
    eprintln!(
        "{} answers from the new leader {preferred}, first {:?}; {} below {end}; at {end} from {caught_up:?}",
        answers.len(),
        answers.first(),
        lower.len()
    );
    assert!(
        lower.is_empty(),
        "after broker {moved} acknowledged and reported offsets up to {end} of {topic}-{partition}, \
         the new leader {preferred} answered ListOffsets(LATEST) lower {} times, e.g. \
         (time after the election, offset) {:?}; it reached {end} only at {caught_up:?}",
        lower.len(),
        &lower[..lower.len().min(5)]
    );
}

#[test]
fn controlled_shutdown_hands_leaderships_over_without_failed_deliveries() {
    require_py!("confluent_kafka");
    let (mut cluster, mut run) = start_sigterm_run("failover-term");
    let bootstrap = cluster.bootstrap();
    sigterm_leader(&mut cluster, &run, |_| {});
    run.producer.finish();
    verify(&bootstrap, &run.topic, PARTITIONS, &[&run.producer]);
}

/// Kafka completes the acks=all requests a leader holds when it stops
/// leading (NOT_LEADER_OR_FOLLOWER), so a controlled shutdown ends at once
/// and producers retry on the new leaders right away. A broker that keeps
/// them parked waits out its connection drain timeout instead, and says so
/// in its log; its producers stall as long. A follower stopped for a moment
/// (SIGSTOP, well under replica.lag.time.max.ms) makes sure some requests
/// are parked when the signal comes.
#[test]
fn controlled_shutdown_does_not_wait_out_parked_produce_requests() {
    require_py!("confluent_kafka");
    let (mut cluster, mut run) = start_sigterm_run("failover-drain");
    let slow = cluster
        .broker_ids()
        .into_iter()
        .find(|&id| id != run.victim && id != run.controller)
        .expect("a third broker");
    cluster.pause(slow);
    std::thread::sleep(Duration::from_millis(500));
    let stop = sigterm_leader(&mut cluster, &run, |cluster| cluster.resume(slow));
    run.producer.finish();
    let log = cluster.log(run.victim);
    let stuck: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("still busy") || l.contains("shutting down"))
        .collect();
    assert!(
        !log.contains("connections still busy"),
        "broker {} held requests until its drain timeout after SIGTERM: leaderships moved \
         after {:?}, but it exited only after {:?} and the producer got acknowledgements \
         from the new leaders only after {:?}; its log:\n{}",
        run.victim,
        stop.moved,
        stop.exited,
        stop.resumed,
        stuck.join("\n")
    );
}

#[test]
fn a_group_resumes_at_its_committed_offsets_after_a_coordinator_kill9() {
    require_py!("confluent_kafka");
    let mut cluster = start_cluster(&[]);
    let bootstrap = cluster.bootstrap();
    // The coordinator alone dies; the controller survives.
    let (topic, group) = groups::setup(&cluster, false);

    // A member reads 50 records of each partition, commits after the 20th
    // and the 40th, and leaves.
    let partitions = groups::PARTITIONS.to_string();
    let first = clients::run(&[
        "group-consume",
        &bootstrap,
        &topic,
        &partitions,
        &group,
        "40",
        "10",
    ]);
    let committed = clients::offsets_of(&first["committed"]);
    let read = clients::records_of(&first["read"]);
    eprintln!(
        "committed {committed:?} after reading {} records",
        read.len()
    );
    assert_eq!(
        committed,
        (0..groups::PARTITIONS).map(|p| (p, 40)).collect(),
        "the member's commits"
    );

    let survivors = groups::kill_coordinator(&mut cluster, &topic, &group, &committed);
    groups::wait_new_coordinator(&cluster, &survivors, &topic, &group, &committed);
    groups::resume_exactly_at(&bootstrap, &topic, &group, &committed, &read);
}

#[test]
fn a_live_member_commits_through_the_new_coordinator_after_a_kill9() {
    require_py!("confluent_kafka");
    let mut cluster = start_cluster(&[]);
    let bootstrap = cluster.bootstrap();
    // The coordinator is the controller too: the slowest failover, a
    // controller election before the coordinator's fencing. The member's
    // session timeout (30 s) outlasts it.
    let (topic, group) = groups::setup(&cluster, true);
    let dir = tempfile::tempdir().expect("scratch dir");
    let go = dir.path().join("go");
    let partitions = groups::PARTITIONS.to_string();
    let mut member = clients::spawn(
        &[
            "group-live",
            &bootstrap,
            &topic,
            &partitions,
            &group,
            go.to_str().expect("utf-8 path"),
        ],
        dir.path(),
        "member",
    );
    let first = wait_json_line(&member, FAILOVER_BOUND, "the member's first commit");
    let committed = clients::offsets_of(&first["committed"]);

    // The coordinator dies under the live member, which then commits again.
    let survivors = groups::kill_coordinator(&mut cluster, &topic, &group, &committed);
    let killed = Instant::now();
    std::fs::write(&go, b"").expect("create the go file");
    let status = member.wait(Duration::from_secs(90));
    assert!(
        status.success(),
        "the member failed ({status})\n{}\n{}",
        member.stdout(),
        member.stderr()
    );
    let second = clients::summary(&member.stdout());
    eprintln!(
        "the member committed again {:?} after the kill (commit errors {}, assignments {})",
        killed.elapsed(),
        second["commit_errors"],
        second["assigned"]
    );
    let committed = clients::offsets_of(&second["committed"]);
    assert_eq!(
        committed,
        (0..groups::PARTITIONS).map(|p| (p, 40)).collect(),
        "the member's second commit"
    );
    // The new coordinator knows the member from the group's stored
    // metadata: no rebalance, no rejected generation.
    let errors = second["commit_errors"].to_string();
    assert!(
        second["assigned"] == 1
            && !errors.contains("UNKNOWN_MEMBER_ID")
            && !errors.contains("ILLEGAL_GENERATION"),
        "the member lost its membership across the coordinator's death: {} assignments, \
         commit errors {errors}\n--- member stderr ---\n{}",
        second["assigned"],
        member.stderr()
    );
    groups::wait_new_coordinator(&cluster, &survivors, &topic, &group, &committed);
    let read = clients::records_of(&second["read"]);
    groups::resume_exactly_at(&bootstrap, &topic, &group, &committed, &read);
}
