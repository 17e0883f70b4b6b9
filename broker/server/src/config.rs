//! The broker's typed configuration.
//!
//! Only `main.rs` reads flags, files and the environment; it produces a
//! [`BrokerConfig`] from them. Keys follow Kafka's broker config names so that
//! a `server.properties` a user already has mostly carries over.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    security::{SecurityConfig, SecurityConfigError, SecurityProtocol},
    topic_config::{TopicConfig, TopicConfigError},
};

/// Everything a broker needs to run.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Kafka's `node.id`.
    pub node_id: i32,
    /// The Kafka listeners, in the order given; the first is the default.
    pub listeners: Vec<ListenerConfig>,
    /// Kafka's `broker.rack`, reported in Metadata for rack-aware clients.
    pub rack: Option<String>,
    /// Kafka's `log.dirs` (a single directory).
    pub data_dir: PathBuf,
    /// Where `/metrics` is served; `None` turns the endpoint off.
    pub metrics_addr: Option<SocketAddr>,
    /// Kafka's `socket.request.max.bytes`: frames larger than this close the connection.
    pub socket_request_max_bytes: usize,
    /// Kafka's `max.connections`: connections beyond it wait to be accepted.
    pub max_connections: usize,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions`: partitions of auto-created topics and of
    /// CreateTopics requests that pass -1.
    pub num_partitions: i32,
    /// Kafka's `default.replication.factor`.
    pub default_replication_factor: i16,
    /// Kafka's `log.retention.check.interval.ms`.
    pub retention_check_interval: Duration,
    /// Kafka's `log.cleaner.backoff.ms`: how often compacted topics are checked.
    pub cleaner_backoff: Duration,
    /// Whether acks=all produce requests wait for an fsync of what they wrote
    /// (group commit: one fsync covers every request waiting on the partition).
    /// Rivulet's `acks.all.fsync`, default true: on a single-replica cluster
    /// "written by every in-sync replica" can only mean "on disk".
    pub acks_all_fsync: bool,
    /// `metrics.partition.series.max` (default 10000; 0 turns them off):
    /// most partitions that get per-partition metric series on this broker,
    /// so clusters with many partitions keep a bounded scrape.
    pub metrics_partition_series_max: usize,
    /// Topic config defaults from broker-level `log.*` keys.
    pub topic_defaults: TopicConfig,
    /// Kafka's `group.initial.rebalance.delay.ms` (default 3000): how long a
    /// new or empty group waits for more members before its first rebalance.
    pub group_initial_rebalance_delay: Duration,
    /// Kafka's `group.min.session.timeout.ms` (default 6000).
    pub group_min_session_timeout: Duration,
    /// Kafka's `group.max.session.timeout.ms` (default 1800000).
    pub group_max_session_timeout: Duration,
    /// Kafka's `offsets.topic.num.partitions` (default 50): partitions of
    /// `__consumer_offsets` when it is created.
    pub offsets_topic_partitions: i32,
    /// Kafka's `offsets.retention.minutes` (default 10080, 7 days): how long
    /// committed offsets of an empty group are kept.
    pub offsets_retention: Duration,
    /// Kafka's `offsets.retention.check.interval.ms` (default 600000).
    pub offsets_retention_check_interval: Duration,
    /// Kafka's `offset.metadata.max.bytes` (default 4096).
    pub offset_metadata_max_bytes: usize,
    /// How client quota rates are measured.
    pub quota_window: QuotaWindow,
    /// The transaction coordinator's settings.
    pub transactions: TransactionConfig,
    /// Replication settings (all brokers, meaningful in a cluster).
    pub replication: ReplicationConfig,
    /// The controller quorum this broker belongs to. Without
    /// `controller.quorum.voters` a broker is a cluster of one: the only
    /// voter of its own quorum, on a loopback controller listener, so a
    /// single broker runs the same code as any cluster (as Kafka's
    /// combined mode does).
    pub cluster: ClusterConfig,
    /// Every broker config given, for DescribeConfigs on the broker resource.
    pub raw: BTreeMap<String, String>,
    /// TLS and SASL of each listener.
    pub security: SecurityConfig,
    /// Rivulet's `storage.fault.injection.file` (default unset): for tests
    /// of disk failures only. A file of rules that fail or slow storage I/O
    /// (see `rivulet_storage::faults`); unset, injection is off entirely.
    pub storage_fault_injection_file: Option<PathBuf>,
    /// `--add-scram` credentials, stored when the cluster has none.
    pub bootstrap_scram: Vec<(
        String,
        crate::security::scram::ScramMechanism,
        crate::security::scram::ScramCredential,
    )>,
}

/// The sampled window client quota rates are measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWindow {
    /// Kafka's `quota.window.num` (default 11): samples kept.
    pub samples: u32,
    /// Kafka's `quota.window.size.seconds` (default 1): length of a sample.
    pub sample: Duration,
}

impl Default for QuotaWindow {
    fn default() -> Self {
        QuotaWindow {
            samples: 11,
            sample: Duration::from_secs(1),
        }
    }
}

/// Replication and controller timing, Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// Kafka's `replica.lag.time.max.ms` (default 30000): a follower that
    /// has not caught up for this long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// Kafka's `replica.fetch.wait.max.ms` (default 500).
    pub replica_fetch_wait_max: Duration,
    /// Kafka's `replica.fetch.max.bytes` (default 1048576), per partition.
    pub replica_fetch_max_bytes: i32,
    /// Kafka's `broker.heartbeat.interval.ms` (default 2000).
    pub broker_heartbeat_interval: Duration,
    /// Kafka's `broker.session.timeout.ms` (default 9000): a broker whose
    /// heartbeats stop this long is fenced and its leaderships move.
    pub broker_session_timeout: Duration,
    /// Kafka's `controller.quorum.election.timeout.ms` (default 1000): a
    /// voter that heard no controller for twice this long (the quorum's
    /// lease, Kafka's `controller.quorum.fetch.timeout.ms`) asks for an
    /// election after a further random 1-2 times this.
    pub quorum_election_timeout: Duration,
    /// Kafka's `auto.leader.rebalance.enable` (default true).
    pub auto_leader_rebalance: bool,
    /// Kafka's `leader.imbalance.check.interval.seconds` (default 300).
    pub leader_imbalance_check_interval: Duration,
    /// Kafka's `offsets.topic.replication.factor` (default 3; capped at
    /// the number of live brokers when `__consumer_offsets` is created).
    pub offsets_topic_replication_factor: i16,
    /// Kafka's `follower.replication.throttled.rate` in bytes/s, applied
    /// to replicas that are being added by a reassignment (0: unlimited).
    pub reassignment_throttle: u64,
    /// Kafka's `replica.high.watermark.checkpoint.interval.ms` (default
    /// 5000): how often high watermarks are written to the data directory.
    pub hw_checkpoint_interval: Duration,
    /// Kafka's `num.recovery.threads.per.data.dir`: threads that open
    /// (recover) logs at start-up [default: twice the CPU count, 2 to 16;
    /// Kafka's own default of 1 leaves large brokers slow to start].
    pub recovery_threads: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replica_lag_time_max: Duration::from_millis(30_000),
            replica_fetch_wait_max: Duration::from_millis(500),
            replica_fetch_max_bytes: 1_048_576,
            broker_heartbeat_interval: Duration::from_millis(2000),
            broker_session_timeout: Duration::from_millis(9000),
            quorum_election_timeout: Duration::from_millis(1000),
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
            offsets_topic_replication_factor: 3,
            reassignment_throttle: 0,
            hw_checkpoint_interval: Duration::from_millis(5000),
            recovery_threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get() * 2)
                .clamp(2, 16),
        }
    }
}

/// Membership of a controller quorum (Kafka's KRaft settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Kafka's `controller.quorum.voters`: voter id -> `host:port` of its
    /// controller listener.
    pub voters: BTreeMap<i32, String>,
    /// Where this node's controller listener binds.
    pub controller_addr: SocketAddr,
    /// What other nodes use to reach it.
    pub controller_advertised: String,
    /// Kafka's `inter.broker.listener.name`: the listener followers fetch
    /// from (default: the first listener).
    pub inter_broker_listener: String,
    /// The controller listener's name and protocol, in a cluster (its
    /// security is the quorum's TLS); `None` for a single broker.
    pub controller_listener: Option<(String, SecurityProtocol)>,
    /// `cluster.id` (`--cluster-id`): the cluster this broker belongs to.
    /// An unformatted data directory is formatted as a member of it; a
    /// directory of another cluster is refused.
    pub cluster_id: Option<String>,
    /// `controller.quorum.bootstrap` (`--bootstrap-quorum`): an unformatted
    /// data directory may found the quorum (with `voters` as its initial
    /// voters). Without it, an unformatted directory joins the existing
    /// quorum and never founds one.
    pub bootstrap: bool,
    /// No `controller.quorum.voters`: a single broker, the only voter of
    /// its own quorum, which formats an empty directory by itself.
    pub single: bool,
}

/// One Kafka listener: where it binds and what it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The listener name, e.g. `PLAINTEXT` or `EXTERNAL`.
    pub name: String,
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Host and port Metadata advertises on this listener; `None` means
    /// "the bound address" (with a wildcard address as 127.0.0.1).
    pub advertised: Option<(String, u16)>,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
}

impl ListenerConfig {
    /// A PLAINTEXT listener on `addr` advertising its bound address.
    pub fn plaintext(addr: SocketAddr) -> Self {
        ListenerConfig {
            name: "PLAINTEXT".into(),
            addr,
            advertised: None,
            protocol: SecurityProtocol::Plaintext,
        }
    }

    /// Host and port clients of this listener are told to connect to.
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> (String, u16) {
        match &self.advertised {
            Some((host, port)) => (host.clone(), if *port == 0 { bound.port() } else { *port }),
            None => {
                let ip = if bound.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    bound.ip().to_string()
                };
                (ip, bound.port())
            }
        }
    }
}

/// A broker config that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key Rivulet does not know.
    #[error("unknown broker config `{0}`")]
    UnknownKey(String),
    /// A value that does not parse or is out of range.
    #[error("invalid value `{value}` for broker config `{key}`: {reason}")]
    InvalidValue {
        /// The config key.
        key: String,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A `log.*` default that is not a valid topic config.
    #[error("invalid topic default: {0}")]
    TopicDefault(#[source] TopicConfigError),
    /// A TLS or SASL setting that cannot be used.
    #[error("invalid security config: {0}")]
    Security(#[from] SecurityConfigError),
}

/// Broker keys that are accepted and reported but need no action here
/// (they keep `server.properties` files from elsewhere usable).
const ACCEPTED_IGNORED: &[&str] = &[
    "broker.id",
    "process.roles",
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "log.message.format.version",
    "inter.broker.protocol.version",
    "log.message.downconversion.enable",
    "log.preallocate",
];

/// Broker-level `log.*` keys and the topic config each one defaults.
const TOPIC_DEFAULT_KEYS: &[(&str, &str)] = &[
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    (
        "log.cleaner.min.cleanable.ratio",
        "min.cleanable.dirty.ratio",
    ),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("log.index.size.max.bytes", "segment.index.bytes"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
    ("message.max.bytes", "max.message.bytes"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("compression.type", "compression.type"),
];

impl BrokerConfig {
    /// Builds a config from the listener settings plus Kafka-style `key=value`
    /// configs (from `--config` and a properties file, later ones winning).
    pub fn new(
        node_id: i32,
        listeners: Vec<ListenerConfig>,
        data_dir: PathBuf,
        metrics_addr: Option<SocketAddr>,
        raw: BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut config = BrokerConfig {
            node_id,
            listeners,
            rack: None,
            data_dir,
            metrics_addr,
            socket_request_max_bytes: 104_857_600,
            max_connections: 10_000,
            auto_create_topics: true,
            num_partitions: 1,
            default_replication_factor: 1,
            retention_check_interval: Duration::from_millis(300_000),
            cleaner_backoff: Duration::from_millis(15_000),
            acks_all_fsync: true,
            metrics_partition_series_max: 10_000,
            topic_defaults: TopicConfig::default(),
            group_initial_rebalance_delay: Duration::from_millis(3000),
            group_min_session_timeout: Duration::from_millis(6000),
            group_max_session_timeout: Duration::from_millis(1_800_000),
            offsets_topic_partitions: 50,
            offsets_retention: Duration::from_secs(10_080 * 60),
            offsets_retention_check_interval: Duration::from_millis(600_000),
            offset_metadata_max_bytes: 4096,
            quota_window: QuotaWindow::default(),
            transactions: TransactionConfig::default(),
            replication: ReplicationConfig::default(),
            // Set from the voters (or to a cluster of one) below.
            cluster: ClusterConfig {
                voters: BTreeMap::new(),
                controller_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                controller_advertised: String::new(),
                inter_broker_listener: String::new(),
                controller_listener: None,
                cluster_id: None,
                bootstrap: false,
                single: true,
            },
            raw: BTreeMap::new(),
            storage_fault_injection_file: None,
            security: SecurityConfig::default(),
            bootstrap_scram: Vec::new(),
        };
        let mut voters = None;
        let mut controller_names: Vec<String> = Vec::new();
        let mut inter_broker = None;
        let mut inter_broker_protocol = None;
        let mut cluster_id = None;
        let mut bootstrap = false;
        let mut topic_defaults = BTreeMap::new();
        for (key, value) in &raw {
            let invalid = |reason: &str| ConfigError::InvalidValue {
                key: key.clone(),
                value: value.clone(),
                reason: reason.to_string(),
            };
            if key == "log.retention.hours" || key == "log.retention.minutes" {
                let unit: i64 = if key.ends_with("hours") {
                    3_600_000
                } else {
                    60_000
                };
                let v: i64 = value.parse().map_err(|_| invalid("not an integer"))?;
                topic_defaults
                    .entry("retention.ms".to_string())
                    .or_insert_with(|| (v * unit).to_string());
                continue;
            }
            if let Some((_, topic_key)) = TOPIC_DEFAULT_KEYS.iter().find(|(k, _)| k == key) {
                topic_defaults.insert(topic_key.to_string(), value.clone());
                continue;
            }
            match key.as_str() {
                "socket.request.max.bytes" => {
                    config.socket_request_max_bytes = parse_positive(value, &invalid)? as usize
                }
                "max.connections" => {
                    config.max_connections = parse_positive(value, &invalid)? as usize
                }
                "auto.create.topics.enable" => {
                    config.auto_create_topics = parse_bool(value, &invalid)?
                }
                "num.partitions" => {
                    config.num_partitions = i32::try_from(parse_positive(value, &invalid)?)
                        .map_err(|_| invalid("too large"))?
                }
                "default.replication.factor" => {
                    config.default_replication_factor =
                        i16::try_from(parse_positive(value, &invalid)?)
                            .map_err(|_| invalid("too large"))?
                }
                "log.retention.check.interval.ms" => {
                    config.retention_check_interval =
                        Duration::from_millis(parse_positive(value, &invalid)? as u64)
                }
                "broker.rack" => config.rack = Some(value.clone()),
                // Read by main.rs with the listeners; accepted here.
                "listener.security.protocol.map" => {}
                "log.cleaner.backoff.ms" => {
                    config.cleaner_backoff =
                        Duration::from_millis(parse_positive(value, &invalid)? as u64)
                }
                "acks.all.fsync" => config.acks_all_fsync = parse_bool(value, &invalid)?,
                "storage.fault.injection.file" => {
                    config.storage_fault_injection_file = Some(PathBuf::from(value))
                }
                "metrics.partition.series.max" => {
                    config.metrics_partition_series_max =
                        parse_non_negative(value, &invalid)? as usize
                }
                "group.initial.rebalance.delay.ms" => {
                    config.group_initial_rebalance_delay =
                        Duration::from_millis(parse_non_negative(value, &invalid)?)
                }
                "group.min.session.timeout.ms" => {
                    config.group_min_session_timeout =
                        Duration::from_millis(parse_int_ms(value, &invalid)?)
                }
                "group.max.session.timeout.ms" => {
                    config.group_max_session_timeout =
                        Duration::from_millis(parse_int_ms(value, &invalid)?)
                }
                "offsets.topic.num.partitions" => {
                    config.offsets_topic_partitions =
                        i32::try_from(parse_positive(value, &invalid)?)
                            .map_err(|_| invalid("too large"))?
                }
                "offsets.retention.minutes" => {
                    config.offsets_retention =
                        Duration::from_secs(parse_positive(value, &invalid)? as u64 * 60)
                }
                "offsets.retention.check.interval.ms" => {
                    config.offsets_retention_check_interval =
                        Duration::from_millis(parse_positive(value, &invalid)? as u64)
                }
                "offset.metadata.max.bytes" => {
                    config.offset_metadata_max_bytes = parse_non_negative(value, &invalid)? as usize
                }
                "quota.window.num" => {
                    config.quota_window.samples = u32::try_from(parse_positive(value, &invalid)?)
                        .map_err(|_| invalid("too large"))?
                }
                "quota.window.size.seconds" => {
                    config.quota_window.sample =
                        Duration::from_secs(parse_positive(value, &invalid)? as u64)
                }
                "controller.quorum.voters" => {
                    voters = Some(parse_voters(value).map_err(|r| invalid(&r))?)
                }
                "controller.listener.names" => {
                    controller_names = value
                        .split(',')
                        .map(|n| n.trim().to_string())
                        .filter(|n| !n.is_empty())
                        .collect()
                }
                "inter.broker.listener.name" => inter_broker = Some(value.trim().to_string()),
                // Kafka's older way to name the inter-broker listener: the
                // one named after the protocol.
                "security.inter.broker.protocol" => {
                    let protocol = SecurityProtocol::parse(value)
                        .ok_or_else(|| invalid("not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?;
                    inter_broker_protocol = Some(protocol.name().to_string());
                }
                "cluster.id" => {
                    let id = value.trim();
                    if id.is_empty()
                        || !id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        return Err(invalid("a cluster id is letters, digits, `-` and `_` (Kafka's are 22 base64url characters)"));
                    }
                    cluster_id = Some(id.to_owned())
                }
                "controller.quorum.bootstrap" => bootstrap = parse_bool(value, &invalid)?,
                "replica.high.watermark.checkpoint.interval.ms" => {
                    config.replication.hw_checkpoint_interval =
                        Duration::from_millis(parse_positive(value, &invalid)? as u64)
                }
                "num.recovery.threads.per.data.dir" => {
                    config.replication.recovery_threads =
                        usize::try_from(parse_positive(value, &invalid)?)
                            .map_err(|_| invalid("too large"))?
                }
                "replica.lag.time.max.ms" => {
                    config.replication.replica_lag_time_max =
                        Duration::from_millis(parse_positive(value, &invalid)? as u64)
                }
                "replica.fetch.wait.max.ms" => {
                    config.replication.replica_fetch_wait_max =
                        Duration::from_millis(parse_non_negative(value, &invalid)?)
                }
                "replica.fetch.max.bytes" => {
                    config.replication.replica_fetch_max_bytes =
                        i32::try_from(parse_positive(value, &invalid)?)
                            .map_err(|_| invalid("too large"))?
                }
                "broker.heartbeat.interval.ms" => {
                    config.replication.broker_heartbeat_interval =
                        Duration::from_millis(parse_positive(value, &invalid)? as u64)
                }
                "broker.session.timeout.ms" => {
                    config.replication.broker_session_timeout =
                        Duration::from_millis(parse_positive(value, &invalid)? as u64)
                }
                "controller.quorum.election.timeout.ms" => {
                    config.replication.quorum_election_timeout =
                        Duration::from_millis(parse_positive(value, &invalid)? as u64)
                }
                "auto.leader.rebalance.enable" => {
                    config.replication.auto_leader_rebalance = parse_bool(value, &invalid)?
                }
                "leader.imbalance.check.interval.seconds" => {
                    config.replication.leader_imbalance_check_interval =
                        Duration::from_secs(parse_positive(value, &invalid)? as u64)
                }
                "offsets.topic.replication.factor" => {
                    config.replication.offsets_topic_replication_factor =
                        i16::try_from(parse_positive(value, &invalid)?)
                            .map_err(|_| invalid("too large"))?
                }
                "follower.replication.throttled.rate" => {
                    config.replication.reassignment_throttle = parse_non_negative(value, &invalid)?
                }
                k if transactions::KEYS.contains(&k) => {
                    config.transactions.set(k, value, &invalid)?
                }
                k if ACCEPTED_IGNORED.contains(&k) => {}
                k if crate::security::config::is_security_key(k) => {}
                _ => return Err(ConfigError::UnknownKey(key.clone())),
            }
        }
        if config.group_min_session_timeout > config.group_max_session_timeout {
            return Err(ConfigError::InvalidValue {
                key: "group.min.session.timeout.ms".into(),
                value: config.group_min_session_timeout.as_millis().to_string(),
                reason: "must not exceed group.max.session.timeout.ms".into(),
            });
        }
        config.topic_defaults = TopicConfig::default()
            .with_overrides(&topic_defaults)
            .map_err(ConfigError::TopicDefault)?;
        let inter_broker =
            match (inter_broker, inter_broker_protocol) {
                (Some(_), Some(protocol)) => return Err(ConfigError::InvalidValue {
                    key: "security.inter.broker.protocol".into(),
                    value: protocol,
                    reason:
                        "set inter.broker.listener.name or security.inter.broker.protocol, not both"
                            .into(),
                }),
                (name, protocol) => name.or(protocol),
            };
        config.cluster =
            config.split_controller_listener(voters, &controller_names, inter_broker)?;
        config.cluster.cluster_id = cluster_id;
        config.cluster.bootstrap = bootstrap;
        let protocols: Vec<(String, SecurityProtocol)> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.protocol))
            .chain(config.cluster.controller_listener.clone())
            .collect();
        config.security = crate::security::config::parse(&raw, &protocols)?;
        if let Some((name, _)) = &config.cluster.controller_listener {
            config.security.secure_controller_listener(&raw, name)?;
        }
        if !config.cluster.single {
            config
                .security
                .inter_broker_login(&config.cluster.inter_broker_listener)?;
        }
        config.raw = raw;
        Ok(config)
    }

    /// In a cluster, takes the controller listener out of the Kafka
    /// listeners (it serves the quorum's gRPC, not Kafka clients).
    fn split_controller_listener(
        &mut self,
        voters: Option<BTreeMap<i32, String>>,
        controller_names: &[String],
        inter_broker: Option<String>,
    ) -> Result<ClusterConfig, ConfigError> {
        let invalid = |key: &str, value: &str, reason: String| ConfigError::InvalidValue {
            key: key.into(),
            value: value.into(),
            reason,
        };
        let Some(voters) = voters else {
            if let Some(name) = controller_names.first() {
                // A controller listener without a quorum: never serve Kafka on it.
                self.listeners.retain(|l| &l.name != name);
            }
            if self.listeners.is_empty() {
                return Err(invalid(
                    "listeners",
                    "",
                    "a broker needs a Kafka listener besides the controller listener".into(),
                ));
            }
            return Ok(self.cluster_of_one());
        };
        let Some(name) = controller_names.first() else {
            return Err(invalid(
                "controller.listener.names",
                "",
                "required with controller.quorum.voters".into(),
            ));
        };
        let Some(at) = self.listeners.iter().position(|l| &l.name == name) else {
            return Err(invalid(
                "controller.listener.names",
                name,
                "no listener of that name in `listeners`".into(),
            ));
        };
        let controller = self.listeners.remove(at);
        if self.listeners.is_empty() {
            return Err(invalid(
                "listeners",
                "",
                "a broker needs a Kafka listener besides the controller listener".into(),
            ));
        }
        let inter_broker_listener = inter_broker.unwrap_or_else(|| self.listeners[0].name.clone());
        if !self
            .listeners
            .iter()
            .any(|l| l.name == inter_broker_listener)
        {
            return Err(invalid(
                "inter.broker.listener.name",
                &inter_broker_listener,
                "no Kafka listener of that name".into(),
            ));
        }
        let controller_advertised = match (&controller.advertised, voters.get(&self.node_id)) {
            (Some((host, port)), _) if *port != 0 => format!("{host}:{port}"),
            (_, Some(addr)) => addr.clone(),
            _ => {
                let (host, port) = controller.advertised_endpoint(controller.addr);
                format!("{host}:{port}")
            }
        };
        Ok(ClusterConfig {
            voters,
            controller_addr: controller.addr,
            controller_advertised,
            inter_broker_listener,
            controller_listener: Some((controller.name.clone(), controller.protocol)),
            cluster_id: None,
            bootstrap: false,
            single: false,
        })
    }

    /// A single broker's quorum: itself as the only voter, its controller
    /// listener on a free loopback port (nobody else ever dials it).
    fn cluster_of_one(&self) -> ClusterConfig {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        ClusterConfig {
            voters: BTreeMap::from([(self.node_id, addr.to_string())]),
            controller_addr: addr,
            controller_advertised: addr.to_string(),
            inter_broker_listener: self.listeners[0].name.clone(),
            controller_listener: None,
            cluster_id: None,
            bootstrap: false,
            single: true,
        }
    }
}

/// Parses Kafka's `controller.quorum.voters`: `id@host:port,...`.
fn parse_voters(value: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut voters = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| format!("`{entry}` is not id@host:port"))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| format!("`{id}` is not a node id"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("`{addr}` has no port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("`{addr}` is not host:port"));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    match voters.len() {
        1 | 3 | 5 => Ok(voters),
        0 => Err("no voters".into()),
        n => Err(format!(
            "{n} voters: use 1, 3 or 5 (an even count tolerates no more failures than one fewer)"
        )),
    }
}

fn parse_positive(value: &str, invalid: &dyn Fn(&str) -> ConfigError) -> Result<i64, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        Ok(_) => Err(invalid("must be positive")),
        Err(_) => Err(invalid("not an integer")),
    }
}

fn parse_non_negative(
    value: &str,
    invalid: &dyn Fn(&str) -> ConfigError,
) -> Result<u64, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(v) if v >= 0 => Ok(v as u64),
        Ok(_) => Err(invalid("must not be negative")),
        Err(_) => Err(invalid("not an integer")),
    }
}

/// A positive millisecond count that fits Kafka's int32 timeouts.
fn parse_int_ms(value: &str, invalid: &dyn Fn(&str) -> ConfigError) -> Result<u64, ConfigError> {
    let v = parse_positive(value, invalid)?;
    if v > i64::from(i32::MAX) {
        return Err(invalid("too large"));
    }
    Ok(v as u64)
}

fn parse_bool(value: &str, invalid: &dyn Fn(&str) -> ConfigError) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid("must be true or false")),
    }
}

#[cfg(test)]
mod tests;
mod transactions;

pub use transactions::{TransactionConfig, TRANSACTION_VERSION_MAX};
