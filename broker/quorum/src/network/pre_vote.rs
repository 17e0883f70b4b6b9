//! PreVote (the Raft thesis, section 9.6), which openraft 0.9 lacks: before
//! a follower raises its term to campaign, it asks the other voters
//! whether they would vote for it. A voter says yes only when it has not
//! heard from a live leader within the leader lease and the candidate's
//! log is at least as up to date as its own. Answering changes nothing on
//! the voter (no term, no vote), so a node cut off from the others asks
//! in vain without disturbing anyone, and its term stays where it was
//! until it hears from the leader again.
//!
//! The election itself is openraft's (`Raft::trigger().elect()`), started
//! by `node::elect` once a majority said yes.

use std::time::Duration;

use openraft::{Raft, ServerState};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{
    log_store::LogStore,
    raft_types::{LogId, NodeId, TypeConfig},
};

/// "Would you vote for me in the next term?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PreVoteRequest {
    /// The node that would campaign.
    pub candidate: NodeId,
    /// The id of its last log entry.
    pub last_log_id: Option<LogId>,
}

/// Why a voter would not vote for the candidate now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum PreVoteRefused {
    /// It heard from a live leader this long ago, within the lease (or it
    /// is that leader, acknowledged by a quorum this long ago).
    #[error("a leader was heard {since_ms} ms ago")]
    LeaderAlive {
        /// Milliseconds since then.
        since_ms: u64,
    },
    /// Its log is ahead of the candidate's.
    #[error("the candidate's log ends at {candidate:?}, this voter's at {voter:?}")]
    LogBehind {
        /// The candidate's last log id.
        candidate: Option<LogId>,
        /// The voter's.
        voter: Option<LogId>,
    },
    /// It does not vote (its log is new or was lost, see `node::admission`).
    #[error("this node does not vote until it has caught up")]
    NotVoting,
}

/// What a PreVote call answers.
pub(crate) type PreVoteReply = Result<(), PreVoteRefused>;

/// What a voter knows when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VoterView {
    /// Whether it may vote at all.
    pub admitted: bool,
    /// Its last log id.
    pub last_log_id: Option<LogId>,
    /// How long ago it last heard from a live leader (as that leader:
    /// how long ago a quorum acknowledged it); `None` when it follows
    /// nobody.
    pub leader_heard: Option<Duration>,
}

/// The grant rule: yes unless the voter does not vote, heard from a live
/// leader within `lease`, or holds a log the candidate lacks. Log ids
/// compare as openraft's vote does (by leader, then index).
pub(crate) fn verdict(view: &VoterView, request: &PreVoteRequest, lease: Duration) -> PreVoteReply {
    if !view.admitted {
        return Err(PreVoteRefused::NotVoting);
    }
    if let Some(since) = view.leader_heard.filter(|since| *since <= lease) {
        return Err(PreVoteRefused::LeaderAlive {
            since_ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
        });
    }
    if request.last_log_id.as_ref() >= view.last_log_id.as_ref() {
        Ok(())
    } else {
        Err(PreVoteRefused::LogBehind {
            candidate: request.last_log_id,
            voter: view.last_log_id,
        })
    }
}

/// How long ago this node last heard from a live leader, from openraft's
/// state: as leader, the last quorum acknowledgement; otherwise the last
/// time its committed vote (a leader's) was refreshed by that leader's
/// messages. `None` when no leader is known or Raft has stopped.
pub(crate) async fn leader_heard(raft: &Raft<TypeConfig>) -> Option<Duration> {
    let metrics = raft.metrics().borrow().clone();
    if metrics.state == ServerState::Leader {
        return metrics.millis_since_quorum_ack.map(Duration::from_millis);
    }
    let (committed, touched) = raft
        .with_raft_state(|s| (s.vote_ref().is_committed(), s.vote_last_modified()))
        .await
        .ok()?;
    let touched = touched.filter(|_| committed)?;
    Some(Instant::now().saturating_duration_since(touched))
}

/// Answers a PreVote call on this node.
pub(crate) async fn answer(
    raft: &Raft<TypeConfig>,
    log: &LogStore,
    admitted: bool,
    lease: Duration,
    request: &PreVoteRequest,
) -> PreVoteReply {
    let view = VoterView {
        admitted,
        last_log_id: log.last_log_id(),
        leader_heard: leader_heard(raft).await,
    };
    let reply = verdict(&view, request, lease);
    if let Err(why) = &reply {
        tracing::debug!(candidate = request.candidate, %why, "pre-vote refused");
    }
    reply
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log_id(term: u64, node: NodeId, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, node), index))
    }

    fn view(leader_heard: Option<u64>, last: Option<LogId>) -> VoterView {
        VoterView {
            admitted: true,
            last_log_id: last,
            leader_heard: leader_heard.map(Duration::from_millis),
        }
    }

    fn asks(last: Option<LogId>) -> PreVoteRequest {
        PreVoteRequest {
            candidate: 3,
            last_log_id: last,
        }
    }

    const LEASE: Duration = Duration::from_millis(2000);

    #[test]
    fn a_voter_that_heard_a_live_leader_refuses() {
        let mine = log_id(6, 1, 40);
        let refused = verdict(&view(Some(150), mine), &asks(mine), LEASE);
        assert_eq!(refused, Err(PreVoteRefused::LeaderAlive { since_ms: 150 }));
        // Exactly at the lease is still within it.
        assert!(verdict(&view(Some(2000), mine), &asks(mine), LEASE).is_err());
        // Past the lease, or following nobody: yes.
        assert_eq!(verdict(&view(Some(2001), mine), &asks(mine), LEASE), Ok(()));
        assert_eq!(verdict(&view(None, mine), &asks(mine), LEASE), Ok(()));
    }

    #[test]
    fn a_candidate_must_hold_every_entry_the_voter_holds() {
        let mine = log_id(6, 1, 40);
        let behind = log_id(6, 1, 39);
        let older_term_longer = log_id(5, 2, 90);
        let newer_term_shorter = log_id(7, 2, 10);
        let no = |c| verdict(&view(None, mine), &asks(c), LEASE);
        assert!(matches!(no(behind), Err(PreVoteRefused::LogBehind { .. })));
        assert!(matches!(
            no(older_term_longer),
            Err(PreVoteRefused::LogBehind { .. })
        ));
        assert!(matches!(no(None), Err(PreVoteRefused::LogBehind { .. })));
        assert_eq!(no(newer_term_shorter), Ok(()));
        assert_eq!(no(log_id(6, 1, 41)), Ok(()));
        // An empty voter log is behind any candidate.
        assert_eq!(verdict(&view(None, None), &asks(None), LEASE), Ok(()));
    }

    #[test]
    fn a_voter_that_does_not_vote_refuses_everyone() {
        let mut v = view(None, None);
        v.admitted = false;
        assert_eq!(
            verdict(&v, &asks(log_id(9, 1, 9)), LEASE),
            Err(PreVoteRefused::NotVoting)
        );
    }
}
