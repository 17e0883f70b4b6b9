//! The client side: openraft's `RaftNetworkFactory` and `RaftNetwork` over
//! [`RpcClient`], mapping transport failures onto the error kinds openraft
//! reacts to (unreachable peers are backed off, timeouts retried).

use std::time::Duration;

use openraft::{
    error::{
        InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
    },
    network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory},
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    },
};

use super::{Isolation, Method, RpcClient, SharedTls, TransportError};
use crate::raft_types::{Node, NodeId, TypeConfig};

/// Creates a [`PeerClient`] per replication target, addressed by the
/// `addr` of its membership entry.
#[derive(Clone)]
pub struct NetworkFactory {
    id: NodeId,
    cluster_id: String,
    connect_timeout: Duration,
    rpc_timeout: Duration,
    tls: Option<SharedTls>,
    isolation: Isolation,
}

impl NetworkFactory {
    /// A factory for node `id`. Each RPC is bounded by `rpc_timeout` (or
    /// openraft's own deadline when shorter). Calls fail as unreachable
    /// while `isolation` is on.
    pub fn new(
        id: NodeId,
        cluster_id: &str,
        connect_timeout: Duration,
        rpc_timeout: Duration,
        tls: Option<SharedTls>,
        isolation: Isolation,
    ) -> Self {
        Self {
            id,
            cluster_id: cluster_id.to_owned(),
            connect_timeout,
            rpc_timeout,
            tls,
            isolation,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            id: self.id,
            target,
            node: node.clone(),
            rpc: RpcClient::new(
                &node.addr,
                &self.cluster_id,
                self.connect_timeout,
                self.tls.as_ref(),
                &self.isolation,
            ),
            rpc_timeout: self.rpc_timeout,
        }
    }
}

/// The connection from this node to one peer.
pub struct PeerClient {
    id: NodeId,
    target: NodeId,
    node: Node,
    rpc: RpcClient,
    rpc_timeout: Duration,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn send<Req, Resp, E>(
        &self,
        method: Method,
        action: RPCTypes,
        request: &Req,
        data: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let timeout = option.hard_ttl().min(self.rpc_timeout);
        let answer: Result<Resp, RaftError<NodeId, E>> = self
            .rpc
            .call(method, request, data, timeout)
            .await
            .map_err(|e| match e {
                TransportError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                TransportError::Timeout { .. } => RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout,
                }),
                TransportError::Status { .. } | TransportError::Codec(_) => {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.send(
            Method::AppendEntries,
            RPCTypes::AppendEntries,
            &rpc,
            Vec::new(),
            &option,
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let data = std::mem::take(&mut rpc.data);
        self.send(
            Method::InstallSnapshot,
            RPCTypes::InstallSnapshot,
            &rpc,
            data,
            &option,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.send(Method::Vote, RPCTypes::Vote, &rpc, Vec::new(), &option)
            .await
    }
}
