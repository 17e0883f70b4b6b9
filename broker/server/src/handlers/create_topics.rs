//! CreateTopics: validate names, counts and configs, then create (or only
//! validate, when asked).

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        create_topics_response::{CreatableTopicConfigs, CreatableTopicResult},
        CreateTopicsRequest, CreateTopicsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::Node;
use crate::{broker::ApiError, topic_config};

/// What a created (or validated) topic looks like.
struct Created {
    id: uuid::Uuid,
    partitions: i32,
    replication_factor: i16,
    overrides: BTreeMap<String, String>,
    config: topic_config::TopicConfig,
}

/// Answers CreateTopics.
pub async fn handle(broker: &Node, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome = create_one(broker, &name, &t, req.validate_only).await;
        results.push({
            match outcome {
                Ok(topic) => {
                    let config = topic.config;
                    let overrides = topic.overrides;
                    let configs = topic_config::KEYS
                        .iter()
                        .map(|k| {
                            CreatableTopicConfigs::default()
                                .with_name(StrBytes::from_static_str(k.name))
                                .with_value(config.value_of(k.name).map(StrBytes::from_string))
                                // DYNAMIC_TOPIC_CONFIG (1) when set, else DEFAULT_CONFIG (5).
                                .with_config_source(if overrides.contains_key(k.name) {
                                    1
                                } else {
                                    5
                                })
                        })
                        .collect();
                    result
                        .with_topic_id(topic.id)
                        .with_num_partitions(topic.partitions)
                        .with_replication_factor(topic.replication_factor)
                        .with_configs(if version >= 5 { Some(configs) } else { None })
                }
                Err(e) => result
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    broker: &Node,
    name: &str,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<Created, ApiError> {
    let overrides = overrides_of(t)?;
    let cluster = &broker.cluster;
    let assignments = (!t.assignments.is_empty()).then(|| {
        t.assignments
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect::<Vec<Vec<i32>>>()
    });
    if assignments.is_some() && (t.num_partitions != -1 || t.replication_factor != -1) {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            "give either replica assignments or partitions and replication factor, not both",
        ));
    }
    let new = crate::cluster::admin::NewTopic {
        name: name.to_string(),
        partitions: t.num_partitions,
        replication_factor: t.replication_factor,
        assignments,
        configs: overrides.clone(),
    };
    let (partitions, replication_factor) = cluster.create_topic(broker, new, validate_only).await?;
    let id = cluster
        .image()
        .topics
        .get(name)
        .map_or(uuid::Uuid::nil(), |t| t.id);
    let config = broker
        .config
        .topic_defaults
        .with_overrides(&overrides)
        .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
    Ok(Created {
        id,
        partitions,
        replication_factor,
        overrides,
        config,
    })
}

fn overrides_of(
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut overrides = BTreeMap::new();
    for c in &t.configs {
        match &c.value {
            Some(v) => {
                overrides.insert(c.name.to_string(), v.to_string());
            }
            None => {
                return Err(ApiError::new(
                    ResponseError::InvalidConfig,
                    format!("config `{}` has no value", c.name),
                ))
            }
        }
    }
    Ok(overrides)
}
