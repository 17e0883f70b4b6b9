//! Topic administration in a cluster: requests are checked against the
//! metadata image, turned into metadata commands (replica placement is
//! decided here, on whichever broker got the request, from the image it
//! has) and proposed to the quorum. The local image is caught up to the
//! command before answering, so the client's next Metadata request to this
//! broker sees the change.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use kafka_protocol::ResponseError;
use rivulet_quorum::{
    metadata::{ApplyError, MetadataCommand},
    placement::{assign_replicas, PlacementError},
    QuorumError,
};
use uuid::Uuid;

use super::Cluster;
use crate::broker::{validate_topic_name, ApiError, Broker};

/// How long an admin request waits for this broker's image to catch up.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Maps a refused or failed proposal to a Kafka error.
pub fn quorum_error(e: QuorumError) -> ApiError {
    match e {
        QuorumError::Rejected { source, .. } => {
            let code = match &source {
                ApplyError::TopicExists(_) => ResponseError::TopicAlreadyExists,
                ApplyError::UnknownTopic(_) | ApplyError::UnknownPartition { .. } => {
                    ResponseError::UnknownTopicOrPartition
                }
                ApplyError::InvalidAssignment(_) => ResponseError::InvalidReplicaAssignment,
                ApplyError::InvalidTopicName(_) => ResponseError::InvalidTopicException,
                ApplyError::NoReassignment => ResponseError::NoReassignmentInProgress,
                ApplyError::StalePartitionEpoch { .. } => ResponseError::InvalidUpdateVersion,
                ApplyError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
                ApplyError::UnknownBroker(_) | ApplyError::StaleBrokerEpoch { .. } => {
                    ResponseError::BrokerNotAvailable
                }
                ApplyError::UnknownScramCredential { .. } => ResponseError::ResourceNotFound,
                ApplyError::InvalidScram(_) => ResponseError::UnacceptableCredential,
                _ => ResponseError::InvalidRequest,
            };
            ApiError::new(code, source.to_string())
        }
        QuorumError::ProposeTimeout(_) => ApiError::new(
            ResponseError::RequestTimedOut,
            "the controller quorum did not commit in time",
        ),
        other => ApiError::new(ResponseError::NotController, other.to_string()),
    }
}

/// A CreateTopics entry: -1 partitions or replication factor take the
/// broker defaults; explicit assignments replace both.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partition count, or -1.
    pub partitions: i32,
    /// Replication factor, or -1.
    pub replication_factor: i16,
    /// Replica lists by partition, if the client chose them.
    pub assignments: Option<Vec<Vec<i32>>>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

impl Cluster {
    /// Proposes `command` and waits until this broker's image has it and
    /// has turned it into local state (replicas opened, roles taken).
    pub async fn propose(&self, command: MetadataCommand) -> Result<(), ApiError> {
        let (offset, _) = self.source.propose(command).await.map_err(quorum_error)?;
        if !self.wait_applied(offset, CATCH_UP).await {
            return Err(ApiError::new(
                ResponseError::RequestTimedOut,
                "the change is committed but this broker has not applied it yet",
            ));
        }
        Ok(())
    }

    /// CreateTopics for one topic; returns (partitions, replication factor).
    pub async fn create_topic(
        &self,
        broker: &Broker,
        new: NewTopic,
        validate_only: bool,
    ) -> Result<(i32, i16), ApiError> {
        let NewTopic {
            name,
            partitions,
            replication_factor,
            assignments,
            configs,
        } = new;
        let name = name.as_str();
        validate_topic_name(name)?;
        let image = self.image();
        if image.topics.contains_key(name) {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic `{name}` already exists"),
            ));
        }
        let collides = image
            .topics
            .keys()
            .any(|t| t.replace('.', "_") == name.replace('.', "_"));
        if collides {
            return Err(ApiError::new(
                ResponseError::InvalidTopicException,
                format!("topic `{name}` collides with an existing topic ('.' and '_' are the same in metric names)"),
            ));
        }
        broker
            .config
            .topic_defaults
            .with_overrides(&configs)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        let assignments = match assignments {
            Some(a) => a,
            None => {
                let partitions = if partitions == -1 {
                    broker.config.num_partitions
                } else {
                    partitions
                };
                if !(1..=100_000).contains(&partitions) {
                    return Err(ApiError::new(
                        ResponseError::InvalidPartitions,
                        "number of partitions must be between 1 and 100000",
                    ));
                }
                let rf = if replication_factor == -1 {
                    broker.config.default_replication_factor
                } else {
                    replication_factor
                };
                if rf < 1 {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicationFactor,
                        "replication factor must be at least 1",
                    ));
                }
                assign_replicas(&image, partitions as usize, rf as usize)
                    .map_err(placement_error)?
            }
        };
        check_assignments(&image, &assignments)?;
        let rf = assignments.first().map_or(0, |r| r.len() as i16);
        crate::topic_config::check_replication(&configs, rf)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        let shape = (
            assignments.len() as i32,
            assignments.first().map_or(0, |r| r.len() as i16),
        );
        if validate_only {
            return Ok(shape);
        }
        self.propose(MetadataCommand::CreateTopic {
            name: name.to_string(),
            topic_id: Uuid::new_v4(),
            assignments,
            configs,
        })
        .await?;
        tracing::info!(
            topic = name,
            partitions = shape.0,
            replication_factor = shape.1,
            "created topic"
        );
        Ok(shape)
    }

    /// DeleteTopics for one topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        if !self.image().topics.contains_key(name) {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic `{name}` does not exist"),
            ));
        }
        self.propose(MetadataCommand::DeleteTopic {
            name: name.to_string(),
        })
        .await
    }

    /// CreatePartitions: grows `name` to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let image = self.image();
        let Some(topic) = image.topics.get(name) else {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic `{name}` does not exist"),
            ));
        };
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("topic `{name}` has {current} partitions; the count can only grow"),
            ));
        }
        if count > 100_000 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                "number of partitions must be at most 100000",
            ));
        }
        let rf = topic
            .partitions
            .values()
            .next()
            .map_or(1, |p| p.replicas.len());
        let added = (count - current) as usize;
        let assignments = match assignments {
            Some(a) if a.len() == added => a,
            Some(a) => {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("{} assignments given for {added} new partitions", a.len()),
                ))
            }
            None => assign_replicas(&image, added, rf).map_err(placement_error)?,
        };
        check_assignments(&image, &assignments)?;
        if validate_only {
            return Ok(());
        }
        self.propose(MetadataCommand::CreatePartitions {
            name: name.to_string(),
            assignments,
        })
        .await
    }

    /// Replaces a topic's config overrides (already merged and validated
    /// by the caller).
    pub async fn set_topic_configs(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let image = self.image();
        let Some(topic) = image.topics.get(name) else {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic `{name}` does not exist"),
            ));
        };
        if validate_only {
            return Ok(());
        }
        let delete: BTreeSet<String> = topic
            .configs
            .keys()
            .filter(|k| !overrides.contains_key(*k))
            .cloned()
            .collect();
        self.propose(MetadataCommand::AlterTopicConfigs {
            name: name.to_string(),
            set: overrides,
            delete,
        })
        .await
    }
}

fn placement_error(e: PlacementError) -> ApiError {
    ApiError::new(ResponseError::InvalidReplicationFactor, e.to_string())
}

/// Explicit assignments must name registered brokers, once each, with
/// the same replication factor throughout.
fn check_assignments(
    image: &rivulet_quorum::metadata::ClusterMetadata,
    assignments: &[Vec<i32>],
) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::new(ResponseError::InvalidReplicaAssignment, m));
    let Some(first) = assignments.first() else {
        return bad("no partitions".into());
    };
    for replicas in assignments {
        if replicas.len() != first.len() {
            return bad("every partition needs the same number of replicas".into());
        }
        let distinct: BTreeSet<_> = replicas.iter().collect();
        if distinct.len() != replicas.len() || replicas.is_empty() {
            return bad(format!(
                "replica list {replicas:?} is empty or repeats a broker"
            ));
        }
        if let Some(unknown) = replicas.iter().find(|id| !image.brokers.contains_key(id)) {
            return bad(format!("broker {unknown} is not registered"));
        }
    }
    Ok(())
}
