//! Transaction markers and aborted transactions: the parts of Kafka's
//! transaction format the partition log reads and writes.
//!
//! A transaction ends in each partition it wrote to with a *control batch*
//! written by the transaction coordinator (WriteTxnMarkers): attributes
//! transactional + control, the producer's id and epoch, no sequence, and
//! one control record whose key is `version i16 = 0, type i16` (0 abort,
//! 1 commit) and whose value is `version i16 = 0, coordinator epoch i32`.
//! Other control record types (KRaft's leader change, 2 and up) are not
//! transaction markers and are ignored here.
//!
//! An aborted transaction is remembered as an [`AbortedTxn`] in the
//! `.txnindex` of the segment holding its marker (`index/txn.rs`), so that
//! read_committed fetches can tell consumers which records to drop.

use crate::batch::{BatchHeader, CRC_AT, CRC_COVERED_FROM, LOG_OVERHEAD};

/// Attributes of a marker batch: transactional (bit 4) and control (bit 5).
const MARKER_ATTRIBUTES: i16 = 0x30;
/// Control record type of an abort marker.
const ABORT: i16 = 0;
/// Control record type of a commit marker.
const COMMIT: i16 = 1;

/// The content of a transaction marker's control record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Commit (true) or abort (false).
    pub commit: bool,
    /// Epoch of the coordinator that wrote it; a marker from an older
    /// coordinator than the last one seen for the producer is refused.
    pub coordinator_epoch: i32,
}

/// An aborted transaction, as Kafka's `.txnindex` stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer that aborted.
    pub producer_id: i64,
    /// First offset the transaction wrote in this partition.
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub last_offset: i64,
    /// The last stable offset once it was aborted: the first offset of the
    /// oldest transaction still open then, or `last_offset + 1`. A fetch
    /// that finds an entry at or past its upper bound stops looking.
    pub last_stable_offset: i64,
}

/// Encodes a marker batch (base offset 0 and leader epoch -1, which the log
/// stamps) for `producer_id`/`producer_epoch` at time `timestamp`.
pub fn encode_marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    timestamp: i64,
) -> Vec<u8> {
    let kind = if marker.commit { COMMIT } else { ABORT };
    // The record: attributes, timestamp delta, offset delta, key, value,
    // header count; lengths are zigzag varints, all of them one byte here.
    let mut record = vec![0u8, 0, 0];
    record.push(zigzag(4));
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&kind.to_be_bytes());
    record.push(zigzag(6));
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    record.push(0);
    let body_len = 1 + record.len();
    let total = BatchHeader::SIZE + body_len;
    let mut buf = Vec::with_capacity(total);
    buf.extend_from_slice(&0i64.to_be_bytes());
    buf.extend_from_slice(&((total - LOG_OVERHEAD) as i32).to_be_bytes());
    buf.extend_from_slice(&(-1i32).to_be_bytes());
    buf.push(2);
    buf.extend_from_slice(&[0; 4]); // CRC, filled in below
    buf.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    buf.extend_from_slice(&timestamp.to_be_bytes());
    buf.extend_from_slice(&timestamp.to_be_bytes());
    buf.extend_from_slice(&producer_id.to_be_bytes());
    buf.extend_from_slice(&producer_epoch.to_be_bytes());
    buf.extend_from_slice(&(-1i32).to_be_bytes()); // no sequence
    buf.extend_from_slice(&1i32.to_be_bytes());
    buf.push(zigzag(record.len() as i8));
    buf.extend_from_slice(&record);
    let crc = crc32c::crc32c(&buf[CRC_COVERED_FROM..]);
    buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    buf
}

/// The transaction marker in `batch` (one whole batch, header included),
/// or `None` if it is not an uncompressed control batch whose first
/// record is a well-formed commit or abort marker.
pub fn parse_marker(batch: &[u8]) -> Option<Marker> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.compression() != 0 {
        return None;
    }
    let mut r = Varints(batch.get(BatchHeader::SIZE..header.total_size().min(batch.len()))?);
    r.varint()?; // record length
    r.take(1)?; // attributes
    r.varint()?; // timestamp delta
    r.varint()?; // offset delta
    let key = r.sized()?;
    let value = r.sized()?;
    let kind = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
    let commit = match kind {
        ABORT => false,
        COMMIT => true,
        _ => return None,
    };
    let coordinator_epoch = i32::from_be_bytes(value.get(2..6)?.try_into().ok()?);
    Some(Marker {
        commit,
        coordinator_epoch,
    })
}

/// Zigzag encoding of a small value that fits one varint byte.
fn zigzag(v: i8) -> u8 {
    ((v << 1) ^ (v >> 7)) as u8
}

/// Reads Kafka's zigzag varints from a shrinking slice.
struct Varints<'a>(&'a [u8]);

impl<'a> Varints<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn varint(&mut self) -> Option<i64> {
        let mut raw = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }

    /// A length-prefixed byte field; null (-1) reads as empty.
    fn sized(&mut self) -> Option<&'a [u8]> {
        let len = self.varint()?;
        if len < 0 {
            return Some(&[]);
        }
        self.take(usize::try_from(len).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;
    use crate::batch::{check_crc, check_header};

    #[test]
    fn marker_batches_are_kafka_control_batches() {
        for (commit, coordinator_epoch) in [(true, 7), (false, 0), (false, i32::MAX)] {
            let marker = Marker {
                commit,
                coordinator_epoch,
            };
            let batch = encode_marker_batch(42, 3, marker, 1_700_000_000_000);
            let header = check_header(&batch).unwrap();
            check_crc(&batch, &header).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (42, 3, -1)
            );
            assert_eq!(parse_marker(&batch), Some(marker));
            // Kafka's own decoder reads the control record.
            let decoded = RecordBatchDecoder::decode(&mut Bytes::from(batch)).unwrap();
            let record = &decoded.records[0];
            assert!(record.control && record.transactional);
            let key = record.key.as_ref().unwrap();
            assert_eq!(&key[..], &[0, 0, 0, u8::from(commit)]);
            let value = record.value.as_ref().unwrap();
            assert_eq!(&value[2..], &coordinator_epoch.to_be_bytes());
        }
    }

    #[test]
    fn other_batches_are_not_markers() {
        let data = crate::test_util::simple(1, 0, 0);
        assert_eq!(parse_marker(&data), None);
        let mut leader_change = encode_marker_batch(
            1,
            0,
            Marker {
                commit: true,
                coordinator_epoch: 0,
            },
            0,
        );
        // Control type 2 (KRaft's leader change) at the key's type field.
        let type_at = BatchHeader::SIZE + 1 + 3 + 1 + 3;
        leader_change[type_at] = 2;
        assert_eq!(parse_marker(&leader_change), None);
        let marker = encode_marker_batch(
            1,
            0,
            Marker {
                commit: true,
                coordinator_epoch: 0,
            },
            0,
        );
        for cut in 0..marker.len() {
            let _ = parse_marker(&marker[..cut]);
        }
    }
}
