//! Leader side of replication (the high watermark itself is computed by
//! [`ReplicaState::high_watermark`]): a follower that has not caught up within
//! `replica.lag.time.max.ms` leaves the ISR and one that has caught up to
//! the high watermark rejoins it. ISR changes are proposed to the
//! controller quorum with the epochs they were computed from, so a change
//! based on a stale view is refused there.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rivulet_quorum::metadata::{LeaderChange, MetadataCommand, PartitionChange};

use super::Cluster;
use crate::partition::{Partition, ReplicaState, Role};

/// In-sync followers that have not been caught up for longer than `max_lag`.
pub fn lagging(state: &ReplicaState, now: Instant, max_lag: Duration) -> Vec<i32> {
    state
        .isr
        .iter()
        .filter(|id| {
            state
                .followers
                .get(id)
                .is_some_and(|f| now.saturating_duration_since(f.last_caught_up) > max_lag)
        })
        .copied()
        .collect()
}

/// Periodic leader duties: ISR shrinks, metric refresh.
pub(super) async fn leader_duties(cluster: Arc<Cluster>) {
    let max_lag = cluster.replication.replica_lag_time_max;
    let period = (max_lag / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let broker = cluster.broker().clone();
        cluster.update_metrics(&broker);
        let now = Instant::now();
        for topic in broker.topics() {
            for partition in topic.partitions() {
                let out = {
                    let state = partition.replica();
                    if state.role != Role::Leader || state.isr_change_pending {
                        continue;
                    }
                    lagging(&state, now, max_lag)
                };
                if out.is_empty() {
                    continue;
                }
                let proposed = propose_isr(&cluster, &topic.name, &partition, |isr| {
                    isr.retain(|id| !out.contains(id))
                });
                if proposed {
                    tracing::info!(topic = %topic.name, partition = partition.index, lagging = ?out, "shrinking ISR");
                    broker.metrics.isr_shrinks.inc();
                }
            }
        }
    }
}

/// Proposes adding `follower` to the ISR (it caught up to the high
/// watermark). A fenced follower is not eligible (Kafka's KIP-841): the
/// controller would refuse it, and a fenced broker that still reaches its
/// leaders would otherwise be proposed on every fetch.
pub fn expand_isr(cluster: &Arc<Cluster>, topic: &str, partition: &Arc<Partition>, follower: i32) {
    if !cluster.image().is_live(follower) {
        return;
    }
    let proposed = propose_isr(cluster, topic, partition, |isr| {
        if !isr.contains(&follower) {
            isr.push(follower);
        }
    });
    if proposed {
        tracing::info!(
            topic,
            partition = partition.index,
            follower,
            "expanding ISR"
        );
        cluster.broker().metrics.isr_expands.inc();
    }
}

/// The wait before proposing again after `refused` ISR changes in a row:
/// 500 ms doubling, at most 10 s.
fn isr_backoff(refused: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(1 << refused.min(5))
        .min(Duration::from_secs(10))
}

/// Proposes the ISR `edit` makes of the current one, in the background;
/// one change per partition at a time, and after a refusal not again
/// before a backoff. Returns whether a proposal was started.
fn propose_isr(
    cluster: &Arc<Cluster>,
    topic: &str,
    partition: &Arc<Partition>,
    edit: impl FnOnce(&mut Vec<i32>),
) -> bool {
    let change = {
        let mut state = partition.replica();
        if state.role != Role::Leader || state.isr_change_pending {
            return false;
        }
        if state
            .isr_retry
            .is_some_and(|(after, _)| Instant::now() < after)
        {
            return false;
        }
        let mut isr = state.isr.clone();
        edit(&mut isr);
        if isr == state.isr || isr.is_empty() {
            return false;
        }
        state.isr_change_pending = true;
        PartitionChange {
            topic: topic.to_string(),
            partition: partition.index,
            leader: LeaderChange::Unchanged,
            isr: Some(isr),
            expected_partition_epoch: Some(state.partition_epoch),
            expected_leader_epoch: Some(state.leader_epoch),
        }
    };
    let cluster = cluster.clone();
    let partition = partition.clone();
    tokio::spawn(async move {
        let result = cluster
            .source
            .propose(MetadataCommand::ChangePartition(change.clone()))
            .await;
        let mut state = partition.replica();
        match result {
            Ok(_) => state.isr_retry = None,
            Err(e) => {
                let refused = state.isr_retry.map_or(0, |(_, n)| n) + 1;
                state.isr_retry = Some((Instant::now() + isr_backoff(refused), refused));
                // Logged when it starts, then only as a debug line.
                if refused == 1 {
                    tracing::info!(topic = %change.topic, partition = change.partition, error = %e, "ISR change not applied; backing off");
                } else {
                    tracing::debug!(topic = %change.topic, partition = change.partition, refused, error = %e, "ISR change not applied");
                }
            }
        }
        // The applied image (if any) has already updated the state; allow
        // the next change either way.
        state.isr_change_pending = false;
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::leader_state as state;

    #[test]
    fn refused_isr_changes_back_off_up_to_ten_seconds() {
        let waits: Vec<u64> = (1..=7).map(|n| isr_backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, vec![1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    }

    #[test]
    fn lagging_followers_are_those_not_caught_up_in_time() {
        let now = Instant::now() + Duration::from_secs(60);
        let s = state(&[0, 1, 2], &[(1, 0, 31_000), (2, 0, 1_000)], now);
        assert_eq!(lagging(&s, now, Duration::from_secs(30)), vec![1]);
        assert!(lagging(&s, now, Duration::from_secs(40)).is_empty());
        // Followers outside the ISR are not "lagging" again.
        let s = state(&[0, 2], &[(1, 0, 99_000), (2, 0, 1_000)], now);
        assert!(lagging(&s, now, Duration::from_secs(30)).is_empty());
    }
}
