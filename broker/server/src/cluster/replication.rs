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
                tracing::info!(topic = %topic.name, partition = partition.index, lagging = ?out, "shrinking ISR");
                broker.metrics.isr_shrinks.inc();
                propose_isr(&cluster, &topic.name, &partition, |isr| {
                    isr.retain(|id| !out.contains(id))
                });
            }
        }
    }
}

/// Proposes adding `follower` to the ISR (it caught up to the high watermark).
pub fn expand_isr(cluster: &Arc<Cluster>, topic: &str, partition: &Arc<Partition>, follower: i32) {
    tracing::info!(
        topic,
        partition = partition.index,
        follower,
        "expanding ISR"
    );
    cluster.broker().metrics.isr_expands.inc();
    propose_isr(cluster, topic, partition, |isr| {
        if !isr.contains(&follower) {
            isr.push(follower);
        }
    });
}

/// Proposes the ISR `edit` makes of the current one, in the background;
/// one change per partition at a time.
fn propose_isr(
    cluster: &Arc<Cluster>,
    topic: &str,
    partition: &Arc<Partition>,
    edit: impl FnOnce(&mut Vec<i32>),
) {
    let change = {
        let mut state = partition.replica();
        if state.role != Role::Leader || state.isr_change_pending {
            return;
        }
        let mut isr = state.isr.clone();
        edit(&mut isr);
        if isr == state.isr || isr.is_empty() {
            return;
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
        if let Err(e) = result {
            tracing::info!(topic = %change.topic, partition = change.partition, error = %e, "ISR change not applied");
        }
        // The applied image (if any) has already updated the state; allow
        // the next change either way.
        partition.replica().isr_change_pending = false;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::leader_state as state;

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
