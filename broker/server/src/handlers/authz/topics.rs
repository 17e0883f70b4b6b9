//! Topic APIs: what Kafka checks for each, and the errors of what is
//! refused.

use std::collections::BTreeSet;

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        create_partitions_response::CreatePartitionsTopicResult,
        create_topics_response::CreatableTopicResult, delete_records_response,
        delete_topics_response::DeletableTopicResult, fetch_response, list_offsets_response,
        metadata_response::MetadataResponseTopic, offset_for_leader_epoch_response,
        produce_response, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
        DeleteTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest,
        OffsetForLeaderEpochRequest, ProduceRequest, RequestKind, ResponseKind, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::metadata::acl::{Operation, ResourceType};
use uuid::Uuid;

use super::{append, code, Access, Checked, Patch};
use crate::handlers::Node;

const DENIED: ResponseError = ResponseError::TopicAuthorizationFailed;

fn message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("Authorization failed."))
}

/// A topic's name from the image by id (Fetch v13+, DeleteTopics v6).
fn name_of(access: &Access, id: Uuid) -> Option<String> {
    access
        .image()
        .topics
        .values()
        .find(|t| t.id == id)
        .map(|t| t.name.clone())
}

/// Produce: WRITE on the transactional id when there is one, WRITE on
/// each topic. With acks=0 the refused topics are dropped silently: there
/// is no response to carry an error.
pub fn produce(access: &Access, mut r: ProduceRequest) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::Produce(r), None);
    }
    let transactional_denied = r
        .transactional_id
        .as_ref()
        .is_some_and(|id| !access.allows(Operation::Write, ResourceType::TransactionalId, id));
    let (kept, denied): (Vec<_>, Vec<_>) =
        std::mem::take(&mut r.topic_data)
            .into_iter()
            .partition(|t| {
                !transactional_denied
                    && access.allows(Operation::Write, ResourceType::Topic, &t.name)
            });
    r.topic_data = kept;
    let error = if transactional_denied {
        ResponseError::TransactionalIdAuthorizationFailed
    } else {
        DENIED
    };
    let entries: Vec<_> = denied
        .into_iter()
        .map(|t| {
            produce_response::TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            produce_response::PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(code(error))
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    append(RequestKind::Produce(r), entries, |response, list| {
        if let ResponseKind::Produce(resp) = response {
            resp.responses.extend(list);
        }
    })
}

/// Fetch: a follower's fetch needs CLUSTER_ACTION, a consumer's READ on
/// each topic.
pub fn fetch(access: &Access, mut r: FetchRequest, version: i16) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::Fetch(r), None);
    }
    let replica_id = if version >= 15 {
        r.replica_state.replica_id.0
    } else {
        r.replica_id.0
    };
    let follower_allowed = replica_id < 0 || access.allows_cluster(Operation::ClusterAction);
    let (kept, denied): (Vec<_>, Vec<_>) =
        std::mem::take(&mut r.topics).into_iter().partition(|t| {
            if replica_id >= 0 {
                return follower_allowed;
            }
            let name = if version >= 13 {
                match name_of(access, t.topic_id) {
                    Some(name) => name,
                    // Unknown id: the handler answers UNKNOWN_TOPIC_ID.
                    None => return true,
                }
            } else {
                t.topic.to_string()
            };
            access.allows(Operation::Read, ResourceType::Topic, &name)
        });
    r.topics = kept;
    let entries: Vec<_> = denied
        .into_iter()
        .map(|t| {
            let mut entry = fetch_response::FetchableTopicResponse::default().with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        fetch_response::PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_error_code(code(DENIED))
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1)
                            .with_records(Some(Bytes::new()))
                    })
                    .collect(),
            );
            if version >= 13 {
                entry.topic_id = t.topic_id;
            } else {
                entry.topic = t.topic;
            }
            entry
        })
        .collect();
    append(RequestKind::Fetch(r), entries, |response, list| {
        if let ResponseKind::Fetch(resp) = response {
            resp.responses.extend(list);
        }
    })
}

/// ListOffsets: DESCRIBE on each topic.
pub fn list_offsets(access: &Access, mut r: ListOffsetsRequest) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::ListOffsets(r), None);
    }
    let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| access.allows(Operation::Describe, ResourceType::Topic, &t.name));
    r.topics = kept;
    let entries: Vec<_> = denied
        .into_iter()
        .map(|t| {
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            list_offsets_response::ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(DENIED))
                                .with_timestamp(-1)
                                .with_offset(-1)
                                .with_leader_epoch(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    append(RequestKind::ListOffsets(r), entries, |response, list| {
        if let ResponseKind::ListOffsets(resp) = response {
            resp.topics.extend(list);
        }
    })
}

/// OffsetForLeaderEpoch: CLUSTER_ACTION from a follower, DESCRIBE on each
/// topic from a consumer.
pub fn offset_for_leader_epoch(access: &Access, mut r: OffsetForLeaderEpochRequest) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::OffsetForLeaderEpoch(r), None);
    }
    let follower = r.replica_id.0 >= 0;
    let follower_allowed = follower && access.allows_cluster(Operation::ClusterAction);
    let (kept, denied): (Vec<_>, Vec<_>) =
        std::mem::take(&mut r.topics).into_iter().partition(|t| {
            if follower {
                follower_allowed
            } else {
                access.allows(Operation::Describe, ResourceType::Topic, &t.topic)
            }
        });
    r.topics = kept;
    let entries: Vec<_> = denied
        .into_iter()
        .map(|t| {
            offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            offset_for_leader_epoch_response::EpochEndOffset::default()
                                .with_partition(p.partition)
                                .with_error_code(code(DENIED))
                                .with_leader_epoch(-1)
                                .with_end_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    append(
        RequestKind::OffsetForLeaderEpoch(r),
        entries,
        |response, list| {
            if let ResponseKind::OffsetForLeaderEpoch(resp) = response {
                resp.topics.extend(list);
            }
        },
    )
}

/// Metadata: only topics the principal may DESCRIBE are listed; a named
/// topic it may not describe is TOPIC_AUTHORIZATION_FAILED (whether or not
/// it exists), and one it may not CREATE is not auto-created. Authorized
/// operations are filled in when asked (KIP-430).
pub fn metadata(access: &Access, node: &Node, mut r: MetadataRequest, version: i16) -> Checked {
    let all = match &r.topics {
        None => true,
        Some(topics) => version == 0 && topics.is_empty(),
    };
    let mut kept = BTreeSet::new();
    let mut denied = Vec::new();
    if !all && access.enabled() {
        let auto_create = r.allow_auto_topic_creation && node.config.auto_create_topics;
        let may_create_any = auto_create && access.may_cluster(Operation::Create);
        let topics = r.topics.take().unwrap_or_default();
        let mut left = Vec::with_capacity(topics.len());
        for t in topics {
            let Some(name) = t.name.as_ref().map(|n| n.to_string()) else {
                left.push(t);
                continue;
            };
            let allowed = access.allows(Operation::Describe, ResourceType::Topic, &name)
                && (!auto_create
                    || may_create_any
                    || access.image().topics.contains_key(&name)
                    || access.allows(Operation::Create, ResourceType::Topic, &name));
            if allowed {
                kept.insert(name);
                left.push(t);
            } else {
                denied.push(name);
            }
        }
        r.topics = Some(left);
    }
    let topic_ops = r.include_topic_authorized_operations && version >= 8;
    let cluster_ops = r.include_cluster_authorized_operations && (8..=10).contains(&version);
    if !access.enabled() && !topic_ops && !cluster_ops {
        return Checked::Run(RequestKind::Metadata(r), None);
    }
    let access = access.clone();
    let filter = access.enabled();
    let patch: Patch = Box::new(move |response| {
        let ResponseKind::Metadata(resp) = response else {
            return;
        };
        if filter {
            let name = |t: &MetadataResponseTopic| t.name.as_ref().map(|n| n.to_string());
            if all {
                resp.topics.retain(|t| {
                    name(t).is_none_or(|n| access.may(Operation::Describe, ResourceType::Topic, &n))
                });
            } else {
                // A v0 request whose every topic was refused reads as
                // "all topics" to the handler: keep only what was asked.
                resp.topics
                    .retain(|t| name(t).is_none_or(|n| kept.contains(&n)));
            }
        }
        if topic_ops {
            for t in &mut resp.topics {
                if let (0, Some(name)) = (t.error_code, &t.name) {
                    t.topic_authorized_operations = access.operations(ResourceType::Topic, name);
                }
            }
        }
        if cluster_ops {
            resp.cluster_authorized_operations = if access.may_cluster(Operation::Describe) {
                access.operations(ResourceType::Cluster, "kafka-cluster")
            } else {
                0
            };
        }
        resp.topics.extend(denied.into_iter().map(|name| {
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name))))
                .with_error_code(code(DENIED))
                .with_topic_authorized_operations(i32::MIN)
        }));
    });
    Checked::Run(RequestKind::Metadata(r), Some(patch))
}

/// CreateTopics: CREATE on the cluster or on each topic; the configs of a
/// created topic are shown only with DESCRIBE_CONFIGS on it.
pub fn create_topics(access: &Access, mut r: CreateTopicsRequest) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::CreateTopics(r), None);
    }
    let cluster = access.may_cluster(Operation::Create);
    let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| cluster || access.allows(Operation::Create, ResourceType::Topic, &t.name));
    r.topics = kept;
    let access = access.clone();
    let patch: Patch = Box::new(move |response| {
        let ResponseKind::CreateTopics(resp) = response else {
            return;
        };
        for t in &mut resp.topics {
            if t.error_code == 0
                && !access.may(Operation::DescribeConfigs, ResourceType::Topic, &t.name)
            {
                t.topic_config_error_code = code(DENIED);
                t.configs = None;
            }
        }
        resp.topics.extend(denied.into_iter().map(|t| {
            CreatableTopicResult::default()
                .with_name(t.name)
                .with_error_code(code(DENIED))
                .with_error_message(message())
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        }));
    });
    Checked::Run(RequestKind::CreateTopics(r), Some(patch))
}

/// DeleteTopics: DELETE on each topic (named, or by id in v6).
pub fn delete_topics(access: &Access, mut r: DeleteTopicsRequest, version: i16) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::DeleteTopics(r), None);
    }
    let allowed = |name: &str| access.allows(Operation::Delete, ResourceType::Topic, name);
    let mut denied: Vec<(String, Uuid)> = Vec::new();
    if version >= 6 {
        r.topics.retain(|t| {
            let name = match &t.name {
                Some(n) => Some(n.to_string()),
                None => name_of(access, t.topic_id),
            };
            match name {
                Some(name) if !allowed(&name) => {
                    denied.push((name, t.topic_id));
                    false
                }
                _ => true,
            }
        });
    } else {
        r.topic_names.retain(|name| {
            let ok = allowed(name);
            if !ok {
                denied.push((name.to_string(), Uuid::nil()));
            }
            ok
        });
    }
    let entries: Vec<_> = denied
        .into_iter()
        .map(|(name, id)| {
            let mut entry = DeletableTopicResult::default()
                .with_name(Some(TopicName(StrBytes::from_string(name))))
                .with_error_code(code(DENIED));
            if version >= 6 {
                entry.topic_id = id;
            }
            if version >= 5 {
                entry.error_message = message();
            }
            entry
        })
        .collect();
    append(RequestKind::DeleteTopics(r), entries, |response, list| {
        if let ResponseKind::DeleteTopics(resp) = response {
            resp.responses.extend(list);
        }
    })
}

/// CreatePartitions: ALTER on each topic.
pub fn create_partitions(access: &Access, mut r: CreatePartitionsRequest) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::CreatePartitions(r), None);
    }
    let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| access.allows(Operation::Alter, ResourceType::Topic, &t.name));
    r.topics = kept;
    let entries: Vec<_> = denied
        .into_iter()
        .map(|t| {
            CreatePartitionsTopicResult::default()
                .with_name(t.name)
                .with_error_code(code(DENIED))
                .with_error_message(message())
        })
        .collect();
    append(
        RequestKind::CreatePartitions(r),
        entries,
        |response, list| {
            if let ResponseKind::CreatePartitions(resp) = response {
                resp.results.extend(list);
            }
        },
    )
}

/// DeleteRecords: DELETE on each topic.
pub fn delete_records(access: &Access, mut r: DeleteRecordsRequest) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::DeleteRecords(r), None);
    }
    let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| access.allows(Operation::Delete, ResourceType::Topic, &t.name));
    r.topics = kept;
    let entries: Vec<_> = denied
        .into_iter()
        .map(|t| {
            delete_records_response::DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            delete_records_response::DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(code(DENIED))
                        })
                        .collect(),
                )
        })
        .collect();
    append(RequestKind::DeleteRecords(r), entries, |response, list| {
        if let ResponseKind::DeleteRecords(resp) = response {
            resp.topics.extend(list);
        }
    })
}
