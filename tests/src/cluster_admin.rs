//! Moving replicas from the outside with raw requests: topics created with
//! explicit replica assignments (CreateTopics), and reassignments started,
//! cancelled and listed (AlterPartitionReassignments,
//! ListPartitionReassignments), with the per-partition error codes returned
//! as values so tests can check refusals as closely as successes.
//!
//! Leaders, ISRs, elections and metrics are in [`crate::cluster_checks`].

use anyhow::{anyhow, ensure, Result};
use kafka_protocol::{
    messages::{
        alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic},
        create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig},
        list_partition_reassignments_request::ListPartitionReassignmentsTopics,
        AlterPartitionReassignmentsRequest, BrokerId, CreateTopicsRequest,
        ListPartitionReassignmentsRequest,
    },
    protocol::StrBytes,
};

use crate::kafka::{topic_name, KafkaConn};

/// An in-progress reassignment as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ongoing {
    /// The current replica set (old and new replicas during the move).
    pub replicas: Vec<i32>,
    /// Replicas being added.
    pub adding: Vec<i32>,
    /// Replicas being removed.
    pub removing: Vec<i32>,
}

fn ids(list: &[BrokerId]) -> Vec<i32> {
    list.iter().map(|b| b.0).collect()
}

fn to_ids(list: &[i32]) -> Vec<BrokerId> {
    list.iter().copied().map(BrokerId).collect()
}

/// Creates `name` with one partition per entry of `assignment` (each the
/// partition's replicas, preferred leader first) and fails unless the broker
/// reports success.
pub fn create_assigned_topic(
    conn: &mut KafkaConn,
    name: &str,
    assignment: &[&[i32]],
    configs: &[(&str, &str)],
) -> Result<()> {
    let assignments = assignment
        .iter()
        .enumerate()
        .map(|(i, replicas)| {
            CreatableReplicaAssignment::default()
                .with_partition_index(i32::try_from(i).expect("partition index fits i32"))
                .with_broker_ids(to_ids(replicas))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(assignments)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let req = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(10_000);
    let resp = conn.call(&req, 7)?;
    let result = resp
        .topics
        .first()
        .ok_or_else(|| anyhow!("empty CreateTopics response"))?;
    ensure!(
        result.error_code == 0,
        "CreateTopics {name} {assignment:?}: error code {} ({:?})",
        result.error_code,
        result.error_message
    );
    Ok(())
}

/// Asks for `topic`-`partition` to move to `target` (`None` cancels an
/// ongoing move) and returns the partition's error code and message
/// (0 when the reassignment was accepted).
pub fn alter_reassignment(
    conn: &mut KafkaConn,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
) -> Result<(i16, Option<String>)> {
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_allow_replication_factor_change(true)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(target.map(to_ids))])]);
    let resp = conn.call(&req, 1)?;
    ensure!(
        resp.error_code == 0,
        "AlterPartitionReassignments: top-level error code {} ({:?})",
        resp.error_code,
        resp.error_message
    );
    let p = resp
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| anyhow!("AlterPartitionReassignments response lacks {topic}-{partition}"))?;
    Ok((
        p.error_code,
        p.error_message.as_ref().map(|m| m.to_string()),
    ))
}

/// The reassignment of `topic`-`partition` in progress, if any.
pub fn list_reassignment(
    conn: &mut KafkaConn,
    topic: &str,
    partition: i32,
) -> Result<Option<Ongoing>> {
    let req = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(vec![partition])]));
    let resp = conn.call(&req, 0)?;
    ensure!(
        resp.error_code == 0,
        "ListPartitionReassignments: error code {} ({:?})",
        resp.error_code,
        resp.error_message
    );
    Ok(resp
        .topics
        .iter()
        .filter(|t| t.name.as_str() == topic)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .map(|p| Ongoing {
            replicas: ids(&p.replicas),
            adding: ids(&p.adding_replicas),
            removing: ids(&p.removing_replicas),
        }))
}
