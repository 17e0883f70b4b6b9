//! Partition data requests, routed to the partition leader: ListOffsets,
//! Produce, Fetch, DeleteRecords.
//!
//! Each call goes to the leader from the routing cache; if the broker says
//! the leader moved (or the connection to it fails), the cache entry is
//! dropped, metadata reloaded, and the call retried once. Produce and Fetch
//! from version 13 name topics by id, which needs the id from Metadata v10+;
//! without one the version is capped at 12.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic},
        fetch_request::{FetchPartition, FetchTopic},
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        produce_request::{PartitionProduceData, TopicProduceData},
        ApiKey, DeleteRecordsRequest, FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName,
    },
    protocol::{Message, StrBytes, VersionRange},
    records::Compression,
};
use uuid::Uuid;

use super::{
    records::{decode_records, encode_batch, next_fetch_offset},
    Client, OwnedRecord,
};
use crate::error::ClientError;

/// The highest Produce/Fetch version that still names topics by name.
const LAST_VERSION_WITH_TOPIC_NAMES: i16 = 12;

/// How long the broker may take to replicate a produce or delete.
const WRITE_TIMEOUT_MS: i32 = 30_000;

/// What one fetch returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchResult {
    /// Records at or after the requested offset, in offset order.
    pub records: Vec<OwnedRecord>,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The partition's log start offset (-1 if the broker did not say).
    pub log_start_offset: i64,
    /// Where the next fetch should start: one past the last whole batch
    /// returned (batch headers, not records: a compacted batch may have
    /// lost its last records, and the position must still move past them),
    /// or the requested offset if nothing was returned.
    pub next_offset: i64,
}

/// Runs `$call` (an expression evaluating to a `Result`), and if it fails in
/// a way that suggests stale routing, forgets `$topic` and runs it once more.
macro_rules! with_one_refresh {
    ($self:ident, $topic:expr, $call:expr) => {{
        let mut refreshed = false;
        loop {
            match $call {
                Err(e) if !refreshed && Client::is_stale(&e) => {
                    tracing::debug!(topic = %$topic, error = %e, "refreshing metadata and retrying");
                    refreshed = true;
                    $self.forget($topic);
                }
                other => break other,
            }
        }
    }};
}

/// Versions of `R` usable with the given topic id: capped at the last
/// name-based version when the id is unknown.
fn id_aware_range(full: VersionRange, topic_id: Uuid) -> VersionRange {
    if topic_id.is_nil() {
        VersionRange {
            min: full.min,
            max: full.max.min(LAST_VERSION_WITH_TOPIC_NAMES),
        }
    } else {
        full
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

impl Client {
    /// Looks up an offset: `timestamp` -2 for the earliest, -1 for the latest
    /// (log end), -3 for the record with the largest timestamp, otherwise the
    /// first offset whose timestamp is at or after it. Returns
    /// `(offset, timestamp)`; Kafka reports -1 for a timestamp it does not know.
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i64, i64), ClientError> {
        with_one_refresh!(
            self,
            topic,
            self.list_offsets_once(topic, partition, timestamp).await
        )
    }

    async fn list_offsets_once(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i64, i64), ClientError> {
        let (leader, _) = self.route(topic, partition).await?;
        let conn = self.connection(leader).await?;
        // The special timestamps arrived in later versions.
        let min = match timestamp {
            -3 => 7, // MAX_TIMESTAMP
            -4 => 8, // EARLIEST_LOCAL_TIMESTAMP
            -5 => 9, // LATEST_TIERED_TIMESTAMP
            _ => ListOffsetsRequest::VERSIONS.min,
        };
        let range = VersionRange {
            min,
            max: ListOffsetsRequest::VERSIONS.max,
        };
        let version = conn.negotiate(ApiKey::ListOffsets, range)?;
        let request = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
        let response = conn.send_with_version(request, version).await?;
        let p = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| missing("ListOffsets", topic, partition))?;
        ClientError::check(p.error_code, None)?;
        Ok((p.offset, p.timestamp))
    }

    /// Produces `records` as one batch and returns the base offset assigned
    /// to it (-1 with `acks = 0`, where the broker does not answer).
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[OwnedRecord],
        acks: i16,
        compression: Compression,
    ) -> Result<i64, ClientError> {
        let batch = encode_batch(records, compression)?;
        with_one_refresh!(
            self,
            topic,
            self.produce_once(topic, partition, &batch, acks).await
        )
    }

    async fn produce_once(
        &mut self,
        topic: &str,
        partition: i32,
        batch: &Bytes,
        acks: i16,
    ) -> Result<i64, ClientError> {
        let (leader, topic_id) = self.route(topic, partition).await?;
        let conn = self.connection(leader).await?;
        let range = id_aware_range(ProduceRequest::VERSIONS, topic_id);
        let version = conn.negotiate(ApiKey::Produce, range)?;
        let mut data =
            TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.clone()))]);
        if version > LAST_VERSION_WITH_TOPIC_NAMES {
            data.topic_id = topic_id;
        } else {
            data.name = topic_name(topic);
        }
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(WRITE_TIMEOUT_MS)
            .with_topic_data(vec![data]);
        if acks == 0 {
            conn.send_without_response(request, version).await?;
            return Ok(-1);
        }
        let response = conn.send_with_version(request, version).await?;
        let p = response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.index == partition)
            .ok_or_else(|| missing("Produce", topic, partition))?;
        ClientError::check(p.error_code, p.error_message.as_deref())?;
        Ok(p.base_offset)
    }

    /// Fetches from `offset`, waiting up to `max_wait_ms` for at least one
    /// byte, returning at most about `max_bytes` (a first batch larger than
    /// that is still returned whole, as in Kafka).
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<FetchResult, ClientError> {
        with_one_refresh!(
            self,
            topic,
            self.fetch_once(topic, partition, offset, max_bytes, max_wait_ms)
                .await
        )
    }

    async fn fetch_once(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<FetchResult, ClientError> {
        let (leader, topic_id) = self.route(topic, partition).await?;
        let conn = self.connection(leader).await?;
        let range = id_aware_range(FetchRequest::VERSIONS, topic_id);
        let version = conn.negotiate(ApiKey::Fetch, range)?;
        let mut fetch_topic =
            FetchTopic::default().with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max_bytes)]);
        if version > LAST_VERSION_WITH_TOPIC_NAMES {
            fetch_topic.topic_id = topic_id;
        } else {
            fetch_topic.topic = topic_name(topic);
        }
        let request = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![fetch_topic]);
        let wait = Duration::from_millis(max_wait_ms.max(0) as u64);
        let response = conn.send_with_timeout(request, version, Some(wait)).await?;
        ClientError::check(response.error_code, None)?;
        let p = response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| missing("Fetch", topic, partition))?;
        ClientError::check(p.error_code, None)?;
        let (records, next_offset) = match &p.records {
            Some(data) => (
                decode_records(data, offset)?,
                next_fetch_offset(data).map_or(offset, |next| next.max(offset)),
            ),
            None => (Vec::new(), offset),
        };
        Ok(FetchResult {
            records,
            high_watermark: p.high_watermark,
            log_start_offset: p.log_start_offset,
            next_offset,
        })
    }

    /// Deletes records before `before_offset` (-1: up to the high watermark)
    /// and returns the partition's new low watermark.
    pub async fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        before_offset: i64,
    ) -> Result<i64, ClientError> {
        with_one_refresh!(
            self,
            topic,
            self.delete_records_once(topic, partition, before_offset)
                .await
        )
    }

    async fn delete_records_once(
        &mut self,
        topic: &str,
        partition: i32,
        before_offset: i64,
    ) -> Result<i64, ClientError> {
        let (leader, _) = self.route(topic, partition).await?;
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(WRITE_TIMEOUT_MS)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(before_offset)])]);
        let response = self.send_to(leader, request).await?;
        let p = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| missing("DeleteRecords", topic, partition))?;
        ClientError::check(p.error_code, None)?;
        Ok(p.low_watermark)
    }
}

fn missing(api: &str, topic: &str, partition: i32) -> ClientError {
    ClientError::Protocol(format!(
        "{api} response has no entry for {topic}-{partition}"
    ))
}
