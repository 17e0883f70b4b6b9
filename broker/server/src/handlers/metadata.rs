//! Metadata: brokers, cluster id, controller, and topics with their
//! partitions, leaders and ids. Unknown topics are created when
//! `auto.create.topics.enable` is on and the client allows it.

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        },
        BrokerId, MetadataRequest, MetadataResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::metadata::{ClusterMetadata, TopicMetadata};
use uuid::Uuid;

use super::{code, Node};
use crate::broker::validate_topic_name;

fn error_entry(name: Option<TopicName>, id: Uuid, err: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(err.code())
        .with_topic_authorized_operations(i32::MIN)
}

/// A topic's entry from the cluster metadata image. Partitions led by
/// `unvouched` (this broker, when its leader lease ran out) are answered
/// without a leader, as LEADER_NOT_AVAILABLE with the image's leader
/// epoch: clients keep asking for metadata, and those that already know a
/// newer epoch from another broker ignore this answer.
fn image_entry(
    image: &ClusterMetadata,
    topic: &TopicMetadata,
    unvouched: Option<i32>,
) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .map(|(&index, p)| {
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|&id| !image.is_live(id))
                .collect();
            let leader = p.leader.filter(|&l| Some(l) != unvouched);
            let error = if leader.is_none() {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}

/// Answers Metadata, entirely from the metadata image. Unknown topics
/// the client may create are created first (as Kafka does, but waited for,
/// bounded by the admin catch-up time, so the answer already names their
/// leaders); one that is not ready in time is LEADER_NOT_AVAILABLE, which
/// clients retry.
pub async fn handle(
    broker: &Node,
    req: MetadataRequest,
    version: i16,
    listener: &str,
) -> MetadataResponse {
    // v0: an empty list means "all topics"; v1+: null means all.
    let requested = match req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    };
    // v4+ lets the client forbid auto-creation; before that it is implied.
    let may_create =
        broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let cluster = &broker.cluster;
    if may_create {
        if let Some(list) = &requested {
            let image = cluster.image();
            let missing = list
                .iter()
                .filter_map(|t| t.name.as_ref())
                .filter(|n| !image.topics.contains_key(n.as_str()))
                .filter(|n| validate_topic_name(n).is_ok())
                .map(|n| auto_create(broker, cluster, n.to_string()));
            futures::future::join_all(missing).await;
        }
    }
    let image = cluster.image();
    let unvouched = (!broker.lease.held()).then_some(cluster.node_id);
    let topics = match requested {
        None => image
            .topics
            .values()
            .map(|t| image_entry(&image, t, unvouched))
            .collect(),
        Some(list) => {
            let mut seen = BTreeMap::new();
            for t in list {
                let entry = match t.name {
                    Some(name) => {
                        if let Some(topic) = image.topics.get(name.as_str()) {
                            image_entry(&image, topic, unvouched)
                        } else if let Err(e) = validate_topic_name(&name) {
                            error_entry(Some(name.clone()), Uuid::nil(), e.code)
                        } else if may_create {
                            error_entry(
                                Some(name.clone()),
                                Uuid::nil(),
                                ResponseError::LeaderNotAvailable,
                            )
                        } else {
                            error_entry(
                                Some(name.clone()),
                                Uuid::nil(),
                                ResponseError::UnknownTopicOrPartition,
                            )
                        }
                    }
                    None => match image.topic_by_id(t.topic_id) {
                        Some(topic) => image_entry(&image, topic, unvouched),
                        None => error_entry(None, t.topic_id, ResponseError::UnknownTopicId),
                    },
                };
                let key = entry
                    .name
                    .as_ref()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| t.topic_id.to_string());
                seen.insert(key, entry);
            }
            seen.into_values().collect()
        }
    };
    let brokers = cluster
        .live_endpoints(listener)
        .into_iter()
        .map(|(id, e, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(e.host))
                .with_port(i32::from(e.port))
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(cluster.cluster_id.clone())))
        .with_controller_id(BrokerId(cluster.controller_id().unwrap_or(-1)))
        .with_topics(topics)
        .with_cluster_authorized_operations(i32::MIN)
        .with_error_code(code(None))
}

/// Creates `name` with the broker defaults; a race with another creator
/// is fine (theirs is used).
async fn auto_create(broker: &Node, cluster: &crate::cluster::Cluster, name: String) {
    let new = crate::cluster::admin::NewTopic {
        name: name.clone(),
        partitions: -1,
        replication_factor: -1,
        ..Default::default()
    };
    if let Err(e) = cluster.create_topic(broker, new, false).await {
        if e.code != ResponseError::TopicAlreadyExists {
            tracing::info!(topic = %name, error = %e.message, "auto-creating topic failed");
        }
    }
}
