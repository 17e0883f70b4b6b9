//! The RecordBatch v2 checks (from `rivulet_wire::batch`) on batches built
//! by storage's own test builder, which can set every header field.

use crate::{
    batch::*,
    test_util::{batch, BatchSpec},
};

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

#[test]
fn validate_rejects_more_records_than_an_uncompressed_batch_can_hold() {
    // 20 body bytes hold at most two 7-byte records.
    let mut buf = batch(&BatchSpec {
        records: 2,
        body_len: 20,
        ..BatchSpec::default()
    });
    assert!(validate_batches(&buf).is_ok());
    // Claim 1000 records (and a matching last offset delta), CRC fixed up.
    buf[23..27].copy_from_slice(&999i32.to_be_bytes());
    buf[57..61].copy_from_slice(&1000i32.to_be_bytes());
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        validate_batches(&buf),
        Err(BatchError::InvalidRecordCount)
    ));
}
