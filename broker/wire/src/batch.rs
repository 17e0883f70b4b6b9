//! A zero-copy view of RecordBatch v2 headers.
//!
//! The broker stores batches exactly as produced, so it needs to read and
//! check a batch's fixed 61-byte header (offsets, counts, CRC-32C) without
//! decoding or decompressing its records. The client uses the same view to
//! split a fetched byte range into whole batches, since a broker may cut the
//! last one short at `max_bytes`.

/// Bytes before the batch length field ends: base offset (8) + length (4).
/// `batch_length` counts the bytes after this.
pub const LOG_OVERHEAD: usize = 12;

/// Size of the fixed RecordBatch v2 header.
pub const BATCH_HEADER_LEN: usize = 61;

/// Offset of the magic byte.
const MAGIC_OFFSET: usize = 16;
/// Offset of the CRC field; the CRC covers everything after it.
const CRC_OFFSET: usize = 17;
/// First byte covered by the CRC (the attributes).
const ATTRIBUTES_OFFSET: usize = 21;

/// The fixed fields of a RecordBatch v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes following the length field (total size minus [`LOG_OVERHEAD`]).
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; 2 for every batch this view accepts.
    pub magic: i8,
    /// CRC-32C of the bytes from the attributes to the end of the batch.
    pub crc: u32,
    /// Compression (bits 0-2), timestamp type (3), transactional (4), control (5).
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. `None` if `buf` is shorter
    /// than a header, the magic is not 2, or the declared length is smaller
    /// than a header or the record count negative (both impossible in a
    /// valid batch, and the latter would make decoders misbehave).
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < BATCH_HEADER_LEN || buf[MAGIC_OFFSET] != 2 {
            return None;
        }
        let h = BatchHeader {
            base_offset: i64::from_be_bytes(be(buf, 0)),
            batch_length: i32::from_be_bytes(be(buf, 8)),
            partition_leader_epoch: i32::from_be_bytes(be(buf, 12)),
            magic: buf[MAGIC_OFFSET] as i8,
            crc: u32::from_be_bytes(be(buf, CRC_OFFSET)),
            attributes: i16::from_be_bytes(be(buf, ATTRIBUTES_OFFSET)),
            last_offset_delta: i32::from_be_bytes(be(buf, 23)),
            base_timestamp: i64::from_be_bytes(be(buf, 27)),
            max_timestamp: i64::from_be_bytes(be(buf, 35)),
            producer_id: i64::from_be_bytes(be(buf, 43)),
            producer_epoch: i16::from_be_bytes(be(buf, 51)),
            base_sequence: i32::from_be_bytes(be(buf, 53)),
            record_count: i32::from_be_bytes(be(buf, 57)),
        };
        if (h.batch_length as i64) < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i64 || h.record_count < 0
        {
            return None;
        }
        Some(h)
    }

    /// Total size of the batch on the wire, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// The compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }

    /// Whether the batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Checks the CRC-32C of a complete batch (`batch.len()` must equal the
/// header's [`BatchHeader::total_len`]).
pub fn crc_matches(batch: &[u8]) -> bool {
    match BatchHeader::parse(batch) {
        Some(h) if h.total_len() == batch.len() => {
            crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]) == h.crc
        }
        _ => false,
    }
}

/// Length of the longest prefix of `buf` made only of whole v2 batches.
///
/// A fetch response may end with a partial batch (the broker cuts at
/// `max_bytes`), which consumers are expected to drop and fetch again.
/// Anything unparsable also ends the prefix, so decoding the prefix never
/// sees a batch whose header already failed the sanity checks above.
pub fn complete_batches_len(buf: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(h) = BatchHeader::parse(&buf[pos..]) {
        let end = pos + h.total_len();
        if end > buf.len() {
            break;
        }
        pos = end;
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
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 100);
        assert_eq!(h.last_offset(), 102);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(h.compression(), 0);
        assert!(!h.is_control());
        assert!(crc_matches(&b));
    }

    #[test]
    fn crc_detects_corruption() {
        let mut b = batch(0, 2);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(!crc_matches(&b));
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
        assert!(BatchHeader::parse(&b).is_none());
        let mut b = batch(0, 1);
        b[MAGIC_OFFSET] = 1;
        assert!(BatchHeader::parse(&b).is_none());
    }
}
