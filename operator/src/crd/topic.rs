//! `Topic`: a Kafka topic in a [`super::KafkaCluster`] of the same namespace,
//! kept in shape through the Kafka admin protocol.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a Kafka topic.
// Clippy reads the repeated `type_` of separate printcolumns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rivulet.dev",
    version = "v1alpha1",
    kind = "Topic",
    plural = "topics",
    shortname = "kt",
    category = "rivulet",
    namespaced,
    status = "TopicStatus",
    derive = "PartialEq",
    doc = "A Kafka topic of a KafkaCluster in the same namespace. The operator creates it, grows its partitions, changes its replication factor and keeps its configs as written here, through the Kafka admin protocol. It records the topic's id and never silently recreates a lost topic or adopts another topic of the same name (see status.topicId).",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.cluster",
        description = "The KafkaCluster that holds the topic"
    ),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".spec.partitions",
        description = "Desired partition count"
    ),
    printcolumn(
        name = "RF",
        type_ = "integer",
        json_path = ".spec.replicationFactor",
        description = "Replication factor"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the topic matches its spec"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.topicName) == has(oldSelf.topicName)").message("topicName cannot be added or removed: Kafka cannot rename a topic"))]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Name of the KafkaCluster (in this namespace) that holds the topic.
    /// Cannot change.
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster cannot change: delete the Topic and create it in the other cluster"))]
    pub cluster: String,

    /// The topic's name in Kafka. Default: the Topic's `metadata.name`. Set
    /// it for names Kubernetes does not allow (uppercase, underscores).
    /// Cannot change, be added or be removed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("topicName cannot change: Kafka cannot rename a topic"))]
    pub topic_name: Option<String>,

    /// Number of partitions. Minimum 1. May grow, never shrink: Kafka
    /// cannot remove partitions.
    #[x_kube(validation = Rule::new("self >= 1").message("partitions must be at least 1"))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("partitions cannot decrease: Kafka cannot remove partitions"))]
    pub partitions: i32,

    /// Copies of each partition, at most the number of brokers. Minimum 1.
    /// Changing it reassigns every partition: growing keeps the replicas a
    /// partition has and adds the least-loaded brokers; shrinking drops
    /// replicas from the end of the list, never the leader while another
    /// can go. `Progressing` is True while the replicas move.
    #[x_kube(validation = Rule::new("self >= 1").message("replicationFactor must be at least 1"))]
    pub replication_factor: i32,

    /// Topic configs with Kafka's names (for example `retention.ms`,
    /// `cleanup.policy`). Keys removed here revert to the broker default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// Annotation that accepts a Kafka topic of the Topic's name with another
/// id than `status.topicId` (reason `TopicRecreated`): its value is the id
/// to accept, so it acts once and never adopts a later impostor.
pub const ACCEPT_TOPIC_ID_ANNOTATION: &str = "rivulet.dev/accept-topic-id";

/// Annotation that lets the operator create a new, empty topic in place of
/// a lost one (reason `TopicLost`): its value is the lost topic's id
/// (`status.topicId`), so it acts once.
pub const RECREATE_LOST_TOPIC_ANNOTATION: &str = "rivulet.dev/recreate-lost-topic";

impl Topic {
    /// The topic's name in Kafka.
    pub fn kafka_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .unwrap_or_else(|| kube::ResourceExt::name_any(self))
    }
}

/// The observed state of a Kafka topic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: the topic exists with the id in `topicId`, the spec's
    /// partitions, replication factor and configs, and every partition has
    /// a leader; its reason says what is wrong otherwise (`TopicLost`,
    /// `TopicRecreated`, `PartitionsOffline`, `CannotMatchSpec`,
    /// `Reassigning`, `KafkaUnavailable`, `ClusterNotFound`).
    /// `Progressing`: replicas are moving to a new replication factor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The id of the Kafka topic this Topic manages, as Kafka prints it
    /// (22 characters of URL-safe base64), recorded when the operator
    /// creates or adopts the topic. Every reconcile compares it with the
    /// id the cluster reports. If the topic is gone, `Ready` is False with
    /// reason `TopicLost` and the operator does not recreate it: set the
    /// annotation `rivulet.dev/recreate-lost-topic` to this id to create a
    /// new, empty topic. If a topic of the same name exists with another
    /// id (deleted and created again, for example auto-created by a
    /// client), `Ready` is False with reason `TopicRecreated` and the
    /// operator leaves it alone: set the annotation
    /// `rivulet.dev/accept-topic-id` to the new id to manage it. Either
    /// annotation acts once: after it, this field holds the new id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,

    /// Partitions the topic has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,

    /// Replication factor of the topic's first partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
}
