//! OffsetDelete: removes committed offsets of partitions a group no longer
//! consumes (GROUP_SUBSCRIBED_TO_TOPIC for topics its members subscribe to).

use kafka_protocol::{
    messages::{
        offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic},
        OffsetDeleteRequest, OffsetDeleteResponse,
    },
    ResponseError,
};

use super::Node;

/// Answers OffsetDelete.
pub async fn handle(broker: &Node, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = req.group_id.to_string();
    let parts: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let result = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        broker.groups.delete_offsets(&group_id, &parts).await
    };
    let results = match result {
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(r) => r,
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
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(super::code(results.next().flatten()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
