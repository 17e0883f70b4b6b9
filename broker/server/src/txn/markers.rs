//! Ending a transaction at its partitions: WriteTxnMarkers to the leader of
//! every partition, grouped by leader, retried with backoff until each one
//! has written its COMMIT or ABORT marker (Kafka's
//! `TransactionMarkerChannelManager`). A partition whose topic was deleted
//! needs no marker. The loop stops when this broker no longer coordinates
//! the transaction; the next coordinator completes it.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use kafka_protocol::{
    messages::{
        write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic},
        ProducerId, TopicName, WriteTxnMarkersRequest,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_wire::client::Connection;

use super::{
    state::{TxnMetadata, TxnState},
    TxnCoordinator,
};

/// The coordinator lost the transaction's partition: stop.
#[derive(Debug)]
pub struct NotCoordinator;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Writes the markers of `m` (PrepareCommit or PrepareAbort) at every
/// partition of the transaction.
pub async fn write_markers(
    coordinator: &TxnCoordinator,
    m: &TxnMetadata,
    coordinator_epoch: i32,
) -> Result<(), NotCoordinator> {
    let commit = m.state == TxnState::PrepareCommit;
    let mut pending: BTreeSet<(String, i32)> = m.partitions.clone();
    let mut connections: BTreeMap<i32, Connection> = BTreeMap::new();
    let client_id = format!("rivulet-txn-coordinator-{}", coordinator.cluster().node_id);
    let mut backoff = FIRST_BACKOFF;
    while !pending.is_empty() {
        if !coordinator.still_serving(&m.transactional_id, coordinator_epoch) {
            return Err(NotCoordinator);
        }
        let image = coordinator.cluster().image();
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        pending.retain(|(topic, p)| {
            // A deleted topic (or partition) needs no marker.
            let Some(state) = image.topics.get(topic).and_then(|t| t.partitions.get(p)) else {
                return false;
            };
            if let Some(leader) = state.leader {
                by_leader
                    .entry(leader)
                    .or_default()
                    .entry(topic.clone())
                    .or_default()
                    .push(*p);
            }
            true
        });
        for (leader, topics) in by_leader {
            let connection = match connections.remove(&leader) {
                Some(c) => c,
                None => match coordinator.cluster().connect_peer(leader, &client_id).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(leader, error = %e, "cannot reach a leader for markers");
                        continue;
                    }
                },
            };
            let mut connection = connection;
            let marker = WritableTxnMarker::default()
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_transaction_result(commit)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(
                    topics
                        .iter()
                        .map(|(t, ps)| {
                            WritableTxnMarkerTopic::default()
                                .with_name(TopicName(StrBytes::from_string(t.clone())))
                                .with_partition_indexes(ps.clone())
                        })
                        .collect(),
                );
            let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
            match connection.send(request).await {
                Ok(response) => {
                    for result in response.markers {
                        for topic in result.topics {
                            for p in topic.partitions {
                                let key = (topic.name.to_string(), p.partition_index);
                                if p.error_code == 0 {
                                    pending.remove(&key);
                                } else {
                                    tracing::debug!(
                                        topic = %key.0,
                                        partition = key.1,
                                        error = ?ResponseError::try_from_code(p.error_code),
                                        "a marker was not written; retrying"
                                    );
                                }
                            }
                        }
                    }
                    connections.insert(leader, connection);
                }
                Err(e) => tracing::debug!(leader, error = %e, "sending markers failed; retrying"),
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    Ok(())
}
