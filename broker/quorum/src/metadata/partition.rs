//! Changes of one partition's replication state: fencing and unfencing
//! brokers, AlterPartition-style leader/ISR changes, and reassignments.
//!
//! All paths end in [`update_partition`], the one place where the leader
//! epoch (on a leader change) and the partition epoch (on any change) move.

use std::collections::BTreeSet;

use super::{
    command::{ApplyError, ApplyOutcome, ApplyResult, LeaderChange, PartitionChange},
    types::{BrokerId, ClusterMetadata, PartitionState, Reassignment},
};
use crate::placement::{elect_leader, Election};

impl ClusterMetadata {
    /// Takes a just-fenced broker out of every ISR (except as the last
    /// member, which must stay to lead again without loss) and re-elects
    /// the partitions it led.
    pub(super) fn fence_partitions(&mut self, broker: BrokerId) {
        let live = self.live_set();
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_election_allowed();
            for p in topic.partitions.values_mut() {
                if !p.replicas.contains(&broker) && p.leader != Some(broker) {
                    continue;
                }
                let mut isr = p.isr.clone();
                if isr.len() > 1 {
                    isr.retain(|&id| id != broker);
                }
                let mut leader = p.leader;
                if leader == Some(broker) {
                    let candidate = PartitionState {
                        isr: isr.clone(),
                        ..p.clone()
                    };
                    match elect_leader(&candidate, |id| live.contains(&id), unclean) {
                        Election::Clean(id) => leader = Some(id),
                        Election::Unclean(id) => {
                            leader = Some(id);
                            isr = vec![id];
                        }
                        Election::Offline => leader = None,
                    }
                }
                let replicas = complete_reassignment(p, &mut leader, &mut isr, &live);
                update_partition(p, leader, isr, replicas);
            }
        }
    }

    /// Gives offline partitions a leader now that `broker` is back.
    pub(super) fn unfence_partitions(&mut self, broker: BrokerId) {
        let live = self.live_set();
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_election_allowed();
            for p in topic.partitions.values_mut() {
                if p.leader.is_some() || !p.replicas.contains(&broker) {
                    continue;
                }
                let (mut leader, mut isr) = match elect_leader(p, |id| live.contains(&id), unclean)
                {
                    Election::Clean(id) => (Some(id), p.isr.clone()),
                    Election::Unclean(id) => (Some(id), vec![id]),
                    Election::Offline => continue,
                };
                let replicas = complete_reassignment(p, &mut leader, &mut isr, &live);
                update_partition(p, leader, isr, replicas);
            }
        }
    }

    pub(super) fn change_partition(&mut self, change: &PartitionChange) -> ApplyResult {
        let live = self.live_set();
        let p = self.partition_mut(&change.topic, change.partition)?;
        if let Some(got) = change
            .expected_partition_epoch
            .filter(|&e| e != p.partition_epoch)
        {
            return Err(ApplyError::StalePartitionEpoch {
                got,
                current: p.partition_epoch,
            });
        }
        if let Some(got) = change
            .expected_leader_epoch
            .filter(|&e| e != p.leader_epoch)
        {
            return Err(ApplyError::FencedLeaderEpoch {
                got,
                current: p.leader_epoch,
            });
        }
        let mut isr = change.isr.clone().unwrap_or_else(|| p.isr.clone());
        let distinct: BTreeSet<_> = isr.iter().collect();
        if isr.is_empty() || distinct.len() != isr.len() {
            return Err(ApplyError::InvalidChange(format!(
                "ISR {isr:?} is empty or has duplicates"
            )));
        }
        if let Some(outsider) = isr.iter().find(|id| !p.replicas.contains(id)) {
            return Err(ApplyError::InvalidChange(format!(
                "ISR member {outsider} is not a replica"
            )));
        }
        if let Some(fenced) = isr
            .iter()
            .find(|id| !p.isr.contains(id) && !live.contains(id))
        {
            return Err(ApplyError::InvalidChange(format!(
                "fenced broker {fenced} cannot join the ISR"
            )));
        }
        let mut leader = match change.leader {
            LeaderChange::Unchanged => p.leader,
            LeaderChange::Offline => None,
            LeaderChange::To(id) => {
                if !live.contains(&id) {
                    return Err(ApplyError::InvalidChange(format!(
                        "new leader {id} is fenced"
                    )));
                }
                Some(id)
            }
        };
        if let Some(id) = leader.filter(|id| !isr.contains(id)) {
            return Err(ApplyError::InvalidChange(format!(
                "leader {id} is not in the ISR {isr:?}"
            )));
        }
        let replicas = complete_reassignment(p, &mut leader, &mut isr, &live);
        let changed = update_partition(p, leader, isr, replicas);
        Ok(if changed {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::Unchanged
        })
    }

    pub(super) fn alter_reassignment(
        &mut self,
        topic: &str,
        partition: i32,
        target: Option<&[BrokerId]>,
    ) -> ApplyResult {
        if let Some(target) = target {
            self.validate_replicas(target)?;
        }
        let live = self.live_set();
        let p = self.partition_mut(topic, partition)?;
        // During a reassignment `replicas` is the original list followed by
        // the added replicas, so removing those restores the original order.
        let original: Vec<BrokerId> = match &p.reassignment {
            Some(r) => p
                .replicas
                .iter()
                .copied()
                .filter(|id| !r.adding.contains(id))
                .collect(),
            None => p.replicas.clone(),
        };
        let (replicas, reassignment) = match target {
            None if p.reassignment.is_none() => return Err(ApplyError::NoReassignment),
            None => (original, None),
            Some(t) if t == original.as_slice() => (original, None),
            Some(t) => {
                let adding: Vec<BrokerId> = t
                    .iter()
                    .copied()
                    .filter(|id| !original.contains(id))
                    .collect();
                let removing = original
                    .iter()
                    .copied()
                    .filter(|id| !t.contains(id))
                    .collect();
                let replicas = original.iter().chain(&adding).copied().collect();
                (
                    replicas,
                    Some(Reassignment {
                        target: t.to_vec(),
                        adding,
                        removing,
                    }),
                )
            }
        };
        let mut isr: Vec<BrokerId> = p
            .isr
            .iter()
            .copied()
            .filter(|id| replicas.contains(id))
            .collect();
        let mut leader = p.leader.filter(|id| replicas.contains(id));
        if isr.is_empty() || leader.is_none() {
            let candidate = PartitionState {
                replicas: replicas.clone(),
                isr: isr.clone(),
                ..p.clone()
            };
            leader = elect_leader(&candidate, |id| live.contains(&id), false).leader();
            if isr.is_empty() {
                isr.extend(leader);
            }
        }
        if isr.is_empty() {
            return Err(ApplyError::InvalidAssignment(
                "no replica of the new set is in sync or live".into(),
            ));
        }
        let reassignment_changed = p.reassignment != reassignment;
        p.reassignment = reassignment;
        let mut changed = update_partition(p, leader, isr.clone(), Some(replicas));
        if reassignment_changed && !changed {
            // Still a change of this partition that AlterPartition must see.
            p.partition_epoch += 1;
            changed = true;
        }
        if p.reassignment.is_some() {
            // A pure shrink (or a target already in sync) completes at once.
            let complete = PartitionChange {
                topic: topic.to_owned(),
                partition,
                leader: LeaderChange::Unchanged,
                isr: Some(isr),
                expected_partition_epoch: None,
                expected_leader_epoch: None,
            };
            changed |= self.change_partition(&complete)? == ApplyOutcome::Applied;
        }
        Ok(if changed {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::Unchanged
        })
    }
}

/// Completes `p`'s reassignment if every target replica is in the
/// proposed `isr`: removed replicas leave the ISR, and if the leader was
/// removed a target replica in the ISR takes over. Returns the replica list
/// to install (the target), or `None` when nothing completes.
///
/// Called on every path that changes an ISR (AlterPartition, fencing,
/// unfencing, unclean elections), so a reassignment never waits for a
/// request that would not come.
fn complete_reassignment(
    p: &PartitionState,
    leader: &mut Option<BrokerId>,
    isr: &mut Vec<BrokerId>,
    live: &BTreeSet<BrokerId>,
) -> Option<Vec<BrokerId>> {
    let target = &p
        .reassignment
        .as_ref()
        .filter(|r| r.target.iter().all(|id| isr.contains(id)))?
        .target;
    isr.retain(|id| target.contains(id));
    if leader.is_none_or(|id| !target.contains(&id)) {
        let candidate = PartitionState {
            replicas: target.clone(),
            isr: isr.clone(),
            ..p.clone()
        };
        *leader = elect_leader(&candidate, |id| live.contains(&id), false).leader();
    }
    Some(target.clone())
}

/// Writes a partition's new leader/ISR/replicas, bumping the leader epoch
/// on a leader change and the partition epoch on any change. Returns
/// whether anything changed.
fn update_partition(
    p: &mut PartitionState,
    leader: Option<BrokerId>,
    isr: Vec<BrokerId>,
    replicas: Option<Vec<BrokerId>>,
) -> bool {
    let mut changed = false;
    if p.leader != leader {
        p.leader = leader;
        p.leader_epoch += 1;
        changed = true;
    }
    if p.isr != isr {
        p.isr = isr;
        changed = true;
    }
    if let Some(replicas) = replicas {
        if replicas != p.replicas {
            p.replicas = replicas;
            changed = true;
        }
        // Done only once every target replica is in sync: a pure addition
        // has its target as replica list from the start, and its new
        // replicas are "adding" (throttled, listed) until they catch up.
        let done = p.reassignment.as_ref().is_some_and(|r| {
            r.target == p.replicas && r.target.iter().all(|id| p.isr.contains(id))
        });
        if done {
            p.reassignment = None;
            changed = true;
        }
    }
    if changed {
        p.partition_epoch += 1;
    }
    changed
}
