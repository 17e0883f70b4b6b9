//! Records as the client's callers see them, and their batch encoding.
//!
//! kafka-protocol's [`Record`] carries every batch-level field on each record;
//! callers producing or consuming data only care about offset, timestamp,
//! key, value and headers, so [`OwnedRecord`] is that subset.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    indexmap::IndexMap,
    protocol::StrBytes,
    records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
    },
};

use crate::{
    batch::{complete_batches_len, BatchHeader},
    error::ClientError,
};

/// One record, owned, without batch-level metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedRecord {
    /// Offset in the partition. Ignored when producing (the broker assigns it).
    pub offset: i64,
    /// Creation time in ms since the epoch. When producing, a negative value
    /// means "now".
    pub timestamp: i64,
    /// The record key.
    pub key: Option<Bytes>,
    /// The record value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Record headers, in order. Kafka allows a key to repeat, but
    /// kafka-protocol keeps headers in a map, so on encode the last value of
    /// a repeated key wins.
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl OwnedRecord {
    /// A record with just a value, timestamped at produce time.
    pub fn from_value(value: impl Into<Bytes>) -> Self {
        OwnedRecord {
            timestamp: -1,
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// A record with a key and a value, timestamped at produce time.
    pub fn from_key_value(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        OwnedRecord {
            timestamp: -1,
            key: Some(key.into()),
            value: Some(value.into()),
            ..Default::default()
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Encodes `records` as one RecordBatch v2 (no producer id, so neither
/// idempotent nor transactional), compressed with `compression`.
pub fn encode_batch(
    records: &[OwnedRecord],
    compression: Compression,
) -> Result<Bytes, ClientError> {
    let now = now_ms();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            // The encoder derives offset deltas from these; the broker
            // rewrites the base offset.
            offset: i as i64,
            // kafka-protocol starts a new batch whenever `offset - sequence`
            // changes, and derives the base sequence from the first record.
            // Stepping the sequence with the offset keeps all records in one
            // batch with base sequence -1 (not idempotent).
            sequence: NO_SEQUENCE.wrapping_add(i as i32),
            timestamp: if r.timestamp < 0 { now } else { r.timestamp },
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| ClientError::Records(format!("encoding batch: {e:#}")))?;
    Ok(buf.freeze())
}

/// One past the last offset covered by the whole batches in `data` (what a
/// consumer fetches next), or `None` if there is no whole batch.
pub fn next_fetch_offset(data: &[u8]) -> Option<i64> {
    let whole = complete_batches_len(data);
    let mut pos = 0;
    let mut next = None;
    while pos < whole {
        let Ok(h) = BatchHeader::parse(&data[pos..]) else {
            break;
        };
        next = Some(h.last_offset() + 1);
        pos += h.total_size();
    }
    next
}

/// Decodes fetched record bytes into records with offset `>= from_offset`.
///
/// A trailing partial batch is ignored (the broker cut it at `max_bytes`);
/// control batches (transaction markers) are skipped, as consumers do.
pub fn decode_records(data: &Bytes, from_offset: i64) -> Result<Vec<OwnedRecord>, ClientError> {
    let whole = complete_batches_len(data);
    let mut pos = 0;
    while pos < whole {
        // complete_batches_len parsed these headers already; re-check the one
        // bound it cannot know: an uncompressed batch holds at least one byte
        // per record, so a larger count is a lie that would make the decoder
        // reserve memory for it.
        let Ok(h) = BatchHeader::parse(&data[pos..]) else {
            break;
        };
        if h.compression() == 0 && h.records_count > h.batch_length {
            return Err(ClientError::Records(format!(
                "batch at offset {} claims {} records in {} bytes",
                h.base_offset, h.records_count, h.batch_length
            )));
        }
        pos += h.total_size();
    }
    let mut buf = data.slice(..whole);
    let sets = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RecordBatchDecoder::decode_all(&mut buf)
    }))
    .map_err(|_| ClientError::Records("record decoder panicked".into()))?
    .map_err(|e| ClientError::Records(format!("{e:#}")))?;
    Ok(sets
        .into_iter()
        .flat_map(|set| set.records)
        .filter(|r| !r.control && r.offset >= from_offset)
        .map(|r| OwnedRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_every_codec() {
        let input = vec![
            OwnedRecord {
                timestamp: 5,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"v")),
                headers: vec![
                    ("h".into(), Some(Bytes::from_static(b"1"))),
                    ("n".into(), None),
                ],
                ..Default::default()
            },
            OwnedRecord::from_value("second"),
        ];
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut data = BytesMut::from(&encode_batch(&input, codec).unwrap()[..]);
            // Pretend the broker assigned base offset 40.
            data[..8].copy_from_slice(&40i64.to_be_bytes());
            let data = data.freeze();
            let out = decode_records(&data, 0).unwrap();
            assert_eq!(out.len(), 2, "{codec:?}");
            assert_eq!(out[0].offset, 40);
            assert_eq!(out[0].timestamp, 5);
            assert_eq!(out[0].key, input[0].key);
            assert_eq!(out[0].headers, input[0].headers);
            assert_eq!(out[1].offset, 41);
            assert!(out[1].timestamp > 0);
            assert_eq!(out[1].value.as_deref(), Some(&b"second"[..]));
            assert_eq!(decode_records(&data, 41).unwrap().len(), 1);
        }
    }

    #[test]
    fn partial_tail_is_ignored() {
        let a = encode_batch(&[OwnedRecord::from_value("a")], Compression::None).unwrap();
        let mut b = BytesMut::from(
            &encode_batch(&[OwnedRecord::from_value("b")], Compression::None).unwrap()[..],
        );
        b[..8].copy_from_slice(&1i64.to_be_bytes());
        let mut all = BytesMut::from(&a[..]);
        all.extend_from_slice(&b[..b.len() - 3]);
        let out = decode_records(&all.freeze(), 0).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value.as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn next_offset_follows_batch_headers_not_records() {
        let mut batch = BytesMut::from(
            &encode_batch(
                &[OwnedRecord::from_value("a"), OwnedRecord::from_value("b")],
                Compression::None,
            )
            .unwrap()[..],
        );
        batch[..8].copy_from_slice(&10i64.to_be_bytes());
        assert_eq!(next_fetch_offset(&batch), Some(12));
        // Compaction may leave a batch whose header covers offsets that hold
        // no record any more: lastOffsetDelta 5 with two records. The next
        // fetch must start after the header's range, or a consumer would
        // ask for offset 12 forever and get this batch back.
        batch[23..27].copy_from_slice(&5i32.to_be_bytes());
        assert_eq!(next_fetch_offset(&batch), Some(16));
        // A partial batch alone gives nothing to move past.
        assert_eq!(next_fetch_offset(&batch[..batch.len() - 1]), None);
    }
}
