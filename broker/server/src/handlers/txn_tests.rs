//! The transaction coordinator through its handlers, on the in-memory
//! harness: producer ids and fencing, the two-phase end up to the
//! decision (markers need a listening broker: the black-box tests cover
//! them), transactional offsets pending until their marker.

use std::time::Duration;

use kafka_protocol::{
    messages::{
        add_partitions_to_txn_request::AddPartitionsToTxnTopic,
        offset_fetch_request::OffsetFetchRequestTopic,
        txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic},
        AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest, GroupId,
        InitProducerIdRequest, ListTransactionsRequest, OffsetFetchRequest, ProducerId,
        TransactionalId, TxnOffsetCommitRequest,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{
    init_producer_id, offset_fetch,
    tests::{create, harness, name},
    transactions, txn_offset_commit, Node,
};
use crate::group::OFFSETS_TOPIC;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// InitProducerId, retried while the coordinator starts (as clients do).
pub(super) async fn init(node: &Node, id: &str) -> Result<(i64, i16), i16> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let resp = init_producer_id::handle(node, req).await;
        let retriable = [
            ResponseError::CoordinatorNotAvailable.code(),
            ResponseError::CoordinatorLoadInProgress.code(),
            ResponseError::NotCoordinator.code(),
        ];
        if resp.error_code == 0 {
            return Ok((resp.producer_id.0, resp.producer_epoch));
        }
        if !retriable.contains(&resp.error_code) || tokio::time::Instant::now() > deadline {
            return Err(resp.error_code);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn add(
    node: &Node,
    id: &str,
    (pid, epoch): (i64, i16),
    topic: &str,
    partitions: &[i32],
) -> Vec<i16> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(name(topic))
            .with_partitions(partitions.to_vec())]);
    transactions::add_partitions(node, req)
        .await
        .results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect()
}

async fn end(node: &Node, id: &str, (pid, epoch): (i64, i16), commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    transactions::end(node, req, 4).await.error_code
}

pub(super) async fn state_of(node: &Node, id: &str) -> String {
    let resp = transactions::describe(
        node,
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]),
    )
    .await;
    resp.transaction_states[0].transaction_state.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_are_fenced_and_transactions_end_in_two_phases() {
    let h = harness(&[], &[("transaction.state.log.num.partitions", "3")]);
    let node = &h.node;
    create(node, "t", &[&[0], &[0]], &[]).await;
    let first = init(node, "app-1").await.expect("a producer id");
    assert_eq!(first.1, 0);
    assert_eq!(add(node, "app-1", first, "t", &[0, 1]).await, vec![0, 0]);
    assert_eq!(state_of(node, "app-1").await, "Ongoing");
    // Unknown partitions fail alone; the rest is not attempted.
    assert_eq!(
        add(node, "app-1", first, "t", &[0, 9]).await,
        vec![
            ResponseError::OperationNotAttempted.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    // A second producer with the same id: the open transaction is aborted
    // and the first producer fenced.
    let second = init(node, "app-1").await;
    assert_eq!(second, Err(ResponseError::ConcurrentTransactions.code()));
    assert_eq!(state_of(node, "app-1").await, "PrepareAbort");
    assert_eq!(
        end(node, "app-1", first, true).await,
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(
        add(node, "app-1", first, "t", &[0]).await,
        vec![ResponseError::ProducerFenced.code()]
    );

    // Another id commits: the decision is durable before the answer.
    let other = init(node, "app-2").await.unwrap();
    assert_eq!(add(node, "app-2", other, "t", &[1]).await, vec![0]);
    assert_eq!(end(node, "app-2", other, true).await, 0);
    assert_eq!(state_of(node, "app-2").await, "PrepareCommit");
    assert_eq!(
        end(node, "app-2", other, false).await,
        ResponseError::InvalidTxnState.code(),
        "an abort after a commit decision is refused"
    );
    let listed = transactions::list(
        node,
        ListTransactionsRequest::default()
            .with_state_filters(vec![s("PrepareCommit"), s("Bogus")])
            .with_duration_filter(-1),
    )
    .await;
    assert_eq!(listed.transaction_states.len(), 1);
    assert_eq!(listed.unknown_state_filters, vec![s("Bogus")]);
    let unknown = transactions::describe(
        node,
        DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("nobody"))]),
    )
    .await;
    assert_eq!(
        unknown.transaction_states[0].error_code,
        ResponseError::TransactionalIdNotFound.code()
    );
}

/// A one-partition `__consumer_offsets` here, and the input topic `in`
/// whose offsets [`commit_offsets`] commits.
pub(super) async fn offsets_and_input_topics(node: &Node) {
    let compact = [("cleanup.policy", "compact")];
    create(node, OFFSETS_TOPIC, &[&[0]], &compact).await;
    create(node, "in", &[&[0]], &[]).await;
}

/// TxnOffsetCommit (of `version`) of offset 42 of `in`-0 for group `g` in
/// the transaction of `id`, retried while the group coordinator loads;
/// returns the partition's error code.
pub(super) async fn commit_offsets(
    node: &Node,
    id: &str,
    (pid, epoch): (i64, i16),
    version: i16,
) -> i16 {
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_group_id(GroupId(s("g")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(name("in"))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)])]);
    let loading = [
        ResponseError::CoordinatorLoadInProgress.code(),
        ResponseError::NotCoordinator.code(),
        ResponseError::CoordinatorNotAvailable.code(),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = txn_offset_commit::handle(node, commit.clone(), version).await;
        let code = resp.topics[0].partitions[0].error_code;
        if !loading.contains(&code) || tokio::time::Instant::now() > deadline {
            return code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_offsets_are_unstable_until_their_marker() {
    let h = harness(&[], &[("group.initial.rebalance.delay.ms", "0")]);
    let node = &h.node;
    offsets_and_input_topics(node).await;
    // The coordinator loads __consumer_offsets first.
    let code = commit_offsets(node, "tx", (77, 0), 3).await;
    assert_eq!(code, 0, "TxnOffsetCommit");
    let fetch = |stable: bool| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(name("in"))
                .with_partition_indexes(vec![0])]))
            .with_require_stable(stable)
    };
    let p = |r: kafka_protocol::messages::OffsetFetchResponse| {
        let p = &r.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    };
    assert_eq!(
        p(offset_fetch::handle(node, fetch(true), 7).await),
        (-1, ResponseError::UnstableOffsetCommit.code())
    );
    assert_eq!(
        p(offset_fetch::handle(node, fetch(false), 7).await),
        (-1, 0),
        "not visible yet"
    );
    // The COMMIT marker lands on the group's offsets partition.
    node.groups.complete_txn(0, 77, true);
    assert_eq!(p(offset_fetch::handle(node, fetch(true), 7).await), (42, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactions_first_batch_needs_the_coordinators_word() {
    use super::txn_data_tests::{send, txn_batch};
    let h = harness(&[], &[("transaction.state.log.num.partitions", "1")]);
    let node = &h.node;
    create(node, "in-txn", &[&[0]], &[]).await;
    create(node, "not-added", &[&[0]], &[]).await;
    let producer = init(node, "v-1").await.unwrap();
    assert_eq!(add(node, "v-1", producer, "in-txn", &[0]).await, vec![0]);
    let (pid, epoch) = producer;
    assert_eq!(
        send(node, "in-txn", txn_batch(pid, epoch, 0, 2), Some("v-1"))
            .await
            .0,
        0,
        "a partition of the ongoing transaction"
    );
    assert_eq!(
        send(node, "not-added", txn_batch(pid, epoch, 0, 1), Some("v-1"))
            .await
            .0,
        ResponseError::InvalidTxnState.code(),
        "a partition never added is refused, so nothing can hang there"
    );
    // After the transaction is decided, a stray first batch is refused too.
    assert_eq!(end(node, "v-1", producer, false).await, 0);
    create(node, "late", &[&[0]], &[]).await;
    assert_eq!(
        send(node, "late", txn_batch(pid, epoch, 0, 1), Some("v-1"))
            .await
            .0,
        ResponseError::InvalidTxnState.code()
    );
}
