//! The voter set (KIP-853): Describe, AddVoter and RemoveVoter, served
//! by the leader only (any other node answers with the leader it knows
//! of, and the caller asks that one).
//!
//! A voter is a node id and a directory id. AddVoter promotes a learner
//! (a broker that follows the metadata log) once it has caught up;
//! RemoveVoter demotes a voter to a learner, so the broker keeps following
//! the log. Both are openraft membership changes (joint consensus), so the
//! answer comes once the new voter set is committed.

use std::{collections::BTreeSet, fmt::Display};

use openraft::{
    error::{ForwardToLeader, RaftError},
    ChangeMembers, Raft, TryAsRef,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::raft_types::{Node, NodeId, TypeConfig};

/// How far behind the leader's commit index a learner may be and still be
/// promoted: a voter that far behind would hold up commits until it
/// caught up, so promotion waits.
pub(crate) const CAUGHT_UP_LAG: u64 = 100;

/// One member of the quorum as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// Its node id (the broker id).
    pub node_id: NodeId,
    /// The directory id recorded for it, if any.
    pub directory_id: Option<Uuid>,
    /// `host:port` of its controller listener.
    pub addr: String,
    /// The last log index the leader knows it holds (the leader's own last
    /// log index for itself); `None` when not yet known.
    pub log_end: Option<u64>,
}

/// The quorum as its leader describes it (DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    /// The leader (the node that answered).
    pub leader_id: NodeId,
    /// Its term (Kafka's leader epoch).
    pub term: u64,
    /// The commit index (Kafka's high watermark of the metadata log).
    pub commit_index: u64,
    /// The voters.
    pub voters: Vec<MemberState>,
    /// Members that follow the log without voting (Kafka's observers).
    pub observers: Vec<MemberState>,
}

/// A voter to add or remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterChange {
    /// The node id.
    pub node_id: NodeId,
    /// Its directory id; `None` accepts whatever directory is recorded.
    pub directory_id: Option<Uuid>,
}

impl VoterChange {
    /// Voter `node_id` with directory `directory_id`, if given.
    pub fn new(node_id: NodeId, directory_id: Option<Uuid>) -> Self {
        Self {
            node_id,
            directory_id,
        }
    }
}

/// Why the leader did not do it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum VotersRefused {
    /// The callee is not the leader; this is the one it knows of.
    #[error("not the leader; the leader is {leader_id:?} at {leader_addr:?}")]
    NotLeader {
        /// The leader's id, if known.
        leader_id: Option<NodeId>,
        /// The leader's address, if known.
        leader_addr: Option<String>,
    },
    /// The leader cannot change the membership now (another change is
    /// being committed, its quorum is unreachable, or it is stopping).
    #[error("the leader cannot change the voters now: {0}")]
    Unavailable(String),
    /// The node does not follow the metadata log (it never started, or
    /// started with another cluster id).
    #[error("node {0} does not follow the metadata log; start it first")]
    UnknownNode(NodeId),
    /// The node follows the log with another directory than requested.
    #[error("node {node_id} has directory {actual:?}, not {requested}")]
    DirectoryMismatch {
        /// The node.
        node_id: NodeId,
        /// The directory asked for.
        requested: Uuid,
        /// The directory recorded.
        actual: Option<Uuid>,
    },
    /// The learner is still catching up with the log.
    #[error("node {node_id} is catching up: it holds up to {log_end:?} of {commit_index}")]
    NotCaughtUp {
        /// The node.
        node_id: NodeId,
        /// What it holds.
        log_end: Option<u64>,
        /// What the leader committed.
        commit_index: u64,
    },
    /// Removing it would leave no voter.
    #[error("node {0} is the last voter; a quorum needs at least one")]
    LastVoter(NodeId),
    /// The node is not a voter (RemoveVoter).
    #[error("node {0} is not a voter")]
    NotAVoter(NodeId),
}

/// What a voter-set call answers.
pub(crate) type VotersReply<T> = Result<T, VotersRefused>;

/// Describes the quorum, if `raft` leads it.
pub(crate) async fn describe(
    raft: &Raft<TypeConfig>,
    commit_index: u64,
) -> VotersReply<QuorumState> {
    raft.ensure_linearizable().await.map_err(refused)?;
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
    let replication = metrics.replication.clone().unwrap_or_default();
    let member = |(&node_id, node): (&NodeId, &Node)| MemberState {
        node_id,
        directory_id: node.directory_id,
        addr: node.addr.clone(),
        log_end: if node_id == metrics.id {
            metrics.last_log_index
        } else {
            replication
                .get(&node_id)
                .copied()
                .flatten()
                .map(|l| l.index)
        },
    };
    let (voters, observers) = membership
        .nodes()
        .map(member)
        .partition(|m| voter_ids.contains(&m.node_id));
    Ok(QuorumState {
        leader_id: metrics.id,
        term: metrics.current_term,
        commit_index,
        voters,
        observers,
    })
}

/// Adds (`add`) or removes a voter, if `raft` leads the quorum.
pub(crate) async fn change(
    raft: &Raft<TypeConfig>,
    change: VoterChange,
    add: bool,
) -> VotersReply<()> {
    let (read_log_id, _) = raft.get_read_log_id().await.map_err(refused)?;
    let commit_index = read_log_id.map_or(0, |id| id.index);
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let id = change.node_id;
    let is_voter = membership.voter_ids().any(|v| v == id);
    let node = membership.get_node(&id);
    if let (Some(requested), Some(node)) = (change.directory_id, node) {
        if node.directory_id.is_some_and(|actual| actual != requested) {
            return Err(VotersRefused::DirectoryMismatch {
                node_id: id,
                requested,
                actual: node.directory_id,
            });
        }
    }
    let members = if add {
        if is_voter {
            return Ok(());
        }
        if node.is_none() {
            return Err(VotersRefused::UnknownNode(id));
        }
        let log_end = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).copied().flatten())
            .map(|l| l.index);
        if log_end.unwrap_or(0) + CAUGHT_UP_LAG < commit_index || log_end.is_none() {
            return Err(VotersRefused::NotCaughtUp {
                node_id: id,
                log_end,
                commit_index,
            });
        }
        tracing::info!(node_id = id, "adding a voter");
        ChangeMembers::AddVoterIds(BTreeSet::from([id]))
    } else {
        if !is_voter {
            return Err(VotersRefused::NotAVoter(id));
        }
        if membership.voter_ids().count() == 1 {
            return Err(VotersRefused::LastVoter(id));
        }
        tracing::info!(node_id = id, "removing a voter; it stays a learner");
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    };
    raft.change_membership(members, true)
        .await
        .map_err(refused)?;
    Ok(())
}

pub(super) fn refused<E>(error: RaftError<NodeId, E>) -> VotersRefused
where
    E: TryAsRef<ForwardToLeader<NodeId, Node>> + Display + std::fmt::Debug,
{
    match error.forward_to_leader::<Node>() {
        Some(forward) => VotersRefused::NotLeader {
            leader_id: forward.leader_id,
            leader_addr: forward.leader_node.as_ref().map(|n| n.addr.clone()),
        },
        None => VotersRefused::Unavailable(error.to_string()),
    }
}
