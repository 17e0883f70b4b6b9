//! The voter set from a broker's side: describing the quorum, adding and
//! removing voters (KIP-853). Every call goes to the leader over gRPC
//! (to this node's own listener when it leads), retried while the leader
//! is unknown or moving, within `propose_timeout`.

use serde::{de::DeserializeOwned, Serialize};
use tokio::time::Instant;

use super::{propose::pause_until, QuorumNode};
use crate::{
    error::QuorumError,
    network::{Method, QuorumState, TransportError, VoterChange, VotersRefused, VotersReply},
    raft_types::NodeId,
};

impl QuorumNode {
    /// The quorum as its leader sees it: voters, observers, how far each
    /// has replicated.
    pub async fn describe_quorum(&self) -> Result<QuorumState, QuorumError> {
        self.call_leader(Method::Describe, &()).await
    }

    /// Promotes `node_id` (a learner that follows the log, under
    /// `directory_id` when given) to voter, once it has caught up.
    pub async fn add_voter(
        &self,
        node_id: NodeId,
        directory_id: Option<uuid::Uuid>,
    ) -> Result<(), QuorumError> {
        self.call_leader(Method::AddVoter, &VoterChange::new(node_id, directory_id))
            .await
    }

    /// Demotes voter `node_id` to a learner (it keeps following the log).
    pub async fn remove_voter(
        &self,
        node_id: NodeId,
        directory_id: Option<uuid::Uuid>,
    ) -> Result<(), QuorumError> {
        let change = VoterChange::new(node_id, directory_id);
        let leader = self.leader_id();
        self.call_leader::<_, ()>(Method::RemoveVoter, &change)
            .await?;
        if leader == Some(node_id) {
            self.hand_over().await;
        }
        Ok(())
    }

    /// After the leader removed itself from the voters (it goes on leading
    /// as a learner until someone else is elected, and brokers' heartbeats
    /// keep it busy enough that nobody times out), asks a voter to stand
    /// for election now.
    async fn hand_over(&self) {
        let voters: Vec<(NodeId, String)> = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            membership
                .voter_ids()
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
                .collect()
        };
        for (id, addr) in voters {
            let reply: Result<VotersReply<()>, TransportError> = self
                .peer_client(&addr)
                .call(Method::Elect, &(), Vec::new(), self.config.rpc_timeout)
                .await;
            match reply {
                Ok(Ok(())) => {
                    tracing::info!(voter = id, "asked a voter to take over the leadership");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(voter = id, error = %e, "handing over the leadership"),
                Err(e) => tracing::warn!(voter = id, error = %e, "handing over the leadership"),
            }
        }
    }

    /// Calls `method` on the leader; a refusal other than "not the
    /// leader" or "unavailable" is final.
    async fn call_leader<Req: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        request: &Req,
    ) -> Result<T, QuorumError> {
        let timeout = self.config.propose_timeout;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no leader known");
        loop {
            if Instant::now() >= deadline {
                return Err(QuorumError::Voters(VotersRefused::Unavailable(last)));
            }
            let leader_addr = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                m.current_leader.and_then(|id| {
                    if id == self.id {
                        Some(self.config.advertised_addr.clone())
                    } else {
                        m.membership_config
                            .membership()
                            .get_node(&id)
                            .map(|n| n.addr.clone())
                    }
                })
            };
            let Some(addr) = leader_addr else {
                pause_until(deadline).await;
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let reply: Result<VotersReply<T>, TransportError> = self
                .peer_client(&addr)
                .call(method, request, Vec::new(), remaining)
                .await;
            match reply {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e @ (VotersRefused::NotLeader { .. } | VotersRefused::Unavailable(_)))) => {
                    last = e.to_string();
                }
                Ok(Err(refused)) => return Err(QuorumError::Voters(refused)),
                Err(e @ TransportError::Unreachable { .. }) => last = e.to_string(),
                Err(e) => return Err(QuorumError::Forward(e)),
            }
            pause_until(deadline).await;
        }
    }
}
