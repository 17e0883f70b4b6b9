//! The values the metadata log describes: registered brokers, topics and the
//! per-partition replication state (leader, epochs, ISR, reassignment).
//!
//! Everything is kept in `BTreeMap`s so that iterating, serializing (for
//! snapshots) and comparing is deterministic across replicas of the log.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker id, Kafka's `node.id` (an int32 on the wire).
pub type BrokerId = i32;

/// The topic config that allows electing a leader from outside the ISR
/// (Kafka's name, so users' configs carry over).
pub const UNCLEAN_LEADER_ELECTION_CONFIG: &str = "unclean.leader.election.enable";

/// A network endpoint a broker advertises for one listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Host name or IP address clients should connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A broker as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// The broker's id.
    pub id: BrokerId,
    /// Random id of the broker process instance; a new one means a restart.
    pub incarnation_id: Uuid,
    /// The broker epoch: the metadata offset of the registration that
    /// created this incarnation. Heartbeats must carry it, which is how a
    /// zombie process of an older incarnation is told apart.
    pub epoch: u64,
    /// Rack (`broker.rack`), used to spread replicas across failure domains.
    pub rack: Option<String>,
    /// Advertised endpoints by listener name (e.g. `PLAINTEXT`).
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The id of its data directory, when it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_id: Option<Uuid>,
    /// A fenced broker leads nothing and is not placed on. Brokers register
    /// fenced and are unfenced by their first heartbeat, as in KRaft.
    pub fenced: bool,
}

impl BrokerRegistration {
    /// True when the broker is registered and unfenced.
    pub fn is_live(&self) -> bool {
        !self.fenced
    }
}

/// An in-flight partition reassignment (KIP-455): the replica set is the
/// union of old and target while the new replicas catch up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    /// The replica list the partition ends with.
    pub target: Vec<BrokerId>,
    /// Replicas in `target` but not in the original set.
    pub adding: Vec<BrokerId>,
    /// Replicas in the original set but not in `target`.
    pub removing: Vec<BrokerId>,
}

/// Replication state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas. When a partition goes offline the last member stays
    /// so it can lead again without data loss when it returns.
    pub isr: Vec<BrokerId>,
    /// Current leader; `None` means offline (Kafka's leader -1).
    pub leader: Option<BrokerId>,
    /// Bumped on every leader change; fences stale leaders and followers.
    pub leader_epoch: i32,
    /// Bumped on every change of this partition; AlterPartition requests
    /// carrying an older one are rejected.
    pub partition_epoch: i32,
    /// Present while a reassignment is in progress.
    pub reassignment: Option<Reassignment>,
}

impl PartitionState {
    /// A fresh partition: the first replica leads, all replicas in sync.
    pub fn new(replicas: Vec<BrokerId>) -> Self {
        Self {
            leader: replicas.first().copied(),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            reassignment: None,
        }
    }

    /// The preferred leader (first assigned replica).
    pub fn preferred_leader(&self) -> Option<BrokerId> {
        self.replicas.first().copied()
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id (Kafka's topic UUID).
    pub id: Uuid,
    /// Partitions by index, dense from 0.
    pub partitions: BTreeMap<i32, PartitionState>,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
}

impl TopicMetadata {
    /// Whether an out-of-sync replica may be elected leader.
    pub fn unclean_election_allowed(&self) -> bool {
        self.configs
            .get(UNCLEAN_LEADER_ELECTION_CONFIG)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// The cluster metadata image: the result of applying the metadata log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Offset of the last applied metadata record; monotonic.
    pub offset: u64,
    /// Registered brokers by id.
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMetadata>,
    /// SCRAM credentials by user, then by Kafka's mechanism code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram: BTreeMap<String, BTreeMap<i8, super::ScramCredentialRecord>>,
    /// Every ACL, for the authorizer and DescribeAcls.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acls: BTreeSet<super::acl::AclBinding>,
    /// Client quotas by entity (absent from images of older releases).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        with = "super::quota::as_pairs"
    )]
    pub quotas: super::quota::QuotaMap,
}

impl ClusterMetadata {
    /// Whether `id` is registered and unfenced.
    pub fn is_live(&self, id: BrokerId) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(BrokerRegistration::is_live)
    }

    /// The ids of unfenced brokers, ascending.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| b.is_live())
    }

    /// Looks up a topic by id (Kafka requests name topics either way).
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMetadata> {
        self.topics.values().find(|t| t.id == id)
    }

    /// A partition's state.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics.get(topic)?.partitions.get(&partition)
    }
}

#[cfg(test)]
impl ClusterMetadata {
    /// An image of just these brokers, `(id, rack, fenced)`, for unit tests.
    pub(crate) fn with_brokers(brokers: &[(BrokerId, Option<&str>, bool)]) -> Self {
        let mut md = Self::default();
        for &(id, rack, fenced) in brokers {
            let broker = BrokerRegistration {
                id,
                incarnation_id: Uuid::nil(),
                epoch: 1,
                rack: rack.map(str::to_owned),
                endpoints: BTreeMap::new(),
                directory_id: None,
                fenced,
            };
            md.brokers.insert(id, broker);
        }
        md
    }
}
