//! Partition reassignment: AlterPartitionReassignments and
//! ListPartitionReassignments, what `kafka-reassign-partitions.sh` and
//! AdminClient's `alterPartitionReassignments` send.
//!
//! How replication factors change and brokers are drained: the controller
//! adds the target replicas, they catch up and join the ISR, then the
//! replica set becomes the target and the replicas left out delete their
//! data. Both requests go to any broker; a KRaft broker forwards them to
//! the active controller itself.
//!
//! A reassignment is one request for many partitions, and each partition
//! can fail on its own (an unknown broker, one already moving), so the
//! per-partition Kafka error codes are returned as values; only a failure
//! of the whole request is an error.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic},
    list_partition_reassignments_request::ListPartitionReassignmentsTopics,
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};

use super::{admin::str_bytes, Client};
use crate::error::ClientError;

/// How long the controller may take to accept a reassignment (it returns
/// once the change is in the metadata log, not once data has moved).
const REASSIGN_TIMEOUT_MS: i32 = 30_000;

/// One partition to reassign: `(topic, partition, target replicas)`.
/// `None` cancels the reassignment in progress.
pub type ReassignTarget = (String, i32, Option<Vec<i32>>);

/// What the controller said about one partition of a reassignment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentResult {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Kafka error code, 0 when the reassignment was accepted (for example
    /// 39 INVALID_REPLICA_ASSIGNMENT for an unknown broker, 85
    /// NO_REASSIGNMENT_IN_PROGRESS when cancelling nothing).
    pub error_code: i16,
    /// The broker's explanation, if any.
    pub error_message: Option<String>,
}

impl ReassignmentResult {
    /// `Err` with the partition's Kafka error, `Ok` when it was accepted.
    pub fn check(&self) -> Result<(), ClientError> {
        let context = format!(
            "{}-{}{}",
            self.topic,
            self.partition,
            self.error_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        ClientError::check(self.error_code, Some(&context))
    }
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The replica set now: the old replicas and the ones being added.
    pub replicas: Vec<i32>,
    /// Replicas being added (catching up).
    pub adding: Vec<i32>,
    /// Replicas that leave once the added ones are in sync.
    pub removing: Vec<i32>,
}

impl OngoingReassignment {
    /// The replicas the partition will have when the move completes (in
    /// `replicas` order, which need not be the order requested).
    pub fn target(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|id| !self.removing.contains(id))
            .collect()
    }
}

fn ids(list: &[i32]) -> Vec<BrokerId> {
    list.iter().copied().map(BrokerId).collect()
}

fn from_ids(list: &[BrokerId]) -> Vec<i32> {
    list.iter().map(|b| b.0).collect()
}

impl Client {
    /// Starts (or, with `None` as target, cancels) reassignments. Partitions
    /// are grouped by topic in the request; replication factor changes are
    /// allowed (AlterPartitionReassignments v1's
    /// `allow_replication_factor_change`, implied by v0). Returns one result
    /// per partition in the order given; a request-level error (e.g.
    /// NOT_CONTROLLER, CLUSTER_AUTHORIZATION_FAILED) is an `Err`.
    pub async fn alter_partition_reassignments(
        &mut self,
        targets: Vec<ReassignTarget>,
    ) -> Result<Vec<ReassignmentResult>, ClientError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for (topic, partition, replicas) in &targets {
            by_topic.entry(topic).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(*partition)
                    .with_replicas(replicas.as_deref().map(ids)),
            );
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(REASSIGN_TIMEOUT_MS)
            .with_allow_replication_factor_change(true)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(name, partitions)| {
                        ReassignableTopic::default()
                            .with_name(TopicName(str_bytes(name)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = self.send_any(request).await?;
        ClientError::check(
            response.error_code,
            response.error_message.as_ref().map(|m| m.as_str()),
        )?;
        let answered: BTreeMap<(String, i32), (i16, Option<String>)> = response
            .responses
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.0.to_string();
                t.partitions.into_iter().map(move |p| {
                    (
                        (topic.clone(), p.partition_index),
                        (p.error_code, p.error_message.map(|m| m.to_string())),
                    )
                })
            })
            .collect();
        targets
            .into_iter()
            .map(|(topic, partition, _)| {
                let (error_code, error_message) = answered
                    .get(&(topic.clone(), partition))
                    .cloned()
                    .ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "AlterPartitionReassignments: no result for {topic}-{partition}"
                        ))
                    })?;
                Ok(ReassignmentResult {
                    topic,
                    partition,
                    error_code,
                    error_message,
                })
            })
            .collect()
    }

    /// The reassignments in progress, ordered by topic and partition:
    /// of every partition (`None`) or of the listed `(topic, partitions)`.
    pub async fn list_partition_reassignments(
        &mut self,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<OngoingReassignment>, ClientError> {
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(REASSIGN_TIMEOUT_MS)
            .with_topics(partitions.map(|list| {
                list.into_iter()
                    .map(|(topic, indexes)| {
                        ListPartitionReassignmentsTopics::default()
                            .with_name(TopicName(str_bytes(&topic)))
                            .with_partition_indexes(indexes)
                    })
                    .collect()
            }));
        let response = self.send_any(request).await?;
        ClientError::check(
            response.error_code,
            response.error_message.as_ref().map(|m| m.as_str()),
        )?;
        let mut ongoing: Vec<OngoingReassignment> = response
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name.0.to_string();
                t.partitions.into_iter().map(move |p| OngoingReassignment {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    replicas: from_ids(&p.replicas),
                    adding: from_ids(&p.adding_replicas),
                    removing: from_ids(&p.removing_replicas),
                })
            })
            .collect();
        ongoing.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(ongoing)
    }
}

#[cfg(test)]
#[path = "reassign_tests.rs"]
mod tests;
