//! Gauges of a quorum node as plain values, for the broker's Prometheus
//! registry: the Raft state, and the controller gauges Kafka dashboards
//! read (`kafka_controller_kafkacontroller_*`), derived from the image.

use std::sync::atomic::{AtomicU64, Ordering};

use openraft::{Raft, ServerState};
use tokio::sync::watch;

use super::QuorumNode;
use crate::raft_types::{NodeId, TypeConfig};

/// The Raft role of a node, as a plain value for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumRole {
    /// Leads the quorum (the active controller).
    Leader,
    /// Follows a leader.
    Follower,
    /// Running an election.
    Candidate,
    /// Replicates but does not vote.
    Learner,
    /// Stopped.
    Shutdown,
}

/// A point-in-time view of a node's Raft state and metadata image.
///
/// Kafka reports the cluster-wide gauges (brokers, topics, partitions) only
/// on the active controller and 0 elsewhere, so that sums over the cluster
/// are right; these carry the value on every node and leave that choice to
/// the exporter (`active_controller_count` tells which node is active).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumMetrics {
    /// This node's id.
    pub node_id: NodeId,
    /// Its role.
    pub role: QuorumRole,
    /// 1 on the active controller, else 0 (`ActiveControllerCount`).
    pub active_controller_count: u8,
    /// Current Raft term: the controller epoch.
    pub term: u64,
    /// The leader it knows of.
    pub leader_id: Option<NodeId>,
    /// The candidate this node voted for in the current term.
    pub voted_for: Option<NodeId>,
    /// Highest log index known committed (0 if none).
    pub commit_index: u64,
    /// Highest log index in the local log (0 if none).
    pub last_log_index: u64,
    /// Highest log index applied to the image (0 if none).
    pub last_applied: u64,
    /// Voter ids of the current membership.
    pub voters: Vec<NodeId>,
    /// Learner ids of the current membership (brokers that only follow).
    pub learners: Vec<NodeId>,
    /// Registered, unfenced brokers (`ActiveBrokerCount`).
    pub live_brokers: usize,
    /// Registered, fenced brokers (`FencedBrokerCount`).
    pub fenced_brokers: usize,
    /// Topics (`GlobalTopicCount`).
    pub topics: usize,
    /// Partitions (`GlobalPartitionCount`).
    pub partitions: usize,
    /// Partitions without a leader (`OfflinePartitionsCount`).
    pub offline_partitions: usize,
    /// Partitions not led by their preferred replica
    /// (`PreferredReplicaImbalanceCount`).
    pub preferred_replica_imbalance: usize,
}

impl QuorumNode {
    /// A snapshot of the Raft metrics and image counts as plain values.
    pub fn metrics(&self) -> QuorumMetrics {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => QuorumRole::Leader,
            ServerState::Follower => QuorumRole::Follower,
            ServerState::Candidate => QuorumRole::Candidate,
            ServerState::Learner => QuorumRole::Learner,
            ServerState::Shutdown => QuorumRole::Shutdown,
        };
        let image = self.metadata.borrow().clone();
        let fenced_brokers = image.brokers.values().filter(|b| b.fenced).count();
        let partitions = || image.topics.values().flat_map(|t| t.partitions.values());
        let membership = m.membership_config.membership();
        QuorumMetrics {
            node_id: self.id,
            role,
            active_controller_count: u8::from(role == QuorumRole::Leader),
            term: m.current_term,
            leader_id: m.current_leader,
            voted_for: m.vote.leader_id().voted_for(),
            commit_index: self.commit_index.load(Ordering::Relaxed),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |id| id.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            live_brokers: image.brokers.len() - fenced_brokers,
            fenced_brokers,
            topics: image.topics.len(),
            partitions: partitions().count(),
            offline_partitions: partitions().filter(|p| p.leader.is_none()).count(),
            preferred_replica_imbalance: partitions()
                .filter(|p| p.leader != p.preferred_leader())
                .count(),
        }
    }
}

/// How long this process's metadata proposals took to commit and apply,
/// for Kafka's `commit-latency-avg`/`-max`. Process-wide, like the
/// transport's channel counters: a broker process runs one quorum node.
pub static COMMIT_LATENCY: CommitLatency = CommitLatency::new();

/// Count, sum and maximum of commit latencies, in microseconds.
#[derive(Debug)]
pub struct CommitLatency {
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

impl CommitLatency {
    const fn new() -> Self {
        CommitLatency {
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }

    /// Records one committed proposal.
    pub fn observe(&self, took: std::time::Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// (commits, total seconds, longest seconds) so far.
    pub fn totals(&self) -> (u64, f64, f64) {
        (
            self.count.load(Ordering::Relaxed),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            self.max_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

/// A watch of the leader id that changes only when the leader does, fed
/// from Raft's metrics (which change on every commit) by a task that ends
/// with Raft or when nobody watches any more.
pub(super) fn follow_leader(raft: &Raft<TypeConfig>) -> watch::Receiver<Option<NodeId>> {
    let mut metrics = raft.metrics();
    let (tx, rx) = watch::channel(metrics.borrow().current_leader);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { break },
                () = tx.closed() => break,
            }
            let leader = metrics.borrow_and_update().current_leader;
            tx.send_if_modified(|current| std::mem::replace(current, leader) != leader);
        }
    });
    rx
}
