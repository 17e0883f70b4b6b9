//! The transaction coordinator's APIs (KIP-98, and KIP-890's transaction
//! version 2): AddPartitionsToTxn (the client form, v0-3, and the brokers'
//! v4-5), AddOffsetsToTxn, EndTxn,
//! DescribeTransactions and ListTransactions. InitProducerId with a
//! transactional id is in `init_producer_id`, TxnOffsetCommit in
//! `txn_offset_commit`.

use kafka_protocol::{
    messages::{
        add_partitions_to_txn_response::{
            self, AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
        },
        describe_transactions_response::{self, TopicData},
        list_transactions_response, AddOffsetsToTxnRequest, AddOffsetsToTxnResponse,
        AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, DescribeTransactionsRequest,
        DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, ListTransactionsRequest,
        ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{code, Node};
use crate::{
    broker::now_ms,
    group::OFFSETS_TOPIC,
    txn::state::{TxnMetadata, TxnState},
};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// AddPartitionsToTxn v4-5 (from a partition leader or the group
/// coordinator). With `verify_only` (KIP-890 part 1) each transaction is
/// verified: are these partitions part of its ongoing transaction? Without
/// it, in v5 (KIP-890 part 2), they are added to the transaction of a
/// transaction version 2 client; v4 answers INVALID_REQUEST for each.
pub async fn verify_partitions(
    node: &Node,
    r: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let mut results = Vec::with_capacity(r.transactions.len());
    for t in r.transactions {
        let partitions: Vec<(String, i32)> = t
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|p| (topic.name.to_string(), *p))
            })
            .collect();
        let answers = if t.verify_only {
            node.txns
                .verify(
                    &t.transactional_id,
                    t.producer_id.0,
                    t.producer_epoch,
                    &partitions,
                )
                .await
        } else if version >= 5 {
            let added = node
                .txns
                .add_partitions(
                    &t.transactional_id,
                    t.producer_id.0,
                    t.producer_epoch,
                    &partitions,
                    true,
                )
                .await;
            vec![added.err(); partitions.len()]
        } else {
            vec![Some(ResponseError::InvalidRequest); partitions.len()]
        };
        let mut answers = answers.into_iter();
        let topic_results = t
            .topics
            .iter()
            .map(|topic| {
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_results_by_partition(
                        topic
                            .partitions
                            .iter()
                            .map(|p| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(*p)
                                    .with_partition_error_code(code(answers.next().flatten()))
                            })
                            .collect(),
                    )
            })
            .collect();
        results.push(
            add_partitions_to_txn_response::AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id)
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// AddPartitionsToTxn v0-3: every partition gets the same answer, except
/// that unknown partitions fail alone and the rest are not attempted.
pub async fn add_partitions(
    node: &Node,
    r: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let image = node.cluster.image();
    let requested: Vec<(String, i32)> = r
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let unknown = |(t, p): &(String, i32)| {
        !image
            .topics
            .get(t)
            .is_some_and(|m| m.partitions.contains_key(p))
    };
    let any_unknown = requested.iter().any(unknown);
    // Unknown partitions fail alone; then the rest is not attempted.
    let outcome = if any_unknown {
        None
    } else {
        Some(
            node.txns
                .add_partitions(
                    &r.v3_and_below_transactional_id,
                    r.v3_and_below_producer_id.0,
                    r.v3_and_below_producer_epoch,
                    &requested,
                    false,
                )
                .await
                .err(),
        )
    };
    let error_of = |tp: &(String, i32)| match outcome {
        Some(result) => result,
        None if unknown(tp) => Some(ResponseError::UnknownTopicOrPartition),
        None => Some(ResponseError::OperationNotAttempted),
    };
    let results = r
        .v3_and_below_topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code(error_of(&(
                                    t.name.to_string(),
                                    *p,
                                ))))
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the
/// transaction, so TxnOffsetCommit may write there.
pub async fn add_offsets(node: &Node, r: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let result = async {
        node.groups.ensure_topic()?;
        let partition = node.groups.partition_of(&r.group_id);
        node.txns
            .add_partitions(
                &r.transactional_id,
                r.producer_id.0,
                r.producer_epoch,
                &[(OFFSETS_TOPIC.to_string(), partition)],
                false,
            )
            .await
    }
    .await;
    AddOffsetsToTxnResponse::default().with_error_code(code(result.err()))
}

/// EndTxn: commit or abort; answered once the decision is durable. v5
/// (transaction version 2) bumps the epoch and answers with the producer
/// id and epoch for the next transaction.
pub async fn end(node: &Node, r: EndTxnRequest, version: i16) -> EndTxnResponse {
    let result = node
        .txns
        .end_txn(
            &r.transactional_id,
            r.producer_id.0,
            r.producer_epoch,
            r.committed,
            version >= 5,
        )
        .await;
    let (error, (pid, epoch)) = match result {
        Ok(ids) => (None, ids),
        Err(e) => (Some(e), (-1, -1)),
    };
    EndTxnResponse::default()
        .with_error_code(code(error))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}

fn topics_of(m: &TxnMetadata) -> Vec<TopicData> {
    let mut topics: Vec<TopicData> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some(last) if last.topic.as_str() == t => last.partitions.push(*p),
            _ => topics.push(
                TopicData::default()
                    .with_topic(TopicName(s(t)))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    topics
}

/// DescribeTransactions: each id's state, producer and partitions.
pub async fn describe(node: &Node, r: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(r.transactional_ids.len());
    for id in r.transactional_ids {
        let entry = describe_transactions_response::TransactionState::default()
            .with_transactional_id(id.clone());
        states.push(match node.txns.describe(&id).await {
            Ok(m) => entry
                .with_transaction_state(s(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(topics_of(&m)),
            Err(e) => entry
                .with_error_code(e.code())
                .with_transaction_state(s(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1),
        });
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions v0-1: the transactions this broker coordinates,
/// filtered by state, producer id and (v1) how long they have run.
pub async fn list(node: &Node, r: ListTransactionsRequest) -> ListTransactionsResponse {
    let mut unknown = Vec::new();
    let mut states = Vec::new();
    for name in &r.state_filters {
        match TxnState::from_name(name) {
            Some(state) => states.push(state),
            None => unknown.push(name.clone()),
        }
    }
    let now = now_ms();
    let listed = node
        .txns
        .list()
        .await
        .into_iter()
        .filter(|m| states.is_empty() || states.contains(&m.state))
        .filter(|m| {
            r.producer_id_filters.is_empty()
                || r.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
        })
        .filter(|m| {
            r.duration_filter < 0 || (m.start_ms >= 0 && now - m.start_ms > r.duration_filter)
        })
        .map(|m| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(s(&m.transactional_id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(s(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
