//! The openraft type configuration of the metadata quorum: what a log entry
//! carries, what applying one answers, and how nodes are addressed.

use serde::{Deserialize, Serialize};

use crate::metadata::{ApplyResult, MetadataCommand};

/// A Raft node id. In combined mode it is the broker's `node.id`.
pub type NodeId = u64;

/// A voter's address as stored in the Raft membership: the `host:port` of
/// its controller (gRPC) listener.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// Type configuration of the metadata Raft group.
    pub TypeConfig:
        D = MetadataCommand,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// What applying one log entry answered: its offset in the metadata log
/// and, for a command, the outcome (entries without a command answer
/// `Ok(Unchanged)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// The entry's metadata offset (its Raft log index).
    pub offset: u64,
    /// Accepted or rejected, as every replica decided identically.
    pub result: ApplyResult,
}

/// A Raft log entry of this group.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (term, leader, index) of this group.
pub type LogId = openraft::LogId<NodeId>;
/// A vote of this group.
pub type Vote = openraft::Vote<NodeId>;
/// A storage error of this group.
pub type StorageError = openraft::StorageError<NodeId>;
/// A persisted membership of this group.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// Snapshot metadata of this group.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
