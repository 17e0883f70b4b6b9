//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and
//! describe for the broker resource).
//!
//! AlterConfigs replaces a topic's whole set of overrides, as Kafka's does;
//! IncrementalAlterConfigs edits keys one by one (SET, DELETE, APPEND,
//! SUBTRACT for list-typed keys).

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult},
        incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
        DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
        IncrementalAlterConfigsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::Node;
use crate::{
    broker::ApiError,
    topic_config::{self, ConfigType},
};

/// Kafka's resource type codes.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Config sources, as DescribeConfigs reports them.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

fn entry(
    name: &str,
    value: Option<String>,
    source: i8,
    kind: ConfigType,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(value.map(StrBytes::from_string))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_config_type(kind as i8)
}

fn describe_topic(
    broker: &Node,
    name: &str,
    keys: Option<&[StrBytes]>,
    docs: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, ApiError> {
    let topic = broker.topic(name).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic `{name}` does not exist"),
        )
    })?;
    let config = topic.config();
    let overrides = topic.overrides();
    Ok(topic_config::KEYS
        .iter()
        .filter(|k| keys.is_none_or(|keys| keys.iter().any(|want| &**want == k.name)))
        .map(|k| {
            let source = if overrides.contains_key(k.name) {
                DYNAMIC_TOPIC_CONFIG
            } else {
                DEFAULT_CONFIG
            };
            let e = entry(k.name, config.value_of(k.name), source, k.kind, false);
            if docs {
                e.with_documentation(Some(StrBytes::from_static_str(k.doc)))
            } else {
                e
            }
        })
        .collect())
}

fn describe_broker(
    broker: &Node,
    name: &str,
    keys: Option<&[StrBytes]>,
) -> Result<Vec<DescribeConfigsResourceResult>, ApiError> {
    if !name.is_empty() && name != broker.config.node_id.to_string() {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("this is broker {}, not {name}", broker.config.node_id),
        ));
    }
    let c = &broker.config;
    let mut values: BTreeMap<String, (String, ConfigType)> = BTreeMap::new();
    values.insert("node.id".into(), (c.node_id.to_string(), ConfigType::Int));
    values.insert(
        "log.dirs".into(),
        (c.data_dir.display().to_string(), ConfigType::String),
    );
    values.insert(
        "num.partitions".into(),
        (c.num_partitions.to_string(), ConfigType::Int),
    );
    values.insert(
        "default.replication.factor".into(),
        (c.default_replication_factor.to_string(), ConfigType::Int),
    );
    values.insert(
        "auto.create.topics.enable".into(),
        (c.auto_create_topics.to_string(), ConfigType::Boolean),
    );
    values.insert(
        "socket.request.max.bytes".into(),
        (c.socket_request_max_bytes.to_string(), ConfigType::Int),
    );
    values.insert(
        "log.retention.ms".into(),
        (c.topic_defaults.retention_ms.to_string(), ConfigType::Long),
    );
    values.insert(
        "log.retention.bytes".into(),
        (
            c.topic_defaults.retention_bytes.to_string(),
            ConfigType::Long,
        ),
    );
    values.insert(
        "log.segment.bytes".into(),
        (c.topic_defaults.segment_bytes.to_string(), ConfigType::Int),
    );
    values.insert(
        "message.max.bytes".into(),
        (
            c.topic_defaults.max_message_bytes.to_string(),
            ConfigType::Int,
        ),
    );
    Ok(values
        .into_iter()
        .filter(|(k, _)| keys.is_none_or(|keys| keys.iter().any(|want| &**want == k)))
        .map(|(k, (v, kind))| {
            let source = if c.raw.contains_key(&k) {
                STATIC_BROKER_CONFIG
            } else {
                DEFAULT_CONFIG
            };
            entry(&k, Some(v), source, kind, true)
        })
        .collect())
}

/// Answers DescribeConfigs.
pub fn describe(
    broker: &Node,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    // `documentation` exists from v3 on.
    let docs = req.include_documentation && version >= 3;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let keys = r.configuration_keys.as_deref();
            let outcome = match r.resource_type {
                TOPIC => describe_topic(broker, &r.resource_name, keys, docs),
                BROKER => describe_broker(broker, &r.resource_name, keys),
                other => Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match outcome {
                Ok(configs) => result.with_configs(configs),
                Err(e) => result
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_only(resource_type: i8) -> Result<(), ApiError> {
    if resource_type == TOPIC {
        Ok(())
    } else if resource_type == BROKER {
        Err(ApiError::new(
            ResponseError::InvalidRequest,
            "broker configs are static: set them at start",
        ))
    } else {
        Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("resource type {resource_type} is not supported"),
        ))
    }
}

/// Replaces a topic's overrides, through the quorum in a cluster.
async fn set_configs(
    broker: &Node,
    name: &str,
    overrides: Result<BTreeMap<String, String>, ApiError>,
    validate_only: bool,
) -> Result<(), ApiError> {
    let overrides = overrides?;
    broker
        .config
        .topic_defaults
        .with_overrides(&overrides)
        .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
    broker
        .cluster
        .set_topic_configs(name, overrides, validate_only)
        .await
}

/// Answers AlterConfigs (replace the topic's overrides wholesale).
pub async fn alter(broker: &Node, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        responses.push({
            let overrides = topic_only(r.resource_type).map(|_| {
                let mut overrides = BTreeMap::new();
                for c in &r.configs {
                    if let Some(v) = &c.value {
                        overrides.insert(c.name.to_string(), v.to_string());
                    }
                }
                overrides
            });
            let outcome = set_configs(broker, &r.resource_name, overrides, req.validate_only).await;
            let (code, message) = split(outcome);
            kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default(
            )
            .with_error_code(code)
            .with_error_message(message)
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name)
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Answers IncrementalAlterConfigs.
pub async fn incremental_alter(
    broker: &Node,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        responses.push({
            let overrides = topic_only(r.resource_type).and_then(|_| {
                let topic = broker.topic(&r.resource_name).ok_or_else(|| {
                    ApiError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic `{}` does not exist", r.resource_name),
                    )
                })?;
                let mut overrides = topic.overrides();
                for c in &r.configs {
                    apply_op(
                        &mut overrides,
                        &topic.config(),
                        &c.name,
                        c.config_operation,
                        c.value.as_deref(),
                    )?;
                }
                Ok(overrides)
            });
            let outcome = set_configs(broker, &r.resource_name, overrides, req.validate_only).await;
            let (code, message) = split(outcome);
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn apply_op(
    overrides: &mut BTreeMap<String, String>,
    current: &topic_config::TopicConfig,
    key: &str,
    op: i8,
    value: Option<&str>,
) -> Result<(), ApiError> {
    let spec = topic_config::spec(key).ok_or_else(|| {
        ApiError::new(
            ResponseError::InvalidConfig,
            format!("unknown topic config `{key}`"),
        )
    })?;
    let need_value = || {
        value.ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidConfig,
                format!("config `{key}` needs a value"),
            )
        })
    };
    match op {
        0 => {
            overrides.insert(key.to_string(), need_value()?.to_string());
        }
        1 => {
            overrides.remove(key);
        }
        2 | 3 if spec.kind != ConfigType::List => {
            return Err(ApiError::new(
                ResponseError::InvalidConfig,
                format!("`{key}` is not a list: APPEND/SUBTRACT do not apply"),
            ))
        }
        2 | 3 => {
            let existing = overrides
                .get(key)
                .cloned()
                .or_else(|| current.value_of(key))
                .unwrap_or_default();
            let mut items: Vec<String> = existing
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            for v in need_value()?.split(',').filter(|s| !s.is_empty()) {
                if op == 2 && !items.iter().any(|i| i == v) {
                    items.push(v.to_string());
                } else if op == 3 {
                    items.retain(|i| i != v);
                }
            }
            overrides.insert(key.to_string(), items.join(","));
        }
        other => {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("unknown config operation {other}"),
            ))
        }
    }
    Ok(())
}

fn split(outcome: Result<(), ApiError>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(e) => (e.code.code(), Some(StrBytes::from_string(e.message))),
    }
}
