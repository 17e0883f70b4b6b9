//! Whether this node may vote and stand for election.
//!
//! A voter's promise (its vote, the entries it acknowledged) lives in its
//! log. A node whose log is empty, or whose membership entry names
//! another directory than its own, may have lost such promises with a
//! disk: it neither votes nor campaigns until it holds the log again and
//! the leader has recorded its new directory (see `network::join`). The
//! exception is a directory formatted to found the quorum, whose empty log
//! promised nothing yet.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use openraft::{Raft, RaftMetrics};
use uuid::Uuid;

use crate::raft_types::{Node, NodeId, TypeConfig};

/// Whether a node with these metrics may vote.
pub(crate) fn admitted(
    metrics: &RaftMetrics<NodeId, Node>,
    directory_id: Uuid,
    founder: bool,
) -> bool {
    let membership = metrics.membership_config.membership();
    if membership.nodes().next().is_none() {
        // No log yet: only a founder's empty log is known to be fresh.
        return founder && metrics.last_log_index.is_none();
    }
    let is_voter = membership.voter_ids().any(|v| v == metrics.id);
    match membership.get_node(&metrics.id) {
        // Recorded under this directory, or an initial voter listed by
        // address only (trusted on first use; it claims its entry once it
        // is current).
        Some(node) if is_voter => node.directory_id.is_none_or(|d| d == directory_id),
        // A learner is never asked for its vote; nor may it campaign.
        _ => true,
    }
}

/// Follows `raft`'s metrics and keeps `flag` (read by the Vote and
/// PreVote handlers and by the election task, `elect.rs`) in line with
/// [`admitted`].
pub(crate) fn follow(
    raft: &Raft<TypeConfig>,
    flag: Arc<AtomicBool>,
    directory_id: Uuid,
    founder: bool,
) {
    let mut metrics = raft.metrics();
    let apply = move |m: &RaftMetrics<NodeId, Node>| {
        let now = admitted(m, directory_id, founder);
        if flag.swap(now, Ordering::AcqRel) != now {
            if now {
                tracing::info!(node_id = m.id, "this node votes in the quorum");
            } else {
                tracing::warn!(
                    node_id = m.id,
                    "this node's log is new or was lost: it neither votes nor campaigns until it has caught up"
                );
            }
        }
    };
    // The flag starts true; `apply` acts (and logs) only on a change.
    let first = metrics.borrow_and_update().clone();
    apply(&first);
    tokio::spawn(async move {
        while metrics.changed().await.is_ok() {
            let m = metrics.borrow_and_update().clone();
            apply(&m);
        }
    });
}
