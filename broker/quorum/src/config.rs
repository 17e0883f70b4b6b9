//! The typed configuration of a quorum node (the broker's `main.rs` fills
//! it from flags; nothing here reads the environment).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use openraft::{Config, SnapshotPolicy};

use crate::{error::QuorumError, raft_types::NodeId};

/// Configuration of one controller quorum node.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id; in combined mode the broker's `node.id`.
    pub node_id: NodeId,
    /// Where the controller gRPC listener binds.
    pub listen_addr: SocketAddr,
    /// `host:port` other voters use to reach this node (what goes into the
    /// Raft membership). Defaults to `listen_addr`.
    pub advertised_addr: String,
    /// Directory of the log and snapshot (`log/`, `state/`); created if absent.
    pub data_dir: PathBuf,
    /// Leader heartbeat period. Default 150 ms.
    pub heartbeat_interval: Duration,
    /// Election timeout range; a follower that hears no leader for a random
    /// time in it starts an election. Default 1000..2000 ms (Kafka's
    /// `controller.quorum.election.timeout.ms` is 1000). Must exceed the
    /// heartbeat interval.
    pub election_timeout: (Duration, Duration),
    /// Bound on establishing a connection to a peer. Default 500 ms.
    pub connect_timeout: Duration,
    /// Bound on any single RPC to a peer. Default 2 s.
    pub rpc_timeout: Duration,
    /// Bound on a proposal, including forwarding and waiting for a leader.
    /// Default 5 s.
    pub propose_timeout: Duration,
    /// Bound on `initialize` waiting for a leader. Default 30 s.
    pub bootstrap_timeout: Duration,
    /// The cluster this node belongs to (its `meta.properties`): sent with
    /// every call and checked on every call received, so that nodes of
    /// different clusters refuse each other (INCONSISTENT_CLUSTER_ID).
    pub cluster_id: String,
    /// The id of this node's data directory (its `meta.properties`): what
    /// identifies it as a voter, beside its node id.
    pub directory_id: uuid::Uuid,
    /// Whether this directory was formatted to found the quorum and has
    /// not joined one yet: only such a node may vote while its log is
    /// empty (a node that lost its log must not vote until it caught up).
    pub founder: bool,
    /// Snapshot after this many applied entries since the last one.
    /// Default 5000; minimum 1.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot, so that briefly lagging
    /// followers catch up from the log instead of a snapshot. Default 1000.
    pub keep_after_snapshot: u64,
    /// Snapshot bytes per InstallSnapshot call. Default 1 MiB.
    pub snapshot_chunk_size: u64,
    /// TLS for the gRPC listener and for calls to peers (the controller
    /// listener's SSL); `None` is clear text.
    pub tls: Option<crate::network::SharedTls>,
    /// Cuts this node's quorum traffic while on (fault tests); off by
    /// default.
    pub isolation: crate::network::Isolation,
}

impl QuorumConfig {
    /// A config with the documented defaults.
    pub fn new(node_id: NodeId, listen_addr: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id,
            listen_addr,
            advertised_addr: listen_addr.to_string(),
            data_dir: data_dir.into(),
            heartbeat_interval: Duration::from_millis(150),
            election_timeout: (Duration::from_millis(1000), Duration::from_millis(2000)),
            connect_timeout: Duration::from_millis(500),
            rpc_timeout: Duration::from_secs(2),
            propose_timeout: Duration::from_secs(5),
            bootstrap_timeout: Duration::from_secs(30),
            cluster_id: String::new(),
            directory_id: uuid::Uuid::nil(),
            founder: false,
            snapshot_every: 5000,
            keep_after_snapshot: 1000,
            snapshot_chunk_size: 1024 * 1024,
            tls: None,
            isolation: crate::network::Isolation::default(),
        }
    }

    /// Short timeouts for tests on loopback: elections within a few hundred
    /// milliseconds.
    pub fn for_tests(mut self) -> Self {
        self.heartbeat_interval = Duration::from_millis(50);
        self.election_timeout = (Duration::from_millis(250), Duration::from_millis(500));
        self.connect_timeout = Duration::from_millis(200);
        self.rpc_timeout = Duration::from_millis(500);
        self.propose_timeout = Duration::from_secs(3);
        self.bootstrap_timeout = Duration::from_secs(10);
        self
    }

    /// How long a voter that heard from a live leader refuses to help
    /// elect another: openraft's leader lease (the longest election
    /// timeout), which PreVote applies too.
    pub(crate) fn leader_lease(&self) -> Duration {
        self.election_timeout.1
    }

    /// The openraft config these settings amount to.
    pub(crate) fn raft_config(&self) -> Result<Config, QuorumError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Config {
            cluster_name: "rivulet-metadata".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            install_snapshot_timeout: ms(self.rpc_timeout),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            snapshot_max_chunk_size: self.snapshot_chunk_size,
            // Elections are started by `node::elect` after a PreVote round
            // (openraft 0.9 has none): a node cut off from the others must
            // not raise its term, which would depose the leader when it
            // rejoins.
            enable_elect: false,
            ..Config::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(Box::new(e)))
    }
}

/// Configuration of the active controller's loop
/// ([`crate::QuorumNode::spawn_controller`]); names follow Kafka's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// A broker whose last registration or heartbeat is older than this is
    /// fenced (Kafka's `broker.session.timeout.ms`). Default 9 s; keep it
    /// several heartbeat intervals long.
    pub session_timeout: Duration,
    /// How often the active controller looks for expired sessions and due
    /// work. Default 1 s: a dead broker is fenced within
    /// `session_timeout + check_interval`.
    pub check_interval: Duration,
    /// Move leadership back to preferred replicas periodically (Kafka's
    /// `auto.leader.rebalance.enable`). Default true.
    pub auto_leader_rebalance: bool,
    /// Period of that rebalance (Kafka's
    /// `leader.imbalance.check.interval.seconds`). Default 300 s; the first
    /// one runs this long after gaining leadership.
    pub leader_imbalance_check_interval: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(9),
            check_interval: Duration::from_secs(1),
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_test_settings_validate() {
        let addr = "127.0.0.1:9093".parse().unwrap();
        let config = QuorumConfig::new(1, addr, "/tmp/x");
        assert_eq!(config.advertised_addr, "127.0.0.1:9093");
        assert_eq!(config.raft_config().unwrap().election_timeout_min, 1000);
        assert!(config.clone().for_tests().raft_config().is_ok());
        let mut bad = config;
        bad.election_timeout = (Duration::from_millis(100), Duration::from_millis(50));
        assert!(matches!(bad.raft_config(), Err(QuorumError::Config(_))));
    }
}
