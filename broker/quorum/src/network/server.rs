//! The server side: a tower `Service` that tonic serves, decoding each
//! method's [`RpcPayload`] and handing it to the local `Raft`.
//!
//! Written by hand in the shape tonic's codegen produces (dispatch on the
//! path, then `tonic::server::Grpc::unary`), since there is no `.proto`.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
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
    pre_vote::{self, PreVoteReply, PreVoteRequest},
    voters::{self, QuorumState, VoterChange, VotersRefused, VotersReply},
    Isolation, Method, RpcPayload, CLUSTER_ID_HEADER, INCONSISTENT_CLUSTER_ID, MAX_MESSAGE_SIZE,
};
use crate::{
    log_store::LogStore,
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
    /// This node's cluster id: calls from another cluster are refused.
    cluster_id: Arc<str>,
    /// Whether this node may vote (see `node::admission`): a node that lost
    /// its log refuses vote requests until it has caught up and the leader
    /// recorded its new directory.
    admitted: Arc<AtomicBool>,
    /// The commit index, for DescribeQuorum's high watermark.
    commit_index: Arc<AtomicU64>,
    /// The log, whose last id PreVote compares.
    log: LogStore,
    /// The leader lease PreVote honours.
    lease: Duration,
    /// While on, every call is refused (fault tests).
    isolation: Isolation,
}

/// What the quorum service is built from, besides Raft.
pub(crate) struct ServiceParts {
    pub propose_timeout: Duration,
    pub cluster_id: String,
    pub admitted: Arc<AtomicBool>,
    pub commit_index: Arc<AtomicU64>,
    pub log: LogStore,
    pub lease: Duration,
    pub isolation: Isolation,
}

impl QuorumService {
    pub(crate) fn new(raft: Raft<TypeConfig>, parts: ServiceParts) -> Self {
        Self {
            raft,
            propose_timeout: parts.propose_timeout,
            cluster_id: parts.cluster_id.into(),
            admitted: parts.admitted,
            commit_index: parts.commit_index,
            log: parts.log,
            lease: parts.lease,
            isolation: parts.isolation,
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
            cluster_id,
            admitted,
            commit_index,
            log,
            lease,
            isolation,
        } = self.service.clone();
        let method = self.method;
        Box::pin(async move {
            if isolation.is_isolated() {
                return Err(Status::unavailable("this node is isolated from its peers"));
            }
            check_cluster_id(&request, &cluster_id)?;
            let payload = request.into_inner();
            let json = match method {
                Method::AppendEntries => {
                    encode(&raft.append_entries(decode(&payload.json)?).await)?
                }
                Method::Vote => {
                    if !admitted.load(Ordering::Acquire) {
                        return Err(Status::failed_precondition(
                            "this node's log is new or was lost and it has not caught up \
                             with the quorum; it does not vote",
                        ));
                    }
                    encode(&raft.vote(decode(&payload.json)?).await)?
                }
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
                Method::Describe => {
                    let reply: VotersReply<QuorumState> =
                        voters::describe(&raft, commit_index.load(Ordering::Acquire)).await;
                    encode(&reply)?
                }
                Method::Elect => {
                    // A leader that removed itself from the voters hands
                    // over: this voter stands for election at once.
                    let reply: VotersReply<()> = match raft.trigger().elect().await {
                        Ok(()) => Ok(()),
                        Err(e) => Err(VotersRefused::Unavailable(e.to_string())),
                    };
                    encode(&reply)?
                }
                Method::PreVote => {
                    let request: PreVoteRequest = decode(&payload.json)?;
                    let voting = admitted.load(Ordering::Acquire);
                    let reply: PreVoteReply =
                        pre_vote::answer(&raft, &log, voting, lease, &request).await;
                    encode(&reply)?
                }
                Method::AddVoter | Method::RemoveVoter => {
                    let change: VoterChange = decode(&payload.json)?;
                    let add = method == Method::AddVoter;
                    let changing = voters::change(&raft, change, add);
                    let reply: VotersReply<()> = tokio::time::timeout(propose_timeout, changing)
                        .await
                        .unwrap_or_else(|_| {
                            Err(VotersRefused::Unavailable("timed out".to_owned()))
                        });
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

/// Refuses a call that names another cluster (one without the header, from
/// a node of an older release, is accepted).
fn check_cluster_id<T>(request: &tonic::Request<T>, ours: &str) -> Result<(), Status> {
    let Some(theirs) = request.metadata().get(CLUSTER_ID_HEADER) else {
        return Ok(());
    };
    let theirs = theirs.to_str().unwrap_or("(not ASCII)");
    if ours.is_empty() || theirs == ours {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "{INCONSISTENT_CLUSTER_ID}: the caller belongs to cluster {theirs}, this node to cluster {ours}"
        )))
    }
}

fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(json)
        .map_err(|e| Status::invalid_argument(format!("undecodable request: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|e| Status::internal(format!("unencodable response: {e}")))
}
