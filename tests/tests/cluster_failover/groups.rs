//! Consumer groups around a coordinator's death: a topic to consume, the
//! kill, the wait for a successor, and the check that a new member resumes
//! exactly at the committed offsets.

use std::collections::BTreeMap;

use rivulet_tests::{
    cluster::DevCluster,
    cluster_checks::{
        create_replicated_topic, group_coordinator, poll_until, try_client, wait_agreed_controller,
        wait_fully_in_sync,
    },
    groups::committed_offsets,
    unique_topic,
};

use super::{
    clients::{self, Acked},
    FAILOVER_BOUND, TOPIC_CONFIGS,
};

/// Partitions of the group tests' topic.
pub const PARTITIONS: i32 = 3;

/// Records in the group tests' topic.
const RECORDS: usize = 300;

/// A fully in-sync topic holding [`RECORDS`] records `v0`, `v1`, ...,
/// and a group name whose coordinator is the active controller
/// (`with_controller`) or another broker.
pub fn setup(cluster: &DevCluster, with_controller: bool) -> (String, String) {
    let topic = unique_topic("failover-group");
    create_replicated_topic(&mut cluster.client(0), &topic, PARTITIONS, 3, TOPIC_CONFIGS)
        .expect("create the topic");
    wait_fully_in_sync(
        cluster,
        &cluster.broker_ids(),
        &topic,
        PARTITIONS as usize,
        FAILOVER_BOUND,
    );
    clients::run(&[
        "produce",
        &cluster.bootstrap(),
        &topic,
        &RECORDS.to_string(),
    ]);
    let group = pick_group(cluster, &topic, with_controller);
    (topic, group)
}

/// The first of the names `<topic>-g0`, `<topic>-g1`, ... whose coordinator
/// is (or is not, as asked) the active controller, so a test knows which
/// failover it causes.
fn pick_group(cluster: &DevCluster, topic: &str, with_controller: bool) -> String {
    let all = cluster.broker_ids();
    let (controller, _) = wait_agreed_controller(cluster, &all, FAILOVER_BOUND);
    let mut conn = cluster.client(all[0]);
    // The first request creates __consumer_offsets; wait for its leaders.
    poll_until(FAILOVER_BOUND, "group coordinators", || {
        group_coordinator(&mut conn, topic).map_err(|e| format!("{e:#}"))
    });
    (0..100)
        .map(|i| format!("{topic}-g{i}"))
        .find(|group| {
            let coordinator = group_coordinator(&mut conn, group).expect("FindCoordinator");
            (coordinator == controller) == with_controller
        })
        .unwrap_or_else(|| panic!("no group name with the coordinator wanted in 100 tries"))
}

/// Finds the group's coordinator, checks that it has `committed`, and kills
/// it; returns the survivors.
pub fn kill_coordinator(
    cluster: &mut DevCluster,
    topic: &str,
    group: &str,
    committed: &BTreeMap<i32, i64>,
) -> Vec<i32> {
    let (coordinator, _) = poll_until(FAILOVER_BOUND, "a coordinator", || {
        group_coordinator(&mut cluster.client(0), group).map_err(|e| format!("{e:#}"))
    });
    let stored = committed_offsets(&mut cluster.client(coordinator), group, topic, PARTITIONS)
        .expect("OffsetFetch");
    assert_eq!(&stored, committed, "offsets at coordinator {coordinator}");
    eprintln!("killing coordinator {coordinator}");
    cluster.kill9(coordinator);
    cluster
        .broker_ids()
        .into_iter()
        .filter(|&id| id != coordinator)
        .collect()
}

/// Waits until a survivor names another survivor as the group's
/// coordinator and that one answers OffsetFetch with `expected`.
pub fn wait_new_coordinator(
    cluster: &DevCluster,
    survivors: &[i32],
    topic: &str,
    group: &str,
    expected: &BTreeMap<i32, i64>,
) {
    let (new, took) = poll_until(
        FAILOVER_BOUND,
        "a new coordinator with the committed offsets",
        || {
            let mut seen = Vec::new();
            for &id in survivors {
                let found = try_client(cluster, id)
                    .and_then(|mut c| group_coordinator(&mut c, group))
                    .and_then(|c| {
                        anyhow::ensure!(survivors.contains(&c), "coordinator {c}");
                        let mut conn = try_client(cluster, c)?;
                        let offsets = committed_offsets(&mut conn, group, topic, PARTITIONS)?;
                        anyhow::ensure!(
                            &offsets == expected,
                            "coordinator {c} has offsets {offsets:?}"
                        );
                        Ok(c)
                    });
                match found {
                    Ok(c) => return Ok(c),
                    Err(e) => seen.push(format!("via broker {id}: {e:#}")),
                }
            }
            Err(seen.join("; "))
        },
    );
    eprintln!("coordinator {new} has the committed offsets {took:?} into the wait");
}

/// A new member of `group` reads every partition to its end: it must start
/// exactly at `committed`, and the records below `committed` that `before`
/// read plus what it reads must be every record exactly once.
pub fn resume_exactly_at(
    bootstrap: &str,
    topic: &str,
    group: &str,
    committed: &BTreeMap<i32, i64>,
    before: &[Acked],
) {
    let out = clients::run(&[
        "group-resume",
        bootstrap,
        topic,
        &PARTITIONS.to_string(),
        group,
    ]);
    let read = clients::records_of(&out["read"]);
    let firsts = clients::offsets_of(&out["first"]);
    eprintln!(
        "the next member started at {firsts:?} and read {} records",
        read.len()
    );
    assert_eq!(
        &firsts, committed,
        "the next member's first offsets must be the committed ones"
    );
    let mut values: Vec<&str> = before
        .iter()
        .filter(|(p, o, _)| *o < committed[p])
        .chain(read.iter())
        .map(|(_, _, v)| v.as_str())
        .collect();
    values.sort_unstable();
    let mut expected: Vec<String> = (0..RECORDS).map(|i| format!("v{i}")).collect();
    expected.sort_unstable();
    assert_eq!(
        values, expected,
        "the committed prefix plus the resumed reads must be every record exactly once"
    );
}
