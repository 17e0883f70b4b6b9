//! What one connection remembers of the idempotent batches it refused, so
//! that the requests a client pipelined behind a refused one are refused
//! the same way instead of with OUT_OF_ORDER_SEQUENCE_NUMBER.
//!
//! An idempotent producer keeps up to five produce requests in flight on a
//! connection. When the first is refused without being written (the lease
//! ran out, the ISR shrank below `min.insync.replicas`, the disk was full)
//! and the condition clears before the next one is handled, that next
//! request would leave a gap in the producer's sequence and be refused
//! with OUT_OF_ORDER_SEQUENCE_NUMBER. librdkafka answers such a gap by
//! bumping the producer epoch for every partition and renumbering every
//! message it is about to retry, including ones whose earlier send may be
//! in a log already (an acks=all write answered after a lost lease): those
//! are then stored twice. Refusing the requests behind a refused batch
//! with the same retriable error keeps the client's retries in order with
//! their old sequence numbers, which the log deduplicates.
//!
//! A batch from the refused one's sequence back (the client's retry), a
//! new producer id or epoch, ends the memory for that partition. So do a
//! new leader epoch of the partition and [`WINDOW`] passing: by then the
//! client has retried elsewhere, and a later batch that comes back here
//! with a higher sequence must not be refused for good. Requests on one
//! connection are handled one at a time, so the lock is never contended.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use kafka_protocol::ResponseError;
use rivulet_storage::batch::BatchHeader;

/// The refusals of one connection, by (topic, partition).
#[derive(Debug, Default)]
pub struct Pipeline {
    refused: Mutex<HashMap<(String, i32), Refused>>,
}

/// How long a refusal is shared: the requests a client pipelined behind
/// it are handled right after it (or, after a pause, right after each
/// other), well within this.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Refused {
    producer_id: i64,
    epoch: i16,
    first_sequence: i32,
    code: ResponseError,
    leader_epoch: i32,
    at: Instant,
}

/// The idempotent producer of a request's first batch: (id, epoch, base
/// sequence); `None` for batches without one.
fn producer_of(records: &[u8]) -> Option<(i64, i16, i32)> {
    let header = BatchHeader::parse(records).ok()?;
    (header.producer_id >= 0 && header.base_sequence >= 0).then_some((
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
    ))
}

/// Whether sequence `later` comes after `earlier` (sequences wrap at
/// i32::MAX to 0, and at most a few requests are in flight).
fn follows(later: i32, earlier: i32) -> bool {
    // Sequences live in 0..=i32::MAX, so distances are taken mod 2^31.
    let ahead = (i64::from(later) - i64::from(earlier)).rem_euclid(1 << 31);
    ahead > 0 && ahead < 1 << 30
}

/// Refusals that wrote nothing and that a client retries: the ones a
/// later pipelined request should share.
fn retriable_unwritten(code: ResponseError) -> bool {
    matches!(
        code,
        ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::NotEnoughReplicas
            | ResponseError::KafkaStorageError
    )
}

impl Pipeline {
    /// Before a partition's records are appended (`leader_epoch` gives the
    /// partition's now, -1 when unknown; asked only when a refusal is
    /// remembered): the refusal to repeat when they follow a batch of the
    /// same producer refused on this connection. Forgets the refusal when
    /// they do not. Costs one uncontended lock while nothing is remembered.
    pub fn check(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: impl FnOnce() -> i32,
        records: &[u8],
    ) -> Option<ResponseError> {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.is_empty() {
            return None;
        }
        let key = (topic.to_string(), partition);
        let earlier = *refused.get(&key)?;
        match producer_of(records) {
            Some((id, epoch, seq))
                if id == earlier.producer_id
                    && epoch == earlier.epoch
                    && follows(seq, earlier.first_sequence)
                    && leader_epoch() == earlier.leader_epoch
                    && earlier.at.elapsed() < WINDOW =>
            {
                Some(earlier.code)
            }
            _ => {
                refused.remove(&key);
                None
            }
        }
    }

    /// After a partition's records were refused with `code` without being
    /// written: remembers it when later batches must share it.
    pub fn refused(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        records: &[u8],
        code: ResponseError,
    ) {
        if !retriable_unwritten(code) {
            return;
        }
        let Some((producer_id, epoch, first_sequence)) = producer_of(records) else {
            return;
        };
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused
            .entry((topic.to_string(), partition))
            // The first refusal of a run is the one retries start from.
            .or_insert(Refused {
                producer_id,
                epoch,
                first_sequence,
                code,
                leader_epoch,
                at: Instant::now(),
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::txn_data_tests::idempotent_batch;

    #[test]
    fn requests_behind_a_refused_batch_share_its_refusal_until_the_retry() {
        let p = Pipeline::default();
        let not_leader = ResponseError::NotLeaderOrFollower;
        assert_eq!(p.check("t", 0, || 3, &idempotent_batch(7, 0, 10, 5)), None);
        p.refused("t", 0, 3, &idempotent_batch(7, 0, 10, 5), not_leader);
        // Pipelined behind it: refused alike, whatever the condition now.
        assert_eq!(
            p.check("t", 0, || 3, &idempotent_batch(7, 0, 15, 5)),
            Some(not_leader)
        );
        p.refused("t", 0, 3, &idempotent_batch(7, 0, 15, 5), not_leader);
        // Other partitions and producers are not affected.
        assert_eq!(p.check("t", 1, || 3, &idempotent_batch(7, 0, 15, 5)), None);
        assert_eq!(p.check("u", 0, || 3, &idempotent_batch(7, 0, 15, 5)), None);
        // The retry from the first refused batch is let through, and the
        // memory ends.
        assert_eq!(p.check("t", 0, || 3, &idempotent_batch(7, 0, 10, 5)), None);
        assert_eq!(p.check("t", 0, || 3, &idempotent_batch(7, 0, 15, 5)), None);
    }

    #[test]
    fn only_unwritten_retriable_refusals_of_idempotent_batches_count() {
        let p = Pipeline::default();
        p.refused(
            "t",
            0,
            3,
            &idempotent_batch(7, 0, 10, 5),
            ResponseError::OutOfOrderSequenceNumber,
        );
        assert_eq!(p.check("t", 0, || 3, &idempotent_batch(7, 0, 15, 5)), None);
        p.refused(
            "t",
            0,
            3,
            &crate::partition::test_batch(3),
            ResponseError::NotEnoughReplicas,
        );
        assert_eq!(p.check("t", 0, || 3, &idempotent_batch(7, 0, 15, 5)), None);
        // A new epoch (the client bumped it) starts over.
        p.refused(
            "t",
            0,
            3,
            &idempotent_batch(7, 0, 10, 5),
            ResponseError::KafkaStorageError,
        );
        assert_eq!(p.check("t", 0, || 3, &idempotent_batch(7, 1, 0, 5)), None);
        assert_eq!(p.check("t", 0, || 3, &idempotent_batch(7, 0, 15, 5)), None);
    }

    #[test]
    fn a_new_leader_epoch_or_time_ends_the_memory() {
        let p = Pipeline::default();
        let not_leader = ResponseError::NotLeaderOrFollower;
        p.refused("t", 0, 3, &idempotent_batch(7, 0, 10, 5), not_leader);
        // The leadership moved away and back: the client retried at the
        // other leader, and its later batches are welcome here.
        assert_eq!(p.check("t", 0, || 5, &idempotent_batch(7, 0, 400, 5)), None);
        assert_eq!(p.check("t", 0, || 3, &idempotent_batch(7, 0, 405, 5)), None);

        p.refused("t", 0, 3, &idempotent_batch(7, 0, 10, 5), not_leader);
        if let Some(r) = p.refused.lock().unwrap().get_mut(&("t".to_string(), 0)) {
            r.at =
                r.at.checked_sub(WINDOW)
                    .expect("a clock older than the window");
        }
        assert_eq!(p.check("t", 0, || 3, &idempotent_batch(7, 0, 15, 5)), None);
    }

    #[test]
    fn sequences_wrap() {
        assert!(follows(0, i32::MAX));
        assert!(follows(5, i32::MAX - 3));
        assert!(!follows(i32::MAX - 3, 5));
        assert!(!follows(5, 5));
    }
}
