//! The metadata state machine: the cluster image ([`ClusterMetadata`]) and
//! the commands of the metadata log that change it.
//!
//! Pure and synchronous: the Raft state machine feeds committed commands to
//! [`ClusterMetadata::apply`] in log order, and tests do the same without Raft.

pub mod acl;
mod apply;
mod command;
mod partition;
#[cfg(test)]
mod partition_tests;
mod quota;
mod security;
#[cfg(test)]
mod tests;
mod types;

pub use command::{
    ApplyError, ApplyOutcome, ApplyResult, LeaderChange, MetadataCommand, PartitionChange,
};
pub use quota::{
    precedence, validate_quota, QuotaEntity, QuotaMap, QuotaName, QuotaValue, CONSUMER_BYTE_RATE,
    ENTITY_CLIENT_ID, ENTITY_USER, PRODUCER_BYTE_RATE, QUOTA_KEYS, REQUEST_PERCENTAGE,
};
pub use security::ScramCredentialRecord;
pub use types::{
    BrokerId, BrokerRegistration, ClusterMetadata, Endpoint, PartitionState, Reassignment,
    TopicMetadata, UNCLEAN_LEADER_ELECTION_CONFIG,
};
