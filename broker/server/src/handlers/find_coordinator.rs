//! FindCoordinator: the broker that leads a group's `__consumer_offsets`
//! partition coordinates it, and the leader of a transactional id's
//! `__transaction_state` partition coordinates its transactions. Both
//! topics are created on first use (and waited for, bounded, so the first
//! answer already names a coordinator).

use kafka_protocol::{
    messages::{
        find_coordinator_response::Coordinator, BrokerId, FindCoordinatorRequest,
        FindCoordinatorResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::Node;

/// Kafka's key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// Kafka's key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where one key's coordinator is, or why there is none.
fn locate(
    broker: &Node,
    listener: &str,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, u16), (ResponseError, &'static str)> {
    let not_available = (
        ResponseError::CoordinatorNotAvailable,
        "the coordinator's partition has no leader",
    );
    let (topic, p) = match key_type {
        KEY_TYPE_GROUP => {
            broker
                .groups
                .ensure_topic()
                .map_err(|e| (e, "the offsets topic is not available"))?;
            (crate::group::OFFSETS_TOPIC, broker.groups.partition_of(key))
        }
        KEY_TYPE_TRANSACTION => {
            if broker.topic(crate::txn::TRANSACTION_TOPIC).is_none() {
                return Err((
                    ResponseError::CoordinatorNotAvailable,
                    "the transaction state topic is being created",
                ));
            }
            (crate::txn::TRANSACTION_TOPIC, broker.txns.partition_of(key))
        }
        _ => {
            return Err((
                ResponseError::InvalidRequest,
                "unknown coordinator key type",
            ))
        }
    };
    let cluster = &broker.cluster;
    let leader = cluster
        .image()
        .partition(topic, p)
        .and_then(|state| state.leader);
    let leader = leader.ok_or(not_available)?;
    // A broker without its lease cannot vouch for its own leadership.
    if leader == cluster.node_id && !broker.broker.lease.held() {
        return Err(not_available);
    }
    cluster
        .live_endpoints(listener)
        .into_iter()
        .find(|(id, _, _)| *id == leader)
        .map(|(id, e, _)| (id, e.host, e.port))
        .ok_or(not_available)
}

/// Answers FindCoordinator (single `key` before v4, batched `coordinator_keys` from v4).
pub async fn handle(
    broker: &Node,
    req: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    if req.key_type == KEY_TYPE_GROUP && broker.topic(crate::group::OFFSETS_TOPIC).is_none() {
        broker.groups.create_offsets_topic().await;
    }
    if req.key_type == KEY_TYPE_TRANSACTION {
        broker.txns.ensure_topic().await;
    }
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let found = locate(broker, listener, req.key_type, &key);
                let c = Coordinator::default().with_key(key);
                match found {
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port as i32),
                    Err((e, msg)) => c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_static_str(msg))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match locate(broker, listener, req.key_type, &req.key) {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(host))
            .with_port(port as i32),
        Err((e, msg)) => FindCoordinatorResponse::default()
            .with_error_code(e.code())
            .with_error_message((version >= 1).then(|| StrBytes::from_static_str(msg)))
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}
