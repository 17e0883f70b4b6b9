//! The topology matrix: the same everyday client work, with real
//! third-party clients, against every cluster shape a user runs: one
//! broker; three brokers with replication factor 1, 2 and 3; five brokers
//! with replication factor 3 and min.insync.replicas 2.
//!
//! In each shape, confluent-kafka (librdkafka) and kafka-python, driven by
//! `tests/py/topology_clients.py`, produce with acks 0, 1 and all and
//! idempotently, read everything back, look offsets up by time, commit in
//! consumer groups and resume, delete records, and grow a topic and write
//! to the new partitions at once; kcat does a produce/consume round of its
//! own here. The topics have more partitions than there are brokers, so a
//! replication factor below the broker count leaves every broker leading
//! some partitions and missing others, and one topic has a single partition.
//! The test picks one consumer group per broker (FindCoordinator), so some
//! coordinators host no replica of a partition their group commits, and it
//! checks the commits with raw OffsetFetch rather than trusting the client.
//!
//! A shape's test reports every broken behaviour at once: the script keeps
//! going after a failed step, and its failures, the kcat round's and the
//! cross-checks here are listed together with the partition layout and the
//! group coordinators. The one exception is a group coordinator that never
//! finishes loading its `__consumer_offsets` partition: the test stops
//! before the clients run and names it, since every group step would only
//! time out behind it.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rivulet_tests::{
    cluster::DevCluster,
    cluster_checks::{
        group_coordinator, poll_until, try_client, wait_fully_in_sync, PartitionInfo,
    },
    groups::{committed_offsets, describe_group},
    kcat, last_json, py_command, require_py, require_tools, run_cmd, run_py_timeout, unique_topic,
    KafkaConn,
};
use serde_json::Value;

const SCRIPT: &str = "topology_clients.py";
/// Bound of `topology_clients.py create`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of `topology_clients.py run`: a healthy cluster needs well under a
/// minute; a broken one makes some steps wait for their own timeouts.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the cluster may take to agree on a new topic or a coordinator.
const CONVERGE: Duration = Duration::from_secs(30);
/// Bound of each kcat command; its own message timeout is 15 s.
const KCAT_TIMEOUT: Duration = Duration::from_secs(40);
/// Records kcat produces.
const KCAT_RECORDS: usize = 30;
/// Group ids tried to find one coordinated by every broker.
const GROUP_CANDIDATES: usize = 500;
/// Records per partition each of the script's four producers writes.
const PER_PARTITION: i64 = 8;
const MODES: [&str; 4] = ["acks0", "acks1", "acksall", "idempotent"];

/// One cluster shape of the matrix.
#[derive(Debug, Clone, Copy)]
struct Shape {
    brokers: usize,
    replication_factor: i16,
    /// `min.insync.replicas` of the test's topics; `None` leaves it to the
    /// broker default, which `rivulet dev` sets to 2 from two brokers up,
    /// above the replication factor of a topic with one replica: such
    /// topics must still take acks=all writes, as users create them.
    min_insync: Option<i16>,
    /// Partitions of the multi-partition topics.
    partitions: i32,
}

#[test]
fn single_broker() {
    check_shape(
        "topo-1b",
        Shape {
            brokers: 1,
            replication_factor: 1,
            min_insync: None,
            partitions: 3,
        },
    );
}

#[test]
fn three_brokers_rf1() {
    check_shape(
        "topo-3b-rf1",
        Shape {
            brokers: 3,
            replication_factor: 1,
            min_insync: None,
            partitions: 4,
        },
    );
}

#[test]
fn three_brokers_rf2() {
    check_shape(
        "topo-3b-rf2",
        Shape {
            brokers: 3,
            replication_factor: 2,
            min_insync: None,
            partitions: 4,
        },
    );
}

#[test]
fn three_brokers_rf3() {
    check_shape(
        "topo-3b-rf3",
        Shape {
            brokers: 3,
            replication_factor: 3,
            min_insync: None,
            partitions: 4,
        },
    );
}

#[test]
fn five_brokers_rf3_min_isr2() {
    check_shape(
        "topo-5b-rf3",
        Shape {
            brokers: 5,
            replication_factor: 3,
            min_insync: Some(2),
            partitions: 6,
        },
    );
}

/// Starts a cluster of `shape`, runs every client against it and fails
/// with everything that went wrong.
fn check_shape(name: &str, shape: Shape) {
    require_py!("confluent_kafka", "kafka");
    require_tools!("kcat");
    let started = Instant::now();
    let cluster = DevCluster::builder(shape.brokers)
        .config("group.initial.rebalance.delay.ms", "0")
        // Few offsets partitions: quick to create, still led by every broker.
        .config("offsets.topic.num.partitions", "10")
        .start();
    let prefix = unique_topic(name);
    let layout = create_topics(&cluster, &prefix, shape);
    let groups = groups_on_every_broker(&cluster, &prefix);
    // The kafka-python round's group, named by the script.
    let kp_group = format!("{prefix}-kp-group");
    let kp_coordinator = coordinator_of(&cluster, &kp_group);
    for (group, &coordinator) in groups.iter().chain([(&kp_group, &kp_coordinator)]) {
        wait_serving(&cluster, coordinator, group);
    }
    eprintln!(
        "{name}: cluster and topics ready after {:.1}s; group coordinators {groups:?}\n{}",
        started.elapsed().as_secs_f64(),
        describe(&layout)
    );

    let mut problems = Vec::new();
    if let Some(summary) = run_clients(&cluster, &prefix, shape, &groups, &mut problems) {
        check_summary(&cluster, &prefix, shape, &groups, &summary, &mut problems);
    }
    kcat_round(
        &cluster.bootstrap(),
        &format!("{prefix}-kcat"),
        shape,
        &mut problems,
    );
    eprintln!("{name}: {:.1}s", started.elapsed().as_secs_f64());
    assert!(
        problems.is_empty(),
        "{name} {shape:?}: {} problem(s):\n  {}\ngroup coordinators: {groups:?}\n{}",
        problems.len(),
        problems.join("\n  "),
        describe(&layout)
    );
}

/// Creates the script's topics with confluent-kafka's AdminClient and waits
/// until every broker reports them with leaders and full ISRs; returns
/// topic -> partition -> what the first broker reports.
fn create_topics(
    cluster: &DevCluster,
    prefix: &str,
    shape: Shape,
) -> BTreeMap<String, BTreeMap<i32, PartitionInfo>> {
    let out = run_py_timeout(
        SCRIPT,
        &[
            "create",
            &cluster.bootstrap(),
            prefix,
            &shape.partitions.to_string(),
            &shape.replication_factor.to_string(),
            &shape.min_insync.unwrap_or(0).to_string(),
        ],
        CREATE_TIMEOUT,
    );
    let created = last_json(&out);
    let topics = created["topics"]
        .as_object()
        .unwrap_or_else(|| panic!("no topics in {created}"));
    let ids = cluster.broker_ids();
    let mut layout = BTreeMap::new();
    for (topic, partitions) in topics {
        let partitions = partitions.as_u64().expect("a partition count") as usize;
        let (parts, _) = wait_fully_in_sync(cluster, &ids, topic, partitions, CONVERGE);
        for (p, info) in &parts {
            let mut distinct = info.replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                shape.replication_factor as usize,
                "{topic}-{p} has replicas {:?}, replication factor {}",
                info.replicas,
                shape.replication_factor
            );
        }
        layout.insert(topic.clone(), parts);
    }
    layout
}

/// One consumer group id per broker, coordinated by it: group -> broker.
fn groups_on_every_broker(cluster: &DevCluster, prefix: &str) -> BTreeMap<String, i32> {
    let ids = cluster.broker_ids();
    let mut conn = cluster.client(ids[0]);
    let mut by_broker: BTreeMap<i32, String> = BTreeMap::new();
    for n in 0..GROUP_CANDIDATES {
        if by_broker.len() == ids.len() {
            break;
        }
        let group = format!("{prefix}-g{n}");
        let coordinator = coordinator_of_via(&mut conn, &group);
        by_broker.entry(coordinator).or_insert(group);
    }
    assert_eq!(
        by_broker.keys().copied().collect::<Vec<_>>(),
        ids,
        "no group coordinated by every broker among {GROUP_CANDIDATES} candidates"
    );
    by_broker.into_iter().map(|(id, g)| (g, id)).collect()
}

/// The coordinator of `group` (FindCoordinator).
fn coordinator_of(cluster: &DevCluster, group: &str) -> i32 {
    coordinator_of_via(&mut cluster.client(cluster.broker_ids()[0]), group)
}

fn coordinator_of_via(conn: &mut KafkaConn, group: &str) -> i32 {
    // The first asks create the offsets topic, which takes a moment.
    poll_until(CONVERGE, &format!("a coordinator for {group}"), || {
        group_coordinator(conn, group).map_err(|e| format!("{e:#}"))
    })
    .0
}

/// Waits until `coordinator` serves `group`: until it has read its
/// `__consumer_offsets` partition it answers COORDINATOR_LOAD_IN_PROGRESS
/// (14), which clients retry without end, so a coordinator that never
/// finishes loading is named here rather than timing out every group step.
fn wait_serving(cluster: &DevCluster, coordinator: i32, group: &str) {
    let what = format!("broker {coordinator} serving group {group} (DescribeGroups)");
    poll_until(CONVERGE, &what, || {
        let info = try_client(cluster, coordinator)
            .and_then(|mut conn| describe_group(&mut conn, group))
            .map_err(|e| format!("{e:#}"))?;
        match info.error_code {
            0 => Ok(()),
            code => Err(format!("error code {code}")),
        }
    });
}

/// Runs `topology_clients.py run`, passing its progress lines on; returns
/// its summary when it exited 0, else adds its failures to `problems`.
fn run_clients(
    cluster: &DevCluster,
    prefix: &str,
    shape: Shape,
    groups: &BTreeMap<String, i32>,
    problems: &mut Vec<String>,
) -> Option<Value> {
    let group_list = groups.keys().cloned().collect::<Vec<_>>().join(",");
    let out = run_cmd(
        &mut py_command(
            SCRIPT,
            &[
                "run",
                &cluster.bootstrap(),
                prefix,
                &shape.partitions.to_string(),
                &group_list,
            ],
        ),
        None,
        RUN_TIMEOUT,
    );
    eprint!("{}", out.stderr);
    let summary = last_json(&out.stdout);
    eprintln!("steps took {}", summary["seconds"]);
    if out.status.success() {
        return Some(summary);
    }
    let failures: Vec<String> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL: "))
        .map(|l| format!("python: {l}"))
        .collect();
    if failures.is_empty() {
        problems.push(format!(
            "{SCRIPT} run exited with {}:\n{}",
            out.status, out.stderr
        ));
    }
    problems.extend(failures);
    None
}

/// Cross-checks the summary of a successful run, and asks each group's
/// coordinator (raw OffsetFetch) for what the group committed.
fn check_summary(
    cluster: &DevCluster,
    prefix: &str,
    shape: Shape,
    groups: &BTreeMap<String, i32>,
    summary: &Value,
    problems: &mut Vec<String>,
) {
    let partitions = i64::from(shape.partitions);
    for mode in MODES {
        let done = &summary["produce"][mode];
        expect(
            problems,
            format!("{mode} records sent"),
            &done["sent"],
            (PER_PARTITION * (partitions + 1)).into(),
        );
        expect(
            problems,
            format!("{mode} deliveries failed"),
            &done["failed"],
            0.into(),
        );
    }
    let stored = PER_PARTITION * MODES.len() as i64;
    let all: Vec<String> = (0..shape.partitions)
        .map(|p| format!("{prefix}[{p}]"))
        .chain([format!("{prefix}-one[0]")])
        .collect();
    for tp in &all {
        expect(
            problems,
            format!("high watermark of {tp}"),
            &summary["high_watermarks"][tp],
            stored.into(),
        );
        expect(
            problems,
            format!("low watermark of {tp} after DeleteRecords"),
            &summary["low_watermarks"][tp],
            (stored / 2).into(),
        );
    }
    expect(
        problems,
        "offsets looked up by time".into(),
        &summary["times_checked"],
        (3 * (partitions + 1)).into(),
    );
    let new: serde_json::Map<String, Value> = (shape.partitions..shape.partitions + 2)
        .map(|p| (p.to_string(), 0.into()))
        .collect();
    expect(
        problems,
        "first offsets in the new partitions".into(),
        &summary["new_partitions"]["offsets"],
        new.into(),
    );
    expect(
        problems,
        "records kafka-python read".into(),
        &summary["kafka_python"]["first"],
        (4 * partitions).into(),
    );
    expect(
        problems,
        "records kafka-python read after resuming".into(),
        &summary["kafka_python"]["resumed"],
        (2 * partitions).into(),
    );
    for (group, &coordinator) in groups {
        let committed = &summary["groups"][group]["committed"];
        expect(
            problems,
            format!("partitions group {group} committed"),
            &committed.as_object().map_or(0, |m| m.len()).into(),
            all.len().into(),
        );
        let mut conn = cluster.client(coordinator);
        for (topic, n) in [
            (prefix.to_string(), shape.partitions),
            (format!("{prefix}-one"), 1),
        ] {
            match committed_offsets(&mut conn, group, &topic, n) {
                Ok(stored) => {
                    let stored: serde_json::Map<String, Value> = stored
                        .into_iter()
                        .map(|(p, o)| (format!("{topic}[{p}]"), o.into()))
                        .collect();
                    let wanted: serde_json::Map<String, Value> = committed
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(tp, _)| tp.rsplit_once('[').map(|(t, _)| t) == Some(&topic))
                        .map(|(tp, o)| (tp.clone(), o.clone()))
                        .collect();
                    expect(
                        problems,
                        format!(
                            "OffsetFetch of {group} for {topic} from coordinator {coordinator}"
                        ),
                        &stored.into(),
                        wanted.into(),
                    );
                }
                Err(e) => problems.push(format!(
                    "OffsetFetch of {group} for {topic} from coordinator {coordinator}: {e:#}"
                )),
            }
        }
    }
}

/// Adds a problem unless `got` is `want`.
fn expect(problems: &mut Vec<String>, what: String, got: &Value, want: Value) {
    if *got != want {
        problems.push(format!("{what}: {got}, expected {want}"));
    }
}

/// kcat: the topic's metadata, an acks=all produce of keyed records and a
/// read of every partition back.
fn kcat_round(bootstrap: &str, topic: &str, shape: Shape, problems: &mut Vec<String>) {
    let started = Instant::now();
    let md = run_cmd(
        kcat(bootstrap).args(["-L", "-J", "-t", topic]),
        None,
        KCAT_TIMEOUT,
    );
    match serde_json::from_str::<Value>(md.stdout.trim()) {
        Ok(md) => {
            let parts = md["topics"][0]["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if parts.len() != shape.partitions as usize {
                problems.push(format!("kcat -L: {topic} has partitions {parts:?}"));
            }
            for p in &parts {
                let rf = shape.replication_factor as usize;
                let count = |field: &str| p[field].as_array().map_or(0, Vec::len);
                if count("replicas") != rf || count("isrs") != rf {
                    problems.push(format!("kcat -L: {topic} partition {p}, RF {rf}"));
                }
            }
        }
        Err(e) => problems.push(format!("kcat -L printed no JSON ({e}): {md:?}")),
    }

    let input: String = (0..KCAT_RECORDS)
        .map(|i| format!("k{i}:kcat-{i}\n"))
        .collect();
    let produced = run_cmd(
        kcat(bootstrap).args([
            "-P",
            "-t",
            topic,
            "-K:",
            "-X",
            "acks=all",
            "-X",
            "message.timeout.ms=15000",
        ]),
        Some(input.as_bytes()),
        KCAT_TIMEOUT,
    );
    if !produced.status.success() || produced.stderr.contains("failed") {
        problems.push(format!(
            "kcat -P with acks=all: {}: {}",
            produced.status,
            produced.stderr.trim()
        ));
    }

    let consumed = run_cmd(
        kcat(bootstrap).args(["-C", "-t", topic, "-o", "beginning", "-e", "-J"]),
        None,
        KCAT_TIMEOUT,
    );
    if !consumed.status.success() {
        problems.push(format!(
            "kcat -C: {}: {}",
            consumed.status,
            consumed.stderr.trim()
        ));
        return;
    }
    check_kcat_records(&consumed.stdout, problems);
    eprintln!("kcat round: {:.1}s", started.elapsed().as_secs_f64());
}

/// Every record kcat produced, once, with its key, each partition's offsets
/// running from 0 without gaps.
fn check_kcat_records(out: &str, problems: &mut Vec<String>) {
    let mut values = Vec::new();
    let mut offsets: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(m) = serde_json::from_str::<Value>(line) else {
            problems.push(format!("kcat -C -J printed {line:?}"));
            continue;
        };
        let value = m["payload"].as_str().unwrap_or_default().to_string();
        let key = value.replace("kcat-", "k");
        if m["key"].as_str() != Some(key.as_str()) {
            problems.push(format!("kcat read {m}: key is not {key}"));
        }
        offsets
            .entry(m["partition"].as_i64().unwrap_or(-1))
            .or_default()
            .push(m["offset"].as_i64().unwrap_or(-1));
        values.push(value);
    }
    values.sort();
    let mut expected: Vec<String> = (0..KCAT_RECORDS).map(|i| format!("kcat-{i}")).collect();
    expected.sort();
    if values != expected {
        let missing: Vec<&String> = expected.iter().filter(|v| !values.contains(v)).collect();
        problems.push(format!(
            "kcat read {} records of the {KCAT_RECORDS} produced; missing {} (e.g. {:?}); read {:?}",
            values.len(),
            missing.len(),
            &missing[..missing.len().min(5)],
            &values[..values.len().min(5)],
        ));
    }
    for (p, offs) in offsets {
        if offs != (0..offs.len() as i64).collect::<Vec<_>>() {
            problems.push(format!("kcat read partition {p} at offsets {offs:?}"));
        }
    }
}

/// The layout of the topics, one partition per line.
fn describe(layout: &BTreeMap<String, BTreeMap<i32, PartitionInfo>>) -> String {
    layout
        .iter()
        .flat_map(|(topic, parts)| {
            parts.iter().map(move |(p, info)| {
                format!(
                    "  {topic}-{p}: leader {}, replicas {:?}, isr {:?}",
                    info.leader, info.replicas, info.isr
                )
            })
        })
        .collect::<Vec<_>>()
        .join("\n")
}
