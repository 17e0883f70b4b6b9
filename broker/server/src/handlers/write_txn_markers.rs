//! WriteTxnMarkers: the transaction coordinator ends a transaction in each
//! partition it wrote to. Every marker is appended to every partition this
//! broker leads first ([`Partition::append_marker`]); then the request
//! waits, as an acks=all produce does, for all of them together to be
//! fsynced (when `acks.all.fsync`) and replicated (the high watermark
//! passes them), bounded by Kafka's default request timeout. Errors are per
//! partition: NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
//! INVALID_PRODUCER_EPOCH (a marker older than the producer's epoch),
//! TRANSACTION_COORDINATOR_FENCED (older than the last marker's
//! coordinator), REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR.

use std::{sync::Arc, time::Duration};

use kafka_protocol::{
    messages::{
        write_txn_markers_response::{
            WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
        },
        WriteTxnMarkersRequest, WriteTxnMarkersResponse,
    },
    ResponseError,
};
use rivulet_storage::StorageError;
use tokio::time::Instant;

use super::Node;
use crate::{broker::now_ms, group::OFFSETS_TOPIC, partition::Partition};

/// How long markers may take to replicate: Kafka's `request.timeout.ms`
/// default, which its broker uses for this request.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One marker written to one partition, or why not.
type Written = Result<(Arc<Partition>, i64), ResponseError>;

/// Answers WriteTxnMarkers.
#[tracing::instrument(skip_all, fields(markers = req.markers.len()))]
pub async fn handle(broker: &Node, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let deadline = Instant::now() + REPLICATION_TIMEOUT;
    // Phase 1: append every marker to every partition.
    let written: Vec<Vec<Vec<Written>>> = req
        .markers
        .iter()
        .map(|m| {
            m.topics
                .iter()
                .map(|t| {
                    t.partition_indexes
                        .iter()
                        .map(|&index| {
                            let topic = broker
                                .topic(&t.name)
                                .ok_or(ResponseError::UnknownTopicOrPartition)?;
                            let partition = topic.leader_partition(index, -1)?;
                            let offset = partition
                                .append_marker(
                                    m.producer_id.0,
                                    m.producer_epoch,
                                    m.transaction_result,
                                    m.coordinator_epoch,
                                    now_ms(),
                                )
                                .map_err(|e| storage_error(&t.name, index, e))?;
                            Ok((partition, offset))
                        })
                        .collect()
                })
                .collect()
        })
        .collect();

    // Phase 2: wait for all of them to be durable and replicated.
    let waits = written.iter().flatten().flatten().map(|w| async move {
        match w {
            Ok((partition, offset)) => replicated(broker, partition, *offset, deadline).await,
            Err(e) => Err(*e),
        }
    });
    let mut outcomes = futures::future::join_all(waits).await.into_iter();

    let markers = req
        .markers
        .into_iter()
        .map(|m| {
            let topics = m
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partition_indexes
                        .iter()
                        .map(|&index| {
                            let outcome = outcomes.next().unwrap_or(Ok(()));
                            if outcome.is_ok() && *t.name == *OFFSETS_TOPIC {
                                // The marker is replicated: the producer's
                                // pending offsets on this partition become
                                // committed (or are dropped).
                                broker.groups.complete_txn(
                                    index,
                                    m.producer_id.0,
                                    m.transaction_result,
                                );
                            }
                            WritableTxnMarkerPartitionResult::default()
                                .with_partition_index(index)
                                .with_error_code(outcome.err().map_or(0, |e| e.code()))
                        })
                        .collect();
                    WritableTxnMarkerTopicResult::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics)
        })
        .collect();
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// Waits until the marker at `offset` is fsynced (when `acks.all.fsync`)
/// and on every in-sync replica, or the deadline passes.
async fn replicated(
    broker: &Node,
    partition: &Partition,
    offset: i64,
    deadline: Instant,
) -> Result<(), ResponseError> {
    if broker.config.acks_all_fsync {
        if let Err(e) = partition.flush_to(offset + 1).await {
            tracing::warn!(partition = partition.index, error = %e, "fsync of a marker failed");
            return Err(ResponseError::KafkaStorageError);
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if partition.wait_for_hw(offset + 1, left).await {
        return Ok(());
    }
    if partition.replica().is_leader() && !broker.is_stopping() {
        Err(ResponseError::RequestTimedOut)
    } else {
        Err(ResponseError::NotLeaderOrFollower)
    }
}

fn storage_error(topic: &str, partition: i32, e: StorageError) -> ResponseError {
    match e {
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
        e => {
            tracing::warn!(topic, partition, error = %e, "writing a transaction marker failed");
            ResponseError::KafkaStorageError
        }
    }
}
