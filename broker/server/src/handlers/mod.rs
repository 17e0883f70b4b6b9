//! One handler per Kafka API, and the table of what this broker supports.
//!
//! Handlers take the decoded request and return the response body; Kafka
//! error codes are values inside that body, never Rust errors. A handler
//! returns `None` only where Kafka sends no response (acks=0 produce).

use kafka_protocol::{
    messages::{ApiKey, RequestHeader, RequestKind, ResponseKind},
    protocol::VersionRange,
};

/// The [`CommitPartition`](crate::group::coordinator::CommitPartition)s of
/// an OffsetCommit or TxnOffsetCommit request's topics (the same fields).
macro_rules! commit_partitions {
    ($topics:expr) => {
        $topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| crate::group::coordinator::CommitPartition {
                        topic: t.name.to_string(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    })
            })
            .collect::<Vec<_>>()
    };
}

mod acls;
mod alter_partition_reassignments;
mod api_versions;
mod authz;
mod client_quotas;
mod configs;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_groups;
mod describe_producers;
#[cfg(test)]
mod disk_tests;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
#[cfg(test)]
mod lease_tests;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod metadata;
mod node;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
pub(crate) mod produce;
pub mod produce_pipeline;
mod produce_verify;
mod quorum;
mod scram_credentials;
mod sync_group;
#[cfg(test)]
mod tests;
mod transactions;
#[cfg(test)]
mod txn_data_tests;
mod txn_offset_commit;
#[cfg(test)]
mod txn_tests;
#[cfg(test)]
mod txn_v2_tests;
mod write_txn_markers;

pub use api_versions::unsupported_version_response;
pub use node::Node;

/// The APIs and version ranges this broker implements, advertised in
/// ApiVersions. Floors follow Kafka 4.0 (Produce >= 3, Fetch >= 4,
/// ListOffsets >= 1); ceilings stop where a newer version would need
/// behaviour Rivulet does not have yet.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::AddRaftVoter, 0, 0),
    (ApiKey::RemoveRaftVoter, 0, 0),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeProducers, 0, 0),
    // Answered by the connection's authenticator, never dispatched.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The highest versions before transaction version 2 (KIP-890 part 2) of
/// the APIs whose newer versions need it; with `transaction.version`
/// below 2 these are the highest advertised and accepted.
const BEFORE_TRANSACTION_V2: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 11),
    (ApiKey::AddPartitionsToTxn, 4),
    (ApiKey::EndTxn, 4),
    (ApiKey::TxnOffsetCommit, 3),
];

/// The version range of `key` this broker serves at finalized
/// `transaction.version` level `transaction_version`, if it is implemented.
pub fn supported_versions(key: ApiKey, transaction_version: i16) -> Option<VersionRange> {
    let (min, max) = SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))?;
    let cap = BEFORE_TRANSACTION_V2
        .iter()
        .find(|(k, _)| *k == key && transaction_version < 2)
        .map_or(max, |&(_, cap)| cap);
    Some(VersionRange {
        min,
        max: max.min(cap),
    })
}

/// Where a request came from.
pub struct RequestContext<'a> {
    /// The listener it arrived on: brokers are advertised with that
    /// listener's addresses, so internal and external clients each get
    /// addresses they can reach.
    pub listener: &'a str,
    /// The client's address, reported as a group member's host.
    pub peer: Option<std::net::IpAddr>,
    /// Who the connection authenticated as.
    pub principal: &'a crate::security::Principal,
    /// The connection's memory of refused idempotent batches.
    pub pipeline: &'a produce_pipeline::Pipeline,
}

/// Runs the handler for one request, after the authorization checks
/// (which may answer it themselves or adjust the handler's answer).
pub async fn dispatch(
    broker: &Node,
    header: &RequestHeader,
    body: RequestKind,
    ctx: &RequestContext<'_>,
) -> Option<ResponseKind> {
    let (body, patch) = match authz::check(broker, header, body, ctx) {
        authz::Checked::Answer(response) => return Some(response),
        authz::Checked::Run(body, patch) => (body, patch),
    };
    let mut response = run(broker, header, body, ctx).await;
    if let (Some(response), Some(patch)) = (response.as_mut(), patch) {
        patch(response);
    }
    response
}

/// The handler of `body`.
async fn run(
    broker: &Node,
    header: &RequestHeader,
    body: RequestKind,
    ctx: &RequestContext<'_>,
) -> Option<ResponseKind> {
    let v = header.request_api_version;
    Some(match body {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(api_versions::handle(broker, r, v))
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, r, v, ctx.listener).await)
        }
        RequestKind::Produce(r) => {
            return produce::handle_in(broker, r, v, ctx.pipeline)
                .await
                .map(ResponseKind::Produce)
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, r, v).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, r, v))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, r, v).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, r, v).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(broker, r, v))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(broker, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(broker, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, r, ctx.listener))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, r))
        }
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(
            find_coordinator::handle(broker, r, v, ctx.listener).await,
        ),
        RequestKind::JoinGroup(r) => {
            let client_id = header.client_id.as_deref().unwrap_or_default();
            // Kafka reports member hosts as "/address".
            let host = ctx.peer.map(|ip| format!("/{ip}")).unwrap_or_default();
            ResponseKind::JoinGroup(join_group::handle(broker, r, v, client_id, &host).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(sync_group::handle(broker, r, v).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(broker, r)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(leave_group::handle(broker, r, v).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(broker, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(broker, r, v).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(broker, r, v)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(broker, r, v))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(broker, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(broker, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, r))
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(broker, r, v).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            alter_partition_reassignments::handle(broker, r, v).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            list_partition_reassignments::handle(broker, r),
        ),
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(quorum::describe(broker, r, v).await)
        }
        RequestKind::AddRaftVoter(r) => {
            ResponseKind::AddRaftVoter(quorum::add_voter(broker, r).await)
        }
        RequestKind::RemoveRaftVoter(r) => {
            ResponseKind::RemoveRaftVoter(quorum::remove_voter(broker, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(broker, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(broker, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) if v >= 4 => {
            ResponseKind::AddPartitionsToTxn(transactions::verify_partitions(broker, r, v).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(transactions::add_partitions(broker, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(transactions::add_offsets(broker, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(transactions::end(broker, r, v).await),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(broker, r, v).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(transactions::describe(broker, r).await)
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(transactions::list(broker, r).await)
        }
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(broker, r).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(broker, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(broker, r).await),
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(client_quotas::describe(broker, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(client_quotas::alter(broker, r).await)
        }
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(broker, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(broker, r))
        }
        // The connection checks `supported_versions` before decoding, so
        // nothing else reaches this point.
        _ => return None,
    })
}

/// The Kafka code of an optional error (0 for none).
pub(crate) fn code(err: Option<kafka_protocol::ResponseError>) -> i16 {
    err.map(|e| e.code()).unwrap_or(0)
}

/// Kafka's request name (the `request` label of request metrics).
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::OffsetForLeaderEpoch => "OffsetsForLeaderEpoch",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::DescribeQuorum => "DescribeQuorum",
        ApiKey::AddRaftVoter => "AddRaftVoter",
        ApiKey::RemoveRaftVoter => "RemoveRaftVoter",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        ApiKey::DescribeClientQuotas => "DescribeClientQuotas",
        ApiKey::AlterClientQuotas => "AlterClientQuotas",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::DescribeProducers => "DescribeProducers",
        _ => "Other",
    }
}

/// Every supported API's key and Kafka name, for per-API metric handles.
pub fn api_names() -> Vec<(i16, &'static str)> {
    SUPPORTED
        .iter()
        .map(|&(key, _, _)| (key as i16, api_name(key)))
        .collect()
}
