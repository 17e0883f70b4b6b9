//! CreatePartitions: grow a topic's partition count (never shrink).

use kafka_protocol::{
    messages::{
        create_partitions_response::CreatePartitionsTopicResult, CreatePartitionsRequest,
        CreatePartitionsResponse,
    },
    protocol::StrBytes,
};

use super::Node;

/// Answers CreatePartitions.
pub async fn handle(broker: &Node, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let assignments = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let outcome = broker
            .cluster
            .create_partitions(&t.name, t.count, assignments, req.validate_only)
            .await;
        let result = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.code.code())
                .with_error_message(Some(StrBytes::from_string(e.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
