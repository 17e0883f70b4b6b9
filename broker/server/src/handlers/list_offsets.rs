//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, v7+), or the
//! first offset whose record timestamp is at or after a given time, found
//! through the time index and then refined to the exact record. With
//! isolation_level 1 (read_committed) latest is the last stable offset.

use kafka_protocol::{
    messages::{
        list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
        ListOffsetsRequest, ListOffsetsResponse,
    },
    records::RecordBatchDecoder,
    ResponseError,
};

use super::Node;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// Internal target: latest for read_committed (never sent by clients, who
/// send LATEST with isolation_level 1).
const LAST_STABLE: i64 = i64::MIN;

/// Answers ListOffsets.
pub fn handle(broker: &Node, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let read_committed = req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topic(&t.name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let served = match &topic {
                        Some(topic) => {
                            topic.leader_partition(p.partition_index, p.current_leader_epoch)
                        }
                        None => Err(ResponseError::UnknownTopicOrPartition),
                    };
                    let partition = match served {
                        Ok(partition) => partition,
                        Err(code) => {
                            return resp
                                .with_error_code(code.code())
                                .with_offset(-1)
                                .with_timestamp(-1)
                        }
                    };
                    let hw = partition.high_watermark();
                    let epoch = {
                        let replica = partition.replica();
                        // KIP-207: a new leader does not know the high
                        // watermark until it reaches its epoch's start.
                        if replica.role == crate::partition::Role::Leader
                            && hw < replica.epoch_start_offset
                        {
                            return resp
                                .with_error_code(ResponseError::OffsetNotAvailable.code())
                                .with_offset(-1)
                                .with_timestamp(-1);
                        }
                        replica.leader_epoch
                    };
                    if p.timestamp == MAX_TIMESTAMP && version < 7 {
                        return resp.with_error_code(ResponseError::UnsupportedVersion.code());
                    }
                    let target = match p.timestamp {
                        LATEST if read_committed => LAST_STABLE,
                        other => other,
                    };
                    match lookup(&partition, target) {
                        // leader_epoch exists from v4 on; the encoder refuses it earlier.
                        Ok((offset, ts)) if version >= 4 => resp
                            .with_offset(offset)
                            .with_timestamp(ts)
                            .with_leader_epoch(epoch),
                        Ok((offset, ts)) => resp.with_offset(offset).with_timestamp(ts),
                        Err(code) => resp
                            .with_error_code(code.code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp) for one partition and target.
fn lookup(partition: &Partition, target: i64) -> Result<(i64, i64), ResponseError> {
    // Consumers never see past the high watermark.
    let hw = partition.high_watermark();
    let log = partition.read_log();
    match target {
        LATEST => Ok((hw.min(log.log_end_offset()), -1)),
        LAST_STABLE => {
            drop(log);
            Ok((partition.last_stable_offset(), -1))
        }
        EARLIEST => Ok((log.log_start_offset(), -1)),
        MAX_TIMESTAMP => {
            let Some((ts, batch_offset)) = log.max_timestamp() else {
                return Ok((-1, -1));
            };
            // The log knows the batch; the record is found by decoding it.
            let batch = log
                .read(batch_offset, 1, hw, true)
                .map_err(|_| ResponseError::KafkaStorageError)?;
            let mut buf = batch.bytes;
            let exact = RecordBatchDecoder::decode(&mut buf).ok().and_then(|set| {
                set.records
                    .iter()
                    .find(|r| r.timestamp == ts)
                    .map(|r| r.offset)
            });
            Ok((exact.unwrap_or(batch_offset), ts))
        }
        ts if ts >= 0 => {
            let batch = log
                .batch_for_timestamp(ts)
                .map_err(|_| ResponseError::KafkaStorageError)?;
            let Some(batch) = batch else {
                return Ok((-1, -1));
            };
            Ok(first_at_or_after(batch, ts, log.log_start_offset()))
        }
        _ => Err(ResponseError::InvalidRequest),
    }
}

/// The first record of `batch` with timestamp >= `ts`. Decoding handles
/// compressed batches; if the batch cannot be decoded the batch's base
/// offset is a safe answer (a consumer starting there sees every record at
/// or after `ts`).
fn first_at_or_after(batch: bytes::Bytes, ts: i64, log_start: i64) -> (i64, i64) {
    let header = rivulet_storage::batch::BatchHeader::parse(&batch).ok();
    let mut buf = batch;
    if let Ok(set) = RecordBatchDecoder::decode(&mut buf) {
        if let Some(r) = set
            .records
            .iter()
            .find(|r| r.timestamp >= ts && r.offset >= log_start)
        {
            return (r.offset, r.timestamp);
        }
    }
    match header {
        Some(h) => (h.base_offset.max(log_start), h.max_timestamp),
        None => (-1, -1),
    }
}
