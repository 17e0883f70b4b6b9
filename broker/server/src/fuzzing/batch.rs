//! The `batch_validator` target: arbitrary bytes as one partition's
//! `records` in a Produce request, through every check the produce
//! handler runs before the log appends (batch headers, sizes, CRC-32C,
//! record counts, the compacted-topic key check and the topic's
//! `compression.type`, which decompress and walk every record).
//!
//! The first byte is the topic configuration:
//! - bits 0-2: `compression.type` (mod 6, in [`CompressionType::ALL`]'s order);
//! - bit 3: `cleanup.policy=compact` (the key check);
//! - bit 4: fix up each batch's `batchLength` (clamped to the bytes left)
//!   and CRC-32C before the check, so mutations of a compressed payload
//!   get past the CRC and reach the decompressors;
//! - bit 5: a small `max.message.bytes` (4 KiB).
//!
//! Besides "every input returns", accepted records must re-validate the
//! same: the same count, and records rewritten for `compression.type` are
//! accepted as they are (nothing left to rewrite) with the same count.

use rivulet_storage::rewrite::{CompressionType, Recompressed};
use rivulet_wire::batch::{
    complete_batches_len, BatchHeader, CRC_AT, CRC_COVERED_FROM, LENGTH_AT, LOG_OVERHEAD,
};

use crate::{handlers::produce::check_records, topic_config::TopicConfig};

/// The `batch_validator` target body.
///
/// # Panics
///
/// When accepted records do not re-validate the same (see the module docs).
pub fn batch_validator(data: &[u8]) {
    let Some((&flags, records)) = data.split_first() else {
        return;
    };
    let mut config = TopicConfig {
        compression: CompressionType::ALL[usize::from(flags & 0x07) % CompressionType::ALL.len()],
        cleanup_compact: flags & 0x08 != 0,
        ..TopicConfig::default()
    };
    if flags & 0x20 != 0 {
        config.max_message_bytes = 4096;
    }
    let mut records = records.to_vec();
    if flags & 0x10 != 0 {
        fix_lengths_and_crcs(&mut records);
    }
    // The consumer side's batch walk must stay inside the buffer too.
    assert!(complete_batches_len(&records) <= records.len());
    let Ok((count, outcome)) = check_records(&records, &config, "fuzz", 0) else {
        return;
    };
    let again = check_records(&records, &config, "fuzz", 0);
    assert_eq!(
        again.as_ref().map(|(c, o)| (*c, o)),
        Ok((count, &outcome)),
        "validation is not deterministic"
    );
    if let Recompressed::Rewritten(rewritten) = outcome {
        let revalidated = check_records(&rewritten, &config, "fuzz", 0);
        assert_eq!(
            revalidated,
            Ok((count, Recompressed::Unchanged)),
            "records rewritten for compression.type={} do not re-validate as they are",
            config.compression
        );
    }
}

/// Makes each batch's `batchLength` fit the bytes left and its CRC-32C
/// match, walking batch by batch; stops at a piece too short for a header.
fn fix_lengths_and_crcs(records: &mut [u8]) {
    let mut at = 0;
    while let Some(rest) = records.get_mut(at..) {
        let Ok(header) = BatchHeader::parse(rest) else {
            return;
        };
        let left = rest.len() - LOG_OVERHEAD;
        let length = usize::try_from(header.batch_length)
            .unwrap_or(0)
            .clamp(BatchHeader::SIZE - LOG_OVERHEAD, left);
        let length_field = i32::try_from(length).unwrap_or(i32::MAX);
        rest[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length_field.to_be_bytes());
        let end = LOG_OVERHEAD + length;
        let crc = crc32c::crc32c(&rest[CRC_COVERED_FROM..end]);
        rest[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        at += end;
    }
}

#[cfg(test)]
mod tests {
    use rivulet_wire::batch::validate_batches;

    use super::*;

    #[test]
    fn fix_up_makes_a_damaged_header_pass_the_crc() {
        // A header that claims a huge body and carries a wrong CRC.
        let mut batch = vec![0u8; BatchHeader::SIZE + 10];
        batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        batch[16] = 2; // magic
        batch[57..61].copy_from_slice(&1i32.to_be_bytes()); // recordsCount
        fix_lengths_and_crcs(&mut batch);
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.total_size(), batch.len());
        assert_eq!(validate_batches(&batch).unwrap().len(), 1);
    }
}
