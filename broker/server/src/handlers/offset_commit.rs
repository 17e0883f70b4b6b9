//! OffsetCommit: stores a group's consumed positions in `__consumer_offsets`
//! (durable before the answer when `acks.all.fsync` is on).

use kafka_protocol::{
    messages::{
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        OffsetCommitRequest, OffsetCommitResponse,
    },
    ResponseError,
};

use super::Node;
use crate::group::coordinator::CommitPartition;

/// Answers OffsetCommit.
pub async fn handle(broker: &Node, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = req.group_id.to_string();
    let parts: Vec<CommitPartition> = commit_partitions!(req.topics);
    let results = if group_id.is_empty() {
        vec![Some(ResponseError::InvalidGroupId); parts.len()]
    } else {
        let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
        broker
            .groups
            .commit(
                &group_id,
                &req.member_id,
                instance.as_deref(),
                req.generation_id_or_member_epoch,
                parts,
            )
            .await
    };
    let mut results = results.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(super::code(results.next().flatten()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
