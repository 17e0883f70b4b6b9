//! Taking a partition leader away under a running producer: the setup the
//! kill -9 and SIGTERM tests share, and the SIGTERM itself with what it
//! takes to complete.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rivulet_tests::{
    cluster::DevCluster,
    cluster_checks::{
        create_replicated_topic, partitions_from, poll_until, wait_agreed_controller,
        wait_fully_in_sync, PartitionInfo,
    },
    unique_topic,
};
use tempfile::TempDir;

use super::{clients::StreamProducer, start_cluster, FAILOVER_BOUND, PARTITIONS, TOPIC_CONFIGS};

/// Partitions of `parts` led by `leader`.
pub fn led_by(parts: &BTreeMap<i32, PartitionInfo>, leader: i32) -> Vec<i32> {
    parts
        .iter()
        .filter(|(_, p)| p.leader == leader)
        .map(|(&i, _)| i)
        .collect()
}

/// Partition -> leader, for printing.
pub fn leaders(parts: &BTreeMap<i32, PartitionInfo>) -> BTreeMap<i32, i32> {
    parts.iter().map(|(&p, info)| (p, info.leader)).collect()
}

/// A fully in-sync topic of [`PARTITIONS`] partitions (replication factor
/// 3) under a running idempotent producer acknowledged on every partition,
/// and the leader a test is about to take away: never the controller, whose
/// loss is a test of its own.
pub struct LeaderLoss {
    /// The topic.
    pub topic: String,
    /// The active controller when the run started.
    pub controller: i32,
    /// The topic's partitions before anything happened.
    pub before: BTreeMap<i32, PartitionInfo>,
    /// The leader to take away.
    pub victim: i32,
    /// The partitions it leads.
    pub victim_parts: Vec<i32>,
    /// The other brokers.
    pub survivors: Vec<i32>,
    /// The producer, running.
    pub producer: StreamProducer,
    /// Where the producer's files are.
    pub dir: TempDir,
}

impl LeaderLoss {
    /// Creates the topic and starts the producer.
    pub fn start(cluster: &DevCluster, prefix: &str) -> LeaderLoss {
        let all = cluster.broker_ids();
        let topic = unique_topic(prefix);
        create_replicated_topic(&mut cluster.client(0), &topic, PARTITIONS, 3, TOPIC_CONFIGS)
            .expect("create the topic");
        let (before, _) =
            wait_fully_in_sync(cluster, &all, &topic, PARTITIONS as usize, FAILOVER_BOUND);
        let (controller, _) = wait_agreed_controller(cluster, &all, FAILOVER_BOUND);
        let victim = before
            .values()
            .map(|p| p.leader)
            .find(|&l| l != controller)
            .unwrap_or_else(|| panic!("the controller leads every partition: {before:?}"));
        let victim_parts = led_by(&before, victim);
        let survivors = all.into_iter().filter(|&id| id != victim).collect();
        eprintln!("controller {controller}; broker {victim} leads {victim_parts:?}");
        let dir = tempfile::tempdir().expect("scratch dir");
        let producer =
            StreamProducer::start(&cluster.bootstrap(), &topic, 0, dir.path(), "producer1");
        producer.wait_everywhere(PARTITIONS, 300);
        LeaderLoss {
            topic,
            controller,
            before,
            victim,
            victim_parts,
            survivors,
            producer,
            dir,
        }
    }

    /// Waits until survivors lead every partition; returns the partitions
    /// and how long that took.
    pub fn wait_moved(
        &self,
        cluster: &DevCluster,
        timeout: Duration,
    ) -> (BTreeMap<i32, PartitionInfo>, Duration) {
        poll_until(timeout, "every partition led by a survivor", || {
            let parts = partitions_from(cluster, &self.survivors, &self.topic)?;
            if parts.len() == PARTITIONS as usize
                && parts.values().all(|p| self.survivors.contains(&p.leader))
            {
                Ok(parts)
            } else {
                Err(format!("{parts:?}"))
            }
        })
    }
}

/// Broker session timeout of the SIGTERM tests: long, so leaderships that
/// move sooner were moved by the controlled shutdown, not by fencing.
pub const LONG_SESSION_TIMEOUT: Duration = Duration::from_secs(20);

/// How a SIGTERM to a leader went, each time measured from the signal.
pub struct Sigterm {
    /// Until survivors led every partition.
    pub moved: Duration,
    /// Until the process was gone.
    pub exited: Duration,
    /// Until the producer had 50 acknowledgements from the new leaders on
    /// each partition the stopped broker led.
    pub resumed: Duration,
}

/// A cluster whose brokers are fenced only after [`LONG_SESSION_TIMEOUT`],
/// with a [`LeaderLoss`] set up in it.
pub fn start_sigterm_run(prefix: &str) -> (DevCluster, LeaderLoss) {
    let millis = LONG_SESSION_TIMEOUT.as_millis().to_string();
    let cluster = start_cluster(&[("broker.session.timeout.ms", &millis)]);
    let run = LeaderLoss::start(&cluster, prefix);
    (cluster, run)
}

/// Sends SIGTERM to the run's victim and waits until its leaderships moved
/// (within half the session timeout), runs `moved_hook`, then waits until
/// the victim exited, `dev` reported exit status 0, and the producer carried
/// on through the new leaders.
pub fn sigterm_leader(
    cluster: &mut DevCluster,
    run: &LeaderLoss,
    moved_hook: impl FnOnce(&mut DevCluster),
) -> Sigterm {
    let victim = run.victim;
    let last_before = run.producer.last_offsets();
    let pid = libc::pid_t::try_from(cluster.pid(victim)).expect("pid fits pid_t");
    // SAFETY: kill(2) on the broker process this cluster started; no memory
    // is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
    let signalled = Instant::now();
    let (after, moved) = run.wait_moved(cluster, LONG_SESSION_TIMEOUT / 2);
    eprintln!(
        "SIGTERM to broker {victim}: leaderships moved {moved:?} after it \
         (session timeout {LONG_SESSION_TIMEOUT:?}): {:?}",
        leaders(&after)
    );
    moved_hook(cluster);
    poll_until(FAILOVER_BOUND, "the broker exits", || {
        if cluster.is_running(victim) {
            Err("still running")
        } else {
            Ok(())
        }
    });
    let exited = signalled.elapsed();
    // `dev` reaps its brokers and reports how each one ended.
    let clean_exit = format!("broker {victim} exited (exit status: 0)");
    poll_until(
        Duration::from_secs(10),
        "a clean exit reported by dev",
        || {
            let stderr = cluster.dev_stderr();
            if stderr.contains(&clean_exit) {
                Ok(())
            } else {
                Err(stderr)
            }
        },
    );
    run.producer
        .wait_beyond(&run.victim_parts, &last_before, 50);
    let resumed = signalled.elapsed();
    eprintln!(
        "broker {victim} exited {exited:?} after SIGTERM; the producer resumed by {resumed:?}"
    );
    Sigterm {
        moved,
        exited,
        resumed,
    }
}
