//! Cluster membership of a broker: the embedded controller quorum node,
//! registration and heartbeats, following the metadata log, and
//! replication.
//!
//! Data flows one way: the quorum's applied metadata image (a `watch`) is
//! the single source of truth; [`applier`] turns each new image into local
//! state (topics, hosted replicas, leader or follower roles), [`fetcher`]
//! tasks copy data from leaders, and the leader side ([`replication`])
//! tracks followers, moves high watermarks and proposes ISR changes. Admin
//! requests ([`admin`]) only propose metadata commands; their effects
//! arrive through the same image. A broker of a multi-broker cluster leads
//! only while it holds its leader lease (heartbeats accepted by the quorum
//! within the session timeout); `lease` watches it.

pub mod admin;
mod applier;
mod credentials;
mod fetcher;
mod lease;
pub mod legacy;
pub mod peer;
pub mod replication;
pub mod source;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use rivulet_quorum::{
    metadata::{ClusterMetadata, Endpoint},
    BrokerInfo, BrokerLifecycle, ControllerConfig, QuorumConfig, QuorumError, QuorumNode,
};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    broker::Broker,
    config::{ClusterConfig, ReplicationConfig},
    identity::{self, IdentityError},
};

/// Starting cluster membership failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The data directory's identity is not this broker's.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The quorum node could not start.
    #[error("start the controller quorum node: {0}")]
    Quorum(#[from] QuorumError),
    /// This broker's certificates as a client of other brokers.
    #[error(transparent)]
    PeerTls(#[from] peer::PeerTlsError),
    /// A single broker whose metadata log is gone.
    #[error(
        "the metadata log of single-broker cluster {cluster_id} in {dir} is missing: restore \
         __cluster_metadata from a backup, or move the directory aside to start a new cluster"
    )]
    MetadataLost {
        /// The directory.
        dir: std::path::PathBuf,
        /// Its cluster.
        cluster_id: String,
    },
    /// A single-broker config on a directory of a larger quorum.
    #[error(
        "data directory {dir} belongs to node {node_id} of cluster {cluster_id}, whose quorum has \
         voters {voters:?}; this broker is configured as a single-broker cluster. Start it with \
         that cluster's controller.quorum.voters, or point it at an empty directory"
    )]
    NotSingle {
        /// The directory.
        dir: std::path::PathBuf,
        /// This node.
        node_id: i32,
        /// Its cluster.
        cluster_id: String,
        /// The quorum's voters.
        voters: Vec<u64>,
    },
}

/// What a partition this broker follows is following.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FollowTarget {
    /// The leader to fetch from.
    pub leader: i32,
    /// Its leader epoch.
    pub epoch: i32,
    /// Whether the divergent tail must be truncated first (new epoch).
    pub truncate: bool,
}

/// A running cluster membership.
pub struct Cluster {
    /// This broker's id.
    pub node_id: i32,
    /// The metadata log: the quorum node (voter or learner) when running,
    /// an in-memory log in unit tests.
    pub source: Arc<dyn source::MetadataSource>,
    /// The quorum node, for its gauges and shutdown (none in unit tests).
    quorum: Option<Arc<QuorumNode>>,
    /// Settings.
    pub config: ClusterConfig,
    /// Replication settings.
    pub replication: ReplicationConfig,
    /// The cluster id reported to clients.
    pub cluster_id: String,
    broker: Arc<Broker>,
    image: watch::Receiver<Arc<ClusterMetadata>>,
    lifecycle: Mutex<Option<BrokerLifecycle>>,
    /// This process's registration id: an image that does not show it
    /// registered and unfenced predates this start (the metadata log is
    /// still being caught up), so its leaderships are not taken.
    incarnation: std::sync::OnceLock<uuid::Uuid>,
    /// The offset of the last image the applier has turned into local
    /// state (replicas opened, roles taken): admin requests wait for it, so
    /// a client's next request to this broker finds what it created.
    applied: watch::Sender<Arc<ClusterMetadata>>,
    /// Why joining the quorum has not succeeded yet, while it has not:
    /// what `/ready` says instead of "ready".
    joining: Mutex<Option<String>>,
    /// Partitions followed, by (topic, partition).
    follow: Mutex<BTreeMap<(String, i32), FollowTarget>>,
    /// How fetchers connect to leaders (TLS, SASL login).
    pub(crate) peer: peer::PeerSecurity,
    /// One fetcher task per leader broker.
    fetchers: Mutex<BTreeMap<i32, JoinHandle<()>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Cluster {
    /// Starts the quorum node, joins (voter bootstrap or learner join in
    /// the background), registers this broker and starts following the
    /// metadata log.
    pub async fn start(broker: &Arc<Broker>) -> Result<Arc<Cluster>, ClusterError> {
        let config = broker.config.cluster.clone();
        let replication = broker.config.replication.clone();
        let node_id = broker.config.node_id;
        let data_dir = broker.config.data_dir.clone();
        let identity = identity::resolve(&data_dir, node_id, &config)?;
        let mut quorum = QuorumConfig::new(
            node_id as u64,
            config.controller_addr,
            data_dir.join(identity::METADATA_DIR),
        );
        quorum.advertised_addr = config.controller_advertised.clone();
        let election = replication.quorum_election_timeout;
        quorum.election_timeout = (election, election * 2);
        quorum.heartbeat_interval = quorum.heartbeat_interval.min(election / 5);
        // Noticing a lost controller takes the quorum's lease (2x) plus up
        // to 2x more before the election; a broker session shorter than
        // that ends every broker's leader lease in each failover.
        if replication.broker_session_timeout <= election * 4 {
            tracing::warn!(
                broker_session_timeout_ms = replication.broker_session_timeout.as_millis() as u64,
                election_timeout_ms = election.as_millis() as u64,
                "broker.session.timeout.ms is not above 4x controller.quorum.election.timeout.ms: \
                 while a new controller is elected every broker may stop leading"
            );
        }
        quorum.cluster_id = identity.meta.cluster_id.clone();
        quorum.directory_id = identity.meta.directory_id;
        quorum.founder = identity.founder;
        quorum.tls = peer::quorum_tls(
            &broker.config,
            broker.metrics.failed_authentications.clone(),
        )?;
        let peer = peer::PeerSecurity::inter_broker(&broker.config)?;
        let node = Arc::new(rivulet_quorum::new_raft_node(quorum).await?);
        if config.single && !identity.founder && !node.has_membership() {
            // Nobody else holds this cluster's metadata: joining would
            // wait forever.
            node.shutdown().await;
            return Err(ClusterError::MetadataLost {
                dir: data_dir,
                cluster_id: identity.meta.cluster_id,
            });
        }
        if config.single && node.has_membership() {
            let voters: Vec<u64> = node
                .raft()
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect();
            if voters != [node_id as u64] {
                node.shutdown().await;
                return Err(ClusterError::NotSingle {
                    dir: data_dir,
                    node_id,
                    cluster_id: identity.meta.cluster_id,
                    voters,
                });
            }
        }
        let image = node.metadata();
        let cluster = Cluster::new(
            broker,
            node.clone(),
            Some(node.clone()),
            image.clone(),
            identity.meta.cluster_id.clone(),
            peer,
        );
        let joiner = tokio::spawn(join(
            cluster.clone(),
            node.clone(),
            config.voters.clone(),
            data_dir,
        ));
        let controller = node.spawn_controller(ControllerConfig {
            session_timeout: replication.broker_session_timeout,
            auto_leader_rebalance: replication.auto_leader_rebalance,
            leader_imbalance_check_interval: replication.leader_imbalance_check_interval,
            ..ControllerConfig::default()
        });
        let lifecycle = node.spawn_broker_lifecycle(
            BrokerInfo {
                broker_id: node_id,
                rack: broker.config.rack.clone(),
                endpoints: endpoints(broker),
            },
            replication.broker_heartbeat_interval,
        );
        if !config.single {
            // A broker cut off from the quorum stops leading within a
            // session timeout, before the controller moves its
            // leaderships; a single broker is its own quorum.
            let lease = lifecycle.lease(replication.broker_session_timeout);
            broker.lease.install(move || lease.held());
        }
        let _ = cluster.incarnation.set(lifecycle.incarnation_id());
        *lock(&cluster.lifecycle) = Some(lifecycle);
        let applier = tokio::spawn(applier::run(cluster.clone(), image));
        let leader_duties = tokio::spawn(replication::leader_duties(cluster.clone()));
        let lease = tokio::spawn(lease::watch(broker.clone()));
        lock(&cluster.tasks).extend([joiner, controller, applier, leader_duties, lease]);
        Ok(cluster)
    }

    /// The membership's state, with nothing started yet.
    fn new(
        broker: &Arc<Broker>,
        source: Arc<dyn source::MetadataSource>,
        quorum: Option<Arc<QuorumNode>>,
        image: watch::Receiver<Arc<ClusterMetadata>>,
        cluster_id: String,
        peer: peer::PeerSecurity,
    ) -> Arc<Cluster> {
        let config = broker.config.cluster.clone();
        Arc::new(Cluster {
            node_id: broker.config.node_id,
            cluster_id,
            source,
            quorum,
            config,
            replication: broker.config.replication.clone(),
            broker: broker.clone(),
            image,
            lifecycle: Mutex::new(None),
            incarnation: std::sync::OnceLock::new(),
            applied: watch::channel(Arc::new(ClusterMetadata::default())).0,
            joining: Mutex::new(None),
            follow: Mutex::new(BTreeMap::new()),
            peer,
            fetchers: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// A membership over an in-memory metadata log (unit tests): this
    /// broker is registered and unfenced in it at once, and the applier
    /// turns its images into local state as in a running broker. No
    /// controller runs: tests write leaders, ISRs and fencing as commands.
    #[cfg(test)]
    pub(crate) fn in_memory(
        broker: &Arc<Broker>,
        log: Arc<source::InMemoryMetadata>,
    ) -> Arc<Cluster> {
        use rivulet_quorum::metadata::{ApplyOutcome, MetadataCommand};
        use source::MetadataSource;
        let cluster_id = identity::legacy_cluster_id(&broker.config.cluster.voters);
        let cluster = Cluster::new(
            broker,
            log.clone(),
            None,
            log.watch(),
            cluster_id,
            peer::PeerSecurity::default(),
        );
        let incarnation = uuid::Uuid::new_v4();
        let (_, outcome) = log
            .apply(&MetadataCommand::RegisterBroker {
                broker_id: cluster.node_id,
                incarnation_id: incarnation,
                rack: broker.config.rack.clone(),
                endpoints: endpoints(broker),
                directory_id: None,
            })
            .expect("register this broker");
        let ApplyOutcome::Registered { broker_epoch } = outcome else {
            panic!("a registration answers Registered, not {outcome:?}");
        };
        log.apply(&MetadataCommand::BrokerHeartbeat {
            broker_id: cluster.node_id,
            broker_epoch,
        })
        .expect("unfence this broker");
        let _ = cluster.incarnation.set(incarnation);
        let applier = tokio::spawn(applier::run(cluster.clone(), log.watch()));
        lock(&cluster.tasks).push(applier);
        cluster
    }

    /// Records that the image at `offset` is now local state.
    pub(crate) fn set_applied(&self, image: Arc<ClusterMetadata>) {
        self.applied.send_if_modified(|cur| {
            let moved = image.offset > cur.offset;
            if moved {
                *cur = image;
            }
            moved
        });
    }

    /// Waits until the applier has applied the image at `offset`; false
    /// after `timeout`.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|a| a.offset >= offset))
            .await
            .is_ok_and(|r| r.is_ok());
        reached
    }

    /// Waits (up to `timeout`) until this broker serves clients: its
    /// registration of this very process is in the image, unfenced, and
    /// that image is local state. Until then it would lead nothing.
    pub async fn wait_serving(&self, timeout: Duration) -> bool {
        let mut image = self.image.clone();
        let current = async {
            loop {
                let latest = image.borrow_and_update().clone();
                if self.is_current_in(&latest) && self.wait_applied(latest.offset, timeout).await {
                    return;
                }
                if image.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, current).await.is_ok()
    }

    /// Whether this broker serves clients as a member of its cluster
    /// (registered and unfenced in the image, which is local state), and
    /// if not, why: what the readiness endpoint answers.
    pub fn readiness(&self) -> Result<(), String> {
        let latest = self.image();
        let applied = self.applied.borrow().offset;
        if !self.is_current_in(&latest) {
            return Err(lock(&self.joining).clone().unwrap_or_else(|| {
                format!(
                    "not registered with the controller quorum of cluster {} yet",
                    self.cluster_id
                )
            }));
        }
        if applied < latest.offset {
            return Err(format!(
                "applying the metadata log: at {applied} of {}",
                latest.offset
            ));
        }
        Ok(())
    }

    /// The latest applied metadata image.
    pub fn image(&self) -> Arc<ClusterMetadata> {
        self.image.borrow().clone()
    }

    /// Whether `image` shows this process registered and unfenced: only
    /// then does it act as a leader.
    pub(crate) fn is_current_in(&self, image: &ClusterMetadata) -> bool {
        let Some(incarnation) = self.incarnation.get() else {
            return false;
        };
        image
            .brokers
            .get(&self.node_id)
            .is_some_and(|b| b.incarnation_id == *incarnation && !b.fenced)
    }

    /// The hosted state this membership keeps in line with the image.
    pub(crate) fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// A receiver of the last image turned into local state: what this
    /// broker hosts and leads is what it says (the group coordinator
    /// follows leadership through it; the latest image may be ahead).
    pub fn subscribe_applied(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.applied.subscribe()
    }

    /// Live brokers and the endpoint each has on `listener`.
    pub fn live_endpoints(&self, listener: &str) -> Vec<(i32, Endpoint, Option<String>)> {
        self.image()
            .live_brokers()
            .filter_map(|b| {
                b.endpoints
                    .get(listener)
                    .or_else(|| b.endpoints.values().next())
                    .map(|e| (b.id, e.clone(), b.rack.clone()))
            })
            .collect()
    }

    /// The quorum node, when this membership runs one (not in unit tests).
    pub fn quorum(&self) -> Option<&Arc<QuorumNode>> {
        self.quorum.as_ref()
    }

    /// The active controller's id, if known and vouched for: in a quorum
    /// of several, only while this node hears from it (or, as the
    /// controller, is acknowledged by a quorum) within the leader lease,
    /// so that a broker cut off from the others sends clients elsewhere.
    pub fn controller_id(&self) -> Option<i32> {
        match &self.quorum {
            Some(quorum) if !self.config.single => quorum
                .vouched_leader()
                .and_then(|id| i32::try_from(id).ok()),
            _ => self.source.controller_id(),
        }
    }

    /// Refreshes the quorum and controller gauges.
    pub fn update_metrics(&self, broker: &Broker) {
        let lease = broker.lease.held();
        broker.metrics.leader_lease.set(i64::from(lease));
        let Some(quorum) = &self.quorum else {
            broker.refresh_partition_gauges();
            return;
        };
        let m = quorum.metrics();
        let metrics = &broker.metrics;
        let leader = m.role == rivulet_quorum::QuorumRole::Leader;
        metrics.active_controller.set(i64::from(leader));
        metrics.set_raft_state(match m.role {
            rivulet_quorum::QuorumRole::Follower => "follower",
            rivulet_quorum::QuorumRole::Candidate => "candidate",
            rivulet_quorum::QuorumRole::Leader => "leader",
            rivulet_quorum::QuorumRole::Learner => "observer",
            rivulet_quorum::QuorumRole::Shutdown => "unattached",
        });
        metrics.raft_term.set(m.term as i64);
        metrics.raft_commit_index.set(m.commit_index as i64);
        metrics.raft_last_applied.set(m.last_applied as i64);
        // Cluster-wide counts are reported by the active controller only,
        // as Kafka does, so sums over brokers stay right.
        let (offline, fenced) = if leader {
            (m.offline_partitions as i64, m.fenced_brokers as i64)
        } else {
            (0, 0)
        };
        metrics.offline_partitions.set(offline);
        metrics.fenced_brokers.set(fenced);
        broker.refresh_partition_gauges();
    }

    /// Controlled shutdown: stop heartbeating, ask the controller to move
    /// this broker's leaderships away at once (instead of after the
    /// session timeout), stop fetching, and leave the quorum node.
    pub async fn shutdown(&self) {
        let lifecycle = lock(&self.lifecycle).take();
        if let Some(lifecycle) = lifecycle {
            match tokio::time::timeout(Duration::from_secs(3), lifecycle.controlled_shutdown())
                .await
            {
                Ok(Ok(())) => tracing::info!("controlled shutdown: leaderships moved"),
                Ok(Err(e)) => tracing::warn!(error = %e, "controlled shutdown refused"),
                Err(_) => tracing::warn!("controlled shutdown timed out"),
            }
        }
        for (_, task) in std::mem::take(&mut *lock(&self.fetchers)) {
            task.abort();
        }
        for task in std::mem::take(&mut *lock(&self.tasks)) {
            task.abort();
        }
        if let Some(quorum) = &self.quorum {
            quorum.shutdown().await;
        }
    }

    /// Partitions this broker follows from `leader`.
    pub(crate) fn followed_from(&self, leader: i32) -> Vec<((String, i32), FollowTarget)> {
        lock(&self.follow)
            .iter()
            .filter(|(_, t)| t.leader == leader)
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect()
    }

    /// Marks a followed partition's truncation done (if still the same epoch).
    pub(crate) fn truncated(&self, key: &(String, i32), epoch: i32) {
        if let Some(t) = lock(&self.follow).get_mut(key) {
            if t.epoch == epoch {
                t.truncate = false;
            }
        }
    }

    /// Asks for the divergent tail of a followed partition to be cut again.
    pub(crate) fn request_truncation(&self, key: &(String, i32)) {
        if let Some(t) = lock(&self.follow).get_mut(key) {
            t.truncate = true;
        }
    }

    /// Holds a fetcher back so reassignment traffic stays under
    /// `follower.replication.throttled.rate` (bytes/s; 0 = unlimited).
    pub(crate) async fn throttle(&self, bytes: usize) {
        let rate = self.replication.reassignment_throttle;
        if rate == 0 || bytes == 0 {
            return;
        }
        let pause = Duration::from_secs_f64(bytes as f64 / rate as f64);
        tokio::time::sleep(pause).await;
    }

    /// Replaces what is followed and makes sure one fetcher runs per leader.
    pub(crate) fn set_follow(self: &Arc<Self>, follow: BTreeMap<(String, i32), FollowTarget>) {
        let leaders: BTreeSet<i32> = follow.values().map(|t| t.leader).collect();
        {
            let mut current = lock(&self.follow);
            // A pending truncation survives unrelated image changes, and a
            // finished one is not redone for the same leader and epoch.
            let merged = follow
                .into_iter()
                .map(|(key, mut target)| {
                    if let Some(old) = current.get(&key) {
                        if old.leader == target.leader && old.epoch == target.epoch {
                            target.truncate = old.truncate;
                        }
                    }
                    (key, target)
                })
                .collect();
            *current = merged;
        }
        let mut fetchers = lock(&self.fetchers);
        fetchers.retain(|leader, task| {
            let keep = leaders.contains(leader) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for leader in leaders {
            fetchers
                .entry(leader)
                .or_insert_with(|| tokio::spawn(fetcher::run(self.clone(), leader)));
        }
    }
}

/// What this broker advertises on each listener, for its registration.
/// Founds the quorum (a founder's directory with an empty log, lowest of
/// the initial voters) or joins it (everyone else, on every start: a
/// voter with a new directory is recorded once it has caught up), retrying
/// until it succeeds; then forgets the founder's marker.
async fn join(
    cluster: Arc<Cluster>,
    node: Arc<QuorumNode>,
    voters: BTreeMap<i32, String>,
    data_dir: std::path::PathBuf,
) {
    let own = node.id();
    // Whom to ask: the configured voters, this node at its actual address.
    let mut contacts: BTreeMap<u64, String> = voters
        .iter()
        .map(|(&id, addr)| (id as u64, addr.clone()))
        .collect();
    contacts.insert(own, node.advertised_addr().to_owned());
    loop {
        let initial = if node.has_membership() {
            None
        } else {
            identity::bootstrap_voters(&data_dir)
        };
        let joined = match initial {
            Some(initial) => {
                let initial: BTreeMap<u64, String> = initial
                    .into_iter()
                    .map(|(id, addr)| (id as u64, addr))
                    .map(|(id, addr)| match id == own {
                        true => (id, node.advertised_addr().to_owned()),
                        false => (id, addr),
                    })
                    .collect();
                if initial.keys().next() == Some(&own) {
                    tracing::info!(voters = ?initial.keys().collect::<Vec<_>>(), "founding the controller quorum");
                } else {
                    tracing::info!(voters = ?initial.keys().collect::<Vec<_>>(), "an initial voter; waiting for the founder");
                }
                match node.initialize(&initial).await {
                    Ok(()) => node.join_as_learner(&contacts).await,
                    Err(e) => Err(e),
                }
            }
            None => node.join_as_learner(&contacts).await,
        };
        if node.has_membership() {
            identity::clear_bootstrap(&data_dir);
        }
        match joined {
            Ok(()) => {
                tracing::info!(
                    admitted = node.is_admitted(),
                    "joined the controller quorum"
                );
                *lock(&cluster.joining) = None;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "joining the controller quorum; retrying");
                *lock(&cluster.joining) = Some(format!("joining the controller quorum: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn endpoints(broker: &Broker) -> BTreeMap<String, Endpoint> {
    broker
        .config
        .listeners
        .iter()
        .map(|l| {
            let (host, port) = broker.advertised(&l.name);
            (l.name.clone(), Endpoint { host, port })
        })
        .collect()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
