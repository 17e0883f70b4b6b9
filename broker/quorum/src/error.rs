//! The crate's error type, one variant per step that can fail.

use std::{io, net::SocketAddr, time::Duration};

use openraft::{
    error::{Fatal, InitializeError, RaftError},
    ConfigError,
};

use crate::{
    metadata::ApplyError,
    network::TransportError,
    raft_types::{Node, NodeId},
};

/// Errors of the controller quorum.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// The quorum config is invalid (e.g. election timeouts out of order).
    #[error("invalid quorum config")]
    Config(#[source] Box<ConfigError>),
    /// The Raft log could not be opened or recovered.
    #[error("cannot open the metadata log")]
    OpenLog(#[source] io::Error),
    /// The state machine (snapshot) could not be opened.
    #[error("cannot open the metadata state machine")]
    OpenStateMachine(#[source] io::Error),
    /// Raft failed to start.
    #[error("cannot start raft")]
    StartRaft(#[source] Box<Fatal<NodeId>>),
    /// The controller listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The voter set given to `initialize` is unusable.
    #[error("invalid voter set: {0}")]
    InvalidVoters(String),
    /// Raft refused the bootstrap.
    #[error("cannot initialize the quorum")]
    Initialize(#[source] Box<RaftError<NodeId, InitializeError<NodeId, Node>>>),
    /// No leader emerged in time after bootstrap.
    #[error("no quorum leader after {0:?}")]
    BootstrapTimeout(Duration),
    /// A proposal was not committed in time: no leader, or the leader has
    /// no majority. It may still commit later; commands should be safe to
    /// retry (they are validated against the image when applied).
    #[error("proposal not committed within {0:?}")]
    ProposeTimeout(Duration),
    /// The command was committed at `offset` but the state machine refused
    /// it; the image is unchanged.
    #[error("command at offset {offset} rejected")]
    Rejected {
        /// Its metadata offset.
        offset: u64,
        /// Why.
        #[source]
        source: ApplyError,
    },
    /// Forwarding a proposal to the leader failed after it may have been
    /// sent, so its outcome is unknown.
    #[error("forwarding to the leader failed")]
    Forward(#[source] TransportError),
    /// Waiting for the local image to reach an offset timed out.
    #[error("metadata offset {0} not applied in time")]
    CatchUpTimeout(u64),
    /// A write only the leader may make was attempted on a node that does
    /// not lead (or stopped leading).
    #[error("this node is not the quorum leader")]
    NotLeader,
    /// Joining the quorum as a learner did not succeed in time.
    #[error("could not join as a learner within {timeout:?}: {last}")]
    JoinTimeout {
        /// The bound (`bootstrap_timeout`).
        timeout: Duration,
        /// What the last attempt ran into.
        last: String,
    },
    /// The broker was not registered and unfenced in time.
    #[error("broker still fenced after {0:?}")]
    UnfenceTimeout(Duration),
    /// The leader refused a voter-set request, or none could answer it.
    #[error("voter set: {0}")]
    Voters(#[source] crate::network::VotersRefused),
    /// Raft stopped (shut down or failed on storage).
    #[error("raft stopped")]
    Fatal(#[source] Box<Fatal<NodeId>>),
}
