//! OffsetFetch: a group's committed offsets, for one group (v1-v7) or many
//! (v8+). With `require_stable` (v7+), a partition whose offset a
//! transaction has committed but not yet completed answers
//! UNSTABLE_OFFSET_COMMIT, so the consumer retries instead of starting
//! from an offset that may still change.

use kafka_protocol::{
    messages::{
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        },
        GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::Node;
use crate::group::{coordinator::FetchedTopics, state::CommittedOffset};

type Requested = Option<Vec<(String, Vec<i32>)>>;

async fn fetch(
    broker: &Node,
    group_id: &str,
    topics: Requested,
) -> Result<FetchedTopics, ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    broker.groups.fetch_offsets(group_id, topics).await
}

/// (offset, leader epoch, metadata) as reported; -1 and "" when nothing is committed.
fn fields(o: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, StrBytes::from_string(o.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}

/// The committed offset as reported, or UNSTABLE_OFFSET_COMMIT while a
/// transaction holds a newer one and the client asked for stable offsets.
fn stable(
    broker: &Node,
    require_stable: bool,
    group: &str,
    topic: &str,
    partition: i32,
    o: Option<CommittedOffset>,
) -> (Option<CommittedOffset>, Option<ResponseError>) {
    if require_stable && broker.groups.has_pending(group, topic, partition) {
        return (None, Some(ResponseError::UnstableOffsetCommit));
    }
    (o, None)
}

/// Answers OffsetFetch.
pub async fn handle(broker: &Node, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let require_stable = req.require_stable;
    if version >= 8 {
        let mut fetched = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            let requested: Requested = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            fetched.push(fetch(broker, &g.group_id, requested).await);
        }
        let groups = req
            .groups
            .into_iter()
            .zip(fetched)
            .map(|(g, fetched)| {
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetched {
                    Err(e) => group.with_error_code(e.code()),
                    Ok(found) => group.with_topics(
                        found
                            .into_iter()
                            .map(|(name, parts)| {
                                let partitions = parts
                                    .into_iter()
                                    .map(|(p, o)| {
                                        let (o, error) = stable(
                                            broker,
                                            require_stable,
                                            &g.group_id,
                                            &name,
                                            p,
                                            o,
                                        );
                                        let (offset, epoch, metadata) = fields(o);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(metadata))
                                            .with_error_code(super::code(error))
                                    })
                                    .collect();
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(name)))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let requested: Requested = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let group_id: &GroupId = &req.group_id;
    let (found, error) = match fetch(broker, group_id, requested.clone()).await {
        Ok(found) => (found, None),
        // v1 has no group-level error: every partition carries it.
        Err(e) => (
            requested
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                .collect(),
            Some(e),
        ),
    };
    let partition_error = if version < 2 { error } else { None };
    let topics = found
        .into_iter()
        .map(|(name, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(p, o)| {
                    let (o, unstable) = stable(broker, require_stable, group_id, &name, p, o);
                    let (offset, epoch, metadata) = fields(o);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
                        .with_metadata(Some(metadata))
                        .with_error_code(super::code(partition_error.or(unstable)))
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(super::code(error))
    } else {
        response
    }
}
