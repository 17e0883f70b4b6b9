//! CreatePartitions: grow a topic's partition count (never shrink).

use kafka_protocol::{
    messages::{
        create_partitions_response::CreatePartitionsTopicResult, CreatePartitionsRequest,
        CreatePartitionsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use crate::broker::{ApiError, Broker};

/// Answers CreatePartitions.
pub async fn handle(broker: &Broker, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let node = broker.config.node_id;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        if let Some(cluster) = broker.cluster() {
            let assignments = t.assignments.as_ref().map(|a| {
                a.iter()
                    .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                    .collect()
            });
            let outcome = cluster
                .create_partitions(&t.name, t.count, assignments, req.validate_only)
                .await;
            let result = CreatePartitionsTopicResult::default().with_name(t.name);
            results.push(match outcome {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            });
            continue;
        }
        results.push({
            let bad_assignment = t.assignments.as_ref().is_some_and(|a| {
                a.iter()
                    .any(|p| p.broker_ids.is_empty() || p.broker_ids.iter().any(|b| b.0 != node))
            });
            let outcome = if bad_assignment {
                Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("new partitions can only be placed on broker {node}"),
                ))
            } else {
                broker.create_partitions(&t.name, t.count, req.validate_only)
            };
            let result = CreatePartitionsTopicResult::default().with_name(t.name);
            match outcome {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
