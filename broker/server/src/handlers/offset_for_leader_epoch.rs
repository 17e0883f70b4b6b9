//! OffsetForLeaderEpoch: where a leader epoch ends in the leader's log.
//! Followers ask it before fetching under a new leader, to cut a tail they
//! wrote in an epoch the new leader does not share; consumers ask it after
//! a leader change to detect truncation (KIP-320).

use kafka_protocol::{
    messages::{
        offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult},
        OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    },
    ResponseError,
};

use super::Node;

/// Answers OffsetForLeaderEpoch.
pub fn handle(broker: &Node, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topic(&t.topic);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let served = match &topic {
                        Some(topic) => topic.leader_partition(p.partition, p.current_leader_epoch),
                        None => Err(ResponseError::UnknownTopicOrPartition),
                    };
                    let partition = match served {
                        Ok(partition) => partition,
                        Err(code) => return resp.with_error_code(code.code()),
                    };
                    let found = partition.read_log().end_offset_for_epoch(p.leader_epoch);
                    match found {
                        Some((epoch, end)) => resp.with_leader_epoch(epoch).with_end_offset(end),
                        None => resp,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
