//! The AddLearner method: how a broker that is not a voter asks the leader
//! to replicate the metadata log to it, and what the leader does.
//!
//! Only the leader changes the membership; any other node answers with
//! the leader it knows of, so the joining node asks that one next. Asking
//! again is harmless: a node already in the membership under the same
//! address changes nothing, and one under another address (a restarted
//! pod with a new IP) gets its address updated.
//!
//! Every node joins this way on every start, voters too: a voter that
//! comes back with another directory (its disk was lost) keeps its old
//! entry, so it does not count as that voter, until the leader has
//! replicated the log to it; then its entry takes the new directory id
//! (KIP-853's replacement of a voter). Initial voters listed by address
//! only claim their entry the same way.

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
    /// The id of its data directory.
    #[serde(default)]
    pub(crate) directory_id: Option<uuid::Uuid>,
    /// For a voter with a new directory: the leader's commit index when it
    /// first answered [`JoinRefused::CatchingUp`], which was after the old
    /// directory's last acknowledgement. Holding the log up to it is
    /// enough to be recorded (the log keeps growing with heartbeats, so
    /// "up to the current commit index" could be chased for long).
    #[serde(default)]
    pub(crate) catch_up_to: Option<u64>,
    /// The last index of its own log when it asked. The leader's view of
    /// a follower's progress can predate a lost disk (it is only corrected
    /// by the next conflict), so the node's own word is what counts.
    #[serde(default)]
    pub(crate) log_end: Option<u64>,
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
    /// The node is a voter whose directory changed (or was never
    /// recorded), and it has not caught up with the log yet: the leader
    /// replicates to it, and records its directory once it has.
    #[error(
        "a voter with a new directory; catching up: it holds up to {log_end:?} of {commit_index}"
    )]
    CatchingUp {
        /// What it holds, as the leader knows.
        log_end: Option<u64>,
        /// What the leader committed.
        commit_index: u64,
    },
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
    let node = Node::new(request.addr, request.directory_id);
    let (leader_id, known, is_voter) = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let known = membership.get_node(&request.node_id).cloned();
        let is_voter = membership.voter_ids().any(|v| v == request.node_id);
        (m.id, known, is_voter)
    };
    let log_end = request.log_end;
    let nodes = |node: Node| BTreeMap::from([(request.node_id, node)]);
    let change = match known {
        Some(current) if current == node => None,
        // A voter under another directory (or none yet): it must not count
        // as that voter before it holds the log. Until then only its
        // address may change, under the old directory.
        Some(current)
            if is_voter
                && current.directory_id != node.directory_id
                && node.directory_id.is_some()
                && log_end.unwrap_or(0)
                    < request
                        .catch_up_to
                        .unwrap_or(commit_index)
                        .min(commit_index) =>
        {
            if current.addr != node.addr {
                let moved = Node::new(node.addr.clone(), current.directory_id);
                raft.change_membership(ChangeMembers::SetNodes(nodes(moved)), true)
                    .await
                    .map_err(refused)?;
            }
            return Err(JoinRefused::CatchingUp {
                log_end,
                commit_index,
            });
        }
        Some(current) => {
            // The directory a voter claims once caught up; a request
            // without one (an older node) keeps the recorded one.
            let node = Node::new(
                node.addr.clone(),
                node.directory_id.or(current.directory_id),
            );
            (node != current).then(|| {
                if current.directory_id != node.directory_id {
                    tracing::warn!(
                        node_id = request.node_id,
                        old = ?current.directory_id,
                        new = ?node.directory_id,
                        voter = is_voter,
                        "recording a new directory for a member"
                    );
                }
                ChangeMembers::SetNodes(nodes(node))
            })
        }
        None => Some(ChangeMembers::AddNodes(nodes(node.clone()))),
    };
    if let Some(change) = change {
        tracing::info!(node_id = request.node_id, addr = %node.addr, "adding a learner or updating a member");
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
