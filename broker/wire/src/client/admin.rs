//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs and IncrementalAlterConfigs for topic resources.
//!
//! These are what the operator's Topic controller and the CLI need. Requests
//! go to the controller when Metadata names one; a NOT_CONTROLLER answer
//! (the controller moved) reloads metadata and retries once.

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        create_partitions_request::CreatePartitionsTopic,
        create_topics_request::{CreatableTopic, CreatableTopicConfig},
        delete_topics_request::DeleteTopicState,
        describe_configs_request::DescribeConfigsResource,
        incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
        CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
        IncrementalAlterConfigsRequest, TopicName,
    },
    protocol::StrBytes,
};
use uuid::Uuid;

use super::Client;
use crate::{error::ClientError, scram::ScramMechanism};

/// The AlterUserScramCredentials upsertion that sets `user`'s credential
/// of `mechanism` to `password`: a fresh random 32-byte salt, and the
/// password salted here (as Kafka's tools do), so only the salted password
/// crosses the wire. The iteration count is not checked here.
pub fn scram_upsertion(
    user: &str,
    mechanism: ScramMechanism,
    password: &str,
    iterations: u32,
) -> Result<
    kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion,
    getrandom::Error,
> {
    let mut salt = [0u8; 32];
    getrandom::getrandom(&mut salt)?;
    let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
    Ok(
        kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(mechanism.kafka_type())
            .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
            .with_salt(bytes::Bytes::copy_from_slice(&salt))
            .with_salted_password(bytes::Bytes::from(salted)),
    )
}

/// Kafka's ConfigResource type for topics.
const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// NOT_CONTROLLER: the request reached a broker that is no longer controller.
const NOT_CONTROLLER: i16 = 41;
/// How long the controller may take to apply an admin change.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

/// DescribeConfigs `config_source` for a value that is Kafka's default.
pub const CONFIG_SOURCE_DEFAULT: i8 = 5;

/// One topic config entry as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    /// The value; `None` for sensitive entries or unset values.
    pub value: Option<String>,
    /// Where the value comes from (Kafka's ConfigSource: 1 topic override,
    /// 4 static broker config, 5 default, ...).
    pub source: i8,
    /// Whether the entry can be changed.
    pub read_only: bool,
    /// Whether the value is hidden because it is a secret.
    pub is_sensitive: bool,
}

impl ConfigValue {
    /// Whether the value is Kafka's default rather than an override.
    pub fn is_default(&self) -> bool {
        self.source == CONFIG_SOURCE_DEFAULT
    }
}

/// Runs `$call`; on NOT_CONTROLLER reloads metadata and runs it once more.
macro_rules! with_controller_retry {
    ($self:ident, $call:expr) => {{
        let mut refreshed = false;
        loop {
            // The call runs in its own async block so that `?` inside it
            // yields an error here instead of returning from the method.
            match async { $call }.await {
                Err(e) if !refreshed && e.kafka_code() == Some(NOT_CONTROLLER) => {
                    refreshed = true;
                    $self.metadata(Some(Vec::new())).await?;
                }
                other => break other,
            }
        }
    }};
}

pub(super) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

impl Client {
    /// Creates a topic and returns its id (nil if the broker predates
    /// CreateTopics v7). A topic that exists fails with
    /// TOPIC_ALREADY_EXISTS (code 36).
    pub async fn create_topics(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<Uuid, ClientError> {
        let topic = CreatableTopic::default()
            .with_name(TopicName(str_bytes(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(ADMIN_TIMEOUT_MS);
        let result = with_controller_retry!(self, {
            let response = self.send_admin(request.clone()).await?;
            let t = response
                .topics
                .into_iter()
                .find(|t| t.name.0.as_str() == name)
                .ok_or_else(|| {
                    ClientError::Protocol(format!("CreateTopics: no result for {name}"))
                })?;
            ClientError::check(t.error_code, t.error_message.as_deref()).map(|()| t.topic_id)
        });
        self.forget(name);
        result
    }

    /// Deletes topics by name. Fails with the first per-topic error, e.g.
    /// UNKNOWN_TOPIC_OR_PARTITION (code 3) for a topic that does not exist.
    pub async fn delete_topics(&mut self, names: &[&str]) -> Result<(), ClientError> {
        // v6 moved names into `topics` (to allow ids); older versions use
        // `topic_names`. Fill both: each version encodes only its own field.
        let request = DeleteTopicsRequest::default()
            .with_topics(
                names
                    .iter()
                    .map(|n| DeleteTopicState::default().with_name(Some(TopicName(str_bytes(n)))))
                    .collect(),
            )
            .with_topic_names(names.iter().map(|n| TopicName(str_bytes(n))).collect())
            .with_timeout_ms(ADMIN_TIMEOUT_MS);
        let result = with_controller_retry!(self, {
            let response = self.send_admin(request.clone()).await?;
            response
                .responses
                .iter()
                .try_for_each(|r| ClientError::check(r.error_code, r.error_message.as_deref()))
        });
        for n in names {
            self.forget(n);
        }
        result
    }

    /// Grows a topic to `total_count` partitions.
    pub async fn create_partitions(
        &mut self,
        name: &str,
        total_count: i32,
    ) -> Result<(), ClientError> {
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_count(total_count)
                .with_assignments(None)])
            .with_timeout_ms(ADMIN_TIMEOUT_MS);
        let result = with_controller_retry!(self, {
            let response = self.send_admin(request.clone()).await?;
            response
                .results
                .iter()
                .try_for_each(|r| ClientError::check(r.error_code, r.error_message.as_deref()))
        });
        self.forget(name);
        result
    }

    /// All configs of a topic, with where each value comes from.
    pub async fn describe_topic_configs(
        &mut self,
        name: &str,
    ) -> Result<BTreeMap<String, ConfigValue>, ClientError> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(name))
                .with_configuration_keys(None),
        ]);
        // Any broker can describe topic configs; no controller needed.
        let response = self.send_any(request).await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.resource_name.as_str() == name)
            .ok_or_else(|| {
                ClientError::Protocol(format!("DescribeConfigs: no result for {name}"))
            })?;
        ClientError::check(result.error_code, result.error_message.as_deref())?;
        Ok(result
            .configs
            .into_iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    ConfigValue {
                        value: c.value.map(|v| v.to_string()),
                        source: c.config_source,
                        read_only: c.read_only,
                        is_sensitive: c.is_sensitive,
                    },
                )
            })
            .collect())
    }

    /// Sets the configs in `set` and removes (reverts to default) those in
    /// `delete`, leaving every other override of the topic untouched.
    pub async fn incremental_alter_topic_configs(
        &mut self,
        name: &str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), ClientError> {
        let configs = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(OP_SET)
                    .with_value(Some(str_bytes(v)))
            })
            .chain(delete.iter().map(|k| {
                AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(OP_DELETE)
                    .with_value(None)
            }))
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(name))
                .with_configs(configs),
        ]);
        with_controller_retry!(self, {
            let response = self.send_admin(request.clone()).await?;
            response
                .responses
                .iter()
                .try_for_each(|r| ClientError::check(r.error_code, r.error_message.as_deref()))
        })
    }
}
