//! Test helpers: builds valid RecordBatch v2 bytes.
//!
//! Most of the storage layer never looks inside records, so [`batch`] fills
//! the body with filler bytes; only the header and the CRC-32C have to be
//! right. Compaction does read records, so [`keyed_batch`] builds real
//! Kafka batches with keys and values through `kafka-protocol`'s encoder,
//! and [`decode_records`] reads them back with its decoder.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// What to put in a test batch. `Default` is one record from a
/// non-idempotent producer with timestamp 0 and 20 bytes of body.
#[derive(Clone, Debug)]
pub(crate) struct BatchSpec {
    pub records: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub body_len: usize,
    /// Seed for the filler bytes, so batches differ in content.
    pub fill: u8,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            records: 1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            base_timestamp: 0,
            max_timestamp: 0,
            body_len: 20,
            fill: 0,
        }
    }
}

/// Encodes `spec` as one valid batch with base offset 0 and epoch -1.
pub(crate) fn batch(spec: &BatchSpec) -> Vec<u8> {
    // Real records take at least 7 bytes each (validation checks that of
    // uncompressed batches), so the filler never claims less.
    let body_len = spec.body_len.max(spec.records.max(0) as usize * 7);
    let total = crate::batch::BatchHeader::SIZE + body_len;
    let mut buf = Vec::with_capacity(total);
    buf.extend_from_slice(&0i64.to_be_bytes());
    buf.extend_from_slice(&((total - 12) as i32).to_be_bytes());
    buf.extend_from_slice(&(-1i32).to_be_bytes());
    buf.push(2);
    buf.extend_from_slice(&[0; 4]); // CRC, filled in below
    buf.extend_from_slice(&0i16.to_be_bytes());
    buf.extend_from_slice(&(spec.records - 1).to_be_bytes());
    buf.extend_from_slice(&spec.base_timestamp.to_be_bytes());
    buf.extend_from_slice(&spec.max_timestamp.to_be_bytes());
    buf.extend_from_slice(&spec.producer_id.to_be_bytes());
    buf.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    buf.extend_from_slice(&spec.base_sequence.to_be_bytes());
    buf.extend_from_slice(&spec.records.to_be_bytes());
    buf.extend((0..body_len).map(|i| spec.fill.wrapping_add(i as u8)));
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf
}

/// A batch of `records` records with the given max timestamp and filler seed.
pub(crate) fn simple(records: i32, timestamp: i64, fill: u8) -> Vec<u8> {
    batch(&BatchSpec {
        records,
        base_timestamp: timestamp,
        max_timestamp: timestamp,
        fill,
        ..BatchSpec::default()
    })
}

/// An idempotent batch from producer `pid`/`epoch` starting at `seq`.
pub(crate) fn idempotent(pid: i64, epoch: i16, seq: i32, records: i32) -> Vec<u8> {
    batch(&BatchSpec {
        records,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        ..BatchSpec::default()
    })
}

/// A real batch (through `kafka-protocol`'s encoder) of records with the
/// given keys and values (`None` = null), timestamps `base_timestamp + i`,
/// from a non-idempotent producer.
pub(crate) fn keyed_batch(
    records: &[(Option<&str>, Option<&str>)],
    base_timestamp: i64,
    compression: Compression,
) -> Vec<u8> {
    keyed_batch_from(records, base_timestamp, compression, (-1, -1, -1))
}

/// Like [`keyed_batch`] from producer `(id, epoch, base sequence)`.
pub(crate) fn keyed_batch_from(
    records: &[(Option<&str>, Option<&str>)],
    base_timestamp: i64,
    compression: Compression,
    (producer_id, producer_epoch, base_sequence): (i64, i16, i32),
) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder derives the base sequence from the first record
            // and splits batches where offset - sequence changes.
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: base_timestamp + i as i64,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encodable");
    buf.to_vec()
}

/// A decoded record: offset, timestamp, key and value as strings.
pub(crate) type Decoded = (i64, i64, Option<String>, Option<String>);

/// Decodes whole batches with `kafka-protocol`'s decoder (which checks
/// CRCs and decompresses).
pub(crate) fn decode_records(bytes: &[u8]) -> Vec<Decoded> {
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|b| String::from_utf8(b.to_vec()).expect("utf-8"))
    };
    let mut buf = Bytes::copy_from_slice(bytes);
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("decodable batches")
        .iter()
        .flat_map(|set| set.records.iter())
        .map(|r| (r.offset, r.timestamp, text(&r.key), text(&r.value)))
        .collect()
}

/// A transactional batch from producer `pid`/`epoch` starting at `seq`.
pub(crate) fn transactional(pid: i64, epoch: i16, seq: i32, records: i32) -> Vec<u8> {
    let mut buf = idempotent(pid, epoch, seq, records);
    buf[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf
}
