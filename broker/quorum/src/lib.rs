//! Rivulet's controller quorum: the metadata log of a cluster, replicated by
//! Raft ([openraft]) between the voters over gRPC ([tonic]), in KRaft's
//! combined mode (the voters are brokers).
//!
//! - [`metadata`]: the pure state machine (brokers, topics, partitions,
//!   leaders, ISR, configs, reassignments) and its commands.
//! - [`placement`]: pure replica assignment and leader election;
//!   [`elect_leaders`]: the ElectLeaders API's preferred elections.
//! - [`log_store`] / [`state_machine`]: openraft storage on disk.
//! - [`network`]: the gRPC transport.
//! - [`new_raft_node`] / [`QuorumNode`]: everything wired together, plus
//!   what a broker runs on it: joining as a learner, its registration and
//!   heartbeats ([`BrokerLifecycle`]), and the active controller's loop
//!   (fencing on expired sessions, preferred leader rebalance), elections
//!   preceded by PreVote, and a broker's leader lease ([`BrokerLease`]).

mod config;
pub mod elect_leaders;
mod error;
mod fsio;
mod liveness;
pub mod log_store;
pub mod metadata;
pub mod network;
mod node;
pub mod placement;
pub mod raft_types;
pub mod state_machine;

pub use config::{ControllerConfig, QuorumConfig};
pub use error::QuorumError;
pub use liveness::BrokerLiveness;
pub use node::{
    new_raft_node, BrokerInfo, BrokerLease, BrokerLifecycle, CommitLatency, QuorumMetrics,
    QuorumNode, QuorumRole, COMMIT_LATENCY,
};
