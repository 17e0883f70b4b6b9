//! Transaction APIs: WRITE on the transactional id to take part in a
//! transaction, DESCRIBE to see it, WRITE on each topic added, READ on the
//! group whose offsets are committed, CLUSTER_ACTION for the coordinator's
//! markers (Kafka's `KafkaApis`).

use kafka_protocol::{
    messages::{
        add_partitions_to_txn_response::{
            AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
        },
        txn_offset_commit_response::{
            TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
        },
        write_txn_markers_response::{
            WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
        },
        AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, EndTxnResponse, RequestKind,
        ResponseKind, TxnOffsetCommitResponse, WriteTxnMarkersResponse,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::metadata::acl::{Operation, ResourceType};

use super::{append, code, Access, Checked, Patch};

const TXN_DENIED: ResponseError = ResponseError::TransactionalIdAuthorizationFailed;

fn txn_allowed(access: &Access, operation: Operation, id: &str) -> bool {
    access.allows(operation, ResourceType::TransactionalId, id)
}

/// The checks of the transaction APIs; anything else runs unchanged.
pub fn check(access: &Access, body: RequestKind) -> Checked {
    if !access.enabled() {
        return Checked::Run(body, None);
    }
    match body {
        RequestKind::AddPartitionsToTxn(r) if !r.transactions.is_empty() => {
            // v4+: a partition leader verifying (KIP-890): brokers only.
            if access.allows_cluster(Operation::ClusterAction) {
                return Checked::Run(RequestKind::AddPartitionsToTxn(r), None);
            }
            Checked::Answer(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default()
                    .with_error_code(code(ResponseError::ClusterAuthorizationFailed)),
            ))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            let txn_ok = txn_allowed(access, Operation::Write, &r.v3_and_below_transactional_id);
            let denied_topics: Vec<bool> = r
                .v3_and_below_topics
                .iter()
                .map(|t| !txn_ok || !access.allows(Operation::Write, ResourceType::Topic, &t.name))
                .collect();
            if !denied_topics.contains(&true) {
                return Checked::Run(RequestKind::AddPartitionsToTxn(r), None);
            }
            let results = r
                .v3_and_below_topics
                .iter()
                .zip(denied_topics)
                .map(|(t, denied)| {
                    let error = match (txn_ok, denied) {
                        (false, _) => TXN_DENIED,
                        (true, true) => ResponseError::TopicAuthorizationFailed,
                        (true, false) => ResponseError::OperationNotAttempted,
                    };
                    AddPartitionsToTxnTopicResult::default()
                        .with_name(t.name.clone())
                        .with_results_by_partition(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_partition_error_code(code(error))
                                })
                                .collect(),
                        )
                })
                .collect();
            Checked::Answer(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
            ))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let error = if !txn_allowed(access, Operation::Write, &r.transactional_id) {
                Some(TXN_DENIED)
            } else if !access.allows(Operation::Read, ResourceType::Group, &r.group_id) {
                Some(ResponseError::GroupAuthorizationFailed)
            } else {
                None
            };
            match error {
                None => Checked::Run(RequestKind::AddOffsetsToTxn(r), None),
                Some(e) => Checked::Answer(ResponseKind::AddOffsetsToTxn(
                    AddOffsetsToTxnResponse::default().with_error_code(code(e)),
                )),
            }
        }
        RequestKind::EndTxn(r) => {
            if txn_allowed(access, Operation::Write, &r.transactional_id) {
                return Checked::Run(RequestKind::EndTxn(r), None);
            }
            Checked::Answer(ResponseKind::EndTxn(
                EndTxnResponse::default().with_error_code(code(TXN_DENIED)),
            ))
        }
        RequestKind::TxnOffsetCommit(mut r) => {
            let whole = if !txn_allowed(access, Operation::Write, &r.transactional_id) {
                Some(TXN_DENIED)
            } else if !access.allows(Operation::Read, ResourceType::Group, &r.group_id) {
                Some(ResponseError::GroupAuthorizationFailed)
            } else {
                None
            };
            let entry = |t: &kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic,
                         e: ResponseError| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code(e))
                            })
                            .collect(),
                    )
            };
            if let Some(e) = whole {
                return Checked::Answer(ResponseKind::TxnOffsetCommit(
                    TxnOffsetCommitResponse::default()
                        .with_topics(r.topics.iter().map(|t| entry(t, e)).collect()),
                ));
            }
            let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| access.allows(Operation::Read, ResourceType::Topic, &t.name));
            r.topics = kept;
            let entries: Vec<_> = denied
                .iter()
                .map(|t| entry(t, ResponseError::TopicAuthorizationFailed))
                .collect();
            append(
                RequestKind::TxnOffsetCommit(r),
                entries,
                |response, list| {
                    if let ResponseKind::TxnOffsetCommit(resp) = response {
                        resp.topics.extend(list);
                    }
                },
            )
        }
        RequestKind::DescribeTransactions(r) => {
            let denied: Vec<String> = r
                .transactional_ids
                .iter()
                .filter(|id| !txn_allowed(access, Operation::Describe, id))
                .map(|id| id.to_string())
                .collect();
            if denied.is_empty() {
                return Checked::Run(RequestKind::DescribeTransactions(r), None);
            }
            let patch: Patch = Box::new(move |response| {
                if let ResponseKind::DescribeTransactions(resp) = response {
                    for state in &mut resp.transaction_states {
                        if denied.iter().any(|d| d == state.transactional_id.as_str()) {
                            let id = state.transactional_id.clone();
                            *state = Default::default();
                            state.transactional_id = id;
                            state.error_code = code(TXN_DENIED);
                            state.transaction_state = StrBytes::default();
                        }
                    }
                }
            });
            Checked::Run(RequestKind::DescribeTransactions(r), Some(patch))
        }
        RequestKind::ListTransactions(r) => {
            let access = access.clone();
            let patch: Patch = Box::new(move |response| {
                if let ResponseKind::ListTransactions(resp) = response {
                    resp.transaction_states.retain(|t| {
                        access.may(
                            Operation::Describe,
                            ResourceType::TransactionalId,
                            &t.transactional_id,
                        )
                    });
                }
            });
            Checked::Run(RequestKind::ListTransactions(r), Some(patch))
        }
        RequestKind::WriteTxnMarkers(r) => {
            if access.allows_cluster(Operation::ClusterAction) {
                return Checked::Run(RequestKind::WriteTxnMarkers(r), None);
            }
            let markers = r
                .markers
                .iter()
                .map(|m| {
                    WritableTxnMarkerResult::default()
                        .with_producer_id(m.producer_id)
                        .with_topics(
                            m.topics
                                .iter()
                                .map(|t| {
                                    WritableTxnMarkerTopicResult::default()
                                        .with_name(t.name.clone())
                                        .with_partitions(
                                            t.partition_indexes
                                                .iter()
                                                .map(|p| {
                                                    WritableTxnMarkerPartitionResult::default()
                                                        .with_partition_index(*p)
                                                        .with_error_code(code(
                                                            ResponseError::ClusterAuthorizationFailed,
                                                        ))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            Checked::Answer(ResponseKind::WriteTxnMarkers(
                WriteTxnMarkersResponse::default().with_markers(markers),
            ))
        }
        other => Checked::Run(other, None),
    }
}
