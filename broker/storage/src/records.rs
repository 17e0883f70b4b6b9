//! A record-level view of RecordBatch v2, used only by the compactor.
//!
//! The hot path never looks inside a batch; compaction has to, to learn each
//! record's key, whether its value is null (a tombstone) and its offset, and
//! then to write a batch holding only the records it keeps.
//!
//! Decompression and compression go through `kafka-protocol`'s codecs
//! (gzip, snappy, lz4, zstd). Its `RecordBatchEncoder` is not used to write
//! the rewritten batch, because a cleaned batch must keep things that
//! encoder recomputes or drops: the original base offset and
//! `lastOffsetDelta` (offsets never change, and the idempotent producer's
//! last sequence is derived from them), the timestamp-type bit, a delete
//! horizon as base timestamp, and record headers exactly as written
//! (duplicate header keys are legal in Kafka; its `IndexMap` merges them).
//! So records are walked only far enough to read their fixed prefix and are
//! copied byte for byte; only the timestamp delta is re-encoded, when the
//! base timestamp changes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{
    Compressor, Decompressor, Gzip, Lz4, None as Uncompressed, Snappy, Zstd,
};
use thiserror::Error;

use crate::batch::{BatchHeader, CRC_AT, CRC_COVERED_FROM, LOG_OVERHEAD};

/// Why the records of a batch could not be read or written. The compactor
/// keeps such a batch unchanged rather than failing the whole partition.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// The codec failed (bad compressed data or unknown codec id).
    #[error("{op} records with codec {codec}: {reason}")]
    Codec {
        /// "decompressing" or "compressing".
        op: &'static str,
        /// The codec id from the batch attributes.
        codec: u8,
        /// The codec's own message.
        reason: String,
    },
    /// The uncompressed records section does not parse.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// One record inside a batch, borrowed from the uncompressed records.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordView<'a> {
    /// Absolute offset: base offset plus the record's offset delta.
    pub offset: i64,
    /// Absolute timestamp: base timestamp plus the record's delta.
    pub timestamp: i64,
    /// The key, `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// True when the value is null: a tombstone, on a compacted topic.
    pub tombstone: bool,
    /// The record's attributes byte (unused by Kafka, kept as written).
    attributes: u8,
    /// Everything after the timestamp delta, copied as is when re-encoding.
    tail: &'a [u8],
    /// The whole record, length prefix included.
    raw: &'a [u8],
}

/// A batch's header with its records section decompressed.
pub(crate) struct DecodedBatch {
    /// The batch header as stored.
    pub header: BatchHeader,
    records: Bytes,
}

impl DecodedBatch {
    /// Decompresses the records of `batch` (exactly one whole batch).
    pub(crate) fn decode(batch: &[u8], header: BatchHeader) -> Result<Self, RecordError> {
        let body = Bytes::copy_from_slice(&batch[BatchHeader::SIZE..header.total_size()]);
        let records = match header.compression() {
            0 => body,
            1 => decompress::<Gzip>(body, 1)?,
            2 => decompress::<Snappy>(body, 2)?,
            3 => decompress::<Lz4>(body, 3)?,
            4 => decompress::<Zstd>(body, 4)?,
            codec => return Err(codec_error("decompressing", codec, "unknown codec")),
        };
        Ok(DecodedBatch { header, records })
    }

    /// Parses every record; fails if the section holds more or fewer
    /// records than the header says.
    pub(crate) fn records(&self) -> Result<Vec<RecordView<'_>>, RecordError> {
        let count = usize::try_from(self.header.records_count)
            .map_err(|_| RecordError::Malformed("negative record count"))?;
        let mut rest: &[u8] = &self.records;
        // Cap the preallocation: the count comes from disk.
        let mut out = Vec::with_capacity(count.min(rest.len()));
        for _ in 0..count {
            out.push(self.parse_record(&mut rest)?);
        }
        if !rest.is_empty() {
            return Err(RecordError::Malformed("bytes after the last record"));
        }
        Ok(out)
    }

    fn parse_record<'a>(&self, rest: &mut &'a [u8]) -> Result<RecordView<'a>, RecordError> {
        let start: &'a [u8] = rest;
        let len = usize::try_from(read_varint(rest)?)
            .map_err(|_| RecordError::Malformed("negative record length"))?;
        let prefix = start.len() - rest.len();
        if len > rest.len() || len == 0 {
            return Err(RecordError::Malformed("record length past the batch"));
        }
        let mut body = &rest[..len];
        *rest = &rest[len..];
        let attributes = body[0];
        body = &body[1..];
        let timestamp_delta = read_varlong(&mut body)?;
        let tail = body;
        let offset_delta = read_varint(&mut body)?;
        let key = read_nullable(&mut body)?;
        let tombstone = read_nullable(&mut body)?.is_none();
        Ok(RecordView {
            offset: self.header.base_offset + i64::from(offset_delta),
            timestamp: self.header.base_timestamp.wrapping_add(timestamp_delta),
            key,
            tombstone,
            attributes,
            tail,
            raw: &start[..prefix + len],
        })
    }
}

/// The codec bits of a batch's attributes.
const COMPRESSION_MASK: i16 = 0x07;

/// The header fields a rewrite may change; everything else (base offset,
/// `lastOffsetDelta`, leader epoch, producer id/epoch, base sequence, codec)
/// is kept from the original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rewrite {
    /// New attributes (the delete-horizon bit may flip).
    pub attributes: i16,
    /// New base timestamp: the delete horizon when that bit is set.
    pub base_timestamp: i64,
    /// New max timestamp.
    pub max_timestamp: i64,
}

/// Writes a batch like `original` holding only `records` (a subset of its
/// own records, in order), compressed with the original codec and with a
/// fresh CRC-32C.
pub(crate) fn encode_batch(
    original: &BatchHeader,
    rewrite: Rewrite,
    records: &[RecordView<'_>],
) -> Result<Vec<u8>, RecordError> {
    let mut body = BytesMut::new();
    for record in records {
        if rewrite.base_timestamp == original.base_timestamp {
            body.put_slice(record.raw);
            continue;
        }
        let mut inner = BytesMut::with_capacity(record.raw.len() + 10);
        inner.put_u8(record.attributes);
        write_varlong(
            &mut inner,
            record.timestamp.wrapping_sub(rewrite.base_timestamp),
        );
        inner.put_slice(record.tail);
        let len = i32::try_from(inner.len())
            .map_err(|_| RecordError::Malformed("record too large to re-encode"))?;
        write_varint(&mut body, len);
        body.put_slice(&inner);
    }
    // An emptied batch is written as Kafka writes one: header only, no
    // codec (clients cannot decompress an empty payload).
    let (codec, attributes) = if records.is_empty() {
        (0, rewrite.attributes & !COMPRESSION_MASK)
    } else {
        (original.compression(), rewrite.attributes)
    };
    let mut out = BytesMut::with_capacity(BatchHeader::SIZE + body.len());
    out.put_i64(original.base_offset);
    out.put_i32(0); // batchLength, filled in below
    out.put_i32(original.partition_leader_epoch);
    out.put_i8(2);
    out.put_u32(0); // CRC, filled in below
    out.put_i16(attributes);
    out.put_i32(original.last_offset_delta);
    out.put_i64(rewrite.base_timestamp);
    out.put_i64(rewrite.max_timestamp);
    out.put_i64(original.producer_id);
    out.put_i16(original.producer_epoch);
    out.put_i32(original.base_sequence);
    out.put_i32(records.len() as i32);
    match codec {
        0 => compress::<Uncompressed>(&mut out, &body, 0)?,
        1 => compress::<Gzip>(&mut out, &body, 1)?,
        2 => compress::<Snappy>(&mut out, &body, 2)?,
        3 => compress::<Lz4>(&mut out, &body, 3)?,
        4 => compress::<Zstd>(&mut out, &body, 4)?,
        _ => return Err(codec_error("compressing", codec, "unknown codec")),
    }
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| RecordError::Malformed("batch too large to re-encode"))?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.to_vec())
}

fn decompress<D: Decompressor<Bytes>>(mut data: Bytes, codec: u8) -> Result<Bytes, RecordError> {
    D::decompress(&mut data, |buf| Ok(buf.copy_to_bytes(buf.remaining())))
        .map_err(|e| codec_error("decompressing", codec, &format!("{e:#}")))
}

fn compress<C: Compressor<BytesMut>>(
    out: &mut BytesMut,
    body: &[u8],
    codec: u8,
) -> Result<(), RecordError> {
    C::compress(out, |buf| {
        buf.put_slice(body);
        Ok(())
    })
    .map_err(|e| codec_error("compressing", codec, &format!("{e:#}")))
}

fn codec_error(op: &'static str, codec: u8, reason: &str) -> RecordError {
    RecordError::Codec {
        op,
        codec,
        reason: reason.to_owned(),
    }
}

/// Reads a length-prefixed byte string whose length -1 means null.
fn read_nullable<'a>(buf: &mut &'a [u8]) -> Result<Option<&'a [u8]>, RecordError> {
    let len = read_varint(buf)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| RecordError::Malformed("negative length"))?;
    if len > buf.len() {
        return Err(RecordError::Malformed("field past the record"));
    }
    let (bytes, rest) = buf.split_at(len);
    *buf = rest;
    Ok(Some(bytes))
}

/// Reads an unsigned LEB128 value of at most `max_bytes` bytes.
fn read_unsigned(buf: &mut &[u8], max_bytes: usize) -> Result<u64, RecordError> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let (&byte, rest) = buf
            .split_first()
            .ok_or(RecordError::Malformed("varint past the record"))?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(RecordError::Malformed("varint too long"))
}

/// Reads a zigzag varint (Kafka's `varint`).
fn read_varint(buf: &mut &[u8]) -> Result<i32, RecordError> {
    let zigzag = read_unsigned(buf, 5)? as u32;
    Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
}

/// Reads a zigzag varlong (Kafka's `varlong`).
fn read_varlong(buf: &mut &[u8]) -> Result<i64, RecordError> {
    let zigzag = read_unsigned(buf, 10)?;
    Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
}

fn write_unsigned(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

fn write_varint(buf: &mut BytesMut, value: i32) {
    write_unsigned(buf, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

fn write_varlong(buf: &mut BytesMut, value: i64) {
    write_unsigned(buf, ((value << 1) ^ (value >> 63)) as u64);
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::Compression;

    use super::*;
    use crate::{
        batch::validate_batches,
        test_util::{decode_records, keyed_batch},
    };

    #[test]
    fn varints_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i64::MAX, i64::MIN] {
            let mut buf = BytesMut::new();
            write_varlong(&mut buf, v);
            assert_eq!(read_varlong(&mut &buf[..]).unwrap(), v);
        }
        for v in [0i32, 1, -1, 1000, i32::MAX, i32::MIN] {
            let mut buf = BytesMut::new();
            write_varint(&mut buf, v);
            assert_eq!(read_varint(&mut &buf[..]).unwrap(), v);
        }
        assert!(read_varint(&mut &[0x80u8][..]).is_err());
    }

    #[test]
    fn views_match_the_encoder_for_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = keyed_batch(
                &[(Some("a"), Some("1")), (None, Some("2")), (Some("b"), None)],
                500,
                codec,
            );
            let header = validate_batches(&batch).unwrap()[0];
            let decoded = DecodedBatch::decode(&batch, header).unwrap();
            let records = decoded.records().unwrap();
            let seen: Vec<_> = records
                .iter()
                .map(|r| (r.offset, r.timestamp, r.key, r.tombstone))
                .collect();
            assert_eq!(
                seen,
                [
                    (0, 500, Some(&b"a"[..]), false),
                    (1, 501, None, false),
                    (2, 502, Some(&b"b"[..]), true)
                ],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn an_emptied_compressed_batch_is_written_uncompressed() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = keyed_batch(
                &[(Some("a"), Some("1")), (Some("b"), Some("2"))],
                500,
                codec,
            );
            let header = validate_batches(&batch).unwrap()[0];
            let rewrite = Rewrite {
                attributes: header.attributes,
                base_timestamp: header.base_timestamp,
                max_timestamp: header.max_timestamp,
            };
            let empty = encode_batch(&header, rewrite, &[]).unwrap();
            let h = BatchHeader::parse(&empty).unwrap();
            assert_eq!(h.compression(), 0, "{codec:?}");
            assert_eq!((h.records_count, h.last_offset()), (0, 1), "{codec:?}");
            assert_eq!(empty.len(), BatchHeader::SIZE, "{codec:?}");
        }
    }

    #[test]
    fn rewrite_keeps_offsets_and_moves_the_base_timestamp() {
        let batch = keyed_batch(
            &[
                (Some("a"), Some("1")),
                (Some("b"), Some("2")),
                (Some("c"), None),
            ],
            1_000,
            Compression::Zstd,
        );
        let header = validate_batches(&batch).unwrap()[0];
        let decoded = DecodedBatch::decode(&batch, header).unwrap();
        let records = decoded.records().unwrap();
        let rewrite = Rewrite {
            attributes: header.attributes | 0x40,
            base_timestamp: 9_999_999,
            max_timestamp: 1_002,
        };
        let kept = [records[0], records[2]];
        let out = encode_batch(&header, rewrite, &kept).unwrap();
        let new = BatchHeader::parse(&out).unwrap();
        crate::batch::check_crc(&out, &new).unwrap();
        assert_eq!(
            (new.base_offset, new.last_offset_delta, new.records_count),
            (0, 2, 2)
        );
        assert_eq!(new.delete_horizon(), Some(9_999_999));
        assert_eq!(new.compression(), 4);
        let decoded = decode_records(&out);
        assert_eq!(
            decoded,
            [
                (0, 1_000, Some("a".into()), Some("1".into())),
                (2, 1_002, Some("c".into()), None)
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let batch = keyed_batch(&[(Some("a"), Some("1"))], 0, Compression::None);
        let mut header = validate_batches(&batch).unwrap()[0];
        header.records_count = 2;
        let decoded = DecodedBatch::decode(&batch, header).unwrap();
        assert!(decoded.records().is_err());
        let mut gz = keyed_batch(&[(Some("a"), Some("1"))], 0, Compression::Gzip);
        let end = gz.len();
        gz[end - 5..].fill(0xff);
        let header = BatchHeader::parse(&gz).unwrap();
        assert!(DecodedBatch::decode(&gz, header).is_err());
    }
}
