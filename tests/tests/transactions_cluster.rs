//! Exactly-once on a 3-broker cluster: a consume-transform-produce loop
//! (confluent-kafka, replication factor 3, min.insync.replicas 2) keeps
//! running while the broker coordinating its transactions and then a
//! leader of its output are killed with kill -9 and restarted, and its own
//! worker is killed too. The output holds every input exactly once. The
//! same with replication factor 2 (topics, `__transaction_state` and
//! `__consumer_offsets`) on 3 brokers, so partitions live on some brokers
//! only and the coordinator's partition fails over to its one other
//! replica.

use std::time::{Duration, Instant};

use kafka_protocol::{
    messages::{metadata_request::MetadataRequestTopic, MetadataRequest, TopicName},
    protocol::StrBytes,
};
use rivulet_tests::{
    cluster::DevCluster, last_json, py_command, require_py, rivulet_cmd, run_cmd, unique_topic,
    Background,
};
use serde_json::json;

/// The broker that coordinates `id`, as `rivulet transactions list` says.
fn coordinator_of(cluster: &DevCluster, id: &str) -> Option<i32> {
    let bootstrap = cluster.bootstrap();
    let listed = run_cmd(
        &mut rivulet_cmd(&bootstrap, &["transactions", "list", "--json"]),
        None,
        Duration::from_secs(30),
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(listed.stdout.trim()).ok()?;
    rows.iter()
        .find(|r| r["transactional_id"] == id)
        .and_then(|r| r["coordinator"].as_i64())
        .map(|c| c as i32)
}

/// The leader of `topic` partition 0, asked of a live broker.
fn leader_of(cluster: &DevCluster, live: i32, topic: &str) -> Option<i32> {
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    let md = cluster.client(live).send(&request, 12).ok()?;
    let leader = md
        .topics
        .first()?
        .partitions
        .iter()
        .find(|p| p.partition_index == 0)?
        .leader_id
        .0;
    (leader >= 0).then_some(leader)
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Records through the loop: 6000, or `RIVULET_TXN_RECORDS` for a long run.
fn records_to_run() -> u64 {
    std::env::var("RIVULET_TXN_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000)
}

/// Starts the consume-transform-produce loop of `records` records over
/// topics of replication factor `rf`, its worker killed `kills` times.
fn start_loop(
    cluster: &DevCluster,
    prefix: &str,
    records: u64,
    kills: u32,
    rf: u32,
    seed: u64,
) -> (Background, tempfile::TempDir) {
    let opts = json!({
        "bootstrap": cluster.bootstrap(),
        "prefix": prefix,
        "records": records,
        "kills": kills,
        "rf": rf,
        "seed": seed,
        "finish_s": 300,
    })
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    let driver = Background::spawn(
        &mut py_command("txn_clients.py", &["ctp", &opts]),
        dir.path(),
        "ctp",
    );
    (driver, dir)
}

/// Waits for the loop and checks its output holds every record once.
fn finish_loop(mut driver: Background, records: u64) {
    let status = driver.wait(Duration::from_secs(600));
    assert!(
        status.success(),
        "the loop failed: {}\n{}",
        driver.stderr(),
        driver.stdout()
    );
    let out = last_json(&driver.stdout());
    assert_eq!(out["output"], records, "{out}");
}

#[test]
fn exactly_once_through_coordinator_and_leader_kills() {
    require_py!("confluent_kafka");
    let mut cluster = DevCluster::start(
        3,
        &[
            ("group.initial.rebalance.delay.ms", "0"),
            ("transaction.state.log.num.partitions", "5"),
            ("offsets.topic.num.partitions", "5"),
            ("min.insync.replicas", "2"),
            ("broker.session.timeout.ms", "3000"),
            ("broker.heartbeat.interval.ms", "500"),
        ],
    );
    let prefix = format!("{}-", unique_topic("txc"));
    let records = records_to_run();
    let (driver, _dir) = start_loop(&cluster, &prefix, records, 2, 3, 5);
    let tx = format!("{prefix}ctp-tx");

    let coordinator = wait_for("the loop's transaction coordinator", || {
        coordinator_of(&cluster, &tx)
    });
    cluster.kill9(coordinator);
    std::thread::sleep(Duration::from_secs(4));
    cluster.restart(coordinator);

    let live = cluster
        .broker_ids()
        .into_iter()
        .find(|&b| b != coordinator)
        .unwrap();
    let leader = wait_for("a leader of the output", || {
        leader_of(&cluster, live, &format!("{prefix}out"))
    });
    cluster.kill9(leader);
    std::thread::sleep(Duration::from_secs(4));
    cluster.restart(leader);
    finish_loop(driver, records);
}

/// The replica counts of `__transaction_state`'s partitions.
fn transaction_state_replicas(cluster: &DevCluster, live: i32) -> Option<Vec<usize>> {
    let request =
        MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_static_str("__transaction_state")),
            ))]));
    let md = cluster.client(live).send(&request, 12).ok()?;
    let topic = md.topics.first().filter(|t| t.error_code == 0)?;
    Some(
        topic
            .partitions
            .iter()
            .map(|p| p.replica_nodes.len())
            .collect(),
    )
}

#[test]
fn exactly_once_with_fewer_replicas_than_brokers() {
    require_py!("confluent_kafka");
    let mut cluster = DevCluster::start(
        3,
        &[
            ("group.initial.rebalance.delay.ms", "0"),
            ("transaction.state.log.num.partitions", "3"),
            ("transaction.state.log.replication.factor", "2"),
            ("transaction.state.log.min.isr", "1"),
            ("offsets.topic.num.partitions", "3"),
            ("offsets.topic.replication.factor", "2"),
            ("min.insync.replicas", "1"),
            ("broker.session.timeout.ms", "3000"),
            ("broker.heartbeat.interval.ms", "500"),
        ],
    );
    let prefix = format!("{}-", unique_topic("txrf2"));
    let records = records_to_run();
    let (driver, _dir) = start_loop(&cluster, &prefix, records, 1, 2, 7);
    let tx = format!("{prefix}ctp-tx");
    let coordinator = wait_for("the loop's transaction coordinator", || {
        coordinator_of(&cluster, &tx)
    });
    let live = cluster
        .broker_ids()
        .into_iter()
        .find(|&b| b != coordinator)
        .unwrap();
    let replicas = wait_for("__transaction_state", || {
        transaction_state_replicas(&cluster, live)
    });
    assert!(
        replicas.iter().all(|&r| r == 2),
        "transaction.state.log.replication.factor 2: {replicas:?}"
    );
    cluster.kill9(coordinator);
    // The id's partition fails over to its other replica while the killed
    // broker is down; the loop goes on meanwhile.
    let successor = wait_for("a new coordinator", || {
        coordinator_of(&cluster, &tx).filter(|&c| c != coordinator)
    });
    assert_ne!(successor, coordinator);
    cluster.restart(coordinator);
    finish_loop(driver, records);
}
