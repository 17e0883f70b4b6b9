//! Transaction version 2 (KIP-890 part 2, Kafka 4.0): the coordinator's
//! transitions for clients that speak it, pure like [`super::state`].
//!
//! - Every EndTxn bumps the producer epoch, and the markers carry the
//!   bumped epoch, so a write the old producer left in flight is refused
//!   at every partition of the transaction. The answer carries the new
//!   producer id and epoch; the client uses them for its next transaction
//!   without another InitProducerId.
//! - When the bump exhausts the epoch (the current one is
//!   `Short.MAX_VALUE - 1`), a new producer id is allocated at the end
//!   and persisted with the Prepare* state (`next_producer_id`); the
//!   markers go out with epoch `Short.MAX_VALUE`, and the completion moves
//!   to the new id at epoch 0 (the old one is kept as
//!   `previous_producer_id`).
//! - A retried EndTxn (its answer was lost) comes with the epoch before
//!   the bump: it succeeds with the bumped epoch if it matches the end
//!   that completed, as Kafka decides (its table, for Empty/Complete*):
//!
//! ```text
//!                 | Abort: retry | Abort: current | Commit: retry | Commit: current
//! Empty           | FENCED       | bump           | FENCED        | INVALID_TXN_STATE
//! CompleteAbort   | ok           | bump           | INVALID_TXN   | INVALID_TXN_STATE
//! CompleteCommit  | INVALID_TXN  | bump           | ok            | INVALID_TXN_STATE
//! ```
//!
//! - Partitions join the transaction on the leader's behalf when the
//!   first batch arrives (AddPartitionsToTxn v5 from the broker) and the
//!   offsets partition on the group coordinator's (TxnOffsetCommit v5).

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use super::state::{self, TxnMetadata, TxnState};

/// Kafka's `ClientTransactionVersion` of a transaction version 2 client.
pub const CLIENT_VERSION: i16 = 2;

/// What an EndTxn v5 does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndPlanV2 {
    /// Persist this (Prepare*, epoch bumped), answer with its producer
    /// (see [`answer_of`]), then write markers.
    Prepare(TxnMetadata),
    /// A retry of the end that completed: answer success with this
    /// producer id and epoch.
    AlreadyDone(i64, i16),
}

/// Whether `epoch` can no longer be bumped without running out (Kafka's
/// `isProducerEpochExhausted`).
fn exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The producer id and epoch an end's answer carries: the next producer id
/// at epoch 0 when the end rolls over, else the bumped epoch.
pub fn answer_of(prepared: &TxnMetadata) -> (i64, i16) {
    if prepared.next_producer_id >= 0 {
        (prepared.next_producer_id, 0)
    } else {
        (prepared.producer_id, prepared.producer_epoch)
    }
}

/// EndTxn v5 of `producer_id`/`epoch` on `m`. `allocate` hands out a new
/// producer id, needed only when the epoch is exhausted.
pub fn end_txn(
    m: &TxnMetadata,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now: i64,
    allocate: impl FnOnce() -> Result<i64, ResponseError>,
) -> Result<EndPlanV2, ResponseError> {
    // The client retried an end whose answer it did not get.
    let retry_on_bump = m.producer_epoch > 0 && i32::from(m.producer_epoch) == i32::from(epoch) + 1;
    let retry_on_rollover = m.previous_producer_id == producer_id
        && m.previous_producer_id >= 0
        && epoch == i16::MAX - 1
        && m.producer_epoch == 0;
    if m.producer_id != producer_id && !retry_on_rollover {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    let valid_epoch = match m.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
        TxnState::CompleteCommit | TxnState::CompleteAbort => {
            retry_on_bump || retry_on_rollover || epoch == m.producer_epoch
        }
        _ => epoch == m.producer_epoch,
    };
    if !valid_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    let retry = retry_on_bump || retry_on_rollover;
    let done = || Ok(EndPlanV2::AlreadyDone(m.producer_id, m.producer_epoch));
    match (m.state, commit) {
        (TxnState::Ongoing, _) => prepare(m, commit, false, now, allocate),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if retry => done(),
        (TxnState::CompleteCommit | TxnState::CompleteAbort, false) if !retry => {
            prepare(m, false, true, now, allocate)
        }
        (TxnState::Empty, false) => prepare(m, false, true, now, allocate),
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(ResponseError::ConcurrentTransactions)
        }
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// The Prepare* state of an end, epoch bumped (and a next producer id
/// when that exhausts it). An abort with nothing added starts and ends now.
fn prepare(
    m: &TxnMetadata,
    commit: bool,
    nothing_added: bool,
    now: i64,
    allocate: impl FnOnce() -> Result<i64, ResponseError>,
) -> Result<EndPlanV2, ResponseError> {
    let mut next = m.clone();
    if exhausted(m.producer_epoch) {
        next.next_producer_id = allocate()?;
    }
    // The epoch may reach Short.MAX_VALUE here: it is only ever used for
    // the markers, which fence every older epoch.
    next.producer_epoch = m.producer_epoch.saturating_add(1);
    next.state = if commit {
        TxnState::PrepareCommit
    } else {
        TxnState::PrepareAbort
    };
    if nothing_added {
        next.partitions = BTreeSet::new();
        next.start_ms = now;
    }
    next.client_version = CLIENT_VERSION;
    next.update_ms = now;
    Ok(EndPlanV2::Prepare(next))
}

/// AddPartitionsToTxn v5 (a leader's or the group coordinator's, for a
/// transaction version 2 client): the partitions join the transaction.
/// While markers are being written the client may already use the id and
/// epoch its EndTxn answer gave it, so that case is checked first and
/// answered CONCURRENT_TRANSACTIONS (retriable), not as a fenced producer.
pub fn add_partitions(
    m: &TxnMetadata,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now: i64,
) -> Result<Option<TxnMetadata>, ResponseError> {
    if m.state.is_preparing() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    let added = state::add_partitions(m, producer_id, epoch, partitions, now)?;
    Ok(added.map(|mut next| {
        next.client_version = CLIENT_VERSION;
        next
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::state::complete;

    fn open(epoch: i16) -> TxnMetadata {
        TxnMetadata {
            transactional_id: "t".into(),
            producer_id: 7,
            producer_epoch: epoch,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("a".to_string(), 0)].into_iter().collect(),
            start_ms: 10,
            update_ms: 10,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_version: CLIENT_VERSION,
        }
    }

    fn no_alloc() -> Result<i64, ResponseError> {
        panic!("no producer id should be allocated")
    }

    fn prepared(plan: Result<EndPlanV2, ResponseError>) -> TxnMetadata {
        match plan {
            Ok(EndPlanV2::Prepare(m)) => m,
            other => panic!("expected Prepare, got {other:?}"),
        }
    }

    #[test]
    fn every_end_bumps_the_epoch_and_a_retry_gets_the_same_answer() {
        let p = prepared(end_txn(&open(3), 7, 3, true, 20, no_alloc));
        assert_eq!((p.state, p.producer_epoch), (TxnState::PrepareCommit, 4));
        assert_eq!(p.partitions.len(), 1, "markers go to the partitions");
        assert_eq!(answer_of(&p), (7, 4));
        // A retry while the markers are written: retriable.
        assert_eq!(
            end_txn(&p, 7, 3, true, 21, no_alloc),
            Err(ResponseError::ConcurrentTransactions)
        );
        let done = complete(&p, 30);
        assert_eq!((done.producer_id, done.producer_epoch), (7, 4));
        // The retry after completion: success with the bumped epoch.
        assert_eq!(
            end_txn(&done, 7, 3, true, 31, no_alloc),
            Ok(EndPlanV2::AlreadyDone(7, 4))
        );
        // Retrying it as an abort is not the end that happened.
        assert_eq!(
            end_txn(&done, 7, 3, false, 31, no_alloc),
            Err(ResponseError::InvalidTxnState)
        );
        // An older epoch is a zombie.
        assert_eq!(
            end_txn(&done, 7, 2, true, 31, no_alloc),
            Err(ResponseError::ProducerFenced)
        );
        // Committing again with the new epoch and nothing open: invalid.
        assert_eq!(
            end_txn(&done, 7, 4, true, 31, no_alloc),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            end_txn(&done, 8, 4, true, 31, no_alloc),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn an_abort_with_nothing_added_still_bumps() {
        let mut m = open(0);
        m.state = TxnState::Empty;
        m.partitions.clear();
        m.start_ms = -1;
        let p = prepared(end_txn(&m, 7, 0, false, 50, no_alloc));
        assert_eq!(
            (p.state, p.producer_epoch, p.start_ms, p.partitions.len()),
            (TxnState::PrepareAbort, 1, 50, 0)
        );
        assert_eq!(
            end_txn(&m, 7, 0, true, 50, no_alloc),
            Err(ResponseError::InvalidTxnState),
            "nothing to commit"
        );
        let aborted = complete(&p, 51);
        assert_eq!(
            end_txn(&aborted, 7, 0, false, 52, no_alloc),
            Ok(EndPlanV2::AlreadyDone(7, 1))
        );
        let again = prepared(end_txn(&aborted, 7, 1, false, 53, no_alloc));
        assert_eq!(again.producer_epoch, 2);
    }

    #[test]
    fn an_exhausted_epoch_rolls_over_to_a_new_producer_id() {
        let m = open(i16::MAX - 1);
        let p = prepared(end_txn(&m, 7, i16::MAX - 1, true, 20, || Ok(99)));
        assert_eq!(
            (p.producer_id, p.producer_epoch, p.next_producer_id),
            (7, i16::MAX, 99),
            "markers fence with the last epoch"
        );
        assert_eq!(answer_of(&p), (99, 0));
        let done = complete(&p, 30);
        assert_eq!(
            (
                done.producer_id,
                done.producer_epoch,
                done.previous_producer_id,
                done.next_producer_id
            ),
            (99, 0, 7, -1)
        );
        // The retry with the old id and its last epoch gets the new one.
        assert_eq!(
            end_txn(&done, 7, i16::MAX - 1, true, 31, no_alloc),
            Ok(EndPlanV2::AlreadyDone(99, 0))
        );
        assert_eq!(
            end_txn(&done, 7, i16::MAX - 2, true, 31, no_alloc),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        // A failed allocation leaves the state as it was.
        assert_eq!(
            end_txn(&m, 7, i16::MAX - 1, true, 20, || Err(
                ResponseError::CoordinatorNotAvailable
            )),
            Err(ResponseError::CoordinatorNotAvailable)
        );
    }

    #[test]
    fn adding_waits_for_markers_and_marks_the_client_version() {
        let p = prepared(end_txn(&open(0), 7, 0, true, 20, no_alloc));
        let part = [("b".to_string(), 1)];
        // The client already has the bumped epoch; markers are still going.
        assert_eq!(
            add_partitions(&p, 7, 1, &part, 21),
            Err(ResponseError::ConcurrentTransactions)
        );
        let mut done = complete(&p, 22);
        done.client_version = 0;
        let next = add_partitions(&done, 7, 1, &part, 23).unwrap().unwrap();
        assert_eq!(
            (next.state, next.start_ms, next.client_version),
            (TxnState::Ongoing, 23, CLIENT_VERSION)
        );
        assert_eq!(next.partitions, part.iter().cloned().collect());
        assert_eq!(
            add_partitions(&done, 7, 0, &part, 23),
            Err(ResponseError::ProducerFenced),
            "the epoch before the bump is fenced"
        );
    }
}
