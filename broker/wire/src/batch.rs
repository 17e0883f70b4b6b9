//! A view of RecordBatch v2 headers, and produce-payload validation.
//!
//! Batches are stored exactly as producers sent them, so the broker only
//! ever looks at the fixed 61-byte header: enough to validate a produce
//! (sizes, CRC-32C, counts), assign offsets, build indexes, check
//! idempotence and find batch boundaries. The client uses the same view to
//! split a fetched byte range into whole batches. Records inside a batch
//! (possibly compressed) are never decoded here.

use thiserror::Error;

/// Offset of the `baseOffset` field.
const BASE_OFFSET_AT: usize = 0;
/// Offset of the `batchLength` field.
pub const LENGTH_AT: usize = 8;
/// Offset of the `partitionLeaderEpoch` field.
const EPOCH_AT: usize = 12;
/// Offset of the `magic` field.
pub const MAGIC_AT: usize = 16;
/// Offset of the `crc` field.
pub const CRC_AT: usize = 17;
/// The CRC covers everything from `attributes` to the end of the batch.
pub const CRC_COVERED_FROM: usize = 21;
/// Attribute bit 6: `baseTimestamp` holds the delete horizon (KIP-534),
/// set by the compactor on batches whose tombstones it has kept.
pub const DELETE_HORIZON_FLAG: i16 = 0x40;
/// Bytes in front of the `batchLength` value (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batchLength`: the header minus [`LOG_OVERHEAD`].
pub const MIN_BATCH_LENGTH: i32 = (BatchHeader::SIZE - LOG_OVERHEAD) as i32;

/// Why a buffer is not a sequence of valid RecordBatch v2 batches.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The buffer ends before a header or a batch body does.
    #[error("record batch truncated")]
    Truncated,
    /// Only magic 2 (RecordBatch v2) is stored; older message formats are refused.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// `batchLength` is smaller than a header or otherwise impossible.
    #[error("invalid record batch length")]
    InvalidLength,
    /// The CRC-32C stored in the header does not match the batch bytes.
    #[error("record batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CorruptCrc {
        /// CRC stored in the batch header.
        expected: u32,
        /// CRC computed over the batch bytes.
        actual: u32,
    },
    /// `recordsCount` is not positive or disagrees with `lastOffsetDelta`.
    #[error("invalid record count")]
    InvalidRecordCount,
}

/// The fixed header of a RecordBatch v2 (all fields big endian on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// First offset of the batch (assigned by the log on append).
    pub base_offset: i64,
    /// Bytes following the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Message format version; always 2 here.
    pub magic: i8,
    /// CRC-32C of the bytes from `attributes` to the end of the batch.
    pub crc: u32,
    /// Compression codec, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (or the log append time).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Epoch of the producer id, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Size of the fixed header in bytes.
    pub const SIZE: usize = 61;

    /// Parses the header at the start of `buf`. Checks only that enough bytes
    /// are present; magic, length and CRC are left to [`validate_batches`] so
    /// recovery can decide for itself what counts as corrupt.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < Self::SIZE {
            return Err(BatchError::Truncated);
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET_AT),
            batch_length: i32_at(buf, LENGTH_AT),
            partition_leader_epoch: i32_at(buf, EPOCH_AT),
            magic: buf[MAGIC_AT] as i8,
            crc: u32::from_be_bytes(buf[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes")),
            attributes: i16::from_be_bytes(buf[21..23].try_into().expect("2 bytes")),
            last_offset_delta: i32_at(buf, 23),
            base_timestamp: i64_at(buf, 27),
            max_timestamp: i64_at(buf, 35),
            producer_id: i64_at(buf, 43),
            producer_epoch: i16::from_be_bytes(buf[51..53].try_into().expect("2 bytes")),
            base_sequence: i32_at(buf, 53),
            records_count: i32_at(buf, 57),
        })
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Size of the whole batch on disk, header included.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x07) as u8
    }

    /// True when the timestamps are broker-assigned (LogAppendTime).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    /// True for batches written inside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// True for control batches (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// The delete horizon when the compactor has stamped one: after it,
    /// the batch's tombstones are removed by the next compaction.
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_FLAG != 0).then_some(self.base_timestamp)
    }

    /// Sequence of the last record. Sequences wrap from `i32::MAX` to 0, as in
    /// Kafka, so a long-lived producer never runs out.
    pub fn last_sequence(&self) -> i32 {
        wrapping_sequence_add(self.base_sequence, self.last_offset_delta)
    }
}

/// Adds `delta` to a producer sequence, wrapping past `i32::MAX` to 0.
pub fn wrapping_sequence_add(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        // Kafka wraps to 0, not to i32::MIN: sequences are never negative.
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

fn i64_at(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

fn i32_at(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

/// Parses the header at the start of `buf` and checks the parts that do not
/// need the batch body: magic, length (against `buf`) and record counts.
pub fn check_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    check_fields(&header, buf.len() as u64)?;
    Ok(header)
}

/// Checks a parsed header: magic, length (against the `available` bytes from
/// the start of the batch) and record counts.
pub fn check_fields(header: &BatchHeader, available: u64) -> Result<(), BatchError> {
    if header.magic != 2 {
        return Err(BatchError::UnsupportedMagic(header.magic));
    }
    if header.batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidLength);
    }
    if header.total_size() as u64 > available {
        return Err(BatchError::Truncated);
    }
    if header.records_count < 1 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::InvalidRecordCount);
    }
    Ok(())
}

/// Checks a header read back from a segment. Looser than [`check_fields`]:
/// compaction keeps a batch's `lastOffsetDelta` while removing records from
/// it (so the records' offsets stay what they were) and may keep a batch
/// with no records at all to preserve an idempotent producer's last
/// sequence, as Kafka does. So `recordsCount` may be anything from 0 to
/// `lastOffsetDelta + 1`.
pub fn check_stored_fields(header: &BatchHeader, available: u64) -> Result<(), BatchError> {
    if header.magic != 2 {
        return Err(BatchError::UnsupportedMagic(header.magic));
    }
    if header.batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidLength);
    }
    if header.total_size() as u64 > available {
        return Err(BatchError::Truncated);
    }
    let records = i64::from(header.records_count);
    if header.last_offset_delta < 0
        || records < 0
        || records > i64::from(header.last_offset_delta) + 1
    {
        return Err(BatchError::InvalidRecordCount);
    }
    Ok(())
}

/// Checks the CRC-32C of one whole batch (`batch` is exactly the batch).
pub fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let actual = crc32c::crc32c(&batch[CRC_COVERED_FROM..header.total_size()]);
    if actual != header.crc {
        return Err(BatchError::CorruptCrc {
            expected: header.crc,
            actual,
        });
    }
    Ok(())
}

/// Validates a produce payload: one or more whole v2 batches back to back.
///
/// Checks magic 2, `batchLength` >= 49 and within the buffer, CRC-32C,
/// `recordsCount` >= 1, `lastOffsetDelta == recordsCount - 1`, and that no
/// partial batch trails the last one. Returns the headers in order.
pub fn validate_batches(buf: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Truncated);
    }
    let mut headers = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        let header = check_header(rest)?;
        check_crc(&rest[..header.total_size()], &header)?;
        check_uncompressed_count(&header)?;
        at += header.total_size();
        headers.push(header);
    }
    Ok(headers)
}

/// Smallest encoding of one record: length, attributes, timestamp delta,
/// offset delta, key length, value length and header count, one byte each.
const MIN_RECORD_SIZE: i64 = 7;

/// An uncompressed batch holds its records in plain sight, so a count
/// larger than its bytes could hold is a lie that would advance offsets by
/// records that do not exist (compressed counts are checked by whoever
/// decompresses them).
fn check_uncompressed_count(header: &BatchHeader) -> Result<(), BatchError> {
    let body = i64::from(header.batch_length) - i64::from(MIN_BATCH_LENGTH);
    if header.compression() == 0 && i64::from(header.records_count) * MIN_RECORD_SIZE > body {
        return Err(BatchError::InvalidRecordCount);
    }
    Ok(())
}

/// Rewrites the base offset (@0) and partition leader epoch (@12) of the batch
/// at the start of `batch`. The CRC starts at `attributes`, so it stays valid.
pub fn set_base_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[EPOCH_AT..EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Length of the longest prefix of `buf` made only of whole v2 batches.
///
/// A fetch response may end with a partial batch (the broker cuts at
/// `max_bytes`), which consumers are expected to drop and fetch again.
/// Anything unparsable also ends the prefix, so decoding the prefix never
/// sees a batch whose header already failed the sanity checks above.
pub fn complete_batches_len(buf: &[u8]) -> usize {
    let mut pos = 0;
    // Fetched batches may be compacted (fewer records than their offset
    // range), so the stored-batch rules apply, not the produce rules.
    while let Ok(h) = BatchHeader::parse(&buf[pos..]) {
        if check_stored_fields(&h, (buf.len() - pos) as u64).is_err() {
            break;
        }
        pos += h.total_size();
    }
    pos
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::{
        indexmap::IndexMap,
        records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType},
    };

    use super::*;

    fn batch(base: i64, n: usize) -> Vec<u8> {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 3,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                // Step with the offset so the encoder keeps one batch.
                sequence: i as i32 - 1,
                timestamp: 1_000 + i as i64,
                key: None,
                value: Some(bytes::Bytes::from(vec![b'x'; 10])),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.to_vec()
    }

    #[test]
    fn parses_header_written_by_kafka_protocol() {
        let b = batch(100, 3);
        let h = check_header(&b).unwrap();
        assert_eq!(h.base_offset, 100);
        assert_eq!(h.last_offset(), 102);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(h.compression(), 0);
        assert!(!h.is_control());
        assert!(check_crc(&b, &BatchHeader::parse(&b).unwrap()).is_ok());
    }

    #[test]
    fn crc_detects_corruption() {
        let mut b = batch(0, 2);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(check_crc(&b, &BatchHeader::parse(&b).unwrap()).is_err());
    }

    #[test]
    fn complete_prefix_drops_partial_tail() {
        let mut buf = batch(0, 2);
        let first = buf.len();
        buf.extend(batch(2, 5));
        let both = buf.len();
        assert_eq!(complete_batches_len(&buf), both);
        assert_eq!(complete_batches_len(&buf[..both - 1]), first);
        assert_eq!(complete_batches_len(&buf[..first + 30]), first);
        assert_eq!(complete_batches_len(&[]), 0);
    }

    #[test]
    fn rejects_negative_count_and_bad_magic() {
        let mut b = batch(0, 1);
        b[57..61].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(check_header(&b).is_err());
        let mut b = batch(0, 1);
        b[MAGIC_AT] = 1;
        assert!(check_header(&b).is_err());
    }
}
