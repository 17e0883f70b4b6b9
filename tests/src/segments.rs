//! Reading the broker's on-disk log from the outside.
//!
//! The layout is Kafka's (see DESIGN.md): `<data-dir>/<topic>-<partition>/`
//! holds segments named by their 20-digit base offset, and a `.log` file is a
//! plain sequence of v2 record batches. Tests use this to cut a segment in the
//! middle of a batch (a torn write), to see that retention removed old
//! segments, and to check that batches are stored as produced.

use std::path::{Path, PathBuf};

/// Bytes before a batch's length field ends: base offset (8) + length (4).
pub const BATCH_PREFIX: u64 = 12;

/// The header fields of one stored record batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// Byte position of the batch in the segment file.
    pub position: u64,
    /// Size of the whole batch including the 12-byte prefix.
    pub size: u64,
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Record batch attributes; the low 3 bits are the compression codec.
    pub attributes: i16,
    /// Producer id, -1 for a producer without idempotence.
    pub producer_id: i64,
    /// Number of records.
    pub record_count: i32,
}

impl StoredBatch {
    /// The compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn codec(&self) -> i16 {
        self.attributes & 0x7
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
}

/// `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The `.log` files of a partition directory, in base-offset order.
pub fn log_segments(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

/// The base offset a segment file is named after.
pub fn segment_base_offset(path: &Path) -> i64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{} is not named by a base offset", path.display()))
}

/// The file name of the segment with base offset `base`.
pub fn segment_name(base: i64) -> String {
    format!("{base:020}.log")
}

/// Parses the batch headers of a segment file, stopping at the end of the
/// file, at an incomplete batch or at zero padding.
pub fn read_batches(path: &Path) -> Vec<StoredBatch> {
    let data =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_batches(&data)
}

/// [`read_batches`] over bytes already read.
pub fn parse_batches(data: &[u8]) -> Vec<StoredBatch> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 61 <= data.len() {
        let at = |o: usize, n: usize| &data[pos + o..pos + o + n];
        let length = i32::from_be_bytes(at(8, 4).try_into().expect("4 bytes"));
        if length <= 0 {
            break;
        }
        let size = BATCH_PREFIX as usize + length as usize;
        if pos + size > data.len() {
            break;
        }
        out.push(StoredBatch {
            position: pos as u64,
            size: size as u64,
            base_offset: i64::from_be_bytes(at(0, 8).try_into().expect("8 bytes")),
            attributes: i16::from_be_bytes(at(21, 2).try_into().expect("2 bytes")),
            last_offset_delta: i32::from_be_bytes(at(23, 4).try_into().expect("4 bytes")),
            producer_id: i64::from_be_bytes(at(43, 8).try_into().expect("8 bytes")),
            record_count: i32::from_be_bytes(at(57, 4).try_into().expect("4 bytes")),
        });
        pos += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::Compression;

    use super::*;
    use crate::kafka::{encode_batch, Msg};

    #[test]
    fn parses_encoded_batches_and_stops_at_a_torn_tail() {
        let mut data = encode_batch(
            &[Msg::new(Some("k"), "a"), Msg::new(None, "b")],
            Compression::None,
        )
        .to_vec();
        let first = data.len();
        data.extend_from_slice(&encode_batch(&[Msg::new(None, "c")], Compression::Gzip));
        let batches = parse_batches(&data);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].record_count, 2);
        assert_eq!(batches[0].size, first as u64);
        assert_eq!(batches[1].position, first as u64);
        assert_eq!(batches[1].codec(), 1);
        assert_eq!(batches[0].producer_id, -1);
        data.truncate(data.len() - 3);
        assert_eq!(parse_batches(&data).len(), 1);
    }
}
