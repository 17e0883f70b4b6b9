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

use crate::{
    broker::{ApiError, Broker},
    topic_config,
};

/// Answers CreateTopics.
pub fn handle(broker: &Broker, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            let outcome = create_one(broker, &name, &t, req.validate_only);
            match outcome {
                Ok(topic) => {
                    let config = topic.config();
                    let overrides = topic.overrides();
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
                        .with_num_partitions(if req.validate_only {
                            resolve(t.num_partitions, broker.config.num_partitions)
                        } else {
                            topic.partition_count()
                        })
                        .with_replication_factor(topic.replication_factor)
                        .with_configs(if version >= 5 { Some(configs) } else { None })
                }
                Err(e) => result
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn resolve(requested: i32, default: i32) -> i32 {
    if requested == -1 {
        default
    } else {
        requested
    }
}

fn create_one(
    broker: &Broker,
    name: &str,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<std::sync::Arc<crate::broker::Topic>, ApiError> {
    let mut partitions = t.num_partitions;
    let mut rf = t.replication_factor;
    if !t.assignments.is_empty() {
        if partitions != -1 || rf != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "give either replica assignments or partitions and replication factor, not both",
            ));
        }
        let node = broker.config.node_id;
        for (i, a) in t.assignments.iter().enumerate() {
            if a.partition_index != i as i32
                || a.broker_ids.is_empty()
                || a.broker_ids.iter().any(|b| b.0 != node)
            {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("assignments must list partitions 0.. in order, each on broker {node}"),
                ));
            }
        }
        partitions = t.assignments.len() as i32;
        rf = t.assignments[0].broker_ids.len() as i16;
    }
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
    broker.create_topic(name, partitions, rf, overrides, validate_only)
}
