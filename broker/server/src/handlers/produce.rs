//! Produce: validate each partition's batches (v2 only, CRC-32C, sizes,
//! keys on compacted topics), recompress them when the topic's
//! `compression.type` asks for another codec, check idempotent sequences
//! and append. Every partition of the request is appended first; only then
//! does an acks=all request wait, for all of them together, for the group
//! commit (fsync) and, in a cluster, for every in-sync replica (the high
//! watermark). Latency is thus the slowest partition's, not the sum, and
//! every partition gets the whole timeout.
//!
//! Only the leader takes writes (NOT_LEADER_OR_FOLLOWER elsewhere), and
//! acks=all is refused with NOT_ENOUGH_REPLICAS while the ISR is smaller
//! than min.insync.replicas. acks=0 gets no response at all, as in Kafka.
//!
//! Transactional batches (attributes bit 4) are taken from a request that
//! names its transactional id (whether that id may write is the
//! authorizer's and the transaction coordinator's business); the log opens
//! the producer's transaction and refuses a fenced (older) epoch with
//! INVALID_PRODUCER_EPOCH and a plain write inside an open transaction
//! with INVALID_TXN_STATE. Control batches are written only by the
//! transaction coordinator, through WriteTxnMarkers.

use std::sync::Arc;

use kafka_protocol::{
    messages::{
        produce_request::PartitionProduceData,
        produce_response::{
            BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
        },
        ProduceRequest, ProduceResponse,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_storage::{
    batch::{validate_batches, BatchError, BatchHeader},
    rewrite::{self, Recompressed},
    StorageError,
};
use tokio::time::Instant;

use super::{produce_pipeline::Pipeline, Node};
use crate::{
    broker::{now_ms, Topic},
    partition::{Partition, Role},
    topic_config::TopicConfig,
};

/// Why a partition's records were not appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The partition's error.
    pub code: ResponseError,
    /// `error_message` (v8+).
    pub message: Option<String>,
    /// KIP-467 `record_errors`: the index of each offending record in its
    /// batch, with why it was refused.
    pub record_errors: Vec<(i32, String)>,
}

impl Refusal {
    fn code(code: ResponseError) -> Self {
        Refusal {
            code,
            message: None,
            record_errors: Vec::new(),
        }
    }

    fn with_message(code: ResponseError, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: Some(message.into()),
            record_errors: Vec::new(),
        }
    }
}

/// A partition appended to, waiting for its acknowledgement.
struct Appended {
    topic: Arc<Topic>,
    partition: Arc<Partition>,
    first_offset: i64,
    /// One past the last offset written: what must be durable and replicated.
    end: i64,
}

/// Answers Produce (`None` for acks=0).
#[cfg(test)]
pub async fn handle(broker: &Node, req: ProduceRequest, version: i16) -> Option<ProduceResponse> {
    handle_in(broker, req, version, &Pipeline::default()).await
}

/// [`handle`] on a connection that remembers the idempotent batches it
/// refused (see [`Pipeline`]).
pub async fn handle_in(
    broker: &Node,
    req: ProduceRequest,
    version: i16,
    pipeline: &Pipeline,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let transactional = req
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .any(|p| p.records.as_deref().is_some_and(has_transactional_batch));
    if transactional && req.transactional_id.is_none() {
        // As Kafka: transactional records need the id they are written under.
        return Some(refuse_all(
            req,
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactional records without a transactional id",
        ));
    }
    if !(-1..=1).contains(&acks) {
        return Some(refuse_all(
            req,
            ResponseError::InvalidRequiredAcks,
            "acks must be -1, 0 or 1",
        ));
    }
    let deadline = Instant::now() + std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    // KIP-890 part 1: a transaction's first batch here needs its coordinator's
    // word; part 2 (v12): the coordinator adds the partition, always.
    let verify =
        transactional && (version >= 12 || broker.config.transactions.partition_verification);
    let refused = match (&req.transactional_id, verify) {
        (Some(id), true) => {
            super::produce_verify::refused_partitions(broker, id, &req, version).await
        }
        _ => Default::default(),
    };

    // Phase 1: append every partition of the request.
    let mut names = Vec::with_capacity(req.topic_data.len());
    let mut outcomes: Vec<Vec<(i32, Result<Appended, Refusal>)>> = Vec::new();
    for t in req.topic_data {
        let topic = broker.topic(&t.name);
        let parts = t
            .partition_data
            .into_iter()
            .map(|p| match refused.get(&(t.name.to_string(), p.index)) {
                Some(e) => (p.index, Err(Refusal::code(*e))),
                None => (
                    p.index,
                    append_in_order(pipeline, &t.name, topic.as_ref(), acks, p),
                ),
            })
            .collect();
        names.push(t.name);
        outcomes.push(parts);
    }
    if acks == 0 {
        return None;
    }

    // Phase 2: wait for durability and replication of all of them together.
    let waits = outcomes.iter().flatten().map(|(_, outcome)| async move {
        match outcome {
            Ok(appended) if acks == -1 => acknowledged(broker, appended, deadline).await,
            Ok(_) => Ok(()),
            Err(_) => Ok(()),
        }
    });
    let mut acked = futures::future::join_all(waits).await.into_iter();

    let responses = names
        .into_iter()
        .zip(outcomes)
        .map(|(name, parts)| {
            let partition_responses = parts
                .into_iter()
                .map(|(index, outcome)| {
                    let wait = acked.next().unwrap_or(Ok(()));
                    respond(index, outcome.and_then(|a| wait.map(|()| a)))
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// [`append`], unless the records follow a batch of their producer this
/// connection refused without writing: those share its refusal, so the
/// client retries them in order (see [`Pipeline`]).
fn append_in_order(
    pipeline: &Pipeline,
    name: &str,
    topic: Option<&Arc<Topic>>,
    acks: i16,
    p: PartitionProduceData,
) -> Result<Appended, Refusal> {
    let (index, records) = (p.index, p.records.clone().unwrap_or_default());
    let leader_epoch = || {
        topic
            .and_then(|t| t.partition(index))
            .map_or(-1, |p| p.replica().leader_epoch)
    };
    if let Some(code) = pipeline.check(name, index, leader_epoch, &records) {
        return Err(Refusal::with_message(
            code,
            "an earlier batch of this producer was refused on this connection; retry it first"
                .to_string(),
        ));
    }
    let outcome = append(topic, acks, p);
    if let Err(refusal) = &outcome {
        pipeline.refused(name, index, leader_epoch(), &records, refusal.code);
    }
    outcome
}

/// Checks, validates and appends one partition's records.
fn append(
    topic: Option<&Arc<Topic>>,
    acks: i16,
    p: PartitionProduceData,
) -> Result<Appended, Refusal> {
    let Some(topic) = topic else {
        return Err(Refusal::code(ResponseError::UnknownTopicOrPartition));
    };
    topic.metrics.produce_requests.inc();
    let outcome = (|| {
        let partition = topic.leader_partition(p.index, -1).map_err(Refusal::code)?;
        let config = topic.config();
        if acks == -1 {
            let replica = partition.replica();
            let min_isr = topic.min_insync_replicas(replica.replicas.len());
            if replica.role == Role::Leader && (replica.isr.len() as i64) < min_isr {
                return Err(Refusal::with_message(
                    ResponseError::NotEnoughReplicas,
                    format!(
                        "{} in-sync replicas, min.insync.replicas is {min_isr}",
                        replica.isr.len()
                    ),
                ));
            }
        }
        let records = p.records.unwrap_or_default();
        let (count, recompressed) = check_records(&records, &config, &topic.name, p.index)?;
        let info = match recompressed {
            Recompressed::Unchanged => partition.append(&records, now_ms()),
            Recompressed::Rewritten(owned) => partition.append_owned(owned, now_ms()),
        }
        .map_err(storage_error)?;
        // The append woke this partition's parked fetches (followers too:
        // an acks=all wait needs them to fetch this).
        if !info.duplicate {
            topic.metrics.bytes_in.inc_by(records.len() as u64);
            topic.metrics.messages_in.inc_by(count);
        }
        Ok(Appended {
            topic: topic.clone(),
            partition,
            first_offset: info.first_offset,
            end: info.last_offset + 1,
        })
    })();
    if outcome.is_err() {
        topic.metrics.failed_produce_requests.inc();
    }
    outcome
}

/// Waits until an acks=all write is fsynced (when `acks.all.fsync`) and on
/// every in-sync replica, or the deadline passes.
async fn acknowledged(broker: &Node, a: &Appended, deadline: Instant) -> Result<(), Refusal> {
    let failed = |code| {
        a.topic.metrics.failed_produce_requests.inc();
        Err(Refusal::code(code))
    };
    if broker.config.acks_all_fsync {
        if let Err(e) = a.partition.flush_to(a.end).await {
            tracing::warn!(topic = %a.topic.name, partition = a.partition.index, error = %e, "fsync failed");
            return failed(ResponseError::KafkaStorageError);
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let waiting = Instant::now();
    // A leader whose lease runs out cannot vouch for the write any more.
    let replicated = tokio::select! {
        replicated = a.partition.wait_for_hw(a.end, left) => replicated,
        () = broker.lease.lost() => false,
    };
    crate::metrics::add_remote_wait(waiting.elapsed());
    if !replicated {
        let leads = a.partition.replica().is_leader() && broker.lease.held();
        let code = if leads && !broker.is_stopping() {
            ResponseError::RequestTimedOut
        } else {
            ResponseError::NotLeaderOrFollower
        };
        return failed(code);
    }
    Ok(())
}

/// The response for one partition.
fn respond(index: i32, outcome: Result<Appended, Refusal>) -> PartitionProduceResponse {
    let resp = PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    match outcome {
        Ok(a) => {
            let start = a.partition.read_log().log_start_offset();
            resp.with_base_offset(a.first_offset)
                .with_log_start_offset(start)
        }
        Err(r) => {
            let record_errors = r
                .record_errors
                .into_iter()
                .map(|(i, m)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(i)
                        .with_batch_index_error_message(Some(StrBytes::from_string(m)))
                })
                .collect();
            resp.with_error_code(r.code.code())
                .with_error_message(r.message.map(StrBytes::from_string))
                .with_record_errors(record_errors)
        }
    }
}

/// Everything checked in one partition's records before the log sees
/// them: the batches, keys on a compacted topic, and the topic's
/// `compression.type`. Returns the record count and what to store. Pure,
/// so the fuzz targets drive exactly this.
pub(crate) fn check_records(
    records: &[u8],
    config: &TopicConfig,
    topic: &str,
    partition: i32,
) -> Result<(u64, Recompressed), Refusal> {
    let count = validate(records, config)?;
    if config.cleanup_compact {
        check_keys(records, topic, partition)?;
    }
    Ok((count, recompress(records, config)?))
}

/// Checks the batches; returns the number of records.
fn validate(records: &[u8], config: &TopicConfig) -> Result<u64, Refusal> {
    if records.is_empty() {
        return Err(Refusal::with_message(
            ResponseError::InvalidRecord,
            "no record batches",
        ));
    }
    let headers = validate_batches(records).map_err(|e| match e {
        BatchError::UnsupportedMagic(m) => Refusal::with_message(
            ResponseError::UnsupportedForMessageFormat,
            format!("record batch magic {m}: only v2 (magic 2) is supported"),
        ),
        other => Refusal::with_message(ResponseError::CorruptMessage, other.to_string()),
    })?;
    let mut count = 0u64;
    for h in &headers {
        if h.total_size() as i64 > config.max_message_bytes {
            return Err(Refusal::with_message(
                ResponseError::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {}",
                    h.total_size(),
                    config.max_message_bytes
                ),
            ));
        }
        if h.is_control() {
            return Err(Refusal::with_message(
                ResponseError::InvalidRecord,
                "control batches are written by the transaction coordinator only",
            ));
        }
        if h.is_transactional() && h.producer_id < 0 {
            return Err(Refusal::with_message(
                ResponseError::InvalidRecord,
                "a transactional batch needs a producer id",
            ));
        }
        count += h.records_count as u64;
    }
    Ok(count)
}

/// Compacted topics keep the latest record per key, so a record without
/// one is refused (KIP-467: INVALID_RECORD with the offending records).
fn check_keys(records: &[u8], topic: &str, partition: i32) -> Result<(), Refusal> {
    match rewrite::keyless_records(records, topic, partition) {
        Ok(None) => Ok(()),
        Ok(Some(keyless)) => Err(Refusal {
            code: ResponseError::InvalidRecord,
            message: Some(keyless.summary()),
            record_errors: keyless
                .batch_indices
                .iter()
                .map(|&i| (i, keyless.message.clone()))
                .collect(),
        }),
        Err(e) => Err(Refusal::with_message(
            ResponseError::CorruptMessage,
            e.to_string(),
        )),
    }
}

/// The topic's `compression.type` applied: batches in another codec are
/// recompressed (batches that match stay as they are, zero-copy). The
/// result is checked against `max.message.bytes` again, as Kafka does.
fn recompress(records: &[u8], config: &TopicConfig) -> Result<Recompressed, Refusal> {
    let out = rewrite::recompress(records, config.compression)
        .map_err(|e| Refusal::with_message(ResponseError::CorruptMessage, e.to_string()))?;
    if let Recompressed::Rewritten(bytes) = &out {
        validate(bytes, config)?;
    }
    Ok(out)
}

fn storage_error(e: StorageError) -> Refusal {
    let code = match &e {
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        _ => ResponseError::KafkaStorageError,
    };
    // A full disk and a failed log directory are logged where they are
    // detected (`log_dir.rs`), once, not for every refused request.
    let reported = e.is_disk_full() || matches!(e, StorageError::LogDirOffline { .. });
    if code == ResponseError::KafkaStorageError && !reported {
        tracing::warn!(error = %e, "append failed");
    }
    Refusal::with_message(code, e.to_string())
}

/// Whether any batch header in `records` is transactional (a malformed
/// buffer ends the walk; validation refuses it later).
fn has_transactional_batch(records: &[u8]) -> bool {
    let mut at = 0;
    while let Some(Ok(header)) = records.get(at..).map(BatchHeader::parse) {
        if header.is_transactional() {
            return true;
        }
        at += header.total_size().max(BatchHeader::SIZE);
    }
    false
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
