//! Produce-path checks and rewrites that have to look inside batches: the
//! compacted-topic key check and the topic `compression.type`.
//!
//! Both are pure functions of the produce payload (one or more whole
//! RecordBatch v2 batches, as in a Produce request's `records` field) and
//! run before the log assigns offsets:
//!
//! - [`keyless_records`]: a compacted topic refuses records without a key.
//!   Kafka answers `INVALID_RECORD` with one `record_errors` entry per such
//!   record (KIP-467); this returns their indices and Kafka's messages.
//! - [`recompress`]: a topic whose `compression.type` names a codec stores
//!   every batch with that codec. Batches already using it (and every batch,
//!   for `producer`) are kept as they are, so the common case copies nothing.
//!
//! Re-encoding works on bytes, not on decoded records: the 61-byte header is
//! copied as is (base offset, leader epoch, producer id/epoch, base
//! sequence, `lastOffsetDelta`, timestamps, record count and every attribute
//! bit but the codec), the records section is decompressed and compressed
//! again unchanged, and only the codec bits, `batchLength` and CRC-32C are
//! written anew. The uncompressed records section does not depend on the
//! codec, so every record's attributes, offset and timestamp deltas, key,
//! value and headers (order and duplicate keys included) survive byte for
//! byte. `kafka-protocol`'s `RecordBatchEncoder` is not used because it
//! would not: it derives the base timestamp and `lastOffsetDelta` from the
//! records (Kafka's base timestamp is the first record's, not the smallest),
//! drops the timestamp-type bit, writes record attributes as 0 and merges
//! duplicate header keys.
//!
//! Records are walked without allocating, in place when the batch is
//! uncompressed; a compressed batch is decompressed into one buffer. Every
//! record is checked for structure (lengths, varints, header count, no
//! trailing bytes, `recordsCount` records exactly), so a malformed record
//! is an error, never a panic. CRCs and batch sizes are the caller's
//! (`validate_batches`); the headers are parsed again here only to find
//! batch boundaries.

use std::{fmt, ops::Deref, str::FromStr};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::{
    compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd},
    records::Compression,
};
use thiserror::Error;

use crate::batch::{
    check_stored_fields, BatchError, BatchHeader, CRC_AT, CRC_COVERED_FROM, LENGTH_AT, LOG_OVERHEAD,
};

#[path = "rewrite_inflate.rs"]
mod inflate;
#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;

pub use inflate::MAX_DECOMPRESSED_SECTION;

/// Offset of the `attributes` field: the first byte the CRC covers.
const ATTRIBUTES_AT: usize = CRC_COVERED_FROM;
/// The codec bits of a batch's attributes.
const CODEC_MASK: i16 = 0x07;

/// A topic's `compression.type`: the codec its batches are stored with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CompressionType {
    /// Keep whatever codec the producer used (Kafka's default).
    #[default]
    Producer,
    /// Store batches uncompressed.
    Uncompressed,
    /// Store batches gzip-compressed.
    Gzip,
    /// Store batches snappy-compressed.
    Snappy,
    /// Store batches lz4-compressed.
    Lz4,
    /// Store batches zstd-compressed.
    Zstd,
}

impl CompressionType {
    /// Every value, in the order Kafka's documentation lists them.
    pub const ALL: [CompressionType; 6] = [
        CompressionType::Producer,
        CompressionType::Uncompressed,
        CompressionType::Gzip,
        CompressionType::Snappy,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];

    /// The config value as Kafka spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }

    /// The codec batches must be stored with; `None` for `producer`.
    pub fn codec(self) -> Option<Compression> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Uncompressed => Some(Compression::None),
            CompressionType::Gzip => Some(Compression::Gzip),
            CompressionType::Snappy => Some(Compression::Snappy),
            CompressionType::Lz4 => Some(Compression::Lz4),
            CompressionType::Zstd => Some(Compression::Zstd),
        }
    }
}

impl fmt::Display for CompressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompressionType {
    type Err = RewriteError;

    /// Parses a topic config value. Exact and case-sensitive, like Kafka's
    /// validator: `none` (a producer-side spelling) and `GZIP` are refused.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        CompressionType::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .ok_or_else(|| RewriteError::InvalidCompressionType {
                value: value.to_owned(),
            })
    }
}

/// Why records could not be checked or re-encoded, or a config value not
/// parsed. All are the client's fault, none the log's: the server answers
/// a produce with `INVALID_RECORD` (Kafka's answer to records that do not
/// parse) and a config change with `INVALID_CONFIG`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RewriteError {
    /// A `compression.type` value Kafka does not know.
    #[error(
        "invalid compression.type {value:?}: must be one of \
         producer, uncompressed, gzip, snappy, lz4, zstd"
    )]
    InvalidCompressionType {
        /// The value given.
        value: String,
    },
    /// The bytes are not a sequence of whole v2 batches.
    #[error("invalid record batch at byte {position}: {source}")]
    InvalidBatch {
        /// Byte position of the batch in the payload.
        position: usize,
        /// What is wrong with its header.
        #[source]
        source: BatchError,
    },
    /// The attributes name a codec Kafka does not have (5, 6 or 7).
    #[error("unknown compression codec id {codec} in the batch at byte {position}")]
    UnknownCodec {
        /// Byte position of the batch in the payload.
        position: usize,
        /// The codec bits of its attributes.
        codec: u8,
    },
    /// The compressed records section does not decompress.
    #[error("decompressing the batch at byte {position} with {codec:?}: {reason}")]
    Decompress {
        /// Byte position of the batch in the payload.
        position: usize,
        /// The batch's codec.
        codec: Compression,
        /// The codec's own message.
        reason: String,
    },
    /// Compressing the re-encoded records failed.
    #[error("compressing the batch at byte {position} with {codec:?}: {reason}")]
    Compress {
        /// Byte position of the original batch in the payload.
        position: usize,
        /// The target codec.
        codec: Compression,
        /// The codec's own message.
        reason: String,
    },
    /// A record inside a batch does not parse, or the batch holds more or
    /// fewer records than its `recordsCount`.
    #[error("malformed record {index} in the batch at byte {position}: {reason}")]
    MalformedRecord {
        /// Byte position of the batch in the payload.
        position: usize,
        /// Index of the record within its batch.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A re-encoded batch is larger than `batchLength` can say (2 GiB).
    #[error("the batch at byte {position} is {size} bytes re-encoded, too large for a batch")]
    TooLarge {
        /// Byte position of the original batch in the payload.
        position: usize,
        /// Size of the re-encoded batch.
        size: usize,
    },
}

/// Records a compacted topic refuses: those with a null key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeylessRecords {
    /// Kafka's `record_errors[].batch_index` of each keyless record, in
    /// order: its index among all records of the payload (Kafka accepts one
    /// batch per partition since Produce v3, where this is the index within
    /// that batch).
    pub batch_indices: Vec<i32>,
    /// Kafka's `batch_index_error_message`, the same for every record.
    pub message: String,
}

impl KeylessRecords {
    /// Kafka's top-level `error_message` for the partition (its
    /// `InvalidRecordException` text, which quotes the first three errors).
    pub fn summary(&self) -> String {
        let shown: Vec<String> = self
            .batch_indices
            .iter()
            .take(3)
            .map(|i| format!("RecordError(batchIndex={i}, message='{}')", self.message))
            .collect();
        format!(
            "One or more records have been rejected due to {} record errors in total, \
             and only showing the first three errors at most: [{}]",
            self.batch_indices.len(),
            shown.join(", ")
        )
    }
}

/// Finds the records of `records` (whole v2 batches) whose key is null,
/// for a produce to a compacted topic's `topic`-`partition`. `Ok(None)`
/// when every record has a key.
///
/// Uncompressed batches are walked in place without allocating; compressed
/// ones are decompressed first. Every record is checked for structure.
pub fn keyless_records(
    records: &[u8],
    topic: &str,
    partition: i32,
) -> Result<Option<KeylessRecords>, RewriteError> {
    let mut batch_indices = Vec::new();
    let mut index: i32 = 0;
    for batch in Batches::new(records) {
        let batch = batch?;
        let section = batch.records_section()?;
        batch.walk(&section, |has_key| {
            if !has_key {
                batch_indices.push(index);
            }
            index = index.saturating_add(1);
        })?;
    }
    if batch_indices.is_empty() {
        return Ok(None);
    }
    Ok(Some(KeylessRecords {
        batch_indices,
        message: format!(
            "Compacted topic cannot accept message without key in topic partition \
             {topic}-{partition}"
        ),
    }))
}

/// Outcome of [`recompress`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Recompressed {
    /// Every batch already has the target codec: store the bytes given.
    Unchanged,
    /// The payload with every batch in the target codec; batches that had
    /// it already are copied unchanged.
    Rewritten(Vec<u8>),
}

/// Applies a topic's `compression.type` to `records` (whole v2 batches,
/// already validated): every batch whose codec differs from `target` is
/// re-encoded with it, keeping every header and record field (see the
/// module docs) and with a fresh CRC-32C.
///
/// Costs nothing when no batch needs it: `producer` returns at once, and
/// otherwise only the headers are read. A batch that is re-encoded is
/// decompressed, its records are checked for structure, and it is
/// compressed again. Batches with no records (only the compactor writes
/// those) are kept as they are.
pub fn recompress(records: &[u8], target: CompressionType) -> Result<Recompressed, RewriteError> {
    let Some(codec) = target.codec() else {
        return Ok(Recompressed::Unchanged);
    };
    let mut matches = true;
    for batch in Batches::new(records) {
        matches &= batch?.keeps(codec);
    }
    if matches {
        return Ok(Recompressed::Unchanged);
    }
    let mut out = Vec::with_capacity(records.len());
    for batch in Batches::new(records) {
        let batch = batch?;
        if batch.keeps(codec) {
            out.extend_from_slice(batch.bytes);
        } else {
            batch.reencode(codec, &mut out)?;
        }
    }
    Ok(Recompressed::Rewritten(out))
}

/// One whole batch of a payload.
struct Batch<'a> {
    /// Byte position in the payload, for error messages.
    position: usize,
    header: BatchHeader,
    /// The whole batch, header included.
    bytes: &'a [u8],
}

/// Iterates the whole batches of a payload; stops after the first error.
struct Batches<'a> {
    records: &'a [u8],
    position: usize,
}

impl<'a> Batches<'a> {
    fn new(records: &'a [u8]) -> Self {
        Batches {
            records,
            position: 0,
        }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<Batch<'a>, RewriteError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self
            .records
            .get(self.position..)
            .filter(|r| !r.is_empty())?;
        let position = self.position;
        // The stored-batch rules, not the produce rules: the compactor may
        // leave a batch with fewer records than its offset range.
        let header = BatchHeader::parse(rest)
            .and_then(|h| check_stored_fields(&h, rest.len() as u64).map(|()| h));
        match header {
            Ok(header) => {
                self.position += header.total_size();
                Some(Ok(Batch {
                    position,
                    header,
                    bytes: &rest[..header.total_size()],
                }))
            }
            Err(source) => {
                self.position = self.records.len();
                Some(Err(RewriteError::InvalidBatch { position, source }))
            }
        }
    }
}

/// A batch's records section, uncompressed.
enum Section<'a> {
    /// The batch was not compressed: its own bytes.
    InPlace(&'a [u8]),
    /// The output of the codec.
    Decompressed(Bytes),
}

impl Deref for Section<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Section::InPlace(bytes) => bytes,
            Section::Decompressed(bytes) => bytes,
        }
    }
}

impl<'a> Batch<'a> {
    /// True when the batch can be stored as it is under codec `target`.
    fn keeps(&self, target: Compression) -> bool {
        self.header.compression() == target as u8 || self.header.records_count == 0
    }

    fn codec(&self) -> Result<Compression, RewriteError> {
        match self.header.compression() {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(RewriteError::UnknownCodec {
                position: self.position,
                codec,
            }),
        }
    }

    /// The records section, decompressed if the batch is compressed.
    fn records_section(&self) -> Result<Section<'a>, RewriteError> {
        let body = &self.bytes[BatchHeader::SIZE..];
        let codec = self.codec()?;
        // An empty section has nothing to decompress (and the codecs
        // disagree on whether that is an error); the walk then checks
        // that the batch claims no records.
        if body.is_empty() {
            return Ok(Section::InPlace(body));
        }
        let decompressed = match codec {
            Compression::None => return Ok(Section::InPlace(body)),
            Compression::Snappy => check_snappy_lengths(body, MAX_DECOMPRESSED_SECTION)
                .and_then(|()| decompress::<Snappy>(body)),
            codec => inflate::decompress(codec, body, MAX_DECOMPRESSED_SECTION).map(Bytes::from),
        };
        decompressed
            .map(Section::Decompressed)
            .map_err(|reason| RewriteError::Decompress {
                position: self.position,
                codec,
                reason,
            })
    }

    /// Checks that `section` holds exactly `recordsCount` well-formed
    /// records and calls `on_record` with whether each has a key.
    fn walk(&self, section: &[u8], on_record: impl FnMut(bool)) -> Result<(), RewriteError> {
        walk_records(section, self.header.records_count, on_record).map_err(|(index, reason)| {
            RewriteError::MalformedRecord {
                position: self.position,
                index,
                reason,
            }
        })
    }

    /// Appends the batch to `out` with its records compressed by `target`.
    fn reencode(&self, target: Compression, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let section = self.records_section()?;
        self.walk(&section, |_| ())?;
        let start = out.len();
        out.extend_from_slice(&self.bytes[..BatchHeader::SIZE]);
        let attributes = (self.header.attributes & !CODEC_MASK) | target as i16;
        put_at(out, start + ATTRIBUTES_AT, &attributes.to_be_bytes());
        compress(target, &section, out).map_err(|reason| RewriteError::Compress {
            position: self.position,
            codec: target,
            reason,
        })?;
        let size = out.len() - start;
        let length = i32::try_from(size - LOG_OVERHEAD).map_err(|_| RewriteError::TooLarge {
            position: self.position,
            size,
        })?;
        put_at(out, start + LENGTH_AT, &length.to_be_bytes());
        let crc = crc32c::crc32c(&out[start + CRC_COVERED_FROM..]);
        put_at(out, start + CRC_AT, &crc.to_be_bytes());
        Ok(())
    }
}

fn put_at(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

fn decompress<'b, D>(mut body: &'b [u8]) -> Result<Bytes, String>
where
    D: Decompressor<&'b [u8], Buf = Bytes>,
{
    D::decompress(&mut body, |buf| Ok(std::mem::take(buf))).map_err(|e| format!("{e:#}"))
}

fn compress(codec: Compression, section: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    fn with<C: Compressor<Vec<u8>, BufMut = BytesMut>>(
        section: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        C::compress(out, |buf| {
            buf.put_slice(section);
            Ok(())
        })
        .map_err(|e| format!("{e:#}"))
    }
    match codec {
        Compression::None => {
            out.extend_from_slice(section);
            Ok(())
        }
        Compression::Gzip => with::<Gzip>(section, out),
        Compression::Snappy => with::<Snappy>(section, out),
        Compression::Lz4 => with::<Lz4>(section, out),
        Compression::Zstd => with::<Zstd>(section, out),
    }
}

/// The xerial framing Kafka's snappy streams start with, as
/// `kafka-protocol` matches it (all 16 bytes; otherwise it reads raw snappy).
const SNAPPY_XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// No snappy stream expands more than this: its densest element is a
/// 3-byte copy of 64 bytes.
const SNAPPY_MAX_EXPANSION: u64 = 22;

/// `kafka-protocol` sizes its snappy output buffers from the lengths the
/// stream declares (up to 4 GiB per block) before decoding a byte, so a
/// hostile 30-byte batch could make it zero gigabytes of memory. A declared
/// length no valid block of that size can produce is refused first, and so
/// is a stream whose blocks together declare more than `limit` bytes.
fn check_snappy_lengths(body: &[u8], limit: usize) -> Result<(), String> {
    let Some(mut rest) = body.strip_prefix(SNAPPY_XERIAL_MAGIC) else {
        return check_snappy_block(body).and_then(|n| check_snappy_total(n, limit));
    };
    let mut total = 0;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("truncated snappy block length")?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail.get(..len).ok_or("snappy block past the batch")?;
        total += check_snappy_block(block)?;
        check_snappy_total(total, limit)?;
        rest = &tail[len..];
    }
    Ok(())
}

/// The uncompressed size `block` declares, if a block of its size can
/// produce that much.
fn check_snappy_block(block: &[u8]) -> Result<u64, String> {
    let declared = read_unsigned(&mut &block[..], 5).map_err(|e| format!("snappy header: {e}"))?;
    if declared > block.len() as u64 * SNAPPY_MAX_EXPANSION {
        return Err(format!(
            "snappy block of {} bytes claims {declared} uncompressed bytes",
            block.len()
        ));
    }
    Ok(declared)
}

fn check_snappy_total(total: u64, limit: usize) -> Result<(), String> {
    if total > limit as u64 {
        return Err(format!(
            "the records section decompresses to more than {limit} bytes"
        ));
    }
    Ok(())
}

/// Walks `count` records of an uncompressed records section, calling
/// `on_record` with whether each has a key. Fails with the index of the
/// bad record if one does not parse or the count is wrong.
fn walk_records(
    mut section: &[u8],
    count: i32,
    mut on_record: impl FnMut(bool),
) -> Result<(), (usize, &'static str)> {
    let count = usize::try_from(count).map_err(|_| (0, "negative record count"))?;
    for index in 0..count {
        if section.is_empty() {
            return Err((index, "fewer records than recordsCount"));
        }
        on_record(read_record(&mut section).map_err(|reason| (index, reason))?);
    }
    if !section.is_empty() {
        return Err((count, "bytes after the last record"));
    }
    Ok(())
}

/// Reads one record (Kafka's `DefaultRecord`) off the front of `section`
/// and returns whether its key is non-null.
fn read_record(section: &mut &[u8]) -> Result<bool, &'static str> {
    let len = usize::try_from(read_varint(section)?).map_err(|_| "negative record length")?;
    if len > section.len() {
        return Err("record length past the records section");
    }
    let (mut body, rest) = section.split_at(len);
    *section = rest;
    let (_attributes, tail) = body.split_first().ok_or("empty record")?;
    body = tail;
    read_varlong(&mut body)?; // timestamp delta
    read_varint(&mut body)?; // offset delta
    let has_key = read_nullable(&mut body)?.is_some();
    read_nullable(&mut body)?; // value
    let headers = read_varint(&mut body)?;
    if headers < 0 {
        return Err("negative header count");
    }
    for _ in 0..headers {
        // Bounded by the record's bytes: every header takes at least two.
        if read_nullable(&mut body)?.is_none() {
            return Err("null header key");
        }
        read_nullable(&mut body)?; // header value
    }
    if !body.is_empty() {
        return Err("bytes after the record's headers");
    }
    Ok(has_key)
}

/// Reads a varint-length-prefixed byte string; length -1 is null.
fn read_nullable<'a>(buf: &mut &'a [u8]) -> Result<Option<&'a [u8]>, &'static str> {
    let len = read_varint(buf)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "negative length")?;
    if len > buf.len() {
        return Err("field past the end of the record");
    }
    let (bytes, rest) = buf.split_at(len);
    *buf = rest;
    Ok(Some(bytes))
}

/// Reads an unsigned LEB128 value of at most `max_bytes` bytes.
fn read_unsigned(buf: &mut &[u8], max_bytes: usize) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let (&byte, rest) = buf.split_first().ok_or("varint past the end")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long")
}

/// Reads a zigzag varint (Kafka's `varint`).
fn read_varint(buf: &mut &[u8]) -> Result<i32, &'static str> {
    let zigzag = read_unsigned(buf, 5)? as u32;
    Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
}

/// Reads a zigzag varlong (Kafka's `varlong`).
fn read_varlong(buf: &mut &[u8]) -> Result<i64, &'static str> {
    let zigzag = read_unsigned(buf, 10)?;
    Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
}
