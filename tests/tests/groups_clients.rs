//! Consumer groups with the Python clients: confluent-kafka members joining
//! and leaving under the range and cooperative-sticky assignors, static
//! membership, the AdminClient's group APIs, two groups on one topic, and
//! kafka-python and aiokafka group consumers taking turns on one group, each
//! resuming exactly where the previous one committed.
//!
//! The client work and most checks live in `tests/py/group_*.py`.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::records::Compression;
use rivulet_tests::{
    groups::{committed_offsets, run_py_logged as run_py},
    require_py, unique_topic, BrokerProcess, Msg,
};
use serde_json::Value;

fn broker() -> BrokerProcess {
    BrokerProcess::builder()
        .config("group.initial.rebalance.delay.ms", "0")
        .start()
}

fn summary(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad summary {out:?}: {e}"))
}

fn members_scenario(strategy: &str) {
    require_py!("confluent_kafka");
    let broker = broker();
    let topic = unique_topic(&format!("greb-{strategy}"));
    broker.create_topic(&topic, 6, &[]);
    let out = run_py(
        "group_rebalance.py",
        &["members", &broker.bootstrap(), &topic, "6", strategy],
    );
    eprintln!("{strategy}: {out}");
}

#[test]
fn confluent_range_members_join_and_leave() {
    members_scenario("range");
}

#[test]
fn confluent_cooperative_sticky_members_join_and_leave() {
    members_scenario("cooperative-sticky");
}

#[test]
fn confluent_static_member_restart_keeps_partitions_without_rebalance() {
    require_py!("confluent_kafka");
    let broker = broker();
    let topic = unique_topic("gstatic");
    broker.create_topic(&topic, 4, &[]);
    run_py(
        "group_rebalance.py",
        &["static", &broker.bootstrap(), &topic, "4"],
    );
}

#[test]
fn confluent_admin_group_offsets_list_describe_delete() {
    require_py!("confluent_kafka");
    let broker = broker();
    let topic = unique_topic("gadm");
    broker.create_topic(&topic, 3, &[]);
    let out = run_py("group_admin.py", &[&broker.bootstrap(), &topic, "3"]);
    let s = summary(&out);
    // The group is gone for raw OffsetFetch too.
    let group = s["group"].as_str().expect("group name");
    let left = committed_offsets(&mut broker.client(), group, &topic, 3).expect("OffsetFetch");
    assert!(
        left.is_empty(),
        "offsets of deleted group {group}: {left:?}"
    );
}

#[test]
fn two_groups_each_see_every_message() {
    require_py!("confluent_kafka");
    let broker = broker();
    let topic = unique_topic("g2");
    broker.create_topic(&topic, 3, &[]);
    run_py(
        "group_offsets.py",
        &["two-groups", &broker.bootstrap(), &topic, "3", "90"],
    );
}

/// kafka-python and aiokafka consumers take turns in one group, each taking
/// a few records and committing: every run starts on each partition exactly
/// at the previous run's commit, and together they see every record once.
#[test]
fn kafka_python_and_aiokafka_resume_from_committed_offsets() {
    require_py!("kafka", "aiokafka");
    let broker = broker();
    let topic = unique_topic("gpy");
    let group = format!("{topic}-grp");
    broker.create_topic(&topic, 2, &[]);
    let mut c = broker.client();
    let mut produced: BTreeMap<(i64, i64), String> = BTreeMap::new();
    for p in 0..2 {
        let values: Vec<String> = (0..25).map(|i| format!("p{p}-{i}")).collect();
        let msgs: Vec<Msg> = values.iter().map(|v| Msg::new(None, v)).collect();
        let base = c
            .produce(&topic, p, &msgs, Compression::None)
            .expect("produce");
        for (i, v) in values.into_iter().enumerate() {
            produced.insert((i64::from(p), base + i as i64), v);
        }
    }

    let runs = [
        ("group_kafka_python.py", 12),
        ("group_kafka_python.py", 9),
        ("group_aiokafka.py", 11),
        ("group_aiokafka.py", 8),
        ("group_kafka_python.py", 10),
    ];
    assert_eq!(runs.iter().map(|r| r.1).sum::<usize>(), produced.len());
    let mut committed: BTreeMap<i64, i64> = BTreeMap::new();
    let mut seen: BTreeSet<(i64, i64)> = BTreeSet::new();
    for (script, count) in runs {
        let s = summary(&run_py(
            script,
            &[&broker.bootstrap(), &topic, &group, &count.to_string()],
        ));
        let records: Vec<(i64, i64, String)> = s["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                let p = r[0].as_i64().expect("partition");
                let o = r[1].as_i64().expect("offset");
                (p, o, r[2].as_str().expect("value").to_string())
            })
            .collect();
        for p in 0..2 {
            let first = records.iter().filter(|r| r.0 == p).map(|r| r.1).min();
            if let Some(first) = first {
                assert_eq!(
                    first,
                    committed.get(&p).copied().unwrap_or(0),
                    "{script} started partition {p} away from the group's committed offset \
                     ({committed:?})"
                );
            }
        }
        for (p, o, v) in &records {
            assert_eq!(
                produced.get(&(*p, *o)),
                Some(v),
                "{script}: record at {p}/{o}"
            );
            assert!(
                seen.insert((*p, *o)),
                "{script}: {p}/{o} was already consumed by a run before"
            );
        }
        for (p, o) in s["committed"].as_object().expect("committed") {
            committed.insert(p.parse().expect("partition"), o.as_i64().expect("offset"));
        }
        let on_broker = committed_offsets(&mut c, &group, &topic, 2).expect("OffsetFetch");
        let want: BTreeMap<i32, i64> = committed.iter().map(|(p, o)| (*p as i32, *o)).collect();
        assert_eq!(
            on_broker, want,
            "committed offsets on the broker after {script}"
        );
        eprintln!("{script} took {count}; committed {committed:?}");
    }
    assert_eq!(seen.len(), produced.len(), "records consumed over all runs");
}
