//! AlterPartitionReassignments: start (or cancel) moving a partition's
//! replicas. The controller adds the target replicas, they catch up and
//! join the ISR, then the replica set becomes the target and replicas no
//! longer in it are removed: how replication factors change and brokers
//! are drained. Only in a cluster.

use kafka_protocol::{
    messages::{
        alter_partition_reassignments_response::{
            ReassignablePartitionResponse, ReassignableTopicResponse,
        },
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::metadata::MetadataCommand;

use super::Node;
use crate::broker::ApiError;

/// Answers AlterPartitionReassignments.
pub async fn handle(
    broker: &Node,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = version == 0 || req.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target = p
                .replicas
                .map(|r| r.into_iter().map(|b| b.0).collect::<Vec<i32>>());
            let outcome =
                reassign(broker, &t.name, p.partition_index, target, allow_rf_change).await;
            let resp =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(()) => resp,
                Err(e) => resp
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses)
}

async fn reassign(
    broker: &Node,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<(), ApiError> {
    let cluster = &broker.cluster;
    let image = cluster.image();
    let Some(state) = image.partition(topic, partition) else {
        return Err(ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("{topic}-{partition} does not exist"),
        ));
    };
    if let Some(target) = &target {
        let distinct: std::collections::BTreeSet<_> = target.iter().collect();
        if target.is_empty() || distinct.len() != target.len() {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("replica list {target:?} is empty or repeats a broker"),
            ));
        }
        if let Some(unknown) = target.iter().find(|id| !image.brokers.contains_key(id)) {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("broker {unknown} is not registered"),
            ));
        }
        let current = state
            .reassignment
            .as_ref()
            .map_or(state.replicas.len(), |r| {
                state.replicas.len() - r.adding.len()
            });
        if !allow_rf_change && target.len() != current {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                "the replication factor would change",
            ));
        }
    } else if state.reassignment.is_none() {
        return Err(ApiError::new(
            ResponseError::NoReassignmentInProgress,
            format!("no reassignment of {topic}-{partition} is in progress"),
        ));
    }
    cluster
        .propose(MetadataCommand::AlterReassignment {
            topic: topic.to_string(),
            partition,
            target,
        })
        .await
}
