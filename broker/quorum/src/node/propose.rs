//! Proposals: written through the local Raft when this node leads,
//! otherwise forwarded to the leader over the Propose method (learners
//! propose this way too). The controller loop writes only as leader.

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use tokio::time::Instant;

use super::QuorumNode;
use crate::{
    error::QuorumError,
    metadata::{ApplyOutcome, MetadataCommand},
    network::{Method, ProposeReply, RpcClient, TransportError},
    raft_types::{CommandResponse, Node, NodeId},
};

/// Pause before retrying a proposal while the leader is unknown or moving:
/// about one heartbeat, so a fresh leader is usually known by then.
pub(super) const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

impl QuorumNode {
    /// Proposes `command` and waits until it is committed and applied,
    /// forwarding it to the leader when this node is not the leader.
    /// Returns its metadata offset; a command the state machine refused is
    /// [`QuorumError::Rejected`]. Bounded by `propose_timeout`.
    pub async fn propose(&self, command: MetadataCommand) -> Result<u64, QuorumError> {
        self.propose_with_outcome(command)
            .await
            .map(|(offset, _)| offset)
    }

    /// Like [`propose`](Self::propose), also returning what applying the
    /// command answered, e.g. the broker epoch of a registration (which
    /// is not its offset when the registration was a retry).
    pub async fn propose_with_outcome(
        &self,
        command: MetadataCommand,
    ) -> Result<(u64, ApplyOutcome), QuorumError> {
        let timeout = self.config.propose_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let forward = match self.write_local(&command, deadline).await? {
                Ok(response) => return finish(response),
                Err(forward) => forward,
            };
            let Some(leader) = forward
                .leader_node
                .filter(|_| forward.leader_id != Some(self.id))
            else {
                // No leader known yet (election under way).
                pause_until(deadline).await;
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let client = self.peer_client(&leader.addr);
            let reply: Result<ProposeReply, _> = client
                .call(Method::Propose, &command, Vec::new(), remaining)
                .await;
            match reply {
                Ok(Ok(response)) => return finish(response),
                // Leadership moved or the old leader is gone: the command was
                // not written there, so trying again cannot duplicate it.
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))))
                | Ok(Err(RaftError::Fatal(_)))
                | Err(TransportError::Unreachable { .. }) => {
                    if Instant::now() >= deadline {
                        return Err(QuorumError::ProposeTimeout(timeout));
                    }
                    pause_until(deadline).await;
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                    unreachable!("a normal entry cannot fail a membership change: {e}")
                }
                Err(TransportError::Timeout { .. }) => {
                    return Err(QuorumError::ProposeTimeout(timeout))
                }
                Err(e) => return Err(QuorumError::Forward(e)),
            }
        }
    }

    /// Writes `command` only if this node leads, never forwarding: for the
    /// controller loop, whose decisions (fencing a broker it has not heard
    /// from) are only sound on the leader that made them.
    /// [`QuorumError::NotLeader`] if it does not lead.
    pub(super) async fn propose_as_leader(
        &self,
        command: &MetadataCommand,
    ) -> Result<(u64, ApplyOutcome), QuorumError> {
        let deadline = Instant::now() + self.config.propose_timeout;
        match self.write_local(command, deadline).await? {
            Ok(response) => finish(response),
            Err(_) => Err(QuorumError::NotLeader),
        }
    }

    /// Writes through the local Raft: the applied response, or where the
    /// leader is when this node does not lead.
    async fn write_local(
        &self,
        command: &MetadataCommand,
        deadline: Instant,
    ) -> Result<Result<CommandResponse, ForwardToLeader<NodeId, Node>>, QuorumError> {
        let timeout = self.config.propose_timeout;
        let started = Instant::now();
        let written = tokio::time::timeout_at(deadline, self.raft.client_write(command.clone()))
            .await
            .map_err(|_| QuorumError::ProposeTimeout(timeout))?;
        match written {
            Ok(response) => {
                super::metrics::COMMIT_LATENCY.observe(started.elapsed());
                Ok(Ok(response.data))
            }
            Err(RaftError::Fatal(f)) => Err(QuorumError::Fatal(Box::new(f))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Ok(Err(f)),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                unreachable!("a normal entry cannot fail a membership change: {e}")
            }
        }
    }

    /// A client of the peer at `addr`, shared by every call to it.
    pub(super) fn peer_client(&self, addr: &str) -> RpcClient {
        let mut clients = self
            .forward_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        clients
            .entry(addr.to_owned())
            .or_insert_with(|| {
                RpcClient::new(
                    addr,
                    &self.config.cluster_id,
                    self.config.connect_timeout,
                    self.config.tls.as_ref(),
                    &self.config.isolation,
                )
            })
            .clone()
    }
}

/// Sleeps [`RETRY_PAUSE`], but not past `deadline`.
pub(super) async fn pause_until(deadline: Instant) {
    tokio::time::sleep_until((Instant::now() + RETRY_PAUSE).min(deadline)).await;
}

fn finish(response: CommandResponse) -> Result<(u64, ApplyOutcome), QuorumError> {
    match response.result {
        Ok(outcome) => Ok((response.offset, outcome)),
        Err(source) => Err(QuorumError::Rejected {
            offset: response.offset,
            source,
        }),
    }
}
