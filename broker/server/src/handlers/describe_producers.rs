//! DescribeProducers (KIP-664): the producers a partition's leader tracks,
//! with their epoch, last sequence and timestamp, the coordinator epoch of
//! their last marker and the first offset of their open transaction (-1
//! when none), in producer id order. Partitions led elsewhere answer
//! NOT_LEADER_OR_FOLLOWER, unknown ones UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::{
    messages::{
        describe_producers_response::{PartitionResponse, ProducerState, TopicResponse},
        DescribeProducersRequest, DescribeProducersResponse, ProducerId,
    },
    ResponseError,
};

use super::Node;

/// Answers DescribeProducers.
pub fn handle(broker: &Node, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topic(&t.name);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let resp = PartitionResponse::default().with_partition_index(index);
                    let served = match &topic {
                        Some(topic) => topic.leader_partition(index, -1),
                        None => Err(ResponseError::UnknownTopicOrPartition),
                    };
                    match served {
                        Ok(partition) => {
                            let log = partition.read_log();
                            let mut producers: Vec<ProducerState> = log
                                .producers()
                                .iter()
                                .map(|(id, entry)| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(id))
                                        .with_producer_epoch(i32::from(entry.epoch))
                                        .with_last_sequence(entry.last_sequence())
                                        .with_last_timestamp(entry.last_timestamp)
                                        .with_coordinator_epoch(entry.coordinator_epoch)
                                        .with_current_txn_start_offset(
                                            entry.current_txn_first_offset.unwrap_or(-1),
                                        )
                                })
                                .collect();
                            producers.sort_by_key(|p| p.producer_id.0);
                            resp.with_active_producers(producers)
                        }
                        Err(code) => resp.with_error_code(code.code()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
