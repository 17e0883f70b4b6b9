//! A running quorum node: [`new_raft_node`] wires storage, state machine,
//! network and the gRPC listener; [`QuorumNode`] is what the broker uses:
//! bootstrap, proposals (forwarded to the leader), the applied metadata
//! image, leadership and metrics.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use openraft::{
    error::{ClientWriteError, InitializeError, RaftError},
    BasicNode, Raft, ServerState,
};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
    task::JoinHandle,
    time::Instant,
};
use tonic::transport::{server::TcpIncoming, Server};

use crate::{
    config::QuorumConfig,
    error::QuorumError,
    log_store::LogStore,
    metadata::{ClusterMetadata, MetadataCommand},
    network::{Method, NetworkFactory, QuorumService, RpcClient, TransportError},
    raft_types::{CommandResponse, Node, NodeId, TypeConfig},
    state_machine::StateMachineStore,
};

/// Pause before retrying a proposal while the leader is unknown or moving:
/// about one heartbeat, so a fresh leader is usually known by then.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

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

/// A point-in-time view of a node's Raft state, for Prometheus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumMetrics {
    /// This node's id.
    pub node_id: NodeId,
    /// Its role.
    pub role: QuorumRole,
    /// Current Raft term.
    pub term: u64,
    /// The leader it knows of.
    pub leader_id: Option<NodeId>,
    /// Highest log index known committed (0 if none).
    pub commit_index: u64,
    /// Highest log index in the local log (0 if none).
    pub last_log_index: u64,
    /// Highest log index applied to the image (0 if none).
    pub last_applied: u64,
    /// Voter ids of the current membership.
    pub voters: Vec<NodeId>,
}

/// A running member of the controller quorum.
pub struct QuorumNode {
    id: NodeId,
    config: QuorumConfig,
    raft: Raft<TypeConfig>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    commit_index: Arc<AtomicU64>,
    local_addr: SocketAddr,
    /// Clients of leaders proposals were forwarded to, by address, so that
    /// forwarding reuses one HTTP/2 connection.
    forward_clients: Mutex<HashMap<String, RpcClient>>,
    /// Stops the gRPC listener; taken by `shutdown`.
    server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

/// Starts a quorum node: opens (or recovers) its log and snapshot in
/// `config.data_dir`, starts Raft, and serves the quorum gRPC service on
/// `config.listen_addr`. A fresh node waits for [`QuorumNode::initialize`]
/// (or for a leader to contact it); a restarted one rejoins by itself.
pub async fn new_raft_node(config: QuorumConfig) -> Result<QuorumNode, QuorumError> {
    let raft_config = Arc::new(config.raft_config()?);
    let log_store = LogStore::open(&config.data_dir.join("log")).map_err(QuorumError::OpenLog)?;
    let commit_index = log_store.commit_index();
    let (state_machine, metadata) = StateMachineStore::open(&config.data_dir.join("state"))
        .map_err(QuorumError::OpenStateMachine)?;
    let network = NetworkFactory::new(config.node_id, config.connect_timeout, config.rpc_timeout);
    let raft = Raft::new(
        config.node_id,
        raft_config,
        network,
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| QuorumError::StartRaft(Box::new(e)))?;

    let bind_error = |source| QuorumError::Bind {
        addr: config.listen_addr,
        source,
    };
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let service = QuorumService::new(raft.clone(), config.propose_timeout);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(async move {
        let stopped = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = Server::builder()
            .serve_with_incoming_shutdown(service, incoming, stopped)
            .await
        {
            tracing::error!(error = %e, "quorum gRPC server failed");
        }
    });
    tracing::info!(node_id = config.node_id, %local_addr, "quorum node started");
    Ok(QuorumNode {
        id: config.node_id,
        config,
        raft,
        metadata,
        commit_index,
        local_addr,
        forward_clients: Mutex::new(HashMap::new()),
        server: Mutex::new(Some((stop_tx, server))),
    })
}

impl QuorumNode {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address the gRPC listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Bootstraps the quorum with `voters` (id -> `host:port`), idempotently:
    /// only the smallest id initializes Raft (so concurrent starts cannot
    /// form two clusters); every node then waits for a leader. Calling it
    /// on a node that is already part of a cluster just waits for a leader.
    pub async fn initialize(&self, voters: &BTreeMap<NodeId, String>) -> Result<(), QuorumError> {
        if !voters.contains_key(&self.id) {
            return Err(QuorumError::InvalidVoters(format!(
                "node {} is not among {voters:?}",
                self.id
            )));
        }
        if voters.len().is_multiple_of(2) {
            tracing::warn!(
                voters = voters.len(),
                "an even number of voters tolerates no more failures than one fewer"
            );
        }
        if voters.keys().next() == Some(&self.id) {
            let members: BTreeMap<NodeId, Node> = voters
                .iter()
                .map(|(&id, addr)| (id, BasicNode { addr: addr.clone() }))
                .collect();
            match self.raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(QuorumError::Initialize(Box::new(e))),
            }
        }
        let timeout = self.config.bootstrap_timeout;
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a quorum leader is known")
            .await
            .map_err(|_| QuorumError::BootstrapTimeout(timeout))?;
        Ok(())
    }

    /// Proposes `command` and waits until it is committed and applied,
    /// forwarding it to the leader when this node is not the leader.
    /// Returns its metadata offset; a command the state machine refused is
    /// [`QuorumError::Rejected`]. Bounded by `propose_timeout`.
    pub async fn propose(&self, command: MetadataCommand) -> Result<u64, QuorumError> {
        let timeout = self.config.propose_timeout;
        let deadline = Instant::now() + timeout;
        let timed_out = |_| QuorumError::ProposeTimeout(timeout);
        loop {
            let written =
                tokio::time::timeout_at(deadline, self.raft.client_write(command.clone()))
                    .await
                    .map_err(timed_out)?;
            let forward = match written {
                Ok(response) => return finish(response.data),
                Err(RaftError::Fatal(f)) => return Err(QuorumError::Fatal(Box::new(f))),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f,
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                    unreachable!("a normal entry cannot fail a membership change: {e}")
                }
            };
            let Some(leader) = forward
                .leader_node
                .filter(|_| forward.leader_id != Some(self.id))
            else {
                // No leader known yet (election under way).
                tokio::time::sleep_until((Instant::now() + RETRY_PAUSE).min(deadline)).await;
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let client = self.forward_client(&leader.addr);
            let reply: Result<crate::network::ProposeReply, _> = client
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
                    tokio::time::sleep_until((Instant::now() + RETRY_PAUSE).min(deadline)).await;
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

    fn forward_client(&self, addr: &str) -> RpcClient {
        let mut clients = self
            .forward_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        clients
            .entry(addr.to_owned())
            .or_insert_with(|| RpcClient::new(addr, self.config.connect_timeout))
            .clone()
    }

    /// The applied metadata image, updated after every applied batch: how
    /// a broker follows the metadata log.
    pub fn metadata(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.metadata.clone()
    }

    /// Waits until this node's image has reached `offset` (e.g. the offset
    /// a proposal returned, when it was forwarded to another node).
    pub async fn wait_for_offset(
        &self,
        offset: u64,
        timeout: Duration,
    ) -> Result<Arc<ClusterMetadata>, QuorumError> {
        let mut rx = self.metadata.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|m| m.offset >= offset)).await;
        match reached {
            Ok(Ok(image)) => Ok(image.clone()),
            Ok(Err(_)) | Err(_) => Err(QuorumError::CatchUpTimeout(offset)),
        }
    }

    /// Whether this node is the leader (the active controller).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The leader this node knows of.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// A snapshot of the Raft metrics as plain values.
    pub fn metrics(&self) -> QuorumMetrics {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => QuorumRole::Leader,
            ServerState::Follower => QuorumRole::Follower,
            ServerState::Candidate => QuorumRole::Candidate,
            ServerState::Learner => QuorumRole::Learner,
            ServerState::Shutdown => QuorumRole::Shutdown,
        };
        QuorumMetrics {
            node_id: self.id,
            role,
            term: m.current_term,
            leader_id: m.current_leader,
            commit_index: self.commit_index.load(Ordering::Relaxed),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |id| id.index),
            voters: m.membership_config.membership().voter_ids().collect(),
        }
    }

    /// The underlying openraft handle, for what this API does not cover
    /// (membership changes, snapshots on demand).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Stops Raft (closing the log and state machine) and the listener.
    /// Idempotent.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            // Graceful shutdown waits for open connections; bound it.
            let abort = task.abort_handle();
            if tokio::time::timeout(self.config.rpc_timeout, task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        tracing::info!(node_id = self.id, "quorum node stopped");
    }
}

fn finish(response: CommandResponse) -> Result<u64, QuorumError> {
    match response.result {
        Ok(_) => Ok(response.offset),
        Err(source) => Err(QuorumError::Rejected {
            offset: response.offset,
            source,
        }),
    }
}
