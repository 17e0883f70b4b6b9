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

use super::code;
use crate::broker::{validate_topic_name, Broker, Topic};

fn topic_entry(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let partitions = (0..topic.partition_count())
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}

fn error_entry(name: Option<TopicName>, id: Uuid, err: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(err.code())
        .with_topic_authorized_operations(i32::MIN)
}

/// A topic's entry from the cluster metadata image.
fn image_entry(image: &ClusterMetadata, topic: &TopicMetadata) -> MetadataResponseTopic {
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
            let error = if p.leader.is_none() {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader.unwrap_or(-1)))
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

/// Metadata in a cluster: everything from the metadata image.
fn handle_cluster(
    cluster: &std::sync::Arc<crate::cluster::Cluster>,
    requested: Option<Vec<kafka_protocol::messages::metadata_request::MetadataRequestTopic>>,
    may_create: bool,
    listener: &str,
) -> MetadataResponse {
    let image = cluster.image();
    let topics = match requested {
        None => image
            .topics
            .values()
            .map(|t| image_entry(&image, t))
            .collect(),
        Some(list) => {
            let mut seen = BTreeMap::new();
            for t in list {
                let entry = match t.name {
                    Some(name) => {
                        if let Some(topic) = image.topics.get(name.as_str()) {
                            image_entry(&image, topic)
                        } else if let Err(e) = validate_topic_name(&name) {
                            error_entry(Some(name.clone()), Uuid::nil(), e.code)
                        } else if may_create {
                            // As Kafka does: create in the background and
                            // answer LEADER_NOT_AVAILABLE; the client retries.
                            auto_create(cluster, &name);
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
                        Some(topic) => image_entry(&image, topic),
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

fn auto_create(cluster: &std::sync::Arc<crate::cluster::Cluster>, name: &str) {
    let (cluster, name) = (cluster.clone(), name.to_string());
    let Some(broker) = cluster.broker() else {
        return;
    };
    tokio::spawn(async move {
        if let Err(e) = cluster
            .create_topic(
                &broker,
                crate::cluster::admin::NewTopic {
                    name: name.clone(),
                    partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                },
                false,
            )
            .await
        {
            if e.code != ResponseError::TopicAlreadyExists {
                tracing::info!(topic = %name, error = %e.message, "auto-creating topic failed");
            }
        }
    });
}

/// Answers Metadata.
pub fn handle(
    broker: &Broker,
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
    if let Some(cluster) = broker.cluster() {
        return handle_cluster(cluster, requested, may_create, listener);
    }
    let (host, port) = broker.advertised(listener);
    let node = BrokerId(broker.config.node_id);
    let topics = match requested {
        None => broker
            .topics()
            .iter()
            .map(|t| topic_entry(broker, t))
            .collect(),
        Some(list) => {
            let mut seen = BTreeMap::new();
            for t in list {
                let entry = match t.name {
                    Some(name) => {
                        if let Some(topic) = broker.topic(&name) {
                            topic_entry(broker, &topic)
                        } else if let Err(e) = validate_topic_name(&name) {
                            error_entry(Some(name.clone()), Uuid::nil(), e.code)
                        } else if may_create {
                            match broker.create_topic(&name, -1, -1, BTreeMap::new(), false) {
                                Ok(topic) => topic_entry(broker, &topic),
                                // Lost a race with another creator: use theirs.
                                Err(_) => match broker.topic(&name) {
                                    Some(topic) => topic_entry(broker, &topic),
                                    None => error_entry(
                                        Some(name.clone()),
                                        Uuid::nil(),
                                        ResponseError::LeaderNotAvailable,
                                    ),
                                },
                            }
                        } else {
                            error_entry(
                                Some(name.clone()),
                                Uuid::nil(),
                                ResponseError::UnknownTopicOrPartition,
                            )
                        }
                    }
                    None => match broker.topic_by_id(t.topic_id) {
                        Some(topic) => topic_entry(broker, &topic),
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
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(StrBytes::from_string(host))
            .with_port(port as i32)
            .with_rack(broker.config.rack.clone().map(StrBytes::from_string))])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(i32::MIN)
        .with_error_code(code(None))
}
