//! Proves that hostile array lengths in request frames are rejected without
//! aborting the process, once [`LazyLargeAlloc`] is the global allocator.
//!
//! Without it, each of these frames makes kafka-protocol 0.18 ask the
//! system allocator for hundreds of GiB and the test binary aborts.

use bytes::{BufMut, Bytes, BytesMut};
use rivulet_wire::{alloc::LazyLargeAlloc, request::decode_request, DecodeError};

#[global_allocator]
static GLOBAL: LazyLargeAlloc = LazyLargeAlloc;

/// Request header v1: api key, version, correlation id, null client id.
fn header_v1(api_key: i16, version: i16, correlation_id: i32) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(correlation_id);
    b.put_i16(-1);
    b
}

/// Request header v2: header v1 plus an empty tagged-field section.
fn header_v2(api_key: i16, version: i16, correlation_id: i32) -> BytesMut {
    let mut b = header_v1(api_key, version, correlation_id);
    b.put_u8(0);
    b
}

/// Unsigned varint encoding of `v`.
fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn assert_rejected(frame: BytesMut, correlation_id: i32) {
    let before = rss_kib();
    match decode_request(Bytes::from(frame)) {
        Err(DecodeError::Malformed {
            correlation_id: cid,
            message,
        }) => {
            assert_eq!(cid, Some(correlation_id));
            assert!(!message.is_empty());
        }
        other => panic!("expected a malformed-request error, got {other:?}"),
    }
    // The reservation was address space only: resident memory barely moved.
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
}

#[test]
fn produce_topic_array_of_i32_max() {
    // Produce v3: transactional id, acks, timeout, topic_data[i32::MAX].
    let mut f = header_v1(0, 3, 101);
    f.put_i16(-1);
    f.put_i16(-1);
    f.put_i32(30_000);
    f.put_i32(i32::MAX);
    assert_rejected(f, 101);
}

#[test]
fn produce_nested_partition_array_of_i32_max() {
    // One topic whose partition_data declares i32::MAX entries.
    let mut f = header_v1(0, 7, 102);
    f.put_i16(-1);
    f.put_i16(1);
    f.put_i32(30_000);
    f.put_i32(1);
    f.put_i16(1);
    f.put_slice(b"t");
    f.put_i32(i32::MAX);
    assert_rejected(f, 102);
}

#[test]
fn metadata_topic_array_of_i32_max() {
    // Metadata v1: topics[i32::MAX] (nullable array, so -1 would mean "all").
    let mut f = header_v1(3, 1, 103);
    f.put_i32(i32::MAX);
    assert_rejected(f, 103);
}

#[test]
fn metadata_compact_array_of_u32_max() {
    // Metadata v12 is flexible: topics is a compact array whose varint
    // length u32::MAX declares u32::MAX - 1 elements.
    let mut f = header_v2(3, 12, 104);
    put_uvarint(&mut f, u32::MAX);
    assert_rejected(f, 104);
}

#[test]
fn create_topics_compact_array_of_u32_max() {
    // CreateTopics v5 (flexible): topics[u32::MAX - 1] of large structs.
    let mut f = header_v2(19, 5, 105);
    put_uvarint(&mut f, u32::MAX);
    assert_rejected(f, 105);
}

#[test]
fn fetch_compact_array_of_u32_max() {
    // Fetch v12 (flexible): replica id, max wait, min/max bytes, isolation,
    // session id/epoch, then topics[u32::MAX - 1].
    let mut f = header_v2(1, 12, 106);
    f.put_i32(-1);
    f.put_i32(500);
    f.put_i32(1);
    f.put_i32(1 << 20);
    f.put_i8(0);
    f.put_i32(0);
    f.put_i32(-1);
    put_uvarint(&mut f, u32::MAX);
    assert_rejected(f, 106);
}

#[test]
fn huge_vec_reservation_is_lazy() {
    // Directly: 512 GiB of capacity, far over RAM + swap, costs nothing
    // until touched.
    let mut v: Vec<u64> = Vec::with_capacity(1 << 36);
    v.push(1);
    assert_eq!(v[0], 1);
}
