//! The group coordinator: Kafka's classic consumer group protocol and the
//! committed offsets, persisted in the internal topic `__consumer_offsets`.
//!
//! - [`state`]: the pure state machine of one group (no I/O, time passed in).
//! - [`records`]: Kafka's key and value formats of `__consumer_offsets`.
//! - [`store`]: writing those records as batches and reading them back at start.
//! - [`coordinator`]: the async shell: the groups, parked JoinGroup and
//!   SyncGroup answers, timers, loading, offset expiry and metrics.
//!
//! Ownership rule, ready for more than one broker: a broker coordinates the
//! groups whose `__consumer_offsets` partition it leads
//! ([`partition_for`] picks the partition as Kafka does). A single broker
//! leads every partition, so it coordinates every group.

pub mod coordinator;
pub mod records;
pub mod state;
pub mod store;

pub use coordinator::{run, Coordinator, CoordinatorConfig};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` (over UTF-16 code units), which Kafka uses to
/// place a group in `__consumer_offsets`.
pub fn java_hash_code(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group: `abs(hashCode) % partitions`
/// with Kafka's `Utils.abs` (which maps `i32::MIN` to 0).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    (java_hash_code(group_id) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_match_kafka() {
        // Values from Java's String.hashCode.
        assert_eq!(java_hash_code(""), 0);
        assert_eq!(java_hash_code("abc"), 96354);
        assert_eq!(java_hash_code("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("abc", 50), 96354 % 50);
        for g in ["a", "group-1", "console-consumer-12345", "ünïcode"] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
        }
    }
}
