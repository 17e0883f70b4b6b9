//! `rivulet produce`: one record per stdin line, like the console producer.

use std::collections::BTreeMap;

use anyhow::bail;
use bytes::Bytes;
use rivulet_wire::client::OwnedRecord;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::ConnectArgs;

/// `rivulet produce ...`
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// Partition to write to (default: by key hash, round robin without keys).
    #[arg(long)]
    partition: Option<i32>,
    /// Split each line into key and value at the first SEP.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Header for every record (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// all (-1), 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Records per batch sent.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
}

/// Parses `all|-1|1|0`.
pub fn parse_acks(s: &str) -> anyhow::Result<i16> {
    Ok(match s {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        _ => bail!("--acks must be all, 1 or 0, not `{s}`"),
    })
}

/// Parses a compression codec name.
pub fn parse_compression(s: &str) -> anyhow::Result<kafka_protocol::records::Compression> {
    use kafka_protocol::records::Compression;
    Ok(match s {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => bail!("--compression must be none, gzip, snappy, lz4 or zstd, not `{s}`"),
    })
}

/// Picks a partition for a key like Kafka's default partitioner (murmur2).
pub fn partition_for(key: Option<&[u8]>, partitions: i32, counter: &mut u64) -> i32 {
    match key {
        Some(k) => ((murmur2(k) & 0x7fff_ffff) % partitions as u32) as i32,
        None => {
            *counter += 1;
            (*counter % partitions as u64) as i32
        }
    }
}

/// Kafka's murmur2 (seed 0x9747b28c), so keys land where Java clients put them.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Runs `rivulet produce`.
pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let acks = parse_acks(&args.acks)?;
    let compression = parse_compression(&args.compression)?;
    // Headers are an ordered list in Kafka (and may repeat): keep the order given.
    let headers = args
        .headers
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), Some(Bytes::from(v.to_string()))))
                .ok_or_else(|| anyhow::anyhow!("--header `{kv}` is not KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut client, topic) = super::connect_to_topic(&args.connect, &args.topic).await?;
    let partitions = topic.partitions.len() as i32;
    if let Some(p) = args.partition {
        if p < 0 || p >= partitions {
            bail!(
                "topic `{}` has no partition {p} (it has {partitions})",
                args.topic
            );
        }
    }
    let mut pending: BTreeMap<i32, Vec<OwnedRecord>> = BTreeMap::new();
    let mut counter = 0u64;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut sent = 0usize;
    while let Some(line) = lines.next_line().await? {
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let p = args
            .partition
            .unwrap_or_else(|| partition_for(key.as_deref(), partitions, &mut counter));
        let record = OwnedRecord {
            offset: 0,
            timestamp: rivulet_server_now(),
            key,
            value: Some(Bytes::from(value)),
            headers: headers.clone(),
        };
        let batch = pending.entry(p).or_default();
        batch.push(record);
        if batch.len() >= args.batch_size {
            let records = std::mem::take(batch);
            sent += records.len();
            client
                .produce(&args.topic, p, &records, acks, compression)
                .await?;
        }
    }
    for (p, records) in pending {
        if !records.is_empty() {
            sent += records.len();
            client
                .produce(&args.topic, p, &records, acks, compression)
                .await?;
        }
    }
    eprintln!("Produced {sent} records to {}.", args.topic);
    Ok(())
}

fn rivulet_server_now() -> i64 {
    crate::broker::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn acks_and_codecs_parse() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert!(parse_acks("2").is_err());
        assert!(parse_compression("brotli").is_err());
    }
}
