//! TxnOffsetCommit (v0-3): a transactional producer commits its consumer's
//! offsets inside the transaction; they count only if it commits.

use kafka_protocol::messages::{
    txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic},
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::{code, Node};
use crate::group::coordinator::CommitPartition;

/// Answers TxnOffsetCommit.
pub async fn handle(node: &Node, r: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let parts: Vec<CommitPartition> = commit_partitions!(r.topics);
    let mut results = node
        .groups
        .txn_commit(
            &r.group_id,
            r.producer_id.0,
            r.producer_epoch,
            &r.member_id,
            r.group_instance_id.as_deref(),
            r.generation_id,
            parts,
        )
        .await
        .into_iter();
    let topics = r
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(results.next().flatten()))
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
