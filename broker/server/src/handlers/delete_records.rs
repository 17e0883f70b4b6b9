//! DeleteRecords: advance a partition's log start offset; whole segments
//! below it are removed and consumers below it get OFFSET_OUT_OF_RANGE.

use kafka_protocol::{
    messages::{
        delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
        DeleteRecordsRequest, DeleteRecordsResponse,
    },
    ResponseError,
};

use super::Node;

/// Answers DeleteRecords.
pub fn handle(broker: &Node, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topic(&t.name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    let served = match &topic {
                        Some(topic) => topic.leader_partition(p.partition_index, -1),
                        None => Err(ResponseError::UnknownTopicOrPartition),
                    };
                    let partition = match served {
                        Ok(partition) => partition,
                        Err(code) => return result.with_low_watermark(-1).with_error_code(code.code()),
                    };
                    // Followers learn the new log start from their fetches.
                    let hw = partition.high_watermark();
                    let mut log = partition.write_log();
                    let hw = hw.min(log.log_end_offset());
                    // -1 means "up to the high watermark".
                    let target = if p.offset == -1 { hw } else { p.offset };
                    if target < 0 || target > hw {
                        return result.with_low_watermark(-1).with_error_code(ResponseError::OffsetOutOfRange.code());
                    }
                    match log.delete_records_before(target) {
                        Ok(low) => {
                            partition.update_gauges(&log);
                            result.with_low_watermark(low)
                        }
                        Err(e) => {
                            tracing::warn!(topic = %t.name.0, partition = p.partition_index, error = %e, "delete records");
                            result.with_low_watermark(-1).with_error_code(ResponseError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
