//! The records of the metadata log: what a proposer asks for, and what
//! applying it answered.
//!
//! A command is validated when it is applied, not when it is proposed:
//! only the log order decides whether e.g. a partition epoch is stale, so a
//! rejected command is still a committed (no-op) entry and every replica
//! rejects it identically.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::types::{BrokerId, Endpoint};

/// A change to the cluster metadata, applied in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// A broker process announces itself. A new incarnation gets a new
    /// broker epoch and starts fenced; repeating the same incarnation is a
    /// no-op that keeps the epoch.
    RegisterBroker {
        /// The broker's id.
        broker_id: BrokerId,
        /// Random id of this process instance.
        incarnation_id: Uuid,
        /// `broker.rack`, if any.
        rack: Option<String>,
        /// Advertised endpoints by listener name.
        endpoints: BTreeMap<String, Endpoint>,
        /// The id of its data directory (`meta.properties`); absent from
        /// brokers of older releases.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        directory_id: Option<Uuid>,
    },
    /// A live broker's periodic heartbeat; unfences it.
    BrokerHeartbeat {
        /// The broker's id.
        broker_id: BrokerId,
        /// Epoch from its registration; a stale one is rejected.
        broker_epoch: u64,
    },
    /// Fence a broker whose heartbeats stopped: it leaves every ISR (unless
    /// it is the last member) and partitions it led get new leaders.
    FenceBroker {
        /// The broker's id.
        broker_id: BrokerId,
    },
    /// Remove a broker (decommissioned); fenced first, then forgotten.
    UnregisterBroker {
        /// The broker's id.
        broker_id: BrokerId,
    },
    /// Create a topic with explicit replica assignments (computed by the
    /// proposer, e.g. with [`crate::placement::assign_replicas`]).
    CreateTopic {
        /// Topic name.
        name: String,
        /// Topic id.
        topic_id: Uuid,
        /// Replica list of partition `i` at index `i`.
        assignments: Vec<Vec<BrokerId>>,
        /// Topic config overrides.
        configs: BTreeMap<String, String>,
    },
    /// Delete a topic and all its partitions.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// Add partitions to a topic; they are appended after the existing ones.
    CreatePartitions {
        /// Topic name.
        name: String,
        /// Replica lists of the new partitions, in order.
        assignments: Vec<Vec<BrokerId>>,
    },
    /// Set and delete topic config overrides.
    AlterTopicConfigs {
        /// Topic name.
        name: String,
        /// Keys to set.
        set: BTreeMap<String, String>,
        /// Keys to remove.
        delete: BTreeSet<String>,
    },
    /// Change leader and/or ISR of one partition (AlterPartition, elections).
    ChangePartition(PartitionChange),
    /// Start (`Some`) or cancel (`None`) a reassignment of one partition.
    AlterReassignment {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Target replica list, or `None` to cancel.
        target: Option<Vec<BrokerId>>,
    },
    /// Set (`Some`) or delete (`None`) a user's SCRAM credential
    /// (AlterUserScramCredentials).
    AlterScramCredential {
        /// The user name.
        user: String,
        /// Kafka's ScramMechanism code: 1 SHA-256, 2 SHA-512.
        mechanism: i8,
        /// The new credential, or `None` to delete it.
        credential: Option<super::ScramCredentialRecord>,
    },
    /// Add ACLs (CreateAcls): all of them, or none when one is invalid.
    /// Adding an ACL that exists changes nothing, as in Kafka.
    CreateAcls(Vec<super::acl::AclBinding>),
    /// Remove these exact ACLs (DeleteAcls resolves its filters against the
    /// image first); ones already gone are skipped.
    DeleteAcls(Vec<super::acl::AclBinding>),
    /// Set and remove client quota keys of one entity (AlterClientQuotas).
    AlterClientQuota {
        /// The user and/or client id the quotas apply to.
        entity: super::QuotaEntity,
        /// Keys to set.
        set: BTreeMap<String, super::QuotaValue>,
        /// Keys to remove.
        remove: BTreeSet<String>,
    },
    /// Several commands applied atomically: all of them or none.
    Batch(Vec<MetadataCommand>),
}

/// What to do with a partition's leader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderChange {
    /// Keep the current leader.
    #[default]
    Unchanged,
    /// Make this replica the leader.
    To(BrokerId),
    /// No leader: the partition is offline.
    Offline,
}

/// A change of one partition's leadership/ISR, with the epochs the proposer
/// based it on so that changes computed from an old view are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// New leader.
    pub leader: LeaderChange,
    /// New ISR; `None` keeps it.
    pub isr: Option<Vec<BrokerId>>,
    /// The partition epoch this change was computed from; a different
    /// current epoch rejects it (AlterPartition's INVALID_UPDATE_VERSION).
    pub expected_partition_epoch: Option<i32>,
    /// The leader epoch of the requester (AlterPartition from a leader); a
    /// different current one rejects it (FENCED_LEADER_EPOCH).
    pub expected_leader_epoch: Option<i32>,
}

/// What applying an accepted command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// The image changed.
    Applied,
    /// Valid, but nothing needed to change.
    Unchanged,
    /// A broker registration; carries its broker epoch.
    Registered {
        /// The epoch heartbeats must carry.
        broker_epoch: u64,
    },
}

/// Why a command was rejected. The image is unchanged (except its offset).
/// Variants map onto Kafka error codes at the handler boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    /// Unknown broker (BROKER_NOT_AVAILABLE / STALE_BROKER_EPOCH).
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    /// A heartbeat from an older incarnation.
    #[error("stale broker epoch {got} for broker {broker}, current {current}")]
    StaleBrokerEpoch {
        /// The broker.
        broker: BrokerId,
        /// Epoch in the request.
        got: u64,
        /// Current epoch.
        current: u64,
    },
    /// The topic exists already (TOPIC_ALREADY_EXISTS).
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// Another topic has this id.
    #[error("topic id {0} is already in use")]
    TopicIdInUse(Uuid),
    /// Unknown topic (UNKNOWN_TOPIC_OR_PARTITION).
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// Unknown partition (UNKNOWN_TOPIC_OR_PARTITION).
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A replica assignment is malformed (INVALID_REPLICA_ASSIGNMENT).
    #[error("invalid replica assignment: {0}")]
    InvalidAssignment(String),
    /// A partition change is inconsistent (INVALID_REQUEST).
    #[error("invalid partition change: {0}")]
    InvalidChange(String),
    /// Based on an old partition epoch (INVALID_UPDATE_VERSION).
    #[error("stale partition epoch {got}, current {current}")]
    StalePartitionEpoch {
        /// Epoch in the request.
        got: i32,
        /// Current epoch.
        current: i32,
    },
    /// Sent by an old leader (FENCED_LEADER_EPOCH).
    #[error("fenced leader epoch {got}, current {current}")]
    FencedLeaderEpoch {
        /// Epoch in the request.
        got: i32,
        /// Current epoch.
        current: i32,
    },
    /// Cancelling a reassignment that is not in progress
    /// (NO_REASSIGNMENT_IN_PROGRESS).
    #[error("no reassignment in progress")]
    NoReassignment,
    /// The topic name is not a valid Kafka topic name (INVALID_TOPIC_EXCEPTION).
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    /// Deleting a credential that does not exist (RESOURCE_NOT_FOUND).
    #[error("user {user} has no SCRAM credential of mechanism {mechanism}")]
    UnknownScramCredential {
        /// The user.
        user: String,
        /// Kafka's mechanism code.
        mechanism: i8,
    },
    /// A malformed credential alteration (UNACCEPTABLE_CREDENTIAL).
    #[error("invalid SCRAM credential: {0}")]
    InvalidScram(String),
    /// A malformed ACL (INVALID_REQUEST).
    #[error(transparent)]
    InvalidAcl(#[from] super::acl::AclError),
    /// A malformed client quota alteration (INVALID_REQUEST); the message
    /// is Kafka's.
    #[error("{0}")]
    InvalidQuota(String),
}

/// The answer to a command, as stored next to the entry's offset.
pub type ApplyResult = Result<ApplyOutcome, ApplyError>;
