//! One transactional id's state machine, pure (time passed in, no I/O), as
//! Kafka's `TransactionCoordinator` runs it (the classic protocol, KIP-98,
//! with KIP-360's epoch bumps):
//!
//! ```text
//! Empty --AddPartitions--> Ongoing --EndTxn(commit)--> PrepareCommit --markers--> CompleteCommit
//!                             |  \--EndTxn(abort) / timeout / new InitProducerId--> PrepareAbort --markers--> CompleteAbort
//! Complete* --AddPartitions--> Ongoing;  Complete*/Empty --InitProducerId--> Empty (epoch + 1)
//! ```
//!
//! Each transition returns the new metadata to persist in
//! `__transaction_state`; the coordinator writes it, and only then makes
//! it current and answers. A timeout or a new InitProducerId that finds a
//! transaction open aborts it with the epoch bumped, so markers fence the
//! old producer at every partition.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

/// Kafka's transaction states, with their codes in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// No transaction open.
    Empty,
    /// Partitions added, not yet ended.
    Ongoing,
    /// Commit decided; markers being written.
    PrepareCommit,
    /// Abort decided; markers being written.
    PrepareAbort,
    /// Committed; markers written.
    CompleteCommit,
    /// Aborted; markers written.
    CompleteAbort,
    /// Expired; about to be removed.
    Dead,
    /// Being fenced before an abort (Kafka's intermediate state).
    PrepareEpochFence,
}

impl TxnState {
    const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The code in `__transaction_state`.
    pub fn code(self) -> i8 {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0) as i8
    }

    /// The state of a code.
    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// Kafka's name, as DescribeTransactions and ListTransactions report it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state of a name (ListTransactions' filter).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Markers are being written.
    pub fn is_preparing(self) -> bool {
        matches!(
            self,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        )
    }
}

/// What the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id it maps to.
    pub producer_id: i64,
    /// The current epoch; older ones are fenced.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    /// Where the transaction is.
    pub state: TxnState,
    /// The partitions of the open transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (-1 when none is open).
    pub start_ms: i64,
    /// The last change.
    pub update_ms: i64,
    /// The producer id before the last rollover to a new one at epoch
    /// exhaustion (-1: none), so that a retried EndTxn of the old id is
    /// recognised (Kafka's `PreviousProducerId`).
    pub previous_producer_id: i64,
    /// The producer id a transaction version 2 end moves to once its
    /// markers are written, because it exhausted the epoch (-1: none).
    /// Persisted with the Prepare* state, so a coordinator that takes over
    /// completes the rollover as promised (Kafka's `NextProducerId`).
    pub next_producer_id: i64,
    /// The transaction version the client speaks: 0 for the classic
    /// protocol, 2 once it used a KIP-890 part 2 request (Kafka's
    /// `ClientTransactionVersion`).
    pub client_version: i16,
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitPlan {
    /// Persist this metadata, then answer with its producer id and epoch.
    Ready(TxnMetadata),
    /// A transaction is open: persist this (PrepareAbort, epoch bumped),
    /// write abort markers, and answer CONCURRENT_TRANSACTIONS meanwhile
    /// (the client retries).
    AbortFirst(TxnMetadata),
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndPlan {
    /// Persist this (Prepare*), answer, then write markers.
    Prepare(TxnMetadata),
    /// A retry of an EndTxn that already completed: answer success.
    AlreadyDone,
}

/// The epoch after `epoch`, or `None` when it is exhausted and the
/// producer needs a new id (Kafka keeps `Short.MAX_VALUE` for fencing).
pub(super) fn next_epoch(epoch: i16) -> Option<i16> {
    (epoch < i16::MAX - 1).then_some(epoch + 1)
}

/// InitProducerId with a transactional id. `current` is the stored
/// metadata, `expected` the producer id and epoch of a KIP-360 client
/// asking to continue, `allocate` hands out a fresh producer id.
pub fn init_producer_id(
    transactional_id: &str,
    current: Option<&TxnMetadata>,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    now: i64,
    allocate: impl FnOnce() -> Result<i64, ResponseError>,
) -> Result<InitPlan, ResponseError> {
    let fresh = |producer_id| TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch: 0,
        timeout_ms,
        state: TxnState::Empty,
        partitions: BTreeSet::new(),
        start_ms: -1,
        update_ms: now,
        previous_producer_id: -1,
        next_producer_id: -1,
        client_version: 0,
    };
    let Some(m) = current.filter(|m| m.state != TxnState::Dead) else {
        return Ok(InitPlan::Ready(fresh(allocate()?)));
    };
    if m.state.is_preparing() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if let Some((pid, epoch)) = expected {
        // KIP-360: only the current producer may continue its id.
        let known = pid == m.producer_id && epoch == m.producer_epoch;
        if !known {
            return Err(ResponseError::ProducerFenced);
        }
    }
    if m.state == TxnState::Ongoing {
        let mut abort = m.clone();
        abort.producer_epoch = next_epoch(m.producer_epoch).unwrap_or(m.producer_epoch);
        abort.state = TxnState::PrepareAbort;
        abort.update_ms = now;
        return Ok(InitPlan::AbortFirst(abort));
    }
    let mut next = m.clone();
    match next_epoch(m.producer_epoch) {
        Some(epoch) => next.producer_epoch = epoch,
        None => {
            next.producer_id = allocate()?;
            next.producer_epoch = 0;
        }
    }
    next.timeout_ms = timeout_ms;
    next.state = TxnState::Empty;
    next.partitions.clear();
    next.start_ms = -1;
    next.update_ms = now;
    Ok(InitPlan::Ready(next))
}

/// Checks that a request comes from the current producer of `m`.
pub fn check_producer(m: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
    if producer_id != m.producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if epoch != m.producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(())
}

/// AddPartitionsToTxn / AddOffsetsToTxn: `Some(new)` to persist, `None`
/// when every partition is already part of the open transaction.
pub fn add_partitions(
    m: &TxnMetadata,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now: i64,
) -> Result<Option<TxnMetadata>, ResponseError> {
    check_producer(m, producer_id, epoch)?;
    if m.state.is_preparing() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if m.state == TxnState::Dead {
        return Err(ResponseError::InvalidTxnState);
    }
    if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = m.clone();
    if m.state != TxnState::Ongoing {
        next.partitions.clear();
        next.start_ms = now;
    }
    next.state = TxnState::Ongoing;
    next.partitions.extend(partitions.iter().cloned());
    next.update_ms = now;
    Ok(Some(next))
}

/// EndTxn.
pub fn end_txn(
    m: &TxnMetadata,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now: i64,
) -> Result<EndPlan, ResponseError> {
    check_producer(m, producer_id, epoch)?;
    match (m.state, commit) {
        (TxnState::Ongoing, _) => {
            let mut next = m.clone();
            next.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            next.update_ms = now;
            Ok(EndPlan::Prepare(next))
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndPlan::AlreadyDone)
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(ResponseError::ConcurrentTransactions)
        }
        (TxnState::PrepareEpochFence, _) => Err(ResponseError::ConcurrentTransactions),
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// After every marker of a Prepare* state is written. A transaction
/// version 2 end that exhausted the epoch moves to its next producer id
/// at epoch 0 here, keeping the old id as the previous one.
pub fn complete(m: &TxnMetadata, now: i64) -> TxnMetadata {
    let mut next = m.clone();
    if m.next_producer_id >= 0 {
        next.previous_producer_id = m.producer_id;
        next.producer_id = m.next_producer_id;
        next.producer_epoch = 0;
        next.next_producer_id = -1;
    }
    next.state = match m.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        _ => TxnState::CompleteAbort,
    };
    next.partitions.clear();
    next.start_ms = -1;
    next.update_ms = now;
    next
}

/// A transaction open past its timeout is aborted with the epoch bumped,
/// fencing the producer that let it expire. `None` when it has not expired.
pub fn expire(m: &TxnMetadata, now: i64) -> Option<TxnMetadata> {
    if m.state != TxnState::Ongoing || now <= m.start_ms + i64::from(m.timeout_ms) {
        return None;
    }
    let mut abort = m.clone();
    abort.producer_epoch = next_epoch(m.producer_epoch).unwrap_or(m.producer_epoch);
    abort.state = TxnState::PrepareAbort;
    abort.update_ms = now;
    Some(abort)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    fn ready(plan: Result<InitPlan, ResponseError>) -> TxnMetadata {
        match plan {
            Ok(InitPlan::Ready(m)) => m,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    #[test]
    fn a_transaction_goes_from_empty_through_commit() {
        let m = ready(init_producer_id("t", None, 60_000, None, 10, || Ok(7)));
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.state),
            (7, 0, TxnState::Empty)
        );
        let m = add_partitions(&m, 7, 0, &parts(&[("a", 0), ("b", 1)]), 20)
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.state, m.start_ms, m.partitions.len()),
            (TxnState::Ongoing, 20, 2)
        );
        assert_eq!(add_partitions(&m, 7, 0, &parts(&[("a", 0)]), 25), Ok(None));
        let EndPlan::Prepare(p) = end_txn(&m, 7, 0, true, 30).unwrap() else {
            panic!()
        };
        assert_eq!(p.state, TxnState::PrepareCommit);
        assert_eq!(p.partitions.len(), 2, "markers go to every partition");
        assert_eq!(
            end_txn(&p, 7, 0, true, 31),
            Err(ResponseError::ConcurrentTransactions)
        );
        let done = complete(&p, 40);
        assert_eq!(
            (done.state, done.partitions.len(), done.start_ms),
            (TxnState::CompleteCommit, 0, -1)
        );
        assert_eq!(end_txn(&done, 7, 0, true, 41), Ok(EndPlan::AlreadyDone));
        assert_eq!(
            end_txn(&done, 7, 0, false, 41),
            Err(ResponseError::InvalidTxnState)
        );
        // The next transaction starts afresh.
        let next = add_partitions(&done, 7, 0, &parts(&[("c", 0)]), 50)
            .unwrap()
            .unwrap();
        assert_eq!(next.partitions, parts(&[("c", 0)]).into_iter().collect());
        assert_eq!(next.start_ms, 50);
    }

    #[test]
    fn a_new_producer_fences_the_old_and_aborts_its_transaction() {
        let m = ready(init_producer_id("t", None, 60_000, None, 0, || Ok(7)));
        let open = add_partitions(&m, 7, 0, &parts(&[("a", 0)]), 1)
            .unwrap()
            .unwrap();
        let Ok(InitPlan::AbortFirst(abort)) =
            init_producer_id("t", Some(&open), 60_000, None, 2, || Ok(8))
        else {
            panic!()
        };
        assert_eq!(
            (abort.state, abort.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
        // While the abort's markers are written the new producer waits.
        assert_eq!(
            init_producer_id("t", Some(&abort), 60_000, None, 3, || Ok(8)),
            Err(ResponseError::ConcurrentTransactions)
        );
        let aborted = complete(&abort, 4);
        let again = ready(init_producer_id(
            "t",
            Some(&aborted),
            30_000,
            None,
            5,
            || Ok(8),
        ));
        assert_eq!(
            (again.producer_id, again.producer_epoch, again.timeout_ms),
            (7, 2, 30_000)
        );
        // The zombie (epoch 0) is fenced everywhere.
        assert_eq!(
            add_partitions(&again, 7, 0, &parts(&[("a", 0)]), 6),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            end_txn(&again, 7, 0, true, 6),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            end_txn(&again, 9, 2, true, 6),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn an_exhausted_epoch_moves_to_a_new_producer_id() {
        let mut m = ready(init_producer_id("t", None, 1000, None, 0, || Ok(7)));
        m.producer_epoch = i16::MAX - 1;
        let next = ready(init_producer_id("t", Some(&m), 1000, None, 1, || Ok(99)));
        assert_eq!((next.producer_id, next.producer_epoch), (99, 0));
    }

    #[test]
    fn kip_360_continuation_needs_the_current_producer() {
        let m = ready(init_producer_id("t", None, 1000, None, 0, || Ok(7)));
        assert_eq!(
            init_producer_id("t", Some(&m), 1000, Some((7, 5)), 1, || Ok(8)),
            Err(ResponseError::ProducerFenced)
        );
        let next = ready(init_producer_id(
            "t",
            Some(&m),
            1000,
            Some((7, 0)),
            1,
            || Ok(8),
        ));
        assert_eq!(next.producer_epoch, 1);
    }

    #[test]
    fn an_expired_transaction_is_aborted_with_a_bumped_epoch() {
        let m = ready(init_producer_id("t", None, 1000, None, 0, || Ok(7)));
        let open = add_partitions(&m, 7, 0, &parts(&[("a", 0)]), 100)
            .unwrap()
            .unwrap();
        assert_eq!(expire(&open, 1100), None);
        let abort = expire(&open, 1101).unwrap();
        assert_eq!(
            (abort.state, abort.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
        assert_eq!(
            expire(&m, 1_000_000),
            None,
            "nothing open, nothing to expire"
        );
    }

    #[test]
    fn state_codes_and_names_are_kafkas() {
        for (code, name) in [
            (0, "Empty"),
            (1, "Ongoing"),
            (2, "PrepareCommit"),
            (3, "PrepareAbort"),
            (4, "CompleteCommit"),
            (5, "CompleteAbort"),
            (6, "Dead"),
            (7, "PrepareEpochFence"),
        ] {
            let s = TxnState::from_code(code).unwrap();
            assert_eq!((s.code(), s.name()), (code, name));
            assert_eq!(TxnState::from_name(name), Some(s));
        }
        assert_eq!(TxnState::from_code(8), None);
    }
}
