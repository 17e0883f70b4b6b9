//! Rivulet's controller quorum: the metadata log of a cluster, replicated by
//! Raft ([openraft]) between the voters over gRPC ([tonic]), in KRaft's
//! combined mode (the voters are brokers).
//!
//! - [`metadata`]: the pure state machine (brokers, topics, partitions,
//!   leaders, ISR, configs, reassignments) and its commands.
//! - [`placement`]: pure replica assignment and leader election.
//! - [`log_store`] / [`state_machine`]: openraft storage on disk.
//! - [`network`]: the gRPC transport.
//! - [`new_raft_node`] / [`QuorumNode`]: everything wired together.

mod config;
mod error;
mod fsio;
pub mod log_store;
pub mod metadata;
pub mod network;
mod node;
pub mod placement;
pub mod raft_types;
pub mod state_machine;

pub use config::QuorumConfig;
pub use error::QuorumError;
pub use node::{new_raft_node, QuorumMetrics, QuorumNode, QuorumRole};
