//! A running quorum node: [`new_raft_node`] wires storage, state machine,
//! network and the gRPC listener; [`QuorumNode`] is what the broker uses.
//!
//! - here: bootstrap of the voters, the applied metadata image, leadership,
//!   shutdown;
//! - `propose.rs`: proposals, forwarded to the leader;
//! - `learner.rs`: brokers that are not voters joining as learners;
//! - `lifecycle.rs`: a broker's registration and heartbeats;
//! - `controller.rs`: the active controller's loop (fencing, rebalancing);
//! - `elect.rs`: elections, each after a PreVote round;
//! - `lease.rs`: a broker's leader lease;
//! - `metrics.rs`: Raft and image gauges for Prometheus.

mod admission;
mod controller;
mod elect;
mod learner;
mod lease;
mod lifecycle;
mod metrics;
mod propose;
mod voters;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

pub use lease::BrokerLease;
pub use lifecycle::{BrokerInfo, BrokerLifecycle};
pub use metrics::{CommitLatency, QuorumMetrics, QuorumRole, COMMIT_LATENCY};
use openraft::{
    error::{InitializeError, RaftError},
    Raft, ServerState,
};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tonic::transport::{server::TcpIncoming, Server};

use crate::{
    config::QuorumConfig,
    error::QuorumError,
    liveness::BrokerLiveness,
    log_store::LogStore,
    metadata::ClusterMetadata,
    network::{tls_incoming, NetworkFactory, QuorumService, RpcClient, ServiceParts},
    raft_types::{Node, NodeId, TypeConfig},
    state_machine::StateMachineStore,
};

/// A running member of the controller quorum.
pub struct QuorumNode {
    id: NodeId,
    config: QuorumConfig,
    raft: Raft<TypeConfig>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    commit_index: Arc<AtomicU64>,
    /// Local apply times of brokers' heartbeats, for the controller loop.
    liveness: BrokerLiveness,
    /// The leader as Raft reports it, republished only when it changes.
    leader: watch::Receiver<Option<NodeId>>,
    /// Whether this node may vote (see `admission`).
    admitted: Arc<AtomicBool>,
    /// When a leader was last heard, kept by the election task.
    contact: elect::LeaderContact,
    local_addr: SocketAddr,
    /// Clients of leaders (and voters) that proposals and joins were sent
    /// to, by address, so that each reuses one HTTP/2 connection.
    forward_clients: Mutex<HashMap<String, RpcClient>>,
    /// Turned true by `shutdown`: ends the controller and lifecycle tasks.
    stopped: watch::Sender<bool>,
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
    let log_reader = log_store.clone();
    let stopped = watch::Sender::new(false);
    log_store.stop_waiting_on(stopped.subscribe());
    let commit_index = log_store.commit_index();
    let (state_machine, metadata) = StateMachineStore::open(&config.data_dir.join("state"))
        .map_err(QuorumError::OpenStateMachine)?;
    let liveness = state_machine.liveness();
    let network = NetworkFactory::new(
        config.node_id,
        &config.cluster_id,
        config.connect_timeout,
        config.rpc_timeout,
        config.tls.clone(),
        config.isolation.clone(),
    );
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
    let mut config = config;
    if config.listen_addr.port() == 0 && config.advertised_addr == config.listen_addr.to_string() {
        // An ephemeral port (tests, or a learner whose address nobody needs
        // in advance): advertise the one actually bound.
        config.advertised_addr = local_addr.to_string();
    }
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // Until its core has started, Raft reports placeholder metrics (no
    // membership, no log); what follows reads them. The core reports once
    // at startup, before it answers anything.
    let mut started = raft.metrics();
    let _ = tokio::time::timeout(config.bootstrap_timeout, started.changed()).await;
    // Starts true, as openraft's election switch does; `admission::follow`
    // settles both before anything is served.
    let admitted = Arc::new(AtomicBool::new(true));
    admission::follow(&raft, admitted.clone(), config.directory_id, config.founder);
    let service = QuorumService::new(
        raft.clone(),
        ServiceParts {
            propose_timeout: config.propose_timeout,
            cluster_id: config.cluster_id.clone(),
            admitted: admitted.clone(),
            commit_index: commit_index.clone(),
            log: log_reader.clone(),
            lease: config.leader_lease(),
            isolation: config.isolation.clone(),
        },
    );
    let tls = config.tls.clone();
    let server = tokio::spawn(async move {
        let stopped = async {
            let _ = stop_rx.await;
        };
        let served = match tls {
            None => {
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                Server::builder()
                    .serve_with_incoming_shutdown(service, incoming, stopped)
                    .await
            }
            Some(tls) => {
                Server::builder()
                    .serve_with_incoming_shutdown(service, tls_incoming(listener, tls), stopped)
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "quorum gRPC server failed");
        }
    });
    tracing::info!(node_id = config.node_id, %local_addr, "quorum node started");
    let leader = metrics::follow_leader(&raft);
    let contact = elect::LeaderContact::default();
    let elections = elect::Elections {
        id: config.node_id,
        raft: raft.clone(),
        log: log_reader,
        config: config.clone(),
        admitted: admitted.clone(),
        contact: contact.clone(),
        clients: HashMap::new(),
    };
    tokio::spawn(elections.run(stopped.subscribe()));
    Ok(QuorumNode {
        id: config.node_id,
        config,
        raft,
        metadata,
        commit_index,
        liveness,
        leader,
        admitted,
        contact,
        local_addr,
        forward_clients: Mutex::new(HashMap::new()),
        stopped,
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

    /// The `host:port` this node gives others to reach it (what goes into
    /// the Raft membership): `config.advertised_addr`, or the bound address
    /// when the config asked for an ephemeral port.
    pub fn advertised_addr(&self) -> &str {
        &self.config.advertised_addr
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
            // This node knows its own directory; the others claim theirs
            // when they join.
            let members: BTreeMap<NodeId, Node> = voters
                .iter()
                .map(|(&id, addr)| {
                    let dir = (id == self.id).then_some(self.config.directory_id);
                    (id, Node::new(addr.clone(), dir))
                })
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

    /// Whether this node may vote: false while its log is new (not a
    /// founder's) or its membership entry names another directory.
    pub fn is_admitted(&self) -> bool {
        self.admitted.load(Ordering::Acquire)
    }

    /// Whether this node's log holds a membership (it founded or joined a
    /// quorum at some point).
    pub fn has_membership(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some()
    }

    /// The cluster id this node was started with.
    pub fn cluster_id(&self) -> &str {
        &self.config.cluster_id
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

    /// The leader this node knows of: the active controller's id (in
    /// combined mode a broker id), `None` during elections.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The leader this node can vouch for: itself while leading with a
    /// quorum's acknowledgement within the leader lease (always, as the
    /// only voter), another node while heard from within the lease. A
    /// node cut off from the quorum stops naming a leader after about one
    /// lease, where [`leader_id`](Self::leader_id) goes on naming the last
    /// one it knew (openraft keeps an isolated leader leading).
    pub fn vouched_leader(&self) -> Option<NodeId> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let lease = self.config.leader_lease();
        if m.state == ServerState::Leader {
            let alone = m.membership_config.membership().voter_ids().eq([self.id]);
            let acked = m
                .millis_since_quorum_ack
                .is_some_and(|ms| Duration::from_millis(ms) <= lease);
            return (alone || acked).then_some(self.id);
        }
        let leader = m.current_leader.filter(|&l| l != self.id)?;
        // The contact is refreshed once per heartbeat interval.
        let within = lease + self.config.heartbeat_interval;
        self.contact
            .heard_within(tokio::time::Instant::now(), within)
            .then_some(leader)
    }

    /// Follows [`leader_id`](Self::leader_id): the receiver is notified only
    /// when the active controller changes (or becomes unknown).
    pub fn watch_leader(&self) -> watch::Receiver<Option<NodeId>> {
        self.leader.clone()
    }

    /// When each broker's registration or heartbeat was last applied on
    /// this node (local, not replicated).
    pub fn broker_liveness(&self) -> &BrokerLiveness {
        &self.liveness
    }

    /// The underlying openraft handle, for what this API does not cover
    /// (membership changes, snapshots on demand).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Stops the controller and broker lifecycle tasks, Raft (closing the
    /// log and state machine) and the listener. Idempotent.
    pub async fn shutdown(&self) {
        self.stopped.send_replace(true);
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
