//! Looking at a multi-broker cluster from the outside: partition leaders and
//! ISRs, the active controller and group coordinators as brokers report them,
//! replicated topic creation and preferred leader elections, per-broker
//! metrics, and a bounded poll that measures how long a condition took.
//!
//! Failover tests ask survivors, never a broker that may be dead: every
//! helper here takes a connection or an address, and [`try_client`] fails
//! at once on a refused connection instead of retrying.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Display,
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure, Context, Result};
use kafka_protocol::{
    messages::{
        create_topics_request::{CreatableTopic, CreatableTopicConfig},
        elect_leaders_request::TopicPartitions,
        CreateTopicsRequest, ElectLeadersRequest, FindCoordinatorRequest,
    },
    protocol::StrBytes,
};

use crate::{
    cluster::DevCluster,
    kafka::{topic_name, KafkaConn},
    metrics::{http_get, parse_samples},
};

/// Kafka's NONE error code.
const NONE: i16 = 0;

/// One partition as a broker's Metadata answer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The leader, -1 when there is none.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

impl PartitionInfo {
    /// Whether every assigned replica is in sync.
    pub fn fully_in_sync(&self) -> bool {
        self.replicas.iter().all(|r| self.isr.contains(r))
    }
}

/// A raw connection to broker `id`, failing at once when it does not answer
/// (unlike [`DevCluster::client`], which retries for a while).
pub fn try_client(cluster: &DevCluster, id: i32) -> Result<KafkaConn> {
    KafkaConn::connect(&cluster.kafka_addr(id).to_string())
}

/// The partitions of `topic` as the broker behind `conn` sees them; an error
/// when it reports the topic with an error code.
pub fn topic_partitions(conn: &mut KafkaConn, topic: &str) -> Result<BTreeMap<i32, PartitionInfo>> {
    let md = conn.metadata(Some(&[topic]))?;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .ok_or_else(|| anyhow!("the Metadata answer does not mention {topic}"))?;
    ensure!(
        t.error_code == NONE,
        "Metadata for {topic}: error code {}",
        t.error_code
    );
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
    Ok(t.partitions
        .iter()
        .map(|p| {
            let info = PartitionInfo {
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: ids(&p.replica_nodes),
                isr: ids(&p.isr_nodes),
            };
            (p.partition_index, info)
        })
        .collect())
}

/// The active controller the broker behind `conn` reports (-1: unknown) and
/// the brokers it lists as live.
pub fn controller_and_brokers(conn: &mut KafkaConn) -> Result<(i32, Vec<i32>)> {
    let md = conn.metadata(Some(&[]))?;
    let mut brokers: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    brokers.sort_unstable();
    Ok((md.controller_id.0, brokers))
}

/// Creates `name` with `partitions` partitions, replication factor
/// `replication_factor` and the given topic configs; an error unless the
/// broker reports success.
pub fn create_replicated_topic(
    conn: &mut KafkaConn,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> Result<()> {
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let req = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(15_000);
    let resp = conn.call(&req, 7).context("CreateTopics")?;
    let result = resp
        .topics
        .first()
        .ok_or_else(|| anyhow!("empty CreateTopics response"))?;
    ensure!(
        result.error_code == NONE,
        "CreateTopics {name}: error code {} ({:?})",
        result.error_code,
        result.error_message
    );
    Ok(())
}

/// The coordinator of consumer group `group` according to the broker behind
/// `conn` (FindCoordinator); an error with the code when there is none yet.
pub fn group_coordinator(conn: &mut KafkaConn, group: &str) -> Result<i32> {
    let req = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    // v3 is the last version with a single key.
    let resp = conn.call(&req, 3).context("FindCoordinator")?;
    ensure!(
        resp.error_code == NONE,
        "FindCoordinator {group}: error code {} ({:?})",
        resp.error_code,
        resp.error_message
    );
    Ok(resp.node_id.0)
}

/// Asks for a preferred leader election of `partitions` of `topic`
/// (ElectLeaders, type PREFERRED) and returns each partition's error code
/// (0: moved, 84: ELECTION_NOT_NEEDED, ...).
pub fn elect_preferred_leaders(
    conn: &mut KafkaConn,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i16>> {
    let req = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions.to_vec())]))
        .with_timeout_ms(15_000);
    let resp = conn.call(&req, 2).context("ElectLeaders")?;
    ensure!(
        resp.error_code == NONE,
        "ElectLeaders: error code {}",
        resp.error_code
    );
    Ok(resp
        .replica_election_results
        .into_iter()
        .flat_map(|r| r.partition_result)
        .map(|p| (p.partition_id, p.error_code))
        .collect())
}

/// The sum of every sample named `name` on the `/metrics` page at `url`
/// (`http://host:port/metrics`); an error when the page has none.
pub fn metric_sum(url: &str, name: &str) -> Result<f64> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("not an http URL: {url}"))?;
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (status, body) = http_get(addr, &format!("/{path}"))?;
    ensure!(status == 200, "GET {url}: HTTP {status}");
    let samples = parse_samples(&body);
    let values: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .collect();
    ensure!(!values.is_empty(), "no {name} on {url}");
    Ok(values.iter().sum())
}

/// The partitions of `topic` as the first of `ids` that answers sees them;
/// an error saying what each one answered otherwise.
pub fn partitions_from(
    cluster: &DevCluster,
    ids: &[i32],
    topic: &str,
) -> Result<BTreeMap<i32, PartitionInfo>, String> {
    let mut errors = Vec::new();
    for &id in ids {
        match try_client(cluster, id).and_then(|mut c| topic_partitions(&mut c, topic)) {
            Ok(parts) => return Ok(parts),
            Err(e) => errors.push(format!("broker {id}: {e:#}")),
        }
    }
    Err(errors.join("; "))
}

/// Waits until every one of `ids` reports `partitions` partitions of
/// `topic`, each with a leader and all its replicas in sync; returns what
/// the first of them saw, and how long that took.
#[track_caller]
pub fn wait_fully_in_sync(
    cluster: &DevCluster,
    ids: &[i32],
    topic: &str,
    partitions: usize,
    timeout: Duration,
) -> (BTreeMap<i32, PartitionInfo>, Duration) {
    let what = format!("{topic} fully in sync according to brokers {ids:?}");
    poll_until(timeout, &what, || {
        let mut first = None;
        for &id in ids {
            let parts = partitions_from(cluster, &[id], topic)?;
            let ok = parts.len() == partitions
                && parts.values().all(|p| p.leader >= 0 && p.fully_in_sync());
            if !ok {
                return Err(format!("broker {id} reports {parts:?}"));
            }
            first.get_or_insert(parts);
        }
        first.ok_or_else(|| "no broker asked".to_string())
    })
}

/// Waits until `ids` all name the same controller, one of `ids`; returns
/// it and how long that took.
#[track_caller]
pub fn wait_agreed_controller(
    cluster: &DevCluster,
    ids: &[i32],
    timeout: Duration,
) -> (i32, Duration) {
    let what = format!("brokers {ids:?} agreeing on a controller among them");
    poll_until(timeout, &what, || {
        let mut seen = BTreeMap::new();
        for &id in ids {
            let (controller, brokers) = try_client(cluster, id)
                .and_then(|mut c| controller_and_brokers(&mut c))
                .map_err(|e| format!("broker {id}: {e:#}"))?;
            seen.insert(id, (controller, brokers));
        }
        let controllers: BTreeSet<i32> = seen.values().map(|(c, _)| *c).collect();
        match controllers.iter().next() {
            Some(&c) if controllers.len() == 1 && ids.contains(&c) => Ok(c),
            _ => Err(format!("(controller, live brokers) by broker: {seen:?}")),
        }
    })
}

/// The sum of metric `name` over the brokers `ids`.
pub fn metric_over(cluster: &DevCluster, ids: &[i32], name: &str) -> Result<f64, String> {
    ids.iter()
        .map(|&id| metric_sum(&cluster.metrics_url(id), name).map_err(|e| format!("{e:#}")))
        .sum()
}

/// Calls `check` every 100 ms until it returns `Ok`, and returns that value
/// with how long it took. Past `timeout` the test panics with `what` and the
/// last `Err` (which should say what was seen instead).
#[track_caller]
pub fn poll_until<T, E: Display>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, E>,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return (value, started.elapsed()),
            Err(last) if started.elapsed() >= timeout => {
                panic!("{what}: not reached within {timeout:?}; last seen: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}
