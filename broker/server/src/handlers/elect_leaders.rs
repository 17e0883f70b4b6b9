//! ElectLeaders: move leadership back to the preferred replica (PREFERRED)
//! or give a leaderless partition one from outside the ISR (UNCLEAN).

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        elect_leaders_response::{PartitionResult, ReplicaElectionResult},
        ElectLeadersRequest, ElectLeadersResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::{
    metadata::{LeaderChange, MetadataCommand, PartitionChange},
    placement::{elect_leader, preferred_leader_move, Election},
};

use super::Node;
use crate::broker::ApiError;

const UNCLEAN: i8 = 1;

/// Answers ElectLeaders.
pub async fn handle(broker: &Node, req: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    match &req.topic_partitions {
        Some(list) => {
            for t in list {
                wanted
                    .entry(t.topic.to_string())
                    .or_default()
                    .extend(&t.partitions);
            }
        }
        None => {
            for (name, t) in &broker.cluster.image().topics {
                wanted.insert(name.clone(), t.partitions.keys().copied().collect());
            }
        }
    }
    let unclean = version >= 1 && req.election_type == UNCLEAN;
    let mut results = Vec::new();
    for (topic, partitions) in wanted {
        let mut partition_result = Vec::new();
        for p in partitions {
            let outcome = elect(broker, &topic, p, unclean).await;
            let r = PartitionResult::default().with_partition_id(p);
            partition_result.push(match outcome {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(e.code.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            });
        }
        results.push(
            ReplicaElectionResult::default()
                .with_topic(TopicName(StrBytes::from_string(topic)))
                .with_partition_result(partition_result),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

async fn elect(broker: &Node, topic: &str, partition: i32, unclean: bool) -> Result<(), ApiError> {
    let not_needed = || {
        ApiError::new(
            ResponseError::ElectionNotNeeded,
            "leader is already elected",
        )
    };
    let cluster = &broker.cluster;
    let image = cluster.image();
    let Some(state) = image.partition(topic, partition) else {
        return Err(ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("{topic}-{partition} does not exist"),
        ));
    };
    let live = |id| image.is_live(id);
    let leader = if unclean {
        if state.leader.is_some() {
            return Err(not_needed());
        }
        match elect_leader(state, live, true) {
            Election::Clean(id) | Election::Unclean(id) => id,
            Election::Offline => {
                return Err(ApiError::new(
                    ResponseError::EligibleLeadersNotAvailable,
                    "no live replica",
                ))
            }
        }
    } else {
        match preferred_leader_move(state, live) {
            Some(id) => id,
            None if state.leader.is_some() && state.leader == state.preferred_leader() => {
                return Err(not_needed())
            }
            None => {
                return Err(ApiError::new(
                    ResponseError::PreferredLeaderNotAvailable,
                    "the preferred replica is not live and in sync",
                ))
            }
        }
    };
    let isr = (unclean && !state.isr.contains(&leader)).then(|| vec![leader]);
    cluster
        .propose(MetadataCommand::ChangePartition(PartitionChange {
            topic: topic.to_string(),
            partition,
            leader: LeaderChange::To(leader),
            isr,
            expected_partition_epoch: Some(state.partition_epoch),
            expected_leader_epoch: None,
        }))
        .await
}
