//! DeleteTopics: by name (v1+) or by topic id (v6+).

use kafka_protocol::{
    messages::{
        delete_topics_response::DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse,
        TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use uuid::Uuid;

use super::Node;
use crate::broker::ApiError;

/// Answers DeleteTopics.
pub async fn handle(broker: &Node, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        responses.push({
            let resolved = match &name {
                Some(n) => broker
                    .topic(n)
                    .map(|t| (t.name.clone(), t.id))
                    .ok_or_else(|| {
                        ApiError::new(
                            ResponseError::UnknownTopicOrPartition,
                            format!("topic `{n}` does not exist"),
                        )
                    }),
                None => broker
                    .topic_by_id(id)
                    .map(|t| (t.name.clone(), t.id))
                    .ok_or_else(|| {
                        ApiError::new(
                            ResponseError::UnknownTopicId,
                            format!("no topic has id {id}"),
                        )
                    }),
            };
            let outcome = match resolved {
                Ok((n, id)) => broker.cluster.delete_topic(&n).await.map(|_| (n, id)),
                Err(e) => Err(e),
            };
            match outcome {
                Ok((n, id)) => DeletableTopicResult::default()
                    .with_name(Some(TopicName(StrBytes::from_string(n))))
                    .with_topic_id(id),
                Err(e) => DeletableTopicResult::default()
                    .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
                    .with_topic_id(id)
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
