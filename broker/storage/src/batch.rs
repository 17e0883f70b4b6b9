//! RecordBatch v2 header parsing and produce-payload validation.
//!
//! The log stores batches exactly as producers sent them, so the storage
//! layer only ever looks at the fixed 61-byte header: enough to assign
//! offsets, build indexes, check idempotence and find batch boundaries.
//! Records inside a batch (possibly compressed) are never decoded here; only
//! the compactor (`records.rs`) looks inside, off the hot path.

use thiserror::Error;

/// Offset of the `baseOffset` field.
const BASE_OFFSET_AT: usize = 0;
/// Offset of the `batchLength` field.
const LENGTH_AT: usize = 8;
/// Offset of the `partitionLeaderEpoch` field.
const EPOCH_AT: usize = 12;
/// Offset of the `magic` field.
const MAGIC_AT: usize = 16;
/// Offset of the `crc` field.
pub(crate) const CRC_AT: usize = 17;
/// The CRC covers everything from `attributes` to the end of the batch.
pub(crate) const CRC_COVERED_FROM: usize = 21;
/// Attribute bit 6: `baseTimestamp` holds the delete horizon (KIP-534),
/// set by the compactor on batches whose tombstones it has kept.
pub(crate) const DELETE_HORIZON_FLAG: i16 = 0x40;
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
pub(crate) fn wrapping_sequence_add(sequence: i32, delta: i32) -> i32 {
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
pub(crate) fn check_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    check_fields(&header, buf.len() as u64)?;
    Ok(header)
}

/// Checks a parsed header: magic, length (against the `available` bytes from
/// the start of the batch) and record counts.
pub(crate) fn check_fields(header: &BatchHeader, available: u64) -> Result<(), BatchError> {
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
pub(crate) fn check_stored_fields(header: &BatchHeader, available: u64) -> Result<(), BatchError> {
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
pub(crate) fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
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
        at += header.total_size();
        headers.push(header);
    }
    Ok(headers)
}

/// Rewrites the base offset (@0) and partition leader epoch (@12) of the batch
/// at the start of `batch`. The CRC starts at `attributes`, so it stays valid.
pub fn set_base_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[EPOCH_AT..EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{batch, BatchSpec};

    #[test]
    fn parse_reads_every_field() {
        let spec = BatchSpec {
            records: 3,
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 10,
            base_timestamp: 1_000,
            max_timestamp: 1_500,
            ..BatchSpec::default()
        };
        let buf = batch(&spec);
        let h = BatchHeader::parse(&buf).unwrap();
        assert_eq!(h.magic, 2);
        assert_eq!(h.total_size(), buf.len());
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.records_count, 3);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 2, 10)
        );
        assert_eq!((h.base_timestamp, h.max_timestamp), (1_000, 1_500));
        assert_eq!(h.last_sequence(), 12);
        assert!(!h.is_transactional() && !h.is_control());
        assert_eq!(h.compression(), 0);
    }

    #[test]
    fn attribute_bits() {
        let mut h = BatchHeader::parse(&batch(&BatchSpec::default())).unwrap();
        h.attributes = 0x3b;
        assert_eq!(h.compression(), 3);
        assert!(h.is_log_append_time() && h.is_transactional() && h.is_control());
    }

    #[test]
    fn last_sequence_wraps_to_zero() {
        let mut h = BatchHeader::parse(&batch(&BatchSpec::default())).unwrap();
        h.base_sequence = i32::MAX - 1;
        h.last_offset_delta = 3;
        assert_eq!(h.last_sequence(), 1);
        h.base_sequence = i32::MAX;
        h.last_offset_delta = 0;
        assert_eq!(h.last_sequence(), i32::MAX);
    }

    #[test]
    fn validate_accepts_several_batches() {
        let mut buf = batch(&BatchSpec::default());
        buf.extend(batch(&BatchSpec {
            records: 4,
            ..BatchSpec::default()
        }));
        let headers = validate_batches(&buf).unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[1].records_count, 4);
    }

    #[test]
    fn validate_rejects_bad_magic() {
        let mut buf = batch(&BatchSpec::default());
        buf[MAGIC_AT] = 1;
        assert_eq!(validate_batches(&buf), Err(BatchError::UnsupportedMagic(1)));
    }

    #[test]
    fn validate_rejects_bad_crc() {
        let mut buf = batch(&BatchSpec::default());
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert!(matches!(
            validate_batches(&buf),
            Err(BatchError::CorruptCrc { .. })
        ));
    }

    #[test]
    fn validate_rejects_bad_length_and_truncation() {
        let mut buf = batch(&BatchSpec::default());
        buf[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(validate_batches(&buf), Err(BatchError::InvalidLength));

        let buf = batch(&BatchSpec::default());
        assert_eq!(
            validate_batches(&buf[..buf.len() - 1]),
            Err(BatchError::Truncated)
        );
        assert_eq!(validate_batches(&buf[..30]), Err(BatchError::Truncated));
        assert_eq!(validate_batches(&[]), Err(BatchError::Truncated));

        // A whole batch followed by a partial one is refused as well.
        let mut two = buf.clone();
        two.extend_from_slice(&buf[..70]);
        assert_eq!(validate_batches(&two), Err(BatchError::Truncated));
    }

    #[test]
    fn validate_rejects_bad_record_count() {
        let mut buf = batch(&BatchSpec::default());
        buf[57..61].copy_from_slice(&5i32.to_be_bytes());
        // Fix the CRC so only the count is wrong.
        let crc = crc32c::crc32c(&buf[CRC_COVERED_FROM..]);
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(validate_batches(&buf), Err(BatchError::InvalidRecordCount));
    }

    #[test]
    fn rewrite_keeps_crc_valid() {
        let mut buf = batch(&BatchSpec::default());
        set_base_offset_and_epoch(&mut buf, 1234, 9);
        let h = validate_batches(&buf).unwrap()[0];
        assert_eq!((h.base_offset, h.partition_leader_epoch), (1234, 9));
    }
}
