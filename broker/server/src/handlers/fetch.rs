//! Fetch: stored batches straight from the log (no decompression, no
//! re-encoding), bounded by the request's byte limits, with long polling:
//! when less than `min_bytes` is available the request waits up to
//! `max_wait_ms` and is woken by the next append.
//!
//! Fetch sessions (KIP-227) are not kept: every answer carries session id 0,
//! which clients take as "send full requests", as Kafka allows.
//!
//! Only a partition's leader serves fetches. Consumers read up to the high
//! watermark, or with isolation_level 1 (read_committed) up to the last
//! stable offset, and then also get the aborted transactions overlapping
//! what they read; followers (a replica id >= 0) read up to the log end,
//! and their fetch offset tells the leader how far they have replicated.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData},
        FetchRequest, FetchResponse, ProducerId, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_storage::{txn::AbortedTxn, ReadResult, StorageError};
use tokio::time::Instant;

use super::Node;
use crate::broker::Topic;

/// Longest a fetch may wait, whatever the client asks: keeps a connection's
/// in-order pipeline from stalling on a mistaken value.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// Answers Fetch.
pub async fn handle(broker: &Node, req: FetchRequest, version: i16) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    // Topology changes (a new image, shutdown) wake every parked fetch;
    // data wakes only the fetches of the partition it was written to.
    let mut topology = broker.subscribe_data();
    let topics = resolve(broker, &req, version);
    let mut wakers = fetch_wakers(&req, &topics);
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let follower = (replica_id >= 0).then_some(replica_id);
    if let Some(theirs) = req.cluster_id.as_deref() {
        if follower.is_some() && *theirs != *broker.cluster.cluster_id {
            tracing::warn!(replica_id, cluster_id = %theirs, "refusing a follower of another cluster");
            return FetchResponse::default()
                .with_error_code(ResponseError::InconsistentClusterId.code());
        }
    }
    if follower.is_none() {
        for topic in topics.iter().flatten() {
            topic.metrics.fetch_requests.inc();
        }
    }
    if let Some(id) = follower {
        record_follower(broker, &req, &topics, id);
    }
    loop {
        topology.borrow_and_update();
        for w in &mut wakers {
            w.borrow_and_update();
        }
        let (responses, total, had_error) = collect(&req, &topics, version, follower);
        let done =
            total >= min_bytes || had_error || Instant::now() >= deadline || broker.is_stopping();
        let timed_out = !done && {
            let parked = Instant::now();
            let woke = tokio::time::timeout_at(deadline, woken(&mut topology, &mut wakers)).await;
            crate::metrics::add_remote_wait(parked.elapsed());
            woke.is_err()
        };
        if done || timed_out {
            let (responses, _, _) = if done {
                (responses, total, had_error)
            } else {
                collect(&req, &topics, version, follower)
            };
            if follower.is_none() {
                count_bytes_out(&responses, &topics);
            }
            return FetchResponse::default()
                .with_responses(responses)
                .with_session_id(0);
        }
    }
}

/// A wake-up receiver for every requested partition hosted here.
fn fetch_wakers(
    req: &FetchRequest,
    topics: &[Option<std::sync::Arc<Topic>>],
) -> Vec<tokio::sync::watch::Receiver<u64>> {
    req.topics
        .iter()
        .zip(topics)
        .filter_map(|(t, topic)| topic.as_ref().map(|topic| (t, topic)))
        .flat_map(|(t, topic)| {
            t.partitions
                .iter()
                .filter_map(|p| topic.partition(p.partition))
                .map(|p| p.subscribe_fetches())
        })
        .collect()
}

/// Resolves when the topology or any requested partition changed. A
/// partition whose sender is gone (deleted, moved away) is dropped from the
/// list so it cannot spin the loop; the topology change that removed it
/// has woken this fetch already.
async fn woken(
    topology: &mut tokio::sync::watch::Receiver<u64>,
    wakers: &mut Vec<tokio::sync::watch::Receiver<u64>>,
) {
    loop {
        if wakers.is_empty() {
            // select_all needs at least one future.
            let _ = topology.changed().await;
            return;
        }
        let closed = {
            let any = futures::future::select_all(wakers.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = topology.changed() => return,
                (result, index, _) = any => match result {
                    Ok(()) => return,
                    Err(_) => index,
                },
            }
        };
        wakers.swap_remove(closed);
    }
}

/// The topic each request entry names (by id from v13 on).
fn resolve(broker: &Node, req: &FetchRequest, version: i16) -> Vec<Option<std::sync::Arc<Topic>>> {
    req.topics
        .iter()
        .map(|t| {
            if version >= 13 {
                broker.topic_by_id(t.topic_id)
            } else {
                broker.topic(&t.topic)
            }
        })
        .collect()
}

/// A follower's fetch offsets are its replication progress: record them
/// on each partition it fetches (moving the high watermark) and let it
/// back into the ISR once it has caught up.
fn record_follower(
    broker: &Node,
    req: &FetchRequest,
    topics: &[Option<std::sync::Arc<Topic>>],
    follower: i32,
) {
    let now = std::time::Instant::now();
    for (t, topic) in req.topics.iter().zip(topics) {
        let Some(topic) = topic else { continue };
        for p in &t.partitions {
            let Some(partition) = topic.partition(p.partition) else {
                continue;
            };
            // A high watermark that moved wakes its partition's parked fetches.
            let (eligible, _) = partition.record_follower_fetch(follower, p.fetch_offset, now);
            if eligible {
                crate::cluster::replication::expand_isr(
                    &broker.cluster,
                    &topic.name,
                    &partition,
                    follower,
                );
            }
        }
    }
}

/// One pass over the requested partitions: (responses, bytes, any error).
fn collect(
    req: &FetchRequest,
    topics: &[Option<std::sync::Arc<Topic>>],
    version: i16,
    follower: Option<i32>,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut remaining = req.max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut had_error = false;
    let mut responses = Vec::with_capacity(req.topics.len());
    let read_committed = follower.is_none() && req.isolation_level == 1;
    for (t, topic) in req.topics.iter().zip(topics) {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let resp = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1));
            let served = match topic {
                Some(topic) => topic.leader_partition(p.partition, p.current_leader_epoch),
                None if version >= 13 => Err(ResponseError::UnknownTopicId),
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
            let partition = match served {
                Ok(partition) => partition,
                Err(code) => {
                    had_error = true;
                    partitions.push(resp.with_error_code(code.code()));
                    continue;
                }
            };
            let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
            // KIP-74: the first batch of the response is returned even if it
            // is larger than the limits, so a large batch can never wedge a consumer.
            let with_lso = |read| (read, None, partition.last_stable_offset());
            let read: Result<Served, StorageError> = match follower {
                Some(_) => partition.read_replica(p.fetch_offset, limit).map(with_lso),
                None if read_committed => partition
                    .read_committed(p.fetch_offset, limit, total == 0)
                    .map(|(read, aborted, lso)| (read, Some(aborted), lso)),
                None => partition
                    .read(p.fetch_offset, limit, total == 0)
                    .map(with_lso),
            };
            match read {
                Ok((read, aborted, lso)) => {
                    let hw = partition.high_watermark();
                    total += read.bytes.len();
                    remaining = remaining.saturating_sub(read.bytes.len());
                    let aborted = aborted.map(|list| {
                        list.iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect()
                    });
                    partitions.push(
                        resp.with_high_watermark(hw)
                            .with_last_stable_offset(lso)
                            .with_log_start_offset(read.log_start_offset)
                            .with_aborted_transactions(aborted)
                            .with_records(Some(read.bytes)),
                    );
                }
                Err(StorageError::OffsetOutOfRange { start, end, .. }) => {
                    had_error = true;
                    partitions.push(
                        resp.with_error_code(ResponseError::OffsetOutOfRange.code())
                            .with_high_watermark(end)
                            .with_last_stable_offset(end)
                            .with_log_start_offset(start)
                            .with_records(Some(Bytes::new())),
                    );
                }
                Err(e) => {
                    had_error = true;
                    tracing::warn!(partition = p.partition, error = %e, "fetch read failed");
                    partitions.push(resp.with_error_code(ResponseError::KafkaStorageError.code()));
                }
            }
        }
        let mut entry = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            entry = entry.with_topic_id(t.topic_id);
        } else {
            entry = entry.with_topic(TopicName(StrBytes::from_string(t.topic.to_string())));
        }
        responses.push(entry);
    }
    (responses, total, had_error)
}

/// A read with its aborted transactions (read_committed only) and the
/// last stable offset to report.
type Served = (ReadResult, Option<Vec<AbortedTxn>>, i64);

fn count_bytes_out(responses: &[FetchableTopicResponse], topics: &[Option<std::sync::Arc<Topic>>]) {
    for (resp, topic) in responses.iter().zip(topics) {
        let Some(topic) = topic else { continue };
        let bytes: usize = resp
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        topic.metrics.bytes_out.inc_by(bytes as u64);
        if resp.partitions.iter().any(|p| p.error_code != 0) {
            topic.metrics.failed_fetch_requests.inc();
        }
    }
}
