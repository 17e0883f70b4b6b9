//! The quorum's gRPC transport.
//!
//! One service, `rivulet.quorum.v1.Quorum`, with ten unary methods
//! (AppendEntries, Vote, InstallSnapshot, Propose, AddLearner, the voter
//! set's Describe, AddVoter, RemoveVoter, Elect, and PreVote, see
//! [`pre_vote`]). Every call carries the
//! caller's cluster id as metadata and every method the
//! same protobuf message, [`RpcPayload`]: openraft's request or result as
//! JSON in field 1, and raw snapshot bytes in field 2 (kept out of the JSON,
//! where bytes would become arrays of numbers). Hand-writing the one message
//! avoids protobuf codegen, so building needs no `protoc`; in `.proto`
//! terms it is `message RpcPayload { bytes json = 1; bytes data = 2; }`.

mod client;
mod fault;
mod join;
pub(crate) mod pre_vote;
mod server;
mod tls;
mod voters;

use std::time::Duration;

pub use client::{NetworkFactory, PeerClient};
pub use fault::Isolation;
pub(crate) use join::{JoinRefused, JoinReply, JoinRequest};
use serde::{de::DeserializeOwned, Serialize};
pub(crate) use server::{ProposeReply, QuorumService, ServiceParts};
pub(crate) use tls::incoming as tls_incoming;
pub use tls::{QuorumTls, SharedTls, ALPN_H2};
use tonic::{
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint},
};
pub(crate) use voters::VotersReply;
pub use voters::{MemberState, QuorumState, VoterChange, VotersRefused};

/// The message of every method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcPayload {
    /// A JSON-encoded openraft request or result.
    #[prost(bytes = "vec", tag = "1")]
    pub json: Vec<u8>,
    /// Snapshot chunk bytes (InstallSnapshot requests only).
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// How a refusal for another cluster starts (Kafka's error name), so that
/// callers can tell it from other failures.
pub const INCONSISTENT_CLUSTER_ID: &str = "INCONSISTENT_CLUSTER_ID";

/// The gRPC metadata key carrying the caller's cluster id.
pub(crate) const CLUSTER_ID_HEADER: &str = "rivulet-cluster-id";

/// Largest message either side accepts. Snapshot chunks are sized well
/// below it (see `QuorumConfig::snapshot_chunk_size`).
pub(crate) const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The RPC methods, with their gRPC paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Propose,
    AddLearner,
    Describe,
    AddVoter,
    RemoveVoter,
    Elect,
    PreVote,
}

impl Method {
    pub(crate) const ALL: [Method; 10] = [
        Method::AppendEntries,
        Method::Vote,
        Method::InstallSnapshot,
        Method::Propose,
        Method::AddLearner,
        Method::Describe,
        Method::AddVoter,
        Method::RemoveVoter,
        Method::Elect,
        Method::PreVote,
    ];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Method::AppendEntries => "/rivulet.quorum.v1.Quorum/AppendEntries",
            Method::Vote => "/rivulet.quorum.v1.Quorum/Vote",
            Method::InstallSnapshot => "/rivulet.quorum.v1.Quorum/InstallSnapshot",
            Method::Propose => "/rivulet.quorum.v1.Quorum/Propose",
            Method::AddLearner => "/rivulet.quorum.v1.Quorum/AddLearner",
            Method::Describe => "/rivulet.quorum.v1.Quorum/Describe",
            Method::AddVoter => "/rivulet.quorum.v1.Quorum/AddVoter",
            Method::RemoveVoter => "/rivulet.quorum.v1.Quorum/RemoveVoter",
            Method::Elect => "/rivulet.quorum.v1.Quorum/Elect",
            Method::PreVote => "/rivulet.quorum.v1.Quorum/PreVote",
        }
    }
}

/// Why a call to a peer failed below the application level.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached (connection refused, reset, or the
    /// address is invalid); the request was most likely not delivered.
    #[error("peer {addr} unreachable: {status}")]
    Unreachable {
        /// The peer's address.
        addr: String,
        /// What tonic reported.
        status: Box<tonic::Status>,
    },
    /// No answer within the deadline; the request may have been processed.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// The peer's address.
        addr: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The peer answered with a gRPC error status.
    #[error("peer {addr} failed the call: {status}")]
    Status {
        /// The peer's address.
        addr: String,
        /// The status.
        status: Box<tonic::Status>,
    },
    /// A message could not be encoded or decoded.
    #[error("bad message: {0}")]
    Codec(#[from] serde_json::Error),
}

/// A lazily connecting gRPC client of one peer; clones share the HTTP/2
/// connection.
#[derive(Clone)]
pub(crate) struct RpcClient {
    addr: String,
    /// Sent as [`CLUSTER_ID_HEADER`] with every call.
    cluster_id: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    channel: Result<Channel, String>,
    /// While on, calls fail as unreachable without being sent.
    isolation: Isolation,
}

impl RpcClient {
    /// A client of the peer at `addr` (`host:port`), over TLS when `tls`
    /// is given.
    pub(crate) fn new(
        addr: &str,
        cluster_id: &str,
        connect_timeout: Duration,
        tls: Option<&SharedTls>,
        isolation: &Isolation,
    ) -> Self {
        // `http` even over TLS: the connector does the TLS, and tonic must
        // not try to (it is built without its own TLS).
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map(|e| {
                let e = e.connect_timeout(connect_timeout).tcp_nodelay(true);
                match tls {
                    None => e.connect_lazy(),
                    Some(tls) => e.connect_with_connector_lazy(tls::Connector::new(tls.clone())),
                }
            })
            .map_err(|e| e.to_string());
        Self {
            addr: addr.to_owned(),
            // Cluster ids are base64url: always valid header values.
            cluster_id: cluster_id.parse().unwrap_or_else(|_| {
                tonic::metadata::MetadataValue::from_static("invalid-cluster-id")
            }),
            channel,
            isolation: isolation.clone(),
        }
    }

    /// Calls `method` with `request` (and snapshot `data`), within `timeout`.
    pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        request: &Req,
        data: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, TransportError> {
        let payload = RpcPayload {
            json: serde_json::to_vec(request)?,
            data,
        };
        CHANNEL_STATS.sent(payload.json.len() + payload.data.len());
        let unreachable = |status: tonic::Status| TransportError::Unreachable {
            addr: self.addr.clone(),
            status: Box::new(status),
        };
        if self.isolation.is_isolated() {
            return Err(unreachable(tonic::Status::unavailable(
                "this node is isolated from its peers",
            )));
        }
        let channel = self
            .channel
            .clone()
            .map_err(|e| unreachable(tonic::Status::invalid_argument(e)))?;
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let exchange = async {
            grpc.ready()
                .await
                .map_err(|e| unreachable(tonic::Status::unavailable(e.to_string())))?;
            let codec = tonic_prost::ProstCodec::<RpcPayload, RpcPayload>::default();
            let path = PathAndQuery::from_static(method.path());
            let mut request = tonic::Request::new(payload);
            request
                .metadata_mut()
                .insert(CLUSTER_ID_HEADER, self.cluster_id.clone());
            grpc.unary(request, path, codec).await.map_err(|status| {
                if status.code() == tonic::Code::Unavailable {
                    unreachable(status)
                } else {
                    TransportError::Status {
                        addr: self.addr.clone(),
                        status: Box::new(status),
                    }
                }
            })
        };
        let response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout {
                addr: self.addr.clone(),
                timeout,
            })??;
        let response = response.into_inner();
        CHANNEL_STATS.received(response.json.len() + response.data.len());
        Ok(serde_json::from_slice(&response.json)?)
    }
}

/// Counters of this process's quorum RPCs as a client, for Kafka's
/// `raft-channel-metrics`. Process-wide: a broker process runs one quorum
/// node (tests that run several in one process see their sum).
pub static CHANNEL_STATS: ChannelStats = ChannelStats::new();

/// Requests sent, responses received and their payload bytes.
#[derive(Debug)]
pub struct ChannelStats {
    requests: std::sync::atomic::AtomicU64,
    responses: std::sync::atomic::AtomicU64,
    bytes_out: std::sync::atomic::AtomicU64,
    bytes_in: std::sync::atomic::AtomicU64,
}

impl ChannelStats {
    const fn new() -> Self {
        use std::sync::atomic::AtomicU64;
        ChannelStats {
            requests: AtomicU64::new(0),
            responses: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        }
    }

    fn sent(&self, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.requests.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    fn received(&self, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.responses.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    /// (requests sent, responses received, bytes sent, bytes received).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.requests.load(Relaxed),
            self.responses.load(Relaxed),
            self.bytes_out.load(Relaxed),
            self.bytes_in.load(Relaxed),
        )
    }
}
