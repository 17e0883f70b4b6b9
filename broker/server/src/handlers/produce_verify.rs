//! KIP-890 part 1: before a partition leader accepts the first batch of a
//! transaction (its producer has no transaction open here yet), it asks
//! the transaction coordinator whether this partition is part of that
//! producer's ongoing transaction (AddPartitionsToTxn v4, `verify_only`).
//! A late or stray write after the transaction ended, which would open a
//! transaction here that no coordinator knows of and pin the partition's
//! last stable offset forever, is refused with INVALID_TXN_STATE.
//!
//! Transaction version 2 (KIP-890 part 2, Produce v12): the client sends
//! no AddPartitionsToTxn; the leader adds the partition to the
//! transaction on its behalf instead (AddPartitionsToTxn v5 without
//! `verify_only`, as Kafka's `AddPartitionsToTxnManager` does), and the
//! group coordinator does the same for TxnOffsetCommit v5
//! ([`add_to_transaction`]).

use std::collections::HashMap;

use kafka_protocol::{
    messages::{
        add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction},
        AddPartitionsToTxnRequest, ProduceRequest, ProducerId, TopicName, TransactionalId,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_storage::batch::BatchHeader;

use super::Node;
use crate::txn::TRANSACTION_TOPIC;

/// The partitions of `req` (Produce `version`) whose transactional batch
/// must be refused, with the error to answer. From v12 on the partitions
/// are added to the transaction rather than verified.
pub async fn refused_partitions(
    node: &Node,
    transactional_id: &str,
    req: &ProduceRequest,
    version: i16,
) -> HashMap<(String, i32), ResponseError> {
    let mut needed = Vec::new();
    let mut producer = None;
    for t in &req.topic_data {
        let Some(topic) = node.topic(&t.name) else {
            continue;
        };
        for p in &t.partition_data {
            let Some(header) = p
                .records
                .as_deref()
                .and_then(|r| BatchHeader::parse(r).ok())
            else {
                continue;
            };
            if !header.is_transactional() {
                continue;
            }
            producer = Some((header.producer_id, header.producer_epoch));
            let Some(partition) = topic.partition(p.index) else {
                continue;
            };
            let open = partition
                .read_log()
                .producers()
                .get(header.producer_id)
                .is_some_and(|e| {
                    e.epoch == header.producer_epoch && e.current_txn_first_offset.is_some()
                });
            if !open {
                needed.push((t.name.to_string(), p.index));
            }
        }
    }
    let Some((producer_id, epoch)) = producer.filter(|_| !needed.is_empty()) else {
        return HashMap::new();
    };
    let add = version >= 12;
    let answers = ask(node, transactional_id, producer_id, epoch, &needed, add).await;
    let map = if add { for_v2_producer } else { for_producer };
    needed
        .into_iter()
        .zip(answers)
        .filter_map(|(tp, e)| e.map(|e| (tp, map(e))))
        .collect()
}

/// Adds `partitions` to the transaction of a transaction version 2 client
/// (`producer_id`/`epoch`) at its coordinator: the coordinator's answer
/// per partition.
pub async fn add_to_transaction(
    node: &Node,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
) -> Vec<Option<ResponseError>> {
    ask(node, transactional_id, producer_id, epoch, partitions, true).await
}

/// The coordinator's verdicts (or, with `add`, its answers to adding the
/// partitions), asked locally when this broker coordinates the id and over
/// the inter-broker listener otherwise.
async fn ask(
    node: &Node,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    add: bool,
) -> Vec<Option<ResponseError>> {
    let unavailable = vec![Some(ResponseError::CoordinatorNotAvailable); partitions.len()];
    let p = node.txns.partition_of(transactional_id);
    let Some(leader) = node
        .cluster
        .image()
        .partition(TRANSACTION_TOPIC, p)
        .and_then(|s| s.leader)
    else {
        return unavailable;
    };
    if leader == node.cluster.node_id && add {
        let added = node
            .txns
            .add_partitions(transactional_id, producer_id, epoch, partitions, true)
            .await;
        return vec![added.err(); partitions.len()];
    }
    if leader == node.cluster.node_id {
        return node
            .txns
            .verify(transactional_id, producer_id, epoch, partitions)
            .await;
    }
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (t, p) in partitions {
        match topics.iter_mut().find(|x| x.name.as_str() == t) {
            Some(x) => x.partitions.push(*p),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_verify_only(!add)
            .with_topics(topics),
    ]);
    let client_id = format!("rivulet-verify-{}", node.cluster.node_id);
    let version = if add { 5 } else { 4 };
    let response = match node.cluster.connect_peer(leader, &client_id).await {
        Ok(mut c) => c.send_with_version(request, version).await,
        Err(e) => Err(e),
    };
    let Ok(response) = response else {
        return unavailable;
    };
    if response.error_code != 0 {
        return vec![ResponseError::try_from_code(response.error_code); partitions.len()];
    }
    partitions
        .iter()
        .map(|(t, p)| {
            response
                .results_by_transaction
                .iter()
                .flat_map(|r| &r.topic_results)
                .filter(|r| r.name.as_str() == t)
                .flat_map(|r| &r.results_by_partition)
                .find(|r| r.partition_index == *p)
                .map_or(Some(ResponseError::CoordinatorNotAvailable), |r| {
                    ResponseError::try_from_code(r.partition_error_code)
                })
        })
        .collect()
}

/// What a producer is told: the coordinator's own errors mean "retry"
/// (NOT_ENOUGH_REPLICAS, which every producer retries), a fenced producer
/// hears INVALID_PRODUCER_EPOCH, a write outside its transaction
/// INVALID_TXN_STATE.
fn for_producer(e: ResponseError) -> ResponseError {
    match e {
        ResponseError::InvalidTxnState | ResponseError::InvalidProducerIdMapping => {
            ResponseError::InvalidTxnState
        }
        ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch => {
            ResponseError::InvalidProducerEpoch
        }
        _ => ResponseError::NotEnoughReplicas,
    }
}

/// What a transaction version 2 client is told when its coordinator did
/// not take a partition, as Kafka maps it: a fenced producer hears
/// INVALID_PRODUCER_EPOCH, an unknown producer id
/// INVALID_PRODUCER_ID_MAPPING, a transaction that cannot take the
/// partition TRANSACTION_ABORTABLE (the client aborts and goes on), and the
/// coordinator's retriable errors (CONCURRENT_TRANSACTIONS while the
/// previous transaction's markers are written, a moving or loading
/// coordinator) `retriable`, an error the request's clients retry.
pub(super) fn for_v2_client(e: ResponseError, retriable: ResponseError) -> ResponseError {
    match e {
        ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch => {
            ResponseError::InvalidProducerEpoch
        }
        ResponseError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        ResponseError::InvalidTxnState | ResponseError::TransactionAbortable => {
            ResponseError::TransactionAbortable
        }
        _ => retriable,
    }
}

/// Produce v12: retriable errors become NOT_ENOUGH_REPLICAS, which every
/// producer retries.
fn for_v2_producer(e: ResponseError) -> ResponseError {
    for_v2_client(e, ResponseError::NotEnoughReplicas)
}
