//! ListPartitionReassignments: the reassignments in progress, from the
//! cluster metadata.

use kafka_protocol::{
    messages::{
        list_partition_reassignments_response::{
            OngoingPartitionReassignment, OngoingTopicReassignment,
        },
        BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
    },
    protocol::StrBytes,
};

use super::Node;

/// Answers ListPartitionReassignments.
pub fn handle(
    broker: &Node,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = broker.cluster.image();
    let wanted = |topic: &str, p: i32| match &req.topics {
        None => true,
        Some(list) => list
            .iter()
            .any(|t| t.name.as_str() == topic && t.partition_indexes.contains(&p)),
    };
    let ids = |v: &[i32]| v.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    let topics = image
        .topics
        .values()
        .filter_map(|t| {
            let partitions: Vec<_> = t
                .partitions
                .iter()
                .filter(|(&p, _)| wanted(&t.name, p))
                .filter_map(|(&p, state)| {
                    let r = state.reassignment.as_ref()?;
                    Some(
                        OngoingPartitionReassignment::default()
                            .with_partition_index(p)
                            .with_replicas(ids(&state.replicas))
                            .with_adding_replicas(ids(&r.adding))
                            .with_removing_replicas(ids(&r.removing)),
                    )
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                    .with_partitions(partitions)
            })
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
