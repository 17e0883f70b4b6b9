//! Test helpers: builds valid RecordBatch v2 bytes without a record encoder.
//!
//! The storage layer never looks inside records, so the body is filler bytes;
//! only the header and the CRC-32C have to be right.

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
    let total = crate::batch::BatchHeader::SIZE + spec.body_len;
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
    buf.extend((0..spec.body_len).map(|i| spec.fill.wrapping_add(i as u8)));
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
