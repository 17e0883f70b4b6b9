//! The controller quorum: DescribeQuorum, AddRaftVoter and RemoveRaftVoter,
//! what `kafka-metadata-quorum.sh describe` and `add-controller` /
//! `remove-controller` send (KIP-595, KIP-853).
//!
//! Every broker answers these (a broker that is not the quorum leader
//! forwards them), so they go to any broker. A voter is named by its node
//! id and its directory id: a node that lost its disk comes back with the
//! same id and a new directory, and is a different replica to the quorum.
//! AddRaftVoter and RemoveRaftVoter carry the cluster id, so a request
//! meant for one cluster cannot change another (INCONSISTENT_CLUSTER_ID,
//! code 104).

use kafka_protocol::messages::{
    describe_quorum_request::{PartitionData, TopicData},
    describe_quorum_response::ReplicaState,
    AddRaftVoterRequest, DescribeQuorumRequest, RemoveRaftVoterRequest, TopicName,
};
use uuid::Uuid;

use super::{admin::str_bytes, Client};
use crate::error::ClientError;

/// The metadata log's topic: the one partition the quorum replicates.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// How long the leader may take to add a voter (the new voter must catch
/// up first) or to commit its removal, before it answers REQUEST_TIMED_OUT.
const VOTER_CHANGE_TIMEOUT_MS: i32 = 10_000;

/// One replica of the metadata log: a voter or an observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplica {
    /// The node id.
    pub node_id: i32,
    /// The directory id of its metadata log (nil before DescribeQuorum v2).
    pub directory_id: Uuid,
    /// The offset after its last record, as the leader last heard; -1 if unknown.
    pub log_end_offset: i64,
    /// When the leader last heard from it (ms since the epoch); -1 if unknown.
    pub last_fetch_timestamp: i64,
    /// When it was last caught up with the leader (ms since the epoch); -1 if unknown.
    pub last_caught_up_timestamp: i64,
}

/// One listener of a quorum node, as DescribeQuorum v2 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumListener {
    /// Listener name, e.g. `CONTROLLER`.
    pub name: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// The controller quorum as its leader describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The leader's node id, -1 while there is none.
    pub leader_id: i32,
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// The metadata log's high watermark.
    pub high_watermark: i64,
    /// The voters, ordered by node id.
    pub voters: Vec<QuorumReplica>,
    /// Every other node that follows the metadata log, ordered by node id.
    pub observers: Vec<QuorumReplica>,
    /// Listeners of the voters by node id (DescribeQuorum v2; empty before).
    pub nodes: Vec<(i32, Vec<QuorumListener>)>,
}

impl QuorumDescription {
    /// The voter with node id `node_id`, if it is one.
    pub fn voter(&self, node_id: i32) -> Option<&QuorumReplica> {
        self.voters.iter().find(|v| v.node_id == node_id)
    }
}

fn replica(state: ReplicaState) -> QuorumReplica {
    QuorumReplica {
        node_id: state.replica_id.0,
        directory_id: state.replica_directory_id,
        log_end_offset: state.log_end_offset,
        last_fetch_timestamp: state.last_fetch_timestamp,
        last_caught_up_timestamp: state.last_caught_up_timestamp,
    }
}

fn sorted(states: Vec<ReplicaState>) -> Vec<QuorumReplica> {
    let mut replicas: Vec<QuorumReplica> = states.into_iter().map(replica).collect();
    replicas.sort_by_key(|r| (r.node_id, r.directory_id));
    replicas
}

impl Client {
    /// Describes the controller quorum (the `__cluster_metadata` partition).
    /// A request-level or partition-level Kafka error is an `Err`.
    pub async fn describe_quorum(&mut self) -> Result<QuorumDescription, ClientError> {
        let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        let response = self.send_any(request).await?;
        ClientError::check(
            response.error_code,
            response.error_message.as_ref().map(|m| m.as_str()),
        )?;
        let partition = response
            .topics
            .into_iter()
            .filter(|t| t.topic_name.0.as_str() == METADATA_TOPIC)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == 0)
            .ok_or_else(|| {
                ClientError::Protocol(format!("DescribeQuorum: no result for {METADATA_TOPIC}-0"))
            })?;
        ClientError::check(
            partition.error_code,
            partition.error_message.as_ref().map(|m| m.as_str()),
        )?;
        let mut nodes: Vec<(i32, Vec<QuorumListener>)> = response
            .nodes
            .into_iter()
            .map(|n| {
                let listeners = n
                    .listeners
                    .into_iter()
                    .map(|l| QuorumListener {
                        name: l.name.to_string(),
                        host: l.host.to_string(),
                        port: l.port,
                    })
                    .collect();
                (n.node_id.0, listeners)
            })
            .collect();
        nodes.sort_by_key(|(id, _)| *id);
        Ok(QuorumDescription {
            leader_id: partition.leader_id.0,
            leader_epoch: partition.leader_epoch,
            high_watermark: partition.high_watermark,
            voters: sorted(partition.current_voters),
            observers: sorted(partition.observers),
            nodes,
        })
    }

    /// Makes the observer `voter_id` (with metadata directory
    /// `directory_id`) a voter. No listeners are sent: the leader uses the
    /// ones the observer registered with. Fails with the leader's error,
    /// e.g. REQUEST_TIMED_OUT (7) while the observer is not caught up, or
    /// INCONSISTENT_CLUSTER_ID (104) when `cluster_id` is not the cluster's.
    pub async fn add_raft_voter(
        &mut self,
        cluster_id: &str,
        voter_id: i32,
        directory_id: Uuid,
    ) -> Result<(), ClientError> {
        let request = AddRaftVoterRequest::default()
            .with_cluster_id(Some(str_bytes(cluster_id)))
            .with_timeout_ms(VOTER_CHANGE_TIMEOUT_MS)
            .with_voter_id(voter_id)
            .with_voter_directory_id(directory_id)
            .with_listeners(Vec::new());
        let response = self.send_any(request).await?;
        ClientError::check(
            response.error_code,
            response.error_message.as_ref().map(|m| m.as_str()),
        )
    }

    /// Removes the voter `voter_id` with metadata directory `directory_id`
    /// from the quorum; it goes on following the log as an observer while
    /// it runs. The leader refuses to remove the last voter.
    pub async fn remove_raft_voter(
        &mut self,
        cluster_id: &str,
        voter_id: i32,
        directory_id: Uuid,
    ) -> Result<(), ClientError> {
        let request = RemoveRaftVoterRequest::default()
            .with_cluster_id(Some(str_bytes(cluster_id)))
            .with_voter_id(voter_id)
            .with_voter_directory_id(directory_id);
        let response = self.send_any(request).await?;
        ClientError::check(
            response.error_code,
            response.error_message.as_ref().map(|m| m.as_str()),
        )
    }
}

#[cfg(test)]
#[path = "quorum_tests.rs"]
mod tests;
