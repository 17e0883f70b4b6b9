//! KIP-890 part 1: before a partition leader accepts the first batch of a
//! transaction (its producer has no transaction open here yet), it asks
//! the transaction coordinator whether this partition is part of that
//! producer's ongoing transaction (AddPartitionsToTxn v4, `verify_only`).
//! A late or stray write after the transaction ended, which would open a
//! transaction here that no coordinator knows of and pin the partition's
//! last stable offset forever, is refused with INVALID_TXN_STATE.

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

/// The partitions of `req` whose transactional batch must be refused, with
/// the error to answer.
pub async fn refused_partitions(
    node: &Node,
    transactional_id: &str,
    req: &ProduceRequest,
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
    let answers = ask(node, transactional_id, producer_id, epoch, &needed).await;
    needed
        .into_iter()
        .zip(answers)
        .filter_map(|(tp, e)| e.map(|e| (tp, for_producer(e))))
        .collect()
}

/// The coordinator's verdicts, asked locally when this broker coordinates
/// the id and over the inter-broker listener otherwise.
async fn ask(
    node: &Node,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
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
            .with_verify_only(true)
            .with_topics(topics),
    ]);
    let client_id = format!("rivulet-verify-{}", node.cluster.node_id);
    let response = match node.cluster.connect_peer(leader, &client_id).await {
        Ok(mut c) => c.send_with_version(request, 4).await,
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
