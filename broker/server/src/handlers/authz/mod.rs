//! Authorization at the API layer: before a handler runs, each request is
//! checked as Kafka's `KafkaApis` checks it, with Kafka's error codes.
//!
//! Handlers stay unaware of ACLs. For each API, [`check`] either answers
//! the whole request itself (a group API without READ on the group), or
//! takes out the parts the principal may not touch (topics of a Produce it
//! may not WRITE) and returns a [`Patch`] that puts their errors into the
//! handler's response. Read-only answers that could name what the
//! principal may not see (all groups, all committed offsets) are filtered
//! by the patch afterwards. Authorized operations (KIP-430) are filled in
//! by the patch too, with or without an authorizer.
//!
//! Without `authorizer.class.name` everything is allowed and only the
//! authorized-operations patches run.

use std::sync::Arc;

use kafka_protocol::{
    messages::{RequestHeader, RequestKind, ResponseKind},
    ResponseError,
};
use prometheus::IntCounterVec;
use rivulet_quorum::metadata::{
    acl::{self, AuthorizerConfig, Operation, ResourceType, CLUSTER_RESOURCE_NAME},
    ClusterMetadata,
};

use super::{Node, RequestContext};

mod admin;
mod groups;
#[cfg(test)]
mod tests;
mod topics;
mod txn;

/// A change to the handler's response: the errors of what was taken out
/// of the request, or a filter of what may not be seen.
pub type Patch = Box<dyn FnOnce(&mut ResponseKind) + Send>;

/// What to do with a request after the checks.
pub enum Checked {
    /// Run the handler on (what is left of) the request, then the patch.
    Run(RequestKind, Option<Patch>),
    /// Send this answer; the handler does not run.
    Answer(ResponseKind),
}

/// One request's view of the authorizer: who asks, from where, against
/// which ACLs. Owned and cheap to clone, so a [`Patch`] can keep it.
#[derive(Clone)]
pub struct Access {
    config: Option<Arc<AuthorizerConfig>>,
    image: Arc<ClusterMetadata>,
    principal: String,
    host: String,
    denials: IntCounterVec,
}

impl Access {
    /// The access of a request on `ctx`'s connection.
    pub fn new(node: &Node, ctx: &RequestContext<'_>) -> Self {
        let config = node.config.security.authorizer.clone();
        // Principal and host are only read by decisions: without an
        // authorizer (every request allowed) they are not built.
        let (principal, host) = if config.is_some() {
            (
                ctx.principal.to_string(),
                // ACL hosts are IP addresses as text ("10.0.0.1").
                ctx.peer
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            )
        } else {
            Default::default()
        };
        Access {
            config,
            image: node.cluster.image(),
            principal,
            host,
            denials: node.metrics.authorization_denials.clone(),
        }
    }

    /// Whether an authorizer is configured.
    pub fn enabled(&self) -> bool {
        self.config.is_some()
    }

    /// The metadata image the decisions use.
    pub fn image(&self) -> &ClusterMetadata {
        &self.image
    }

    /// Whether the principal may; not counted (for filtering what a
    /// listing shows, where Kafka does not log denials either).
    pub fn may(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let Some(config) = &self.config else {
            return true;
        };
        acl::authorize(
            &self.image.acls,
            config,
            &acl::Request {
                principal: &self.principal,
                host: &self.host,
                operation,
                resource_type,
                resource_name: name,
            },
        )
    }

    /// Whether the principal may; a refusal is counted in
    /// `kafka_server_authorizer_denied_total`.
    pub fn allows(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let allowed = self.may(operation, resource_type, name);
        if !allowed {
            self.count_denial(operation, resource_type, name);
        }
        allowed
    }

    /// Counts (and logs at debug) a refusal already decided.
    pub fn count_denial(&self, operation: Operation, resource_type: ResourceType, name: &str) {
        self.denials
            .with_label_values(&[operation.name(), resource_type.name()])
            .inc();
        tracing::debug!(
            principal = %self.principal,
            host = %self.host,
            operation = operation.name(),
            resource_type = resource_type.name(),
            resource = name,
            "denied"
        );
    }

    /// [`Access::allows`] on the cluster resource.
    pub fn allows_cluster(&self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    }

    /// [`Access::may`] on the cluster resource.
    pub fn may_cluster(&self, operation: Operation) -> bool {
        self.may(operation, ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    }

    /// Whether the principal may write to some topic (KIP-679: enough for
    /// an idempotent producer without IDEMPOTENT_WRITE).
    pub fn may_write_any_topic(&self) -> bool {
        match &self.config {
            None => true,
            Some(config) => {
                acl::may_write_any_topic(&self.image.acls, config, &self.principal, &self.host)
            }
        }
    }

    /// KIP-430's bit set of what the principal may do on a resource: bit
    /// `code` for each operation Kafka lists for the resource type.
    pub fn operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        operations_of(resource_type)
            .iter()
            .filter(|op| self.may(**op, resource_type, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}

/// The operations Kafka reports as authorized operations of a resource
/// type (`AclEntry.supportedOperations`).
pub fn operations_of(resource_type: ResourceType) -> &'static [Operation] {
    use Operation::*;
    match resource_type {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
    }
}

/// The checks of one request; see the module doc.
pub fn check(
    node: &Node,
    header: &RequestHeader,
    body: RequestKind,
    ctx: &RequestContext<'_>,
) -> Checked {
    let access = Access::new(node, ctx);
    let v = header.request_api_version;
    match body {
        RequestKind::Produce(r) => topics::produce(&access, r),
        RequestKind::Fetch(r) => topics::fetch(&access, r, v),
        RequestKind::ListOffsets(r) => topics::list_offsets(&access, r),
        RequestKind::OffsetForLeaderEpoch(r) => topics::offset_for_leader_epoch(&access, r),
        RequestKind::Metadata(r) => topics::metadata(&access, node, r, v),
        RequestKind::CreateTopics(r) => topics::create_topics(&access, r),
        RequestKind::DeleteTopics(r) => topics::delete_topics(&access, r, v),
        RequestKind::CreatePartitions(r) => topics::create_partitions(&access, r),
        RequestKind::DeleteRecords(r) => topics::delete_records(&access, r),
        RequestKind::FindCoordinator(r) => groups::find_coordinator(&access, r, v),
        RequestKind::JoinGroup(r) => groups::join_group(&access, r),
        RequestKind::SyncGroup(r) => groups::sync_group(&access, r),
        RequestKind::Heartbeat(r) => groups::heartbeat(&access, r),
        RequestKind::LeaveGroup(r) => groups::leave_group(&access, r, v),
        RequestKind::OffsetCommit(r) => groups::offset_commit(&access, r),
        RequestKind::OffsetFetch(r) => groups::offset_fetch(&access, r, v),
        RequestKind::ListGroups(r) => groups::list_groups(&access, r),
        RequestKind::DescribeGroups(r) => groups::describe_groups(&access, r),
        RequestKind::DeleteGroups(r) => groups::delete_groups(&access, r),
        RequestKind::OffsetDelete(r) => groups::offset_delete(&access, r),
        r @ (RequestKind::AddPartitionsToTxn(_)
        | RequestKind::AddOffsetsToTxn(_)
        | RequestKind::EndTxn(_)
        | RequestKind::TxnOffsetCommit(_)
        | RequestKind::DescribeTransactions(_)
        | RequestKind::ListTransactions(_)
        | RequestKind::WriteTxnMarkers(_)) => txn::check(&access, r),
        other => admin::check(&access, other, v),
    }
}

/// Runs `request`, then appends `denied` (the error entries of what was
/// taken out of it) to its response with `extend`.
fn append<T: Send + 'static>(
    request: RequestKind,
    denied: Vec<T>,
    extend: fn(&mut ResponseKind, Vec<T>),
) -> Checked {
    if denied.is_empty() {
        return Checked::Run(request, None);
    }
    Checked::Run(
        request,
        Some(Box::new(move |response| extend(response, denied))),
    )
}

/// Kafka's code of `e`.
fn code(e: ResponseError) -> i16 {
    e.code()
}
