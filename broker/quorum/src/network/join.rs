//! The AddLearner method: how a broker that is not a voter asks the leader
//! to replicate the metadata log to it, and what the leader does.
//!
//! Only the leader changes the membership; any other node answers with
//! the leader it knows of, so the joining node asks that one next. Asking
//! again is harmless: a node already in the membership under the same
//! address changes nothing, and one under another address (a restarted
//! pod with a new IP) gets its address updated.

use std::{collections::BTreeMap, fmt::Display};

use openraft::{
    error::{ForwardToLeader, RaftError},
    ChangeMembers, Raft, TryAsRef,
};
use serde::{Deserialize, Serialize};

use crate::raft_types::{Node, NodeId, TypeConfig};

/// A node asking to be replicated to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    /// Its node id.
    pub(crate) node_id: NodeId,
    /// `host:port` of its quorum listener, for the membership.
    pub(crate) addr: String,
}

/// The leader accepted the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Joined {
    /// The leader that answered.
    pub(crate) leader_id: NodeId,
    /// The leader's commit index when it answered (including the membership
    /// change that added the node): what the node must apply to be current.
    pub(crate) commit_index: u64,
}

/// Why the callee did not add the node; all are worth retrying.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum JoinRefused {
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
    #[error("the leader cannot add learners now: {0}")]
    Unavailable(String),
}

/// What an AddLearner call answers.
pub(crate) type JoinReply = Result<Joined, JoinRefused>;

/// Serves AddLearner on `raft`: adds the node as a learner without waiting
/// for it to catch up (openraft's non-blocking `add_learner`).
pub(crate) async fn add_learner(raft: &Raft<TypeConfig>, request: JoinRequest) -> JoinReply {
    // Confirm leadership first: a follower's view of the membership may be
    // stale, and the leader's commit index is part of the answer.
    let (read_log_id, _) = raft.get_read_log_id().await.map_err(refused)?;
    let mut commit_index = read_log_id.map_or(0, |id| id.index);
    let node = Node::new(request.addr);
    let (leader_id, known) = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        let known = m
            .membership_config
            .membership()
            .get_node(&request.node_id)
            .cloned();
        (m.id, known)
    };
    let nodes = BTreeMap::from([(request.node_id, node.clone())]);
    let change = match known {
        Some(current) if current == node => None,
        Some(_) => Some(ChangeMembers::SetNodes(nodes)),
        None => Some(ChangeMembers::AddNodes(nodes)),
    };
    if let Some(change) = change {
        tracing::info!(node_id = request.node_id, addr = %node.addr, "adding a learner");
        let written = raft
            .change_membership(change, true)
            .await
            .map_err(refused)?;
        commit_index = commit_index.max(written.log_id.index);
    }
    Ok(Joined {
        leader_id,
        commit_index,
    })
}

fn refused<E>(error: RaftError<NodeId, E>) -> JoinRefused
where
    E: TryAsRef<ForwardToLeader<NodeId, Node>> + Display + std::fmt::Debug,
{
    match error.forward_to_leader::<Node>() {
        Some(forward) => JoinRefused::NotLeader {
            leader_id: forward.leader_id,
            leader_addr: forward.leader_node.as_ref().map(|n| n.addr.clone()),
        },
        None => JoinRefused::Unavailable(error.to_string()),
    }
}
