//! `rivulet bench`: produce or consume throughput and latency against any
//! Kafka-compatible broker.
//!
//! The producer side measures the broker, not the client: each task encodes
//! one batch of the requested shape up front and sends it again and again
//! (the broker assigns fresh offsets to every copy), with several requests
//! in flight across tasks. Figures go to stdout as one summary line each.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::{
    messages::{
        fetch_request::{FetchPartition, FetchTopic},
        produce_request::{PartitionProduceData, TopicProduceData},
        FetchRequest, ProduceRequest, TopicName,
    },
    protocol::StrBytes,
};
use rivulet_wire::{
    batch::BatchHeader,
    client::{encode_batch, next_fetch_offset, Client, Connection, OwnedRecord},
};

use super::{
    produce::{parse_acks, parse_compression},
    ConnectArgs,
};

/// `rivulet bench ...`
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// produce or consume.
    #[arg(value_parser = ["produce", "consume"])]
    mode: String,
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "rivulet-bench")]
    topic: String,
    /// Records to produce, or to consume at most.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per batch (a producer's batch.size / record size).
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    /// all, 1 or 0.
    #[arg(long, default_value = "1")]
    acks: String,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Concurrent producer connections (default: one per partition, at least 4).
    #[arg(long)]
    producers: Option<usize>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
}

/// Runs `rivulet bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.connect.bootstrap_server)
        .await
        .with_context(|| format!("connect to {}", args.connect.bootstrap_server))?;
    let meta = client.metadata(Some(vec![args.topic.clone()])).await?;
    let exists = meta
        .topics
        .iter()
        .any(|t| t.error_code == 0 && !t.partitions.is_empty());
    if !exists {
        client
            .create_topics(&args.topic, args.partitions, -1, Default::default())
            .await
            .with_context(|| format!("create topic `{}`", args.topic))?;
    }
    let meta = client.metadata(Some(vec![args.topic.clone()])).await?;
    let topic = meta.topics.first().context("no topic metadata")?;
    let partitions: Vec<(i32, String)> = topic
        .partitions
        .iter()
        .map(|p| {
            let addr = meta
                .brokers
                .iter()
                .find(|b| b.node_id == p.leader)
                .map(|b| b.addr())
                .unwrap_or_else(|| {
                    args.connect
                        .bootstrap_server
                        .split(',')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                });
            (p.partition, addr)
        })
        .collect();
    if partitions.is_empty() {
        bail!("topic `{}` has no partitions", args.topic);
    }
    match args.mode.as_str() {
        "produce" => produce(&args, partitions).await,
        _ => consume(&args, client, partitions).await,
    }
}

async fn produce(args: &BenchArgs, partitions: Vec<(i32, String)>) -> anyhow::Result<()> {
    let acks = parse_acks(&args.acks)?;
    let compression = parse_compression(&args.compression)?;
    let producers = args.producers.unwrap_or(partitions.len().max(4));
    let value = Bytes::from(vec![b'x'; args.record_size]);
    let records: Vec<OwnedRecord> = (0..args.batch_records)
        .map(|_| OwnedRecord {
            offset: 0,
            timestamp: crate::broker::now_ms(),
            key: None,
            value: Some(value.clone()),
            headers: vec![],
        })
        .collect();
    let batch = encode_batch(&records, compression)?;
    let batches_total = args.records.div_ceil(args.batch_records as u64);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..producers {
        let (partition, addr) = partitions[i % partitions.len()].clone();
        let topic = args.topic.clone();
        let batch = batch.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut conn = Connection::connect(&addr).await?;
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < batches_total {
                let req = ProduceRequest::default()
                    .with_acks(acks)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch.clone()))])]);
                let t = Instant::now();
                if acks == 0 {
                    let version = conn.version_for::<ProduceRequest>()?;
                    conn.send_without_response(req, version).await?;
                } else {
                    let resp = conn.send(req).await?;
                    for t in &resp.responses {
                        for p in &t.partition_responses {
                            if p.error_code != 0 {
                                bail!("produce failed: {}", super::code_name(p.error_code));
                            }
                        }
                    }
                }
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r??);
    }
    let elapsed = started.elapsed();
    let sent = batches_total * args.batch_records as u64;
    report(
        "produce",
        sent,
        sent * args.record_size as u64,
        elapsed,
        &mut latencies,
    );
    Ok(())
}

/// Reads every partition from its start like a consumer would, counting
/// records from the batch headers: the figure is the broker's, not the
/// client's record decoding (which `rivulet consume` measures instead).
async fn consume(
    args: &BenchArgs,
    mut client: Client,
    partitions: Vec<(i32, String)>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut total = 0u64;
    let mut bytes = 0u64;
    let mut latencies = Vec::new();
    for (p, addr) in &partitions {
        let (mut offset, _) = client.list_offsets(&args.topic, *p, -2).await?;
        let (end, _) = client.list_offsets(&args.topic, *p, -1).await?;
        let mut conn = Connection::connect(addr).await?;
        while offset < end && total < args.records {
            let request = FetchRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(8 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(args.topic.clone())))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(8 << 20)])]);
            let t = Instant::now();
            // v12: the last version that names topics instead of ids.
            let version = conn.negotiate(
                kafka_protocol::messages::ApiKey::Fetch,
                kafka_protocol::protocol::VersionRange { min: 4, max: 12 },
            )?;
            let response = conn.send_with_version(request, version).await?;
            latencies.push(t.elapsed());
            let data = response
                .responses
                .into_iter()
                .flat_map(|t| t.partitions)
                .find(|d| d.partition_index == *p)
                .and_then(|d| d.records)
                .unwrap_or_default();
            let Some(next) = next_fetch_offset(&data).filter(|&n| n > offset) else {
                break;
            };
            let mut at = 0;
            while let Ok(h) = BatchHeader::parse(&data[at..]) {
                if at + h.total_size() > data.len() {
                    break;
                }
                total += h.records_count.max(0) as u64;
                at += h.total_size();
            }
            bytes += at as u64;
            offset = next;
        }
    }
    report("consume", total, bytes, started.elapsed(), &mut latencies);
    Ok(())
}

fn report(what: &str, records: u64, bytes: u64, elapsed: Duration, latencies: &mut [Duration]) {
    latencies.sort();
    let pct = |q: f64| {
        if latencies.is_empty() {
            Duration::ZERO
        } else {
            latencies[((latencies.len() - 1) as f64 * q) as usize]
        }
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "{what}: {records} records in {:.2} s: {:.0} records/s, {:.1} MB/s; request latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        secs,
        records as f64 / secs,
        bytes as f64 / secs / 1e6,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3,
    );
}
