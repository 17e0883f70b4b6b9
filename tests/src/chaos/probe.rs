//! Looking at a [`NetCluster`] during and after faults: who leads, who
//! controls, whether everything converged; and the availability figures
//! computed from the clients' acknowledgement logs.
//!
//! Every probe connects with a short timeout, because a broker behind a cut
//! link drops packets instead of refusing them, and skips paused brokers.

use std::{
    collections::BTreeMap,
    fmt,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::cluster::NetCluster;
use crate::{
    cluster_checks::{controller_and_brokers, topic_partitions, PartitionInfo},
    kafka::KafkaConn,
};

/// How long one probe waits for a broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Seconds on CLOCK_MONOTONIC, the clock Python's `time.monotonic()` reads,
/// so the harness's fault times and the clients' acknowledgement times
/// line up.
pub fn mono_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn conn(cluster: &NetCluster, id: usize) -> Result<KafkaConn, String> {
    KafkaConn::connect_within(&cluster.kafka_addr(id), PROBE_TIMEOUT).map_err(|e| format!("{e:#}"))
}

/// The partitions of `topic` as broker `id` reports them.
pub fn partitions(
    cluster: &NetCluster,
    id: usize,
    topic: &str,
) -> Result<BTreeMap<i32, PartitionInfo>, String> {
    topic_partitions(&mut conn(cluster, id)?, topic).map_err(|e| format!("{e:#}"))
}

/// The controller broker `id` reports (-1: none).
pub fn controller(cluster: &NetCluster, id: usize) -> Result<i32, String> {
    controller_and_brokers(&mut conn(cluster, id)?)
        .map(|(c, _)| c)
        .map_err(|e| format!("{e:#}"))
}

/// What broker `id` claims about itself: the partitions of `topic` it
/// reports itself leader of, and whether it reports itself the controller.
pub fn claims(cluster: &NetCluster, id: usize, topic: &str) -> Result<(Vec<i32>, bool), String> {
    let led = partitions(cluster, id, topic)?
        .into_iter()
        .filter(|(_, info)| info.leader == id as i32)
        .map(|(p, _)| p)
        .collect();
    Ok((led, controller(cluster, id)? == id as i32))
}

/// Brokers that are running and not paused.
pub fn answering(cluster: &mut NetCluster) -> Vec<usize> {
    cluster
        .ids()
        .into_iter()
        .filter(|&id| cluster.is_running(id) && !cluster.is_paused(id))
        .collect()
}

/// The first answer of `ask` among `ids`.
pub fn first_answer<T>(
    cluster: &NetCluster,
    ids: &[usize],
    ask: impl Fn(&NetCluster, usize) -> Result<T, String>,
) -> Result<T, String> {
    let mut errors = Vec::new();
    for &id in ids {
        match ask(cluster, id) {
            Ok(v) => return Ok(v),
            Err(e) => errors.push(format!("broker {id}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// Whether the whole cluster agrees it is healthy: every broker answers,
/// names the same controller, and reports every partition of `topic` with a
/// leader and a full ISR. `Err` says what is still missing.
pub fn converged(
    cluster: &mut NetCluster,
    topic: &str,
    partitions_wanted: usize,
) -> Result<(), String> {
    let ids = cluster.ids();
    let mut controllers = BTreeMap::new();
    for &id in &ids {
        if !cluster.is_running(id) || cluster.is_paused(id) {
            return Err(format!("broker {id} is not running"));
        }
        let c = controller(cluster, id)?;
        if c < 0 {
            return Err(format!("broker {id} knows no controller"));
        }
        controllers.insert(id, c);
        let parts = partitions(cluster, id, topic).map_err(|e| format!("broker {id}: {e}"))?;
        if parts.len() != partitions_wanted {
            return Err(format!("broker {id} reports {} partitions", parts.len()));
        }
        if let Some((p, info)) = parts
            .iter()
            .find(|(_, i)| i.leader < 0 || !i.fully_in_sync())
        {
            return Err(format!("broker {id}: partition {p} is {info:?}"));
        }
    }
    let mut distinct: Vec<i32> = controllers.values().copied().collect();
    distinct.dedup();
    if distinct.len() != 1 {
        return Err(format!("controllers by broker: {controllers:?}"));
    }
    Ok(())
}

/// Polls [`converged`] until it holds or `timeout` passes; returns how long
/// it took, or the last reason it did not hold.
pub fn wait_converged(
    cluster: &mut NetCluster,
    topic: &str,
    partitions_wanted: usize,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        match converged(cluster, topic, partitions_wanted) {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) if started.elapsed() >= timeout => return Err(e),
            Err(_) => thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// The controller as the brokers outside `isolated` see it, sampled every
/// 100 ms for `window`: the share of samples without one agreed controller,
/// and every controller seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControllerWatch {
    /// Samples taken.
    pub samples: usize,
    /// Samples in which the majority had no single controller.
    pub without: usize,
    /// Longest stretch without one agreed controller.
    pub longest_gap: Duration,
    /// Every agreed controller seen, in order, without repeats.
    pub seen: Vec<i32>,
}

/// Samples the controller the brokers in `ids` agree on for `window`.
pub fn watch_controller(cluster: &NetCluster, ids: &[usize], window: Duration) -> ControllerWatch {
    let mut watch = ControllerWatch::default();
    let started = Instant::now();
    let mut gap_since: Option<Instant> = None;
    while started.elapsed() < window {
        let sample = Instant::now();
        let views: Vec<Result<i32, String>> =
            ids.iter().map(|&id| controller(cluster, id)).collect();
        let agreed = match views.first() {
            Some(Ok(c)) if *c >= 0 && views.iter().all(|v| v.as_ref() == Ok(c)) => Some(*c),
            _ => None,
        };
        watch.samples += 1;
        match agreed {
            Some(c) => {
                if watch.seen.last() != Some(&c) {
                    watch.seen.push(c);
                }
                if let Some(since) = gap_since.take() {
                    watch.longest_gap = watch.longest_gap.max(since.elapsed());
                }
            }
            None => {
                watch.without += 1;
                gap_since.get_or_insert(sample);
            }
        }
        thread::sleep(Duration::from_millis(100).saturating_sub(sample.elapsed()));
    }
    if let Some(since) = gap_since {
        watch.longest_gap = watch.longest_gap.max(since.elapsed());
    }
    watch
}

/// One isolation's effect on writes: how long after the cut the partitions
/// the isolated broker led got their first acknowledgement again.
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    /// `isolate-controller` when the cut-off side held the active
    /// controller, else `isolate-leader` (whatever fault made the cut).
    pub kind: &'static str,
    /// The broker cut off.
    pub node: usize,
    /// The partition.
    pub partition: i32,
    /// Seconds from the cut to the first acknowledgement, if any came.
    pub gap: Option<f64>,
    /// Whether that acknowledgement came while the cut still held.
    pub before_heal: bool,
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gap {
            Some(gap) => write!(
                f,
                "{} of broker {}: partition {} acknowledged again {gap:.1} s after the cut{}",
                self.kind,
                self.node,
                self.partition,
                if self.before_heal {
                    ""
                } else {
                    " (only after healing)"
                }
            ),
            None => write!(
                f,
                "{} of broker {}: partition {} never acknowledged again",
                self.kind, self.node, self.partition
            ),
        }
    }
}

/// An isolation to measure: when it started and ended, and what it hit.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The fault kind.
    pub kind: &'static str,
    /// The isolated broker.
    pub node: usize,
    /// The partitions it led at the cut.
    pub led: Vec<i32>,
    /// CLOCK_MONOTONIC seconds of the cut.
    pub cut: f64,
    /// CLOCK_MONOTONIC seconds of the heal.
    pub healed: f64,
    /// What the isolated broker claimed just before the heal (partitions it
    /// said it led, whether it said it was the controller), or why it could
    /// not be asked.
    pub last_claims: Result<(Vec<i32>, bool), String>,
}

impl Isolation {
    /// Whether the isolated broker still claimed leadership or control at
    /// the end of a cut long enough for its lease to run out.
    pub fn stale_claims(&self, lease: f64) -> Option<String> {
        let held = self.healed - self.cut;
        match &self.last_claims {
            Ok((led, controller)) if held > lease && (!led.is_empty() || *controller) => {
                Some(format!(
                    "broker {} cut off for {held:.1} s still claimed to lead partitions {led:?}{}",
                    self.node,
                    if *controller {
                        " and to be the controller"
                    } else {
                        ""
                    }
                ))
            }
            _ => None,
        }
    }
}

/// Acknowledgements already on their way at the cut are not availability:
/// only those this long after it count.
const IN_FLIGHT: f64 = 0.5;

/// The availability figures of `isolations`, from acknowledgement logs of
/// `chaos_clients.py produce` (`{"p", "t", ...}` lines).
pub fn availability(isolations: &[Isolation], acked_files: &[&Path]) -> Vec<Availability> {
    let mut acks: BTreeMap<i32, Vec<f64>> = BTreeMap::new();
    for file in acked_files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for row in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            if let (Some(p), Some(t)) = (row["p"].as_i64(), row["t"].as_f64()) {
                acks.entry(p as i32).or_default().push(t);
            }
        }
    }
    for times in acks.values_mut() {
        times.sort_by(f64::total_cmp);
    }
    let mut out = Vec::new();
    for iso in isolations {
        for &partition in &iso.led {
            let first = acks
                .get(&partition)
                .and_then(|ts| ts.iter().find(|&&t| t > iso.cut + IN_FLIGHT).copied());
            out.push(Availability {
                kind: iso.kind,
                node: iso.node,
                partition,
                gap: first.map(|t| t - iso.cut),
                before_heal: first.is_some_and(|t| t < iso.healed),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_counts_the_first_ack_after_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("acked.jsonl");
        std::fs::write(
            &file,
            "{\"p\":0,\"t\":10.1}\n{\"p\":0,\"t\":14.0}\n{\"p\":1,\"t\":10.2}\n{\"p\":1,\"t\":25.0}\n",
        )
        .unwrap();
        let iso = Isolation {
            kind: "isolate-leader",
            node: 2,
            led: vec![0, 1, 2],
            cut: 10.0,
            healed: 20.0,
            last_claims: Ok((vec![1], false)),
        };
        assert!(iso.stale_claims(5.0).is_some());
        assert!(
            iso.stale_claims(15.0).is_none(),
            "a cut shorter than the lease proves nothing"
        );
        let got = availability(&[iso], &[file.as_path()]);
        assert_eq!(got[0].gap.map(|g| (g * 10.0).round()), Some(40.0));
        assert!(got[0].before_heal);
        assert!(
            !got[1].before_heal,
            "partition 1 came back only after the heal"
        );
        assert_eq!(got[2].gap, None);
    }
}
