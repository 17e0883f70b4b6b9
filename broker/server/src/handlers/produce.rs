//! Produce: validate each partition's batches (v2 only, CRC-32C, sizes),
//! check idempotent sequences, append, and for acks=all wait for the group
//! commit and, in a cluster, for every in-sync replica (the high
//! watermark). Only the leader takes writes (NOT_LEADER_OR_FOLLOWER
//! elsewhere), and acks=all is refused with NOT_ENOUGH_REPLICAS while the
//! ISR is smaller than min.insync.replicas. acks=0 gets no response at
//! all, as in Kafka.

use kafka_protocol::{
    messages::{
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ProduceRequest, ProduceResponse,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_storage::{
    batch::{validate_batches, BatchError},
    StorageError,
};

use crate::{
    broker::{now_ms, Broker},
    partition::Role,
};

/// Answers Produce (`None` for acks=0).
pub async fn handle(
    broker: &Broker,
    req: ProduceRequest,
    _version: i16,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    if req.transactional_id.is_some() {
        return Some(refuse_all(
            req,
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported",
        ));
    }
    if !(-1..=1).contains(&acks) {
        return Some(refuse_all(
            req,
            ResponseError::InvalidRequiredAcks,
            "acks must be -1, 0 or 1",
        ));
    }
    let timeout = std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let topic = broker.topic(&t.name);
        let mut partition_responses = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let resp = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let Some(topic) = topic.as_ref() else {
                partition_responses
                    .push(resp.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            topic.metrics.produce_requests.inc();
            let hosted = topic.partition(p.index);
            let refusal = match &hosted {
                None if (0..topic.partition_count()).contains(&p.index) => {
                    Some(ResponseError::NotLeaderOrFollower)
                }
                None => Some(ResponseError::UnknownTopicOrPartition),
                Some(partition) => {
                    let replica = partition.replica();
                    if !replica.is_leader() {
                        Some(ResponseError::NotLeaderOrFollower)
                    } else if acks == -1
                        && replica.role == Role::Leader
                        && (replica.isr.len() as i64) < topic.config().min_insync_replicas
                    {
                        Some(ResponseError::NotEnoughReplicas)
                    } else {
                        None
                    }
                }
            };
            let (Some(partition), None) = (hosted, refusal) else {
                topic.metrics.failed_produce_requests.inc();
                let code = refusal.unwrap_or(ResponseError::UnknownTopicOrPartition);
                partition_responses.push(resp.with_error_code(code.code()));
                continue;
            };
            let records = p.records.unwrap_or_default();
            let outcome = validate(&records, topic.config().max_message_bytes).and_then(|count| {
                let info = partition
                    .append(&records, now_ms())
                    .map_err(storage_error)?;
                Ok((info, count))
            });
            match outcome {
                Ok((info, count)) => {
                    if !info.duplicate {
                        topic.metrics.bytes_in.inc_by(records.len() as u64);
                        topic.metrics.messages_in.inc_by(count);
                        // Wake long-polling fetches (followers too) now: an
                        // acks=all wait below needs them to fetch this.
                        broker.notify_data();
                    }
                    if acks == -1 && broker.config.acks_all_fsync {
                        if let Err(e) = partition.flush_to(info.last_offset + 1).await {
                            tracing::warn!(topic = %topic.name, partition = p.index, error = %e, "fsync failed");
                            topic.metrics.failed_produce_requests.inc();
                            partition_responses.push(
                                resp.with_error_code(ResponseError::KafkaStorageError.code()),
                            );
                            continue;
                        }
                    }
                    if acks == -1 {
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        if !partition.wait_for_hw(info.last_offset + 1, left).await {
                            topic.metrics.failed_produce_requests.inc();
                            let code = if partition.replica().is_leader() && !broker.is_stopping() {
                                ResponseError::RequestTimedOut
                            } else {
                                ResponseError::NotLeaderOrFollower
                            };
                            partition_responses.push(resp.with_error_code(code.code()));
                            continue;
                        }
                    }
                    let start = partition.read_log().log_start_offset();
                    partition_responses.push(
                        resp.with_base_offset(info.first_offset)
                            .with_log_start_offset(start),
                    );
                }
                Err((code, message)) => {
                    topic.metrics.failed_produce_requests.inc();
                    partition_responses.push(
                        resp.with_error_code(code.code())
                            .with_error_message(Some(StrBytes::from_string(message))),
                    );
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(partition_responses),
        );
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

/// Checks the batches; returns the number of records.
fn validate(records: &[u8], max_message_bytes: i64) -> Result<u64, (ResponseError, String)> {
    if records.is_empty() {
        return Err((ResponseError::InvalidRecord, "no record batches".into()));
    }
    let headers = validate_batches(records).map_err(|e| match e {
        BatchError::UnsupportedMagic(m) => (
            ResponseError::UnsupportedForMessageFormat,
            format!("record batch magic {m}: only v2 (magic 2) is supported"),
        ),
        other => (ResponseError::CorruptMessage, other.to_string()),
    })?;
    let mut count = 0u64;
    for h in &headers {
        if h.total_size() as i64 > max_message_bytes {
            return Err((
                ResponseError::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {max_message_bytes}",
                    h.total_size()
                ),
            ));
        }
        if h.is_transactional() || h.is_control() {
            return Err((
                ResponseError::InvalidRecord,
                "transactional batches are not supported".into(),
            ));
        }
        count += h.records_count as u64;
    }
    Ok(count)
}

fn storage_error(e: StorageError) -> (ResponseError, String) {
    let code = match &e {
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        _ => ResponseError::KafkaStorageError,
    };
    if code == ResponseError::KafkaStorageError {
        tracing::warn!(error = %e, "append failed");
    }
    (code, e.to_string())
}

fn refuse_all(req: ProduceRequest, code: ResponseError, message: &str) -> ProduceResponse {
    let responses = req
        .topic_data
        .into_iter()
        .map(|t| {
            let parts = t
                .partition_data
                .into_iter()
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(code.code())
                        .with_base_offset(-1)
                        .with_error_message(Some(StrBytes::from_string(message.to_string())))
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(parts)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
