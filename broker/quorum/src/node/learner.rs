//! Brokers that are not voters follow the metadata log as Raft learners:
//! they receive every entry (so their image is as current as a voter's)
//! but take no part in elections or commits.
//!
//! Joining is the learner's own job: it asks the voters, over AddLearner,
//! to add it; whoever is not the leader answers with the leader, which
//! adds it without waiting for it to catch up. Then the learner waits
//! until the leader replicates to it and its image reaches what the leader
//! had committed. After a restart on the same data dir the membership
//! still holds it and the leader resumes replicating by itself; joining
//! again is a cheap no-op (or updates its address).

use std::{collections::BTreeMap, time::Duration};

use tokio::time::Instant;

use super::QuorumNode;
use crate::{
    error::QuorumError,
    network::{JoinRefused, JoinReply, JoinRequest, Method, TransportError},
    raft_types::NodeId,
};

/// Pause between join attempts that failed without naming a leader: long
/// enough not to hammer voters that are starting, short against elections.
const JOIN_RETRY_PAUSE: Duration = Duration::from_millis(200);

impl QuorumNode {
    /// Joins the quorum of `voters` (id -> `host:port` of their quorum
    /// listeners, the map the voters were initialized with) as a learner,
    /// under this node's [`advertised_addr`](Self::advertised_addr), and
    /// waits until this node follows the leader and its image has reached
    /// the leader's commit index at the time of joining.
    ///
    /// Retries through unreachable voters, elections and concurrent joins
    /// until `bootstrap_timeout`, so brokers may start before the voters.
    /// Idempotent: a node that is a learner or voter already is fine.
    /// Call it on every start of a broker that is not a voter; never call
    /// [`initialize`](Self::initialize) on one.
    pub async fn join_as_learner(
        &self,
        voters: &BTreeMap<NodeId, String>,
    ) -> Result<(), QuorumError> {
        if voters.is_empty() {
            return Err(QuorumError::InvalidVoters("no voters to join".into()));
        }
        let timeout = self.config.bootstrap_timeout;
        let deadline = Instant::now() + timeout;
        let mut request = JoinRequest {
            node_id: self.id,
            addr: self.config.advertised_addr.clone(),
            directory_id: Some(self.config.directory_id),
            catch_up_to: None,
            log_end: None,
        };
        let mut voter_addrs = voters.values().cycle();
        let mut leader_hint: Option<String> = None;
        let mut last = String::from("no voter answered");
        let joined = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(QuorumError::JoinTimeout { timeout, last });
            }
            let (addr, hinted) = match leader_hint.take() {
                Some(addr) => (addr, true),
                None => (
                    voter_addrs.next().expect("voters is not empty").clone(),
                    false,
                ),
            };
            request.log_end = self.raft.metrics().borrow().last_log_index;
            // The callee bounds its part by propose_timeout; allow for the trip.
            let bound = remaining.min(self.config.propose_timeout + self.config.rpc_timeout);
            let reply: Result<JoinReply, TransportError> = self
                .peer_client(&addr)
                .call(Method::AddLearner, &request, Vec::new(), bound)
                .await;
            match reply {
                Ok(Ok(joined)) => break joined,
                Ok(Err(JoinRefused::NotLeader {
                    leader_addr: Some(leader),
                    ..
                })) if leader != addr => {
                    // Ask the leader next: at once, unless this answer came
                    // from a supposed leader (views disagree mid-election).
                    last = format!("{addr} is not the leader");
                    leader_hint = Some(leader);
                    if !hinted {
                        continue;
                    }
                }
                Ok(Err(JoinRefused::CatchingUp { commit_index, .. })) => {
                    // A voter with a new directory: the leader replicates
                    // to it; ask again once it holds what was committed
                    // when it first asked. Not bounded by the join's
                    // deadline: a large log takes as long as it takes.
                    let target = *request.catch_up_to.get_or_insert(commit_index);
                    last = format!("catching up to {target} before voting again");
                    tracing::info!(
                        node_id = self.id,
                        target,
                        "this voter's directory is new; catching up before it votes"
                    );
                    let _ = self
                        .wait_for_offset(target, self.config.propose_timeout)
                        .await;
                    continue;
                }
                Ok(Err(refused)) => last = format!("{addr}: {refused}"),
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(node_id = self.id, %last, "join attempt failed; retrying");
            tokio::time::sleep_until((Instant::now() + JOIN_RETRY_PAUSE).min(deadline)).await;
        };
        tracing::info!(
            node_id = self.id,
            leader = joined.leader_id,
            commit_index = joined.commit_index,
            "joined the quorum as a learner; catching up"
        );
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(remaining))
            .metrics(|m| m.current_leader.is_some(), "the leader replicates here")
            .await
            .map_err(|_| QuorumError::JoinTimeout {
                timeout,
                last: "the leader did not replicate to this node".into(),
            })?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.wait_for_offset(joined.commit_index, remaining).await?;
        Ok(())
    }
}
