//! The PREFERRED election of Kafka's ElectLeaders API as a pure plan: which
//! partitions can move their leadership back to the preferred (first)
//! replica, and why the others cannot. The active controller's automatic
//! leader rebalance uses the same plan for every partition.
//!
//! The changes carry the partition epoch they were computed from, so a plan
//! proposed after the partition moved on is refused instead of undoing a
//! newer decision.

use std::collections::BTreeMap;

use crate::{
    metadata::{ClusterMetadata, LeaderChange, MetadataCommand, PartitionChange, PartitionState},
    placement::preferred_leader_move,
};

/// A partition named as in ElectLeaders requests.
pub type TopicPartition = (String, i32);

/// Why a partition gets no preferred election; each maps onto the Kafka
/// error code of the same name in the ElectLeaders response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ElectLeadersError {
    /// The preferred replica leads already (ELECTION_NOT_NEEDED).
    #[error("the preferred replica is the leader already")]
    ElectionNotNeeded,
    /// The preferred replica is fenced or out of sync
    /// (PREFERRED_LEADER_NOT_AVAILABLE).
    #[error("the preferred replica is fenced or not in sync")]
    PreferredLeaderNotAvailable,
    /// No such topic or partition (UNKNOWN_TOPIC_OR_PARTITION).
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
}

/// The outcome for one partition: the change to propose, or why there is
/// none.
pub type ElectionResult = Result<PartitionChange, ElectLeadersError>;

/// Plans preferred-leader elections for `partitions`, or for every
/// partition when `None`.
///
/// As in Kafka, naming no partitions leaves out those that need no
/// election, so the answer lists only what was attempted; named partitions
/// are always answered. Propose the changes as one
/// [`MetadataCommand::Batch`] (see [`election_batch`]): a partition that
/// changed since `image` fails the batch with `StalePartitionEpoch`, and
/// planning again from a newer image resolves it.
pub fn preferred_elections(
    image: &ClusterMetadata,
    partitions: Option<&[TopicPartition]>,
) -> BTreeMap<TopicPartition, ElectionResult> {
    match partitions {
        Some(named) => named
            .iter()
            .map(|(topic, index)| {
                let result = match image.partition(topic, *index) {
                    Some(p) => elect_preferred(image, topic, *index, p),
                    None => Err(ElectLeadersError::UnknownTopicOrPartition),
                };
                ((topic.clone(), *index), result)
            })
            .collect(),
        None => image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |(&i, p)| (t, i, p)))
            .map(|(t, i, p)| ((t.name.clone(), i), elect_preferred(image, &t.name, i, p)))
            .filter(|(_, r)| *r != Err(ElectLeadersError::ElectionNotNeeded))
            .collect(),
    }
}

/// The accepted changes of a plan as one atomic command, or `None` if
/// there are none.
pub fn election_batch(plan: &BTreeMap<TopicPartition, ElectionResult>) -> Option<MetadataCommand> {
    let changes: Vec<MetadataCommand> = plan
        .values()
        .filter_map(|r| r.as_ref().ok())
        .map(|c| MetadataCommand::ChangePartition(c.clone()))
        .collect();
    (!changes.is_empty()).then_some(MetadataCommand::Batch(changes))
}

fn elect_preferred(
    image: &ClusterMetadata,
    topic: &str,
    partition: i32,
    state: &PartitionState,
) -> ElectionResult {
    if state.leader.is_some() && state.leader == state.preferred_leader() {
        return Err(ElectLeadersError::ElectionNotNeeded);
    }
    let preferred = preferred_leader_move(state, |id| image.is_live(id))
        .ok_or(ElectLeadersError::PreferredLeaderNotAvailable)?;
    Ok(PartitionChange {
        topic: topic.to_owned(),
        partition,
        leader: LeaderChange::To(preferred),
        isr: None,
        expected_partition_epoch: Some(state.partition_epoch),
        expected_leader_epoch: None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::metadata::{ApplyError, ApplyOutcome, TopicMetadata};

    /// Brokers 1..=3 (3 fenced) and topic `t`: p0 led by its preferred
    /// replica, p1 led by 2 with preferred 1 in sync, p2 preferring fenced
    /// 3, p3 preferring 1 which is out of sync.
    fn image() -> ClusterMetadata {
        let mut md =
            ClusterMetadata::with_brokers(&[(1, None, false), (2, None, false), (3, None, true)]);
        let led_by = |replicas: Vec<i32>, leader, isr: Vec<i32>| PartitionState {
            leader: Some(leader),
            isr,
            partition_epoch: 4,
            ..PartitionState::new(replicas)
        };
        let partitions = BTreeMap::from([
            (0, led_by(vec![1, 2], 1, vec![1, 2])),
            (1, led_by(vec![1, 2], 2, vec![2, 1])),
            (2, led_by(vec![3, 2], 2, vec![2, 3])),
            (3, led_by(vec![1, 2], 2, vec![2])),
        ]);
        let topic = TopicMetadata {
            name: "t".into(),
            id: Uuid::nil(),
            partitions,
            configs: BTreeMap::new(),
        };
        md.topics.insert("t".into(), topic);
        md
    }

    #[test]
    fn named_partitions_are_all_answered() {
        let md = image();
        let named: Vec<TopicPartition> =
            [("t", 0), ("t", 1), ("t", 2), ("t", 3), ("t", 9), ("u", 0)]
                .map(|(t, p)| (t.to_owned(), p))
                .to_vec();
        let plan = preferred_elections(&md, Some(&named));
        let kinds: Vec<_> = plan.values().map(|r| r.as_ref().err().copied()).collect();
        use ElectLeadersError::*;
        assert_eq!(
            kinds,
            vec![
                Some(ElectionNotNeeded),
                None,
                Some(PreferredLeaderNotAvailable),
                Some(PreferredLeaderNotAvailable),
                Some(UnknownTopicOrPartition),
                Some(UnknownTopicOrPartition),
            ]
        );
        let change = plan[&("t".to_owned(), 1)].clone().unwrap();
        assert_eq!(
            (change.leader, change.expected_partition_epoch),
            (LeaderChange::To(1), Some(4))
        );
    }

    #[test]
    fn all_partitions_leave_out_those_not_needing_an_election() {
        let plan = preferred_elections(&image(), None);
        let keys: Vec<_> = plan.keys().map(|(_, p)| *p).collect();
        assert_eq!(keys, vec![1, 2, 3]);
    }

    #[test]
    fn the_batch_applies_once_and_a_stale_one_is_refused() {
        let mut md = image();
        let plan = preferred_elections(&md, None);
        let batch = election_batch(&plan).expect("one election");
        assert_eq!(md.apply(10, &batch), Ok(ApplyOutcome::Applied));
        let p1 = md.partition("t", 1).unwrap();
        assert_eq!((p1.leader, p1.leader_epoch), (Some(1), 1));
        assert_eq!(election_batch(&preferred_elections(&md, None)), None);
        assert!(matches!(
            md.apply(11, &batch),
            Err(ApplyError::StalePartitionEpoch { .. })
        ));
    }
}
