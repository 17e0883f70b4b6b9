//! A compressed batch is small on the wire but its records section may
//! claim any size once decompressed. The produce-path checks that look
//! inside batches (the compacted-topic key check, `compression.type`
//! rewrites) must refuse such a batch without committing that memory.
//!
//! The bomb is a hand-built zstd frame of RLE blocks: 4 bytes per 128 KiB
//! of output, so 20 KiB of batch ask for 640 MiB. The test's allocator
//! tracks the peak of live heap bytes during each check.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use rivulet_storage::{
    batch::{validate_batches, BatchHeader, CRC_AT, CRC_COVERED_FROM, LENGTH_AT, LOG_OVERHEAD},
    rewrite::{
        keyless_records, recompress, CompressionType, RewriteError, MAX_DECOMPRESSED_SECTION,
    },
};

/// The system allocator, counting live bytes and their high-water mark.
struct Peak;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters only observe the sizes.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

/// The peak of live heap bytes (above the start) while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(start))
}

/// A zstd frame (no checksum, 128 KiB window) whose `blocks` RLE blocks
/// each decompress to 128 KiB of zeros.
fn zstd_rle_bomb(blocks: usize) -> Vec<u8> {
    // Magic, then a frame header descriptor with no content size, no
    // checksum and no dictionary, then the window descriptor (2^17).
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let header = (128 * 1024) << 3 | 1 << 1 | last;
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    frame
}

/// One whole v2 batch of `records` records, `codec` attribute bits and
/// this records section, with a correct length and CRC.
fn batch(codec: i16, records: i32, section: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; BatchHeader::SIZE];
    b[16] = 2; // magic
    b[21..23].copy_from_slice(&codec.to_be_bytes());
    b[23..27].copy_from_slice(&(records - 1).to_be_bytes()); // lastOffsetDelta
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producerId
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    b[57..61].copy_from_slice(&records.to_be_bytes());
    b.extend_from_slice(section);
    let length = (b.len() - LOG_OVERHEAD) as i32;
    b[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_COVERED_FROM..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn a_zstd_bomb_is_refused_without_committing_its_size() {
    // 640 MiB of zeros in 20 KiB; it passes the header checks.
    let bomb = batch(4, 1, &zstd_rle_bomb(5120));
    assert!(bomb.len() < 32 * 1024);
    validate_batches(&bomb).expect("the bomb's headers are valid");
    // The section may grow to the limit; growing it copies, so the old
    // and the new buffer are briefly both live.
    let limit = 2 * MAX_DECOMPRESSED_SECTION;
    assert!(limit < 640 << 20);

    let (keys, peak) = peak_during(|| keyless_records(&bomb, "t", 0));
    assert!(
        matches!(&keys, Err(RewriteError::Decompress { reason, .. }) if reason.contains("more than")),
        "{keys:?}"
    );
    assert!(peak < limit, "the key check held {peak} bytes at once");

    let (rewritten, peak) = peak_during(|| recompress(&bomb, CompressionType::Gzip));
    assert!(
        matches!(&rewritten, Err(RewriteError::Decompress { reason, .. }) if reason.contains("more than")),
        "{rewritten:?}"
    );
    assert!(peak < limit, "recompression held {peak} bytes at once");
}
