//! Follower side of replication: one task per leader broker fetches every
//! partition this broker follows from it with the Kafka Fetch API (with
//! this broker's id as replica id), appends what it gets with the leader's
//! offsets and epochs, and learns the high watermark.
//!
//! When a partition gets a new leader epoch, the follower first asks the
//! leader (OffsetForLeaderEpoch) where its own latest epoch ends on the
//! leader and cuts any divergent tail, as Kafka does, before fetching.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        fetch_request::{FetchPartition, FetchTopic},
        offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic},
        BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_wire::{client::Connection, error::ClientError};

use super::{Cluster, FollowTarget};
use crate::{
    broker::{now_ms, Broker},
    partition::Partition,
};

/// Fetch version followers use: topic names, leader epochs, no sessions needed.
const FETCH_VERSION: i16 = 12;
/// OffsetForLeaderEpoch version with the replica id.
const EPOCH_VERSION: i16 = 3;
/// Pause after a failed connection or exchange.
const BACKOFF: Duration = Duration::from_millis(200);
/// Pause after the leader refused a partition (epochs not in step yet).
const EPOCH_RETRY: Duration = Duration::from_millis(20);
/// Response bytes per fetch, all partitions together.
const FETCH_MAX_BYTES: i32 = 16 * 1024 * 1024;

type Key = (String, i32);

/// Fetches from `leader` until nothing is followed from it.
pub(super) async fn run(cluster: Arc<Cluster>, leader: i32) {
    let mut conn: Option<Connection> = None;
    // Whether a failed login was reported since the last connection.
    let mut warned = false;
    // Where to fetch from instead of the log end, after the leader's log
    // start moved past this replica's end.
    let mut skip_to: BTreeMap<Key, i64> = BTreeMap::new();
    loop {
        let followed = cluster.followed_from(leader);
        if followed.is_empty() {
            return;
        }
        let broker = cluster.broker().clone();
        if broker.is_stopping() {
            return;
        }
        let c = match conn.as_mut().filter(|c| !c.is_broken()) {
            Some(c) => c,
            None => match connect(&cluster, leader, &mut warned).await {
                Some(c) => conn.insert(c),
                None => {
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            },
        };
        let mut ok = true;
        for (key, target) in followed.iter().filter(|(_, t)| t.truncate) {
            if let Err(e) = truncate(&cluster, &broker, c, key, target).await {
                tracing::debug!(topic = %key.0, partition = key.1, error = %e, "truncation check failed");
                ok = false;
            }
        }
        if !ok {
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        let followed: Vec<_> = followed.into_iter().filter(|(_, t)| !t.truncate).collect();
        if followed.is_empty() {
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        if let Err(e) = fetch_once(&cluster, &broker, c, &followed, &mut skip_to).await {
            tracing::debug!(leader, error = %e, "replica fetch failed");
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

/// Connects to `leader`'s inter-broker listener with this broker's
/// security there (TLS verified against the advertised host, SASL login).
/// An authentication failure is a warning: it does not heal by retrying.
async fn connect(cluster: &Cluster, leader: i32, warned: &mut bool) -> Option<Connection> {
    let client_id = format!("rivulet-replica-{}", cluster.node_id);
    match cluster.connect_peer(leader, &client_id).await {
        Ok(c) => {
            *warned = false;
            Some(c)
        }
        Err(e @ ClientError::Authentication { .. }) if !*warned => {
            *warned = true;
            tracing::warn!(leader, error = %e, "cannot authenticate to the leader; retrying");
            None
        }
        Err(e) => {
            tracing::debug!(leader, error = %e, "cannot reach leader");
            None
        }
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn hosted(broker: &Broker, key: &Key) -> Option<Arc<Partition>> {
    broker.topic(&key.0).and_then(|t| t.partition(key.1))
}

/// Cuts the divergent tail of `key` against the leader, then marks it done.
async fn truncate(
    cluster: &Cluster,
    broker: &Broker,
    conn: &mut Connection,
    key: &Key,
    target: &FollowTarget,
) -> Result<(), String> {
    let Some(partition) = hosted(broker, key) else {
        return Ok(());
    };
    let latest = partition.read_log().latest_epoch();
    let Some(latest) = latest else {
        // Nothing written yet: nothing can diverge.
        cluster.truncated(key, target.epoch);
        return Ok(());
    };
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(cluster.node_id))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name(&key.0))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(key.1)
                .with_current_leader_epoch(target.epoch)
                .with_leader_epoch(latest)])]);
    let resp = conn
        .send_with_version(req, EPOCH_VERSION)
        .await
        .map_err(|e| e.to_string())?;
    let answer = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("empty OffsetForLeaderEpoch response")?;
    if answer.error_code != 0 {
        return Err(format!(
            "OffsetForLeaderEpoch error {:?}",
            ResponseError::try_from_code(answer.error_code)
        ));
    }
    let cut = {
        let log = partition.read_log();
        let end = log.log_end_offset();
        if answer.leader_epoch < 0 || answer.end_offset < 0 {
            // The leader knows no epoch at or below ours: keep only what
            // is known to be committed.
            partition.high_watermark().min(end)
        } else {
            // Where our copy of the leader's answering epoch ends bounds the
            // cut too: we may have written that epoch's tail differently.
            let ours = log
                .end_offset_for_epoch(answer.leader_epoch)
                .map_or(end, |(_, offset)| offset);
            answer.end_offset.min(ours).min(end)
        }
    };
    let before = partition.read_log().log_end_offset();
    if cut < before {
        tracing::info!(
            topic = %key.0,
            partition = key.1,
            from = before,
            to = cut,
            "truncating divergent log tail"
        );
        let mut log = partition.write_log();
        log.truncate_to(cut).map_err(|e| e.to_string())?;
        partition.update_gauges(&log);
        drop(log);
        partition.cap_hw(cut);
    }
    cluster.truncated(key, target.epoch);
    Ok(())
}

/// One Fetch round trip for every partition followed from this leader.
async fn fetch_once(
    cluster: &Cluster,
    broker: &Broker,
    conn: &mut Connection,
    followed: &[(Key, FollowTarget)],
    skip_to: &mut BTreeMap<Key, i64>,
) -> Result<(), String> {
    let mut by_topic: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    let mut partitions = BTreeMap::new();
    for (key, target) in followed {
        let Some(partition) = hosted(broker, key) else {
            continue;
        };
        let (end, start) = {
            let log = partition.read_log();
            (log.log_end_offset(), log.log_start_offset())
        };
        let offset = skip_to.get(key).copied().unwrap_or(end).max(end);
        by_topic.entry(&key.0).or_default().push(
            FetchPartition::default()
                .with_partition(key.1)
                .with_current_leader_epoch(target.epoch)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(start)
                .with_partition_max_bytes(cluster.replication.replica_fetch_max_bytes),
        );
        partitions.insert(key.clone(), partition);
    }
    if partitions.is_empty() {
        tokio::time::sleep(BACKOFF).await;
        return Ok(());
    }
    let wait = cluster.replication.replica_fetch_wait_max;
    let req = FetchRequest::default()
        // The leader refuses a follower of another cluster.
        .with_cluster_id(Some(StrBytes::from_string(cluster.cluster_id.clone())))
        .with_replica_id(BrokerId(cluster.node_id))
        .with_max_wait_ms(wait.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, parts)| {
                    FetchTopic::default()
                        .with_topic(name(t))
                        .with_partitions(parts)
                })
                .collect(),
        );
    let resp = conn
        .send_with_timeout(req, FETCH_VERSION, Some(wait))
        .await
        .map_err(|e| e.to_string())?;
    if resp.error_code != 0 {
        let name = ResponseError::try_from_code(resp.error_code)
            .map_or_else(|| resp.error_code.to_string(), |e| format!("{e:?}"));
        return Err(format!("the leader refused the fetch: {name}"));
    }
    let image = cluster.image();
    let adding = |key: &Key| {
        image
            .partition(&key.0, key.1)
            .and_then(|p| p.reassignment.as_ref())
            .is_some_and(|r| r.adding.contains(&cluster.node_id))
    };
    let mut throttled = 0usize;
    let mut max_lag = 0i64;
    let mut needs_pause = false;
    for topic in resp.responses {
        for p in topic.partitions {
            let key = (topic.topic.to_string(), p.partition_index);
            let Some(partition) = partitions.get(&key) else {
                continue;
            };
            match ResponseError::try_from_code(p.error_code) {
                None => {
                    let records = p.records.unwrap_or_else(Bytes::new);
                    let whole = rivulet_wire::batch::complete_batches_len(&records);
                    if whole > 0 {
                        partition
                            .append_replicated(&records[..whole], now_ms())
                            .map_err(|e| format!("{}-{}: {e}", key.0, key.1))?;
                        if adding(&key) {
                            throttled += whole;
                        }
                        skip_to.remove(&key);
                    }
                    let end = partition.read_log().log_end_offset();
                    partition.set_hw(p.high_watermark.min(end));
                    if p.log_start_offset > partition.read_log().log_start_offset()
                        && p.log_start_offset <= end
                    {
                        let mut log = partition.write_log();
                        if let Err(e) = log.delete_records_before(p.log_start_offset) {
                            tracing::warn!(error = %e, "following the leader's log start failed");
                        }
                    }
                    max_lag = max_lag.max(p.high_watermark - end);
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    let (end, start) = {
                        let log = partition.read_log();
                        (log.log_end_offset(), log.log_start_offset())
                    };
                    if end < p.log_start_offset {
                        // The leader deleted what we would fetch next: start
                        // over at its log start.
                        tracing::info!(topic = %key.0, partition = key.1, leader_start = p.log_start_offset, "replica behind the leader's log start; restarting there");
                        let mut log = partition.write_log();
                        log.truncate_to(start).map_err(|e| e.to_string())?;
                        drop(log);
                        skip_to.insert(key.clone(), p.log_start_offset);
                    } else {
                        // Ahead of the leader: a tail that must be cut.
                        cluster.request_truncation(&key);
                    }
                }
                Some(e) => {
                    tracing::debug!(topic = %key.0, partition = key.1, error = ?e, "replica fetch refused");
                    needs_pause = true;
                }
            }
        }
    }
    broker.metrics.max_follower_lag.set(max_lag.max(0));
    cluster.throttle(throttled).await;
    if needs_pause {
        // Usually a leader epoch this broker or the leader has not applied
        // yet: the metadata log catches up within milliseconds.
        tokio::time::sleep(EPOCH_RETRY).await;
    }
    Ok(())
}
