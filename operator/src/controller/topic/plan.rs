//! Pure planning of a Topic: the admin changes that take a topic to its
//! spec, and the reassignments of a replication factor change.

use std::collections::BTreeMap;

use rivulet_wire::client::{OngoingReassignment, ReassignTarget};

use crate::{
    controller::{
        kafka::{ReplicaAssignment, TopicState},
        reassign::{replication_targets, Loads},
    },
    crd::TopicSpec,
};

/// A change the topic needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    /// Create the topic.
    Create {
        /// Partitions.
        partitions: i32,
        /// Replication factor.
        replication_factor: i16,
        /// Config overrides.
        config: BTreeMap<String, String>,
    },
    /// Grow to this many partitions.
    Grow(i32),
    /// Set these overrides and revert those.
    AlterConfig {
        /// Overrides to set.
        set: BTreeMap<String, String>,
        /// Overrides to remove.
        delete: Vec<String>,
    },
}

/// What to do about a topic: changes to make, and differences the
/// operator cannot resolve (reported, not acted on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicPlan {
    /// Changes, in order.
    pub changes: Vec<TopicChange>,
    /// Why the topic cannot fully match its spec.
    pub problems: Vec<String>,
}

/// Plans the changes that take `current` to `spec` (pure).
pub fn plan(spec: &TopicSpec, current: Option<&TopicState>, brokers: Option<i32>) -> TopicPlan {
    let mut plan = TopicPlan::default();
    if let Some(brokers) = brokers.filter(|b| spec.replication_factor > *b) {
        plan.problems.push(format!(
            "replicationFactor {} exceeds the cluster's {brokers} brokers",
            spec.replication_factor
        ));
        if current.is_none() {
            return plan;
        }
    }
    let Some(current) = current else {
        plan.changes.push(TopicChange::Create {
            partitions: spec.partitions,
            replication_factor: i16::try_from(spec.replication_factor).unwrap_or(i16::MAX),
            config: spec.config.clone(),
        });
        return plan;
    };
    if spec.partitions > current.partitions {
        plan.changes.push(TopicChange::Grow(spec.partitions));
    } else if spec.partitions < current.partitions {
        plan.problems.push(format!(
            "the topic has {} partitions; Kafka cannot shrink it to {}",
            current.partitions, spec.partitions
        ));
    }
    let set: BTreeMap<String, String> = spec
        .config
        .iter()
        .filter(|(k, v)| current.overrides.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = current
        .overrides
        .keys()
        .filter(|k| !spec.config.contains_key(*k))
        .cloned()
        .collect();
    if !set.is_empty() || !delete.is_empty() {
        plan.changes.push(TopicChange::AlterConfig { set, delete });
    }
    plan
}

/// The next step of a replication factor change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationStep {
    /// This many of the topic's partitions are being reassigned: wait.
    Wait(usize),
    /// Start these reassignments. `short` lists the partitions that cannot
    /// get enough replicas because too few brokers are registered.
    Start {
        /// One target per partition whose replica count is off.
        targets: Vec<ReassignTarget>,
        /// Partitions left out for want of brokers.
        short: Vec<i32>,
    },
}

/// Plans giving every partition of `topic` `replication_factor` replicas
/// (pure): grown partitions keep their replicas in order and gain the
/// least-loaded brokers among the first `brokers` of the cluster that are
/// registered; shrunk ones drop replicas from the end, the leader last.
/// Nothing new starts while any partition of the topic is still moving.
pub fn replication_step(
    topic: &str,
    replication_factor: i32,
    assignment: &ReplicaAssignment,
    ongoing: &[OngoingReassignment],
    brokers: i32,
) -> ReplicationStep {
    let moving = ongoing.iter().filter(|o| o.topic == topic).count();
    if moving > 0 {
        return ReplicationStep::Wait(moving);
    }
    let partitions = assignment
        .partitions
        .iter()
        .filter(|((t, _), _)| t == topic)
        .map(|((_, p), replicas)| (*p, replicas.clone()))
        .collect();
    let mut loads = Loads::of(
        assignment,
        assignment
            .brokers
            .iter()
            .copied()
            .filter(|id| *id < brokers),
    );
    let (targets, short) = replication_targets(
        topic,
        &partitions,
        usize::try_from(replication_factor).unwrap_or(0),
        &mut loads,
    );
    ReplicationStep::Start { targets, short }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::kafka::PartitionReplicas;

    fn spec(yaml: &str) -> TopicSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn state(partitions: i32, rf: i32, overrides: &[(&str, &str)]) -> TopicState {
        TopicState {
            id: "id".into(),
            partitions,
            replication_factor: rf,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..TopicState::default()
        }
    }

    #[test]
    fn creates_a_missing_topic() {
        let s = spec(
            "cluster: demo\npartitions: 6\nreplicationFactor: 3\nconfig:\n  retention.ms: '1000'",
        );
        let p = plan(&s, None, Some(3));
        assert_eq!(
            p.changes,
            [TopicChange::Create {
                partitions: 6,
                replication_factor: 3,
                config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            }]
        );
        assert!(p.problems.is_empty());
        let too_big = plan(&s, None, Some(1));
        assert!(too_big.changes.is_empty());
        assert!(too_big.problems[0].contains("exceeds"));
    }

    #[test]
    fn grows_and_syncs_config() {
        let s = spec("cluster: demo\npartitions: 6\nreplicationFactor: 1\nconfig:\n  retention.ms: '1000'\n  cleanup.policy: compact");
        let current = state(3, 1, &[("retention.ms", "5"), ("segment.bytes", "1024")]);
        let p = plan(&s, Some(&current), Some(3));
        assert_eq!(
            p.changes,
            [
                TopicChange::Grow(6),
                TopicChange::AlterConfig {
                    set: BTreeMap::from([
                        ("cleanup.policy".into(), "compact".into()),
                        ("retention.ms".into(), "1000".into()),
                    ]),
                    delete: vec!["segment.bytes".into()],
                },
            ]
        );
    }

    #[test]
    fn in_sync_topic_needs_nothing() {
        let s = spec(
            "cluster: demo\npartitions: 3\nreplicationFactor: 1\nconfig:\n  retention.ms: '1000'",
        );
        let current = state(3, 1, &[("retention.ms", "1000")]);
        assert_eq!(plan(&s, Some(&current), Some(1)), TopicPlan::default());
    }

    #[test]
    fn reports_what_it_cannot_do() {
        let s = spec("cluster: demo\npartitions: 2\nreplicationFactor: 2");
        let p = plan(&s, Some(&state(4, 1, &[])), Some(3));
        assert!(p.changes.is_empty());
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert!(p.problems[0].contains("cannot shrink"));
        let too_big = plan(&s, Some(&state(2, 1, &[])), Some(1));
        assert!(too_big.problems[0].contains("exceeds"), "{too_big:?}");
    }

    fn assignment(brokers: &[i32], partitions: &[(&str, i32, &[i32])]) -> ReplicaAssignment {
        ReplicaAssignment {
            brokers: brokers.to_vec(),
            partitions: partitions
                .iter()
                .map(|(t, p, r)| {
                    (
                        (t.to_string(), *p),
                        PartitionReplicas {
                            leader: r[0],
                            replicas: r.to_vec(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn replication_grows_onto_the_least_loaded_brokers_of_the_cluster() {
        // Broker 3 is leaving the cluster (spec says 3 brokers) and must
        // not get replicas; broker 2 carries the least.
        let a = assignment(
            &[0, 1, 2, 3],
            &[
                ("orders", 0, &[0]),
                ("orders", 1, &[1]),
                ("other", 0, &[0, 1]),
                ("other", 1, &[2, 0]),
            ],
        );
        let step = replication_step("orders", 2, &a, &[], 3);
        assert_eq!(
            step,
            ReplicationStep::Start {
                targets: vec![
                    ("orders".into(), 0, Some(vec![0, 2])),
                    ("orders".into(), 1, Some(vec![1, 2])),
                ],
                short: vec![],
            },
            "loads 0:3 1:2 2:1, then 0:3 1:2 2:2"
        );
        let ReplicationStep::Start { targets, short } = replication_step("orders", 4, &a, &[], 3)
        else {
            panic!()
        };
        assert!(targets.is_empty());
        assert_eq!(short, [0, 1], "three brokers hold at most three replicas");
    }

    #[test]
    fn replication_shrinks_and_waits_for_moves_in_progress() {
        let a = assignment(&[0, 1, 2], &[("t", 0, &[2, 0, 1]), ("t", 1, &[1, 2])]);
        assert_eq!(
            replication_step("t", 1, &a, &[], 3),
            ReplicationStep::Start {
                targets: vec![
                    ("t".into(), 0, Some(vec![2])),
                    ("t".into(), 1, Some(vec![1]))
                ],
                short: vec![],
            }
        );
        let ongoing = [OngoingReassignment {
            topic: "t".into(),
            partition: 1,
            replicas: vec![1, 2],
            adding: vec![],
            removing: vec![2],
        }];
        assert_eq!(
            replication_step("t", 1, &a, &ongoing, 3),
            ReplicationStep::Wait(1)
        );
        assert!(
            matches!(
                replication_step("u", 1, &a, &ongoing, 3),
                ReplicationStep::Start { targets, .. } if targets.is_empty()
            ),
            "another topic's moves do not hold this one back"
        );
    }
}
