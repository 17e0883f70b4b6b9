//! What the cluster replication tests share: a cluster with fast failure
//! detection, bounded waits on a partition's state, the confluent-kafka
//! producers of `tests/py/cluster_isr_produce.py` (a background stream and
//! one-shot bursts), reading a partition back from its leader, and comparing
//! what brokers stored on disk.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::anyhow;
use kafka_protocol::error::ParseResponseErrorCode;
use rivulet_tests::{
    cluster::DevCluster,
    cluster_admin::create_assigned_topic,
    cluster_checks::{
        controller_and_brokers, elect_preferred_leaders, metric_sum, poll_until, topic_partitions,
        try_client, PartitionInfo,
    },
    process::Background,
    py_command, run_py,
    segments::{log_segments, parse_batches},
    KafkaConn,
};
use serde_json::Value;
use tempfile::TempDir;

/// Short failure detection, so a test sees fencing and ISR changes in
/// seconds rather than Kafka's default tens of seconds.
const FAST: [(&str, &str); 4] = [
    ("broker.session.timeout.ms", "6000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "4000"),
    ("offsets.topic.num.partitions", "3"),
];

/// Generous bound for the cluster to converge after a change; a healthy
/// cluster needs a few seconds.
const CONVERGE: Duration = Duration::from_secs(30);

/// Bound for the background producer to make progress: above librdkafka's
/// 30 s `request.timeout.ms`, so a request a broker holds until it times out
/// slows the stream down without failing a test about something else.
const PRODUCER_PROGRESS: Duration = Duration::from_secs(60);

/// Starts `brokers` brokers with [`FAST`] and then `extra` (later settings
/// win).
pub(crate) fn cluster(brokers: usize, extra: &[(&str, &str)]) -> DevCluster {
    FAST.iter()
        .chain(extra)
        .fold(DevCluster::builder(brokers), |b, (k, v)| b.config(k, v))
        .start()
}

/// [`poll_until`] for [`CONVERGE`], with a probe that may fail (a broker
/// restarting) or see a state that is not the wanted one yet.
#[track_caller]
pub(crate) fn wait_for<T, S: Debug>(
    what: &str,
    mut probe: impl FnMut() -> anyhow::Result<Result<T, S>>,
) -> T {
    poll_until(CONVERGE, what, || match probe() {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(state)) => Err(format!("{state:?}")),
        Err(e) => Err(format!("error: {e:#}")),
    })
    .0
}

/// Partition 0 of `topic` as broker `via` reports it.
pub(crate) fn partition_view(conn: &mut KafkaConn, topic: &str) -> anyhow::Result<PartitionInfo> {
    topic_partitions(conn, topic)?
        .remove(&0)
        .ok_or_else(|| anyhow!("no partition 0 in the Metadata of {topic}"))
}

/// Waits until broker `via` reports partition 0 of `topic` in a state
/// `done` accepts, and returns it. A fresh connection for every poll, so a
/// broker restarted in between is no problem.
#[track_caller]
pub(crate) fn wait_partition(
    cluster: &DevCluster,
    via: i32,
    topic: &str,
    what: &str,
    done: impl Fn(&PartitionInfo) -> bool,
) -> PartitionInfo {
    wait_for(&format!("{topic}-0 via broker {via}: {what}"), || {
        let view = partition_view(&mut try_client(cluster, via)?, topic)?;
        Ok(if done(&view) { Ok(view) } else { Err(view) })
    })
}

/// The active controller as broker `via` reports it.
pub(crate) fn controller(cluster: &DevCluster, via: i32) -> i32 {
    controller_and_brokers(&mut cluster.client(via))
        .expect("Metadata")
        .0
}

/// ElectLeaders(PREFERRED) for partition 0 of `topic`: its error code.
pub(crate) fn elect_preferred(cluster: &DevCluster, via: i32, topic: &str) -> i16 {
    let codes = elect_preferred_leaders(&mut cluster.client(via), topic, &[0])
        .unwrap_or_else(|e| panic!("ElectLeaders {topic}: {e:#}"));
    *codes
        .get(&0)
        .unwrap_or_else(|| panic!("ElectLeaders answer lacks {topic}-0: {codes:?}"))
}

/// Creates `topic` with one partition on `replicas` and min.insync.replicas=2,
/// and waits until every broker of the cluster reports a leader with every
/// replica in sync (each applies the metadata in its own time).
pub(crate) fn create_topic(cluster: &DevCluster, topic: &str, replicas: &[i32]) -> PartitionInfo {
    let mut admin = cluster.client(replicas[0]);
    create_assigned_topic(
        &mut admin,
        topic,
        &[replicas],
        &[("min.insync.replicas", "2")],
    )
    .unwrap_or_else(|e| panic!("create {topic}: {e:#}"));
    let mut view = None;
    for id in cluster.broker_ids() {
        view = Some(wait_partition(
            cluster,
            id,
            topic,
            "a leader with every replica in sync",
            |v| v.leader >= 0 && v.isr.len() == replicas.len(),
        ));
    }
    view.expect("a cluster has brokers")
}

/// The id of the partition's leader as broker `via` sees it, waiting for one.
pub(crate) fn leader_of(cluster: &DevCluster, via: i32, topic: &str) -> i32 {
    wait_partition(cluster, via, topic, "a leader", |v| v.leader >= 0).leader
}

/// Every record of partition 0 up to the high watermark, read from its
/// leader as broker `via` names it, as (offset, value).
pub(crate) fn read_all(cluster: &DevCluster, via: i32, topic: &str) -> Vec<(i64, String)> {
    wait_for(&format!("read {topic}-0 from its leader"), || {
        let leader = partition_view(&mut cluster.client(via), topic)?.leader;
        anyhow::ensure!(leader >= 0, "no leader");
        let records =
            KafkaConn::connect(&cluster.kafka_addr(leader).to_string())?.fetch_all(topic, 0, 0)?;
        Ok(Ok::<_, ()>(
            records
                .into_iter()
                .map(|r| {
                    let value = r.value.unwrap_or_default();
                    (r.offset, String::from_utf8_lossy(&value).into_owned())
                })
                .collect(),
        ))
    })
}

/// Panics unless every acknowledged (offset, value) is in `read` at that
/// offset.
#[track_caller]
pub(crate) fn assert_all_acked_present(
    read: &[(i64, String)],
    acked: &[(i64, String)],
    what: &str,
) {
    let by_offset: BTreeMap<i64, &str> = read.iter().map(|(o, v)| (*o, v.as_str())).collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(o, v)| by_offset.get(o) != Some(&v.as_str()))
        .take(10)
        .collect();
    assert!(
        lost.is_empty(),
        "{what}: {} of {} acknowledged records are not at their acknowledged offset \
         (first: {lost:?}); the log has {} records",
        acked
            .iter()
            .filter(|(o, v)| by_offset.get(o) != Some(&v.as_str()))
            .count(),
        acked.len(),
        read.len()
    );
}

/// Panics if a value starting with `prefix` occurs twice in `read`.
#[track_caller]
pub(crate) fn assert_no_duplicates(read: &[(i64, String)], prefix: &str) {
    let mut seen = BTreeMap::new();
    for (offset, value) in read.iter().filter(|(_, v)| v.starts_with(prefix)) {
        if let Some(first) = seen.insert(value.as_str(), *offset) {
            panic!("{value} is in the log twice: at offsets {first} and {offset}");
        }
    }
}

/// Broker `id`'s directory for partition 0 of `topic`.
pub(crate) fn partition_dir(cluster: &DevCluster, id: i32, topic: &str) -> PathBuf {
    cluster
        .data_dir()
        .join(format!("broker-{id}"))
        .join("data")
        .join(format!("{topic}-0"))
}

/// The complete record batches broker `id` stored for partition 0, across
/// its segments, as bytes; `None` if it has no directory for it.
pub(crate) fn stored_log(cluster: &DevCluster, id: i32, topic: &str) -> Option<Vec<u8>> {
    let dir = partition_dir(cluster, id, topic);
    if !dir.is_dir() {
        return None;
    }
    let mut out = Vec::new();
    for segment in log_segments(&dir) {
        let data = std::fs::read(&segment).unwrap_or_default();
        let end = parse_batches(&data)
            .last()
            .map_or(0, |b| (b.position + b.size) as usize);
        out.extend_from_slice(&data[..end]);
    }
    Some(out)
}

/// Waits until brokers `a` and `b` stored byte-identical logs for `topic`.
pub(crate) fn assert_same_log(cluster: &DevCluster, a: i32, b: i32, topic: &str) {
    let started = Instant::now();
    wait_for(
        &format!("brokers {a} and {b} store the same {topic}-0 log"),
        || {
            let (x, y) = (stored_log(cluster, a, topic), stored_log(cluster, b, topic));
            let sizes = (x.as_ref().map(Vec::len), y.as_ref().map(Vec::len));
            Ok(match (x, y) {
                (Some(x), Some(y)) if !x.is_empty() && x == y => Ok(x.len()),
                _ => Err(format!("stored bytes (broker {a}, broker {b}): {sizes:?}")),
            })
        },
    );
    eprintln!(
        "brokers {a} and {b} hold identical logs of {topic}-0 ({:?} to converge)",
        started.elapsed()
    );
}

/// Waits until `name` on broker `id` exceeds `above`; returns its value.
pub(crate) fn wait_metric_above(cluster: &DevCluster, id: i32, name: &str, above: f64) -> f64 {
    wait_for(&format!("{name} on broker {id} > {above}"), || {
        let v = metric_sum(&cluster.metrics_url(id), name)?;
        Ok(if v > above { Ok(v) } else { Err(v) })
    })
}

/// The background idempotent acks=all producer of `cluster_isr_produce.py
/// stream`: it acknowledges into a file the test can watch, and stops when
/// told.
pub(crate) struct Stream {
    process: Background,
    acked: PathBuf,
    stop: PathBuf,
}

impl Stream {
    pub(crate) fn start(cluster: &DevCluster, scratch: &Path, topic: &str) -> Stream {
        let acked = scratch.join(format!("{topic}.acked"));
        let stop = scratch.join(format!("{topic}.stop"));
        let process = Background::spawn(
            &mut py_command(
                "cluster_isr_produce.py",
                &[
                    "stream",
                    &cluster.bootstrap(),
                    topic,
                    "0",
                    acked.to_str().expect("utf-8 path"),
                    stop.to_str().expect("utf-8 path"),
                ],
            ),
            scratch,
            &format!("{topic}-producer"),
        );
        Stream {
            process,
            acked,
            stop,
        }
    }

    /// (offset, value) of every acknowledged record so far.
    pub(crate) fn acked(&self) -> Vec<(i64, String)> {
        std::fs::read_to_string(&self.acked)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (offset, value) = l.split_once(' ')?;
                Some((offset.parse().ok()?, value.to_string()))
            })
            .collect()
    }

    /// Waits until at least `n` records are acknowledged; returns how long
    /// that took.
    pub(crate) fn wait_acked(&self, n: usize) -> Duration {
        poll_until(
            PRODUCER_PROGRESS,
            &format!("{n} acknowledged records"),
            || {
                let got = self.acked().len();
                if got >= n {
                    Ok(())
                } else {
                    Err(format!(
                        "{got} acknowledged; producer stderr: {}",
                        self.process.stderr()
                    ))
                }
            },
        )
        .1
    }

    /// Waits until `more` records beyond those acknowledged now are.
    pub(crate) fn wait_more(&self, more: usize) -> Duration {
        self.wait_acked(self.acked().len() + more)
    }

    /// Stops the producer, waits for its last delivery reports, and returns
    /// every acknowledged record; fails if any record was not delivered.
    pub(crate) fn finish(mut self) -> Vec<(i64, String)> {
        std::fs::write(&self.stop, b"").expect("create the stop file");
        let status = self.process.wait(Duration::from_secs(60));
        let out = self.process.stdout();
        assert!(
            status.success(),
            "producer failed ({status})\n{out}\n{}",
            self.process.stderr()
        );
        let summary: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("producer summary {out:?}: {e}"));
        eprintln!("producer: {summary}");
        assert_eq!(
            summary["failed"], 0,
            "the idempotent acks=all producer lost records: {summary}"
        );
        let acked = self.acked();
        assert_eq!(
            summary["ok"].as_u64(),
            Some(acked.len() as u64),
            "{summary}"
        );
        acked
    }
}

/// What `cluster_isr_produce.py burst` reports.
pub(crate) struct Burst {
    pub(crate) acked: BTreeMap<String, i64>,
    pub(crate) failed: BTreeMap<String, String>,
}

impl Burst {
    pub(crate) fn acked_list(&self) -> Vec<(i64, String)> {
        self.acked.iter().map(|(v, o)| (*o, v.clone())).collect()
    }
}

/// Sends `n` records "`prefix`-i" with `acks` through confluent-kafka and
/// returns what the delivery reports said.
pub(crate) fn burst(
    cluster: &DevCluster,
    topic: &str,
    acks: &str,
    n: usize,
    prefix: &str,
    timeout_ms: u64,
) -> Burst {
    let out = run_py(
        "cluster_isr_produce.py",
        &[
            "burst",
            &cluster.bootstrap(),
            topic,
            "0",
            acks,
            &n.to_string(),
            prefix,
            &timeout_ms.to_string(),
        ],
    );
    let summary: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("burst summary {out:?}: {e}"));
    let map = |key: &str| -> BTreeMap<String, Value> {
        summary[key]
            .as_object()
            .map(|o| o.clone().into_iter().collect())
            .unwrap_or_default()
    };
    let burst = Burst {
        acked: map("acked")
            .into_iter()
            .map(|(k, v)| (k, v.as_i64().expect("an offset")))
            .collect(),
        failed: map("failed")
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
            .collect(),
    };
    eprintln!(
        "burst {prefix} (acks={acks}): {} acknowledged, {} failed {:?}, flush took {}s",
        burst.acked.len(),
        burst.failed.len(),
        burst.failed.values().collect::<BTreeSet<_>>(),
        summary["flush_s"]
    );
    burst
}

/// [`burst`] with a 20 s message timeout in which every record must be
/// acknowledged.
pub(crate) fn delivered(
    cluster: &DevCluster,
    topic: &str,
    acks: &str,
    n: usize,
    prefix: &str,
) -> Burst {
    let burst = burst(cluster, topic, acks, n, prefix, 20_000);
    assert!(
        burst.failed.is_empty(),
        "{prefix} (acks={acks}): {} of {n} records were not acknowledged: {:?}",
        burst.failed.len(),
        burst.failed
    );
    burst
}

/// The records of `read` whose value starts with `prefix`.
pub(crate) fn with_prefix<'a>(read: &'a [(i64, String)], prefix: &str) -> Vec<&'a (i64, String)> {
    read.iter().filter(|(_, v)| v.starts_with(prefix)).collect()
}

pub(crate) fn error_name(code: i16) -> String {
    match code.err() {
        None => "NONE".to_string(),
        Some(e) => format!("{e:?} ({code})"),
    }
}

pub(crate) fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("rivulet-isr-")
        .tempdir()
        .expect("create a temporary directory")
}
