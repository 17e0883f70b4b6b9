//! TxnOffsetCommit (v0-5): a transactional producer commits its consumer's
//! offsets inside the transaction; they count only if it commits.
//!
//! v5 is transaction version 2 (KIP-890 part 2): the client sent no
//! AddOffsetsToTxn, so the group coordinator first adds the group's
//! `__consumer_offsets` partition to the transaction itself, as Kafka's
//! does, and writes the offsets only once the transaction coordinator took
//! it.

use kafka_protocol::{
    messages::{
        txn_offset_commit_response::{
            TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
        },
        TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    },
    ResponseError,
};

use super::{
    code,
    produce_verify::{add_to_transaction, for_v2_client},
    Node,
};
use crate::group::{coordinator::CommitPartition, OFFSETS_TOPIC};

/// Answers TxnOffsetCommit.
pub async fn handle(
    node: &Node,
    r: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let parts: Vec<CommitPartition> = commit_partitions!(r.topics);
    let added = if version >= 5 {
        add_offsets_partition(node, &r).await
    } else {
        Ok(())
    };
    let results = match added {
        Ok(()) => {
            node.groups
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
        }
        Err(e) => vec![Some(e); parts.len()],
    };
    let mut results = results.into_iter();
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

/// Adds the group's offsets partition to the producer's transaction.
async fn add_offsets_partition(
    node: &Node,
    r: &TxnOffsetCommitRequest,
) -> Result<(), ResponseError> {
    node.groups.ensure_topic()?;
    let partition = (
        OFFSETS_TOPIC.to_string(),
        node.groups.partition_of(&r.group_id),
    );
    let answer = add_to_transaction(
        node,
        &r.transactional_id,
        r.producer_id.0,
        r.producer_epoch,
        &[partition],
    )
    .await;
    match answer.into_iter().flatten().next() {
        None => Ok(()),
        // Retriable: the client finds the coordinator again and retries,
        // as with Kafka's group coordinator.
        Some(e) => Err(for_v2_client(e, ResponseError::CoordinatorNotAvailable)),
    }
}
