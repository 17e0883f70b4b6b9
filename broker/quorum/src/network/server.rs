//! The server side: a tower `Service` that tonic serves, decoding each
//! method's [`RpcPayload`] and handing it to the local `Raft`.
//!
//! Written by hand in the shape tonic's codegen produces (dispatch on the
//! path, then `tonic::server::Grpc::unary`), since there is no `.proto`.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use openraft::{
    error::{ClientWriteError, RaftError},
    raft::InstallSnapshotRequest,
    Raft,
};
use serde::{de::DeserializeOwned, Serialize};
use tonic::{
    body::Body,
    codegen::{http, Service},
    server::{Grpc, UnaryService},
    Status,
};

use super::{
    join::{self, JoinRefused, JoinReply},
    Method, RpcPayload, MAX_MESSAGE_SIZE,
};
use crate::{
    metadata::MetadataCommand,
    raft_types::{CommandResponse, Node, NodeId, TypeConfig},
};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a Propose call answers: the applied command, or why the callee
/// could not write it (notably `ForwardToLeader` when it is not leader).
pub(crate) type ProposeReply =
    Result<CommandResponse, RaftError<NodeId, ClientWriteError<NodeId, Node>>>;

/// The quorum's gRPC service.
#[derive(Clone)]
pub(crate) struct QuorumService {
    raft: Raft<TypeConfig>,
    /// Bounds a forwarded proposal (or a learner's join) on the leader, so
    /// that calls cannot pile up while the leader has lost its quorum.
    propose_timeout: Duration,
}

impl QuorumService {
    pub(crate) fn new(raft: Raft<TypeConfig>, propose_timeout: Duration) -> Self {
        Self {
            raft,
            propose_timeout,
        }
    }
}

impl Service<http::Request<Body>> for QuorumService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(method) = Method::ALL
            .into_iter()
            .find(|m| m.path() == request.uri().path())
        else {
            let path = request.uri().path().to_owned();
            return Box::pin(async move {
                Ok(Status::unimplemented(format!("no method {path}")).into_http())
            });
        };
        let handler = Handler {
            service: self.clone(),
            method,
        };
        Box::pin(async move {
            let mut grpc = Grpc::new(tonic_prost::ProstCodec::<RpcPayload, RpcPayload>::default())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE);
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// One call of one method.
struct Handler {
    service: QuorumService,
    method: Method,
}

impl UnaryService<RpcPayload> for Handler {
    type Response = RpcPayload;
    type Future = BoxFuture<Result<tonic::Response<RpcPayload>, Status>>;

    fn call(&mut self, request: tonic::Request<RpcPayload>) -> Self::Future {
        let QuorumService {
            raft,
            propose_timeout,
        } = self.service.clone();
        let method = self.method;
        Box::pin(async move {
            let payload = request.into_inner();
            let json = match method {
                Method::AppendEntries => {
                    encode(&raft.append_entries(decode(&payload.json)?).await)?
                }
                Method::Vote => encode(&raft.vote(decode(&payload.json)?).await)?,
                Method::InstallSnapshot => {
                    let mut rpc: InstallSnapshotRequest<TypeConfig> = decode(&payload.json)?;
                    rpc.data = payload.data;
                    encode(&raft.install_snapshot(rpc).await)?
                }
                Method::Propose => {
                    let command: MetadataCommand = decode(&payload.json)?;
                    let written = tokio::time::timeout(propose_timeout, raft.client_write(command))
                        .await
                        .map_err(|_| {
                            Status::deadline_exceeded("the proposal did not commit in time")
                        })?;
                    let reply: ProposeReply = written.map(|r| r.data);
                    encode(&reply)?
                }
                Method::AddLearner => {
                    let joining = join::add_learner(&raft, decode(&payload.json)?);
                    let reply: JoinReply = tokio::time::timeout(propose_timeout, joining)
                        .await
                        .unwrap_or_else(|_| Err(JoinRefused::Unavailable("timed out".to_owned())));
                    encode(&reply)?
                }
            };
            Ok(tonic::Response::new(RpcPayload {
                json,
                data: Vec::new(),
            }))
        })
    }
}

fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(json)
        .map_err(|e| Status::invalid_argument(format!("undecodable request: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|e| Status::internal(format!("unencodable response: {e}")))
}
