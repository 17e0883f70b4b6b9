//! A deliberately small, synchronous Kafka client built straight on the
//! `kafka-protocol` codec, independent of the broker's own crates.
//!
//! Tests use it where a third-party client cannot do the job: to set up
//! topics without extra tools, to send exactly the bytes a test needs (a batch
//! with a bad CRC), and to check that a broker still answers after it was fed
//! garbage. Every socket operation has a timeout.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        create_topics_request::{CreatableTopic, CreatableTopicConfig},
        describe_configs_request::DescribeConfigsResource,
        fetch_request::{FetchPartition, FetchTopic},
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        metadata_request::MetadataRequestTopic,
        produce_request::{PartitionProduceData, TopicProduceData},
        produce_response::PartitionProduceResponse,
        ApiVersionsRequest, BrokerId, CreateTopicsRequest, DescribeConfigsRequest, FetchRequest,
        ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest, RequestHeader,
        ResponseHeader, TopicName,
    },
    protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes},
    records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    },
};

/// Socket read/write timeout: a broker that stops answering fails the test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest response frame accepted.
const MAX_FRAME: usize = 64 << 20;

/// ListOffsets timestamp meaning "the log start offset".
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp meaning "the log end offset".
pub const LATEST: i64 = -1;

/// DescribeConfigs source: a topic config set for this topic.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;

/// One topic config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    /// The value (none for sensitive or unset values).
    pub value: Option<String>,
    /// Where it comes from: [`SOURCE_DYNAMIC_TOPIC`], 5 for a default, ...
    pub source: i8,
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The key, or none.
    pub key: Option<Bytes>,
    /// The value, or none (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order; duplicates allowed.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time, ms since the epoch.
    pub timestamp: i64,
}

impl Msg {
    /// A record with a value, an optional key, no headers and the current time.
    pub fn new(key: Option<&str>, value: &str) -> Msg {
        Msg {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Vec::new(),
            timestamp: now_ms(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, key: &str, value: &str) -> Msg {
        self.headers.push((
            key.to_string(),
            Some(Bytes::copy_from_slice(value.as_bytes())),
        ));
        self
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("time fits i64")
}

/// Encodes `msgs` as one v2 record batch (base offset 0, no producer id).
pub fn encode_batch(msgs: &[Msg], compression: Compression) -> Bytes {
    let records: Vec<Record> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let i = i32::try_from(i).expect("batch index fits i32");
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                // Consecutive, so the encoder keeps all records in one batch;
                // the batch's base sequence comes out as -1 ("none").
                sequence: i - 1,
                timestamp: m.timestamp,
                key: m.key.clone(),
                value: m.value.clone(),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                    .collect(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// A topic name as the codec wants it.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// One connection to a broker, with the API versions it advertised.
pub struct KafkaConn {
    stream: TcpStream,
    next_correlation: i32,
    versions: BTreeMap<i16, (i16, i16)>,
}

impl KafkaConn {
    /// Connects and asks for the broker's API versions (ApiVersions v3).
    pub fn connect(addr: &str) -> Result<KafkaConn> {
        Self::connect_within(addr, IO_TIMEOUT)
    }

    /// [`KafkaConn::connect`] where connecting, and every read and write
    /// after it, gives up after `timeout`: for brokers behind a link that
    /// may silently drop packets.
    pub fn connect_within(addr: &str, timeout: Duration) -> Result<KafkaConn> {
        let target = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .with_context(|| format!("resolve {addr}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{addr} resolves to nothing"))?;
        let stream = TcpStream::connect_timeout(&target, timeout)
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut conn = KafkaConn {
            stream,
            next_correlation: 1,
            versions: BTreeMap::new(),
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("rivulet-tests"))
            .with_client_software_version(StrBytes::from_static_str("0.1.0"));
        let resp = conn.send(&req, 3).context("ApiVersions v3")?;
        ensure!(
            resp.error_code == 0,
            "ApiVersions failed with error code {}",
            resp.error_code
        );
        for k in resp.api_keys {
            conn.versions
                .insert(k.api_key, (k.min_version, k.max_version));
        }
        Ok(conn)
    }

    /// The (min, max) versions the broker advertised for each API key.
    pub fn api_versions(&self) -> &BTreeMap<i16, (i16, i16)> {
        &self.versions
    }

    /// The highest version of `R` that both sides support, at most `cap`.
    pub fn version_for<R: Request>(&self, cap: i16) -> Result<i16> {
        let (bmin, bmax) = *self
            .versions
            .get(&R::KEY)
            .ok_or_else(|| anyhow!("the broker does not advertise API key {}", R::KEY))?;
        let v = bmax.min(cap).min(R::VERSIONS.max);
        ensure!(
            v >= bmin && v >= R::VERSIONS.min,
            "no common version for API key {}: broker {bmin}..={bmax}, client {:?}, cap {cap}",
            R::KEY,
            R::VERSIONS
        );
        Ok(v)
    }

    /// Sends `req` at the best common version up to `cap` and returns the
    /// response.
    pub fn call<R: Request>(&mut self, req: &R, cap: i16) -> Result<R::Response> {
        let v = self.version_for::<R>(cap)?;
        self.send(req, v)
    }

    /// Sends `req` at exactly `version` and returns the decoded response.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("rivulet-tests")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        self.write_frame(&body)?;

        let mut frame = self.read_frame()?;
        let resp_header_version = <R::Response as HeaderVersion>::header_version(version);
        let header = ResponseHeader::decode(&mut frame, resp_header_version)?;
        ensure!(
            header.correlation_id == correlation,
            "correlation id {} in response, expected {correlation}",
            header.correlation_id
        );
        let resp = <R::Response as Decodable>::decode(&mut frame, version)
            .with_context(|| format!("decode response to API key {} v{version}", R::KEY))?;
        Ok(resp)
    }

    /// Writes one size-prefixed frame.
    pub fn write_frame(&mut self, body: &[u8]) -> Result<()> {
        let len = u32::try_from(body.len()).context("frame too large")?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(body);
        self.stream.write_all(&frame)?;
        Ok(())
    }

    /// Reads one size-prefixed frame.
    pub fn read_frame(&mut self) -> Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .context("read frame size")?;
        let len = i32::from_be_bytes(len);
        ensure!(
            len >= 0 && (len as usize) <= MAX_FRAME,
            "response frame size {len} out of range"
        );
        let mut buf = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut buf)
            .context("read frame body")?;
        Ok(Bytes::from(buf))
    }

    /// Metadata for all topics (`None`) or the named ones.
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> Result<MetadataResponse> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.call(&req, 12)
    }

    /// The number of partitions of `topic`, or `None` if the broker says it
    /// does not exist.
    pub fn partition_count(&mut self, topic: &str) -> Result<Option<usize>> {
        let md = self.metadata(Some(&[topic]))?;
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
            .ok_or_else(|| anyhow!("metadata response does not mention {topic}"))?;
        match t.error_code {
            0 => Ok(Some(t.partitions.len())),
            3 => Ok(None),
            code => bail!("metadata for {topic}: error code {code}"),
        }
    }

    /// Creates a topic (replication factor 1) and fails unless the broker
    /// reports success.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(10_000);
        let resp = self.call(&req, 7)?;
        let result = resp
            .topics
            .first()
            .ok_or_else(|| anyhow!("empty CreateTopics response"))?;
        ensure!(
            result.error_code == 0,
            "CreateTopics {name}: error code {} ({:?})",
            result.error_code,
            result.error_message
        );
        Ok(())
    }

    /// All configs of a topic (DescribeConfigs), by name.
    pub fn topic_configs(&mut self, topic: &str) -> Result<BTreeMap<String, ConfigValue>> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configuration_keys(None),
        ]);
        let resp = self.call(&req, 4)?;
        let result = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("empty DescribeConfigs response"))?;
        ensure!(
            result.error_code == 0,
            "DescribeConfigs {topic}: error code {} ({:?})",
            result.error_code,
            result.error_message
        );
        Ok(result
            .configs
            .into_iter()
            .map(|c| {
                let value = ConfigValue {
                    value: c.value.map(|v| v.to_string()),
                    source: c.config_source,
                };
                (c.name.to_string(), value)
            })
            .collect())
    }

    /// Produces one already-encoded batch and returns the partition's result.
    pub fn produce_batch(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: i16,
    ) -> Result<PartitionProduceResponse> {
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        // v12 is the last version that names topics (v13 uses topic ids).
        let resp = self.call(&req, 12)?;
        let part = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .find(|p| p.index == partition)
            .ok_or_else(|| anyhow!("produce response lacks partition {partition}"))?;
        Ok(part)
    }

    /// Produces `msgs` as one batch with acks=all and returns its base offset.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        msgs: &[Msg],
        compression: Compression,
    ) -> Result<i64> {
        let part = self.produce_batch(topic, partition, encode_batch(msgs, compression), -1)?;
        ensure!(
            part.error_code == 0,
            "produce to {topic}-{partition}: error code {} ({:?})",
            part.error_code,
            part.error_message
        );
        Ok(part.base_offset)
    }

    /// ListOffsets for one partition: [`EARLIEST`], [`LATEST`] or a timestamp.
    pub fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> Result<i64> {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        let resp = self.call(&req, 7)?;
        let part = resp
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| anyhow!("ListOffsets response lacks partition {partition}"))?;
        ensure!(
            part.error_code == 0,
            "ListOffsets {topic}-{partition}@{timestamp}: error code {}",
            part.error_code
        );
        Ok(part.offset)
    }

    /// Fetches every record of a partition from `from` up to the high
    /// watermark (bounded to 20 s) and returns them in offset order.
    pub fn fetch_all(&mut self, topic: &str, partition: i32, from: i64) -> Result<Vec<Record>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut out: Vec<Record> = Vec::new();
        let mut next = from;
        loop {
            let req = fetch_request(topic, partition, next, 0);
            // v12 is the last version that names topics (v13 uses topic ids).
            let resp = self.call(&req, 12)?;
            ensure!(
                resp.error_code == 0,
                "fetch: error code {}",
                resp.error_code
            );
            let part = resp
                .responses
                .into_iter()
                .flat_map(|t| t.partitions)
                .find(|p| p.partition_index == partition)
                .ok_or_else(|| anyhow!("fetch response lacks partition {partition}"))?;
            ensure!(
                part.error_code == 0,
                "fetch {topic}-{partition}@{next}: error code {}",
                part.error_code
            );
            if let Some(mut records) = part.records.filter(|r| !r.is_empty()) {
                // Move past whole batches by their headers too: compaction
                // can leave a batch whose last offsets hold no record.
                let after = rivulet_wire::client::next_fetch_offset(&records);
                let requested = next;
                for set in RecordBatchDecoder::decode_all(&mut records)
                    .context("decode fetched record batches")?
                {
                    for r in set.records {
                        if r.offset >= requested {
                            next = next.max(r.offset + 1);
                            if !r.control {
                                out.push(r);
                            }
                        }
                    }
                }
                if let Some(after) = after {
                    next = next.max(after);
                }
            }
            if next >= part.high_watermark {
                return Ok(out);
            }
            ensure!(
                Instant::now() < deadline,
                "fetch {topic}-{partition} stuck at offset {next} below high watermark {}",
                part.high_watermark
            );
        }
    }
}

/// A consumer's Fetch (v12 and below) of `topic`-`partition` from `offset`
/// with `isolation` (0: read_uncommitted, 1: read_committed), up to 16 MiB.
pub fn fetch_request(topic: &str, partition: i32, offset: i64, isolation: i8) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(200)
        .with_min_bytes(1)
        .with_max_bytes(32 << 20)
        .with_isolation_level(isolation)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(16 << 20)])])
}

/// Connects to `addr`, retrying for up to `timeout` (a broker that just
/// started may still be loading); panics with the last error.
pub fn connect_retry(addr: &str, timeout: Duration) -> KafkaConn {
    let deadline = Instant::now() + timeout;
    loop {
        match KafkaConn::connect(addr) {
            Ok(c) => return c,
            Err(e) if Instant::now() >= deadline => {
                panic!("cannot talk to the broker at {addr}: {e:#}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
