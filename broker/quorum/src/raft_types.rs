//! The openraft type configuration of the metadata quorum: what a log entry
//! carries, what applying one answers, and how nodes are addressed.

use serde::{Deserialize, Serialize};

use crate::metadata::{ApplyResult, MetadataCommand};

/// A Raft node id. In combined mode it is the broker's `node.id`.
pub type NodeId = u64;

/// A member of the Raft membership (voter or learner), as stored in it.
///
/// A voter is identified by its node id *and* the directory id of the data
/// directory it voted from (KIP-853): a node that comes back with another
/// directory (its disk was lost) is not that voter until it has caught up
/// and the leader has recorded its new directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `host:port` of its controller (gRPC) listener.
    pub addr: String,
    /// The directory id from its `meta.properties`. `None` for initial
    /// voters the founder listed by address only, until each claims its
    /// entry, and for membership written before directory ids existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_id: Option<uuid::Uuid>,
}

impl Node {
    /// A member at `addr` with directory `directory_id`.
    pub fn new(addr: impl Into<String>, directory_id: Option<uuid::Uuid>) -> Self {
        Self {
            addr: addr.into(),
            directory_id,
        }
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.directory_id {
            Some(dir) => write!(f, "{} (directory {dir})", self.addr),
            None => f.write_str(&self.addr),
        }
    }
}

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
