//! Exactly-once on a 3-broker cluster: a consume-transform-produce loop
//! (confluent-kafka, replication factor 3, min.insync.replicas 2) keeps
//! running while the broker coordinating its transactions and then a
//! leader of its output are killed with kill -9 and restarted, and its own
//! worker is killed too. The output holds every input exactly once.

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
    let records = std::env::var("RIVULET_TXN_RECORDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(6000);
    let opts = json!({
        "bootstrap": cluster.bootstrap(),
        "prefix": prefix,
        "records": records,
        "kills": 2,
        "rf": 3,
        "seed": 5,
        "finish_s": 300,
    })
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut driver = Background::spawn(
        &mut py_command("txn_clients.py", &["ctp", &opts]),
        dir.path(),
        "ctp",
    );
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
