//! Pure placement decisions of the active controller: where the replicas of
//! new partitions go, and which replica leads a partition.
//!
//! These are functions of a [`ClusterMetadata`] image so that they can be
//! tested without a quorum, and so that applying the same log on every
//! controller makes the same elections.

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::{BrokerId, ClusterMetadata, PartitionState};

/// Why replicas could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Fewer unfenced brokers than the replication factor
    /// (INVALID_REPLICATION_FACTOR).
    #[error("replication factor {replication_factor} exceeds the {live} unfenced brokers")]
    NotEnoughBrokers {
        /// Requested replication factor.
        replication_factor: usize,
        /// Unfenced brokers available.
        live: usize,
    },
    /// A replication factor of zero.
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// How much a broker already carries; placement evens these out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Load {
    leaders: usize,
    replicas: usize,
}

/// Chooses replica lists for `partitions` new partitions.
///
/// Each partition's leader (first replica) is the unfenced broker leading the
/// fewest partitions, so leadership spreads evenly, counting topics that
/// exist already. Followers are the brokers with the fewest replicas, but a
/// broker on a rack the partition does not use yet always wins, so replicas
/// land on distinct racks whenever there are enough racks. Brokers without a
/// rack count as a rack each. Ties rotate with the partition index so that a
/// broker's followers are spread over many brokers, which spreads the load
/// of a broker failure.
pub fn assign_replicas(
    metadata: &ClusterMetadata,
    partitions: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<BrokerId>>, PlacementError> {
    if replication_factor == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    let racks: BTreeMap<BrokerId, Option<&str>> = metadata
        .live_brokers()
        .map(|b| (b.id, b.rack.as_deref()))
        .collect();
    if racks.len() < replication_factor {
        return Err(PlacementError::NotEnoughBrokers {
            replication_factor,
            live: racks.len(),
        });
    }
    let mut load: BTreeMap<BrokerId, Load> =
        racks.keys().map(|&id| (id, Load::default())).collect();
    for partition in metadata.topics.values().flat_map(|t| t.partitions.values()) {
        for replica in &partition.replicas {
            if let Some(l) = load.get_mut(replica) {
                l.replicas += 1;
            }
        }
        if let Some(l) = partition.leader.and_then(|id| load.get_mut(&id)) {
            l.leaders += 1;
        }
    }
    let ids: Vec<BrokerId> = racks.keys().copied().collect();
    let n = ids.len();
    let mut out = Vec::with_capacity(partitions);
    for p in 0..partitions {
        // Rotation used to break ties: the distance from a start that moves
        // with the partition index.
        let rotation = |id: BrokerId| {
            let pos = ids.iter().position(|&b| b == id).unwrap_or(0);
            (pos + n - p % n) % n
        };
        let leader = *ids
            .iter()
            .min_by_key(|&&id| (load[&id].leaders, load[&id].replicas, rotation(id)))
            .expect("at least replication_factor >= 1 brokers");
        let mut chosen = vec![leader];
        let mut used_racks: BTreeSet<RackKey> = BTreeSet::from([rack_key(leader, racks[&leader])]);
        while chosen.len() < replication_factor {
            let next = *ids
                .iter()
                .filter(|id| !chosen.contains(id))
                .min_by_key(|&&id| {
                    let rack_used = used_racks.contains(&rack_key(id, racks[&id]));
                    (rack_used, load[&id].replicas, rotation(id))
                })
                .expect("enough brokers checked above");
            used_racks.insert(rack_key(next, racks[&next]));
            chosen.push(next);
        }
        for (i, id) in chosen.iter().enumerate() {
            let l = load.get_mut(id).expect("chosen from load keys");
            l.replicas += 1;
            if i == 0 {
                l.leaders += 1;
            }
        }
        out.push(chosen);
    }
    Ok(out)
}

/// A rack identity where each rack-less broker is its own rack.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RackKey {
    Named(String),
    Alone(BrokerId),
}

fn rack_key(id: BrokerId, rack: Option<&str>) -> RackKey {
    match rack {
        Some(r) => RackKey::Named(r.to_owned()),
        None => RackKey::Alone(id),
    }
}

/// The result of a leader election for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// A live in-sync replica: no committed data is lost.
    Clean(BrokerId),
    /// A live replica outside the ISR, allowed by the topic config; records
    /// beyond its log end are lost and the ISR restarts with it alone.
    Unclean(BrokerId),
    /// Nobody can lead; the partition is offline until an ISR member returns.
    Offline,
}

impl Election {
    /// The elected broker, if any.
    pub fn leader(self) -> Option<BrokerId> {
        match self {
            Election::Clean(id) | Election::Unclean(id) => Some(id),
            Election::Offline => None,
        }
    }
}

/// Elects a leader for `partition` among brokers for which `is_live` holds.
///
/// Replicas are tried in assignment order, so the preferred leader wins when
/// it is eligible. Only ISR members are eligible unless `unclean_allowed`.
pub fn elect_leader(
    partition: &PartitionState,
    is_live: impl Fn(BrokerId) -> bool,
    unclean_allowed: bool,
) -> Election {
    let live = |id: &&BrokerId| is_live(**id);
    if let Some(&id) = partition
        .replicas
        .iter()
        .filter(live)
        .find(|id| partition.isr.contains(id))
    {
        return Election::Clean(id);
    }
    if unclean_allowed {
        if let Some(&id) = partition.replicas.iter().find(live) {
            return Election::Unclean(id);
        }
    }
    Election::Offline
}

/// The preferred leader, when moving leadership to it is possible and
/// useful: it is live, in sync, and not leading already.
pub fn preferred_leader_move(
    partition: &PartitionState,
    is_live: impl Fn(BrokerId) -> bool,
) -> Option<BrokerId> {
    let preferred = partition.preferred_leader()?;
    let eligible = is_live(preferred) && partition.isr.contains(&preferred);
    (eligible && partition.leader != Some(preferred)).then_some(preferred)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::metadata::TopicMetadata;

    fn cluster(brokers: &[(BrokerId, Option<&str>)]) -> ClusterMetadata {
        let unfenced: Vec<_> = brokers
            .iter()
            .map(|&(id, rack)| (id, rack, false))
            .collect();
        ClusterMetadata::with_brokers(&unfenced)
    }

    fn counts(
        assignments: &[Vec<BrokerId>],
    ) -> (BTreeMap<BrokerId, usize>, BTreeMap<BrokerId, usize>) {
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for a in assignments {
            *leaders.entry(a[0]).or_insert(0) += 1;
            for r in a {
                *replicas.entry(*r).or_insert(0) += 1;
            }
        }
        (leaders, replicas)
    }

    #[test]
    fn spreads_leaders_and_replicas_evenly() {
        let md = cluster(&[(1, None), (2, None), (3, None)]);
        let a = assign_replicas(&md, 6, 3).unwrap();
        let (leaders, replicas) = counts(&a);
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        assert_eq!(
            replicas.values().copied().collect::<Vec<_>>(),
            vec![6, 6, 6]
        );
        for r in &a {
            let distinct: BTreeSet<_> = r.iter().collect();
            assert_eq!(distinct.len(), 3, "no broker twice in {r:?}");
        }
    }

    #[test]
    fn counts_existing_topics_and_skips_fenced_brokers() {
        let mut md = cluster(&[(1, None), (2, None), (3, None), (4, None)]);
        md.brokers.get_mut(&4).unwrap().fenced = true;
        let mut partitions = BTreeMap::new();
        partitions.insert(0, PartitionState::new(vec![1, 2]));
        partitions.insert(1, PartitionState::new(vec![1, 3]));
        md.topics.insert(
            "old".into(),
            TopicMetadata {
                name: "old".into(),
                id: Uuid::nil(),
                partitions,
                configs: BTreeMap::new(),
            },
        );
        let a = assign_replicas(&md, 2, 2).unwrap();
        // Broker 1 already leads two partitions: the new leaders are 2 and 3.
        let leaders: BTreeSet<_> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, BTreeSet::from([2, 3]));
        assert!(
            a.iter().flatten().all(|&b| b != 4),
            "fenced broker used: {a:?}"
        );
    }

    #[test]
    fn rack_aware_uses_distinct_racks() {
        let md = cluster(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
        ]);
        let rack = |id: BrokerId| md.brokers[&id].rack.clone().unwrap();
        let a = assign_replicas(&md, 10, 3).unwrap();
        for r in &a {
            let racks: BTreeSet<_> = r.iter().map(|&id| rack(id)).collect();
            assert_eq!(racks.len(), 3, "replicas {r:?} share a rack");
        }
        // With two racks and RF 3 a rack must repeat, but the first two differ.
        let md2 = cluster(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
        ]);
        for r in assign_replicas(&md2, 4, 3).unwrap() {
            assert_ne!(md2.brokers[&r[0]].rack, md2.brokers[&r[1]].rack, "{r:?}");
        }
    }

    #[test]
    fn rejects_bad_replication_factor() {
        let md = cluster(&[(1, None), (2, None)]);
        assert_eq!(
            assign_replicas(&md, 1, 3),
            Err(PlacementError::NotEnoughBrokers {
                replication_factor: 3,
                live: 2
            })
        );
        assert_eq!(
            assign_replicas(&md, 1, 0),
            Err(PlacementError::ZeroReplicationFactor)
        );
        assert_eq!(assign_replicas(&md, 0, 2), Ok(vec![]));
    }

    #[test]
    fn election_prefers_isr_in_replica_order() {
        let mut p = PartitionState::new(vec![1, 2, 3]);
        p.isr = vec![3, 2];
        assert_eq!(elect_leader(&p, |id| id != 1, false), Election::Clean(2));
        assert_eq!(elect_leader(&p, |id| id == 3, false), Election::Clean(3));
    }

    #[test]
    fn unclean_election_only_when_allowed() {
        let mut p = PartitionState::new(vec![1, 2, 3]);
        p.isr = vec![1];
        let live = |id| id != 1;
        assert_eq!(elect_leader(&p, live, false), Election::Offline);
        assert_eq!(elect_leader(&p, live, true), Election::Unclean(2));
        assert_eq!(elect_leader(&p, |_| false, true), Election::Offline);
        assert_eq!(Election::Offline.leader(), None);
    }

    #[test]
    fn preferred_leader_move_needs_live_in_sync_preferred() {
        let mut p = PartitionState::new(vec![1, 2]);
        assert_eq!(preferred_leader_move(&p, |_| true), None, "already leads");
        p.leader = Some(2);
        assert_eq!(preferred_leader_move(&p, |_| true), Some(1));
        assert_eq!(preferred_leader_move(&p, |id| id != 1), None, "not live");
        p.isr = vec![2];
        assert_eq!(preferred_leader_move(&p, |_| true), None, "not in sync");
    }
}
