//! Unit tests of the partition rules: leader and partition epochs, stale
//! and fenced AlterPartition requests, elections on fencing (clean,
//! unclean, offline) and reassignments.

use std::collections::BTreeMap;

use super::{tests::*, *};

#[test]
fn partition_change_bumps_epochs_and_rejects_stale_ones() {
    let mut log = Log::new();
    log.brokers(&[1, 2, 3]);
    log.topic("t", vec![vec![1, 2, 3]]);
    // ISR shrink by the leader: partition epoch only.
    assert_eq!(
        log.apply(change(
            "t",
            LeaderChange::Unchanged,
            Some(vec![1, 2]),
            Some(0)
        )),
        Ok(ApplyOutcome::Applied)
    );
    assert_eq!(
        (log.p("t", 0).leader_epoch, log.p("t", 0).partition_epoch),
        (0, 1)
    );
    // A change computed from epoch 0 is now stale.
    let stale = change("t", LeaderChange::Unchanged, Some(vec![1]), Some(0));
    assert_eq!(
        log.apply(stale),
        Err(ApplyError::StalePartitionEpoch { got: 0, current: 1 })
    );
    // Leader change: both epochs.
    assert_eq!(
        log.apply(change("t", LeaderChange::To(2), None, Some(1))),
        Ok(ApplyOutcome::Applied)
    );
    let p = log.p("t", 0);
    assert_eq!(
        (p.leader, p.leader_epoch, p.partition_epoch),
        (Some(2), 1, 2)
    );
    // An old leader's AlterPartition is fenced by the leader epoch.
    let mut old = PartitionChange {
        topic: "t".into(),
        partition: 0,
        leader: LeaderChange::Unchanged,
        isr: Some(vec![1, 2, 3]),
        expected_partition_epoch: Some(2),
        expected_leader_epoch: Some(0),
    };
    let fenced = log.apply(MetadataCommand::ChangePartition(old.clone()));
    assert_eq!(
        fenced,
        Err(ApplyError::FencedLeaderEpoch { got: 0, current: 1 })
    );
    old.expected_leader_epoch = Some(1);
    assert_eq!(
        log.apply(MetadataCommand::ChangePartition(old)),
        Ok(ApplyOutcome::Applied)
    );
    assert_eq!(log.p("t", 0).isr, vec![1, 2, 3]);
    // A no-op keeps the epochs.
    assert_eq!(
        log.apply(change("t", LeaderChange::Unchanged, None, None)),
        Ok(ApplyOutcome::Unchanged)
    );
    assert_eq!(log.p("t", 0).partition_epoch, 3);
}

#[test]
fn partition_change_validates_leader_and_isr() {
    let mut log = Log::new();
    log.brokers(&[1, 2, 3, 4]);
    log.topic("t", vec![vec![1, 2, 3]]);
    let invalid = |r: ApplyResult| assert!(matches!(r, Err(ApplyError::InvalidChange(_))), "{r:?}");
    invalid(log.apply(change("t", LeaderChange::Unchanged, Some(vec![]), None)));
    invalid(log.apply(change("t", LeaderChange::Unchanged, Some(vec![1, 4]), None)));
    invalid(log.apply(change("t", LeaderChange::Unchanged, Some(vec![2, 3]), None)));
    invalid(log.apply(change("t", LeaderChange::To(2), Some(vec![1]), None)));
    log.apply(MetadataCommand::FenceBroker { broker_id: 3 })
        .unwrap();
    invalid(log.apply(change("t", LeaderChange::To(3), Some(vec![1, 2, 3]), None)));
    invalid(log.apply(change(
        "t",
        LeaderChange::Unchanged,
        Some(vec![1, 2, 3]),
        None,
    )));
    assert_eq!(
        log.apply(change("t", LeaderChange::Offline, None, None)),
        Ok(ApplyOutcome::Applied)
    );
    assert_eq!(log.p("t", 0).leader, None);
}

#[test]
fn fencing_the_leader_elects_from_the_isr() {
    let mut log = Log::new();
    log.brokers(&[1, 2, 3]);
    log.topic("t", vec![vec![1, 2, 3]]);
    assert_eq!(
        log.apply(MetadataCommand::FenceBroker { broker_id: 1 }),
        Ok(ApplyOutcome::Applied)
    );
    let p = log.p("t", 0);
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
        (Some(2), vec![2, 3], 1, 1)
    );
    assert_eq!(
        log.apply(MetadataCommand::FenceBroker { broker_id: 1 }),
        Ok(ApplyOutcome::Unchanged)
    );
    // Fencing a follower only shrinks the ISR.
    log.apply(MetadataCommand::FenceBroker { broker_id: 3 })
        .unwrap();
    let p = log.p("t", 0);
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_epoch),
        (Some(2), vec![2], 1)
    );
}

#[test]
fn last_isr_member_fenced_goes_offline_and_returns() {
    let mut log = Log::new();
    log.brokers(&[1, 2]);
    log.topic("t", vec![vec![1, 2]]);
    log.apply(change("t", LeaderChange::Unchanged, Some(vec![1]), None))
        .unwrap();
    log.apply(MetadataCommand::FenceBroker { broker_id: 1 })
        .unwrap();
    let p = log.p("t", 0);
    assert_eq!(
        (p.leader, p.isr.clone()),
        (None, vec![1]),
        "offline, the last member stays in the ISR"
    );
    // Broker 2 is out of sync: no clean leader until 1 heartbeats again.
    let epoch = log.md.brokers[&1].epoch;
    log.apply(MetadataCommand::BrokerHeartbeat {
        broker_id: 1,
        broker_epoch: epoch,
    })
    .unwrap();
    let p = log.p("t", 0);
    assert_eq!((p.leader, p.leader_epoch), (Some(1), 2));
}

/// Brokers 1 and 2; topic `t` allows unclean elections and its partition
/// has replicas [1, 2] with only 1 in sync.
fn unclean_topic_with_lagging_follower() -> Log {
    let mut log = Log::new();
    log.brokers(&[1, 2]);
    let configs = BTreeMap::from([(UNCLEAN_LEADER_ELECTION_CONFIG.to_owned(), "true".to_owned())]);
    log.apply(create("t", vec![vec![1, 2]], configs)).unwrap();
    log.apply(change("t", LeaderChange::Unchanged, Some(vec![1]), None))
        .unwrap();
    log
}

#[test]
fn unclean_election_when_the_topic_allows_it() {
    let mut log = unclean_topic_with_lagging_follower();
    log.apply(MetadataCommand::FenceBroker { broker_id: 1 })
        .unwrap();
    let p = log.p("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (Some(2), vec![2]));
}

#[test]
fn reassignment_adds_then_completes_when_in_sync() {
    let mut log = Log::new();
    log.brokers(&[1, 2, 3, 4]);
    log.topic("t", vec![vec![1, 2]]);
    let target = Some(vec![3, 4]);
    let start = MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target,
    };
    assert_eq!(log.apply(start), Ok(ApplyOutcome::Applied));
    let p = log.p("t", 0).clone();
    assert_eq!(p.replicas, vec![1, 2, 3, 4]);
    let r = p.reassignment.clone().unwrap();
    assert_eq!((r.adding, r.removing), (vec![3, 4], vec![1, 2]));
    // The leader adds 3: not complete yet.
    log.apply(change(
        "t",
        LeaderChange::Unchanged,
        Some(vec![1, 2, 3]),
        Some(p.partition_epoch),
    ))
    .unwrap();
    assert!(log.p("t", 0).reassignment.is_some());
    // 4 joins: complete; the leader moves into the target.
    log.apply(change(
        "t",
        LeaderChange::Unchanged,
        Some(vec![1, 2, 3, 4]),
        None,
    ))
    .unwrap();
    let p = log.p("t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![3, 4], vec![3, 4], Some(3))
    );
    assert!(p.reassignment.is_none());
    assert_eq!(p.leader_epoch, 1);
}

#[test]
fn reassignment_cancel_and_shrink() {
    let mut log = Log::new();
    log.brokers(&[1, 2, 3]);
    log.topic("t", vec![vec![1, 2]]);
    let alter = |target: Option<Vec<BrokerId>>| MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target,
    };
    assert_eq!(log.apply(alter(None)), Err(ApplyError::NoReassignment));
    log.apply(alter(Some(vec![2, 3]))).unwrap();
    assert_eq!(log.p("t", 0).replicas, vec![1, 2, 3]);
    log.apply(alter(None)).unwrap();
    let p = log.p("t", 0);
    assert_eq!(
        (p.replicas.clone(), p.reassignment.clone()),
        (vec![1, 2], None)
    );
    // Shrinking to in-sync replicas completes immediately.
    log.apply(alter(Some(vec![2]))).unwrap();
    assert_eq!(log.layout("t", 0), (vec![2], vec![2], Some(2), false));
    assert!(matches!(
        log.apply(alter(Some(vec![2, 2]))),
        Err(ApplyError::InvalidAssignment(_))
    ));
}

#[test]
fn reassignment_keeping_the_leader_completes_without_a_leader_change() {
    let mut log = Log::new();
    log.brokers(&[1, 2, 3, 4]);
    log.topic("t", vec![vec![1, 2, 3]]);
    log.apply(MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![4, 1]),
    })
    .unwrap();
    let p = log.p("t", 0).clone();
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![1, 2, 3, 4], vec![1, 2, 3])
    );
    // The leader's AlterPartition computed before the reassignment started
    // is refused: its ISR would not be based on the current replica set.
    let stale = change("t", LeaderChange::Unchanged, Some(vec![1, 2]), Some(0));
    assert!(matches!(
        log.apply(stale),
        Err(ApplyError::StalePartitionEpoch { .. })
    ));
    // 4 caught up: the replicas become the target (in its order), 2 and 3
    // leave the ISR, and 1 keeps leading in the same leader epoch.
    let add = MetadataCommand::ChangePartition(PartitionChange {
        topic: "t".into(),
        partition: 0,
        leader: LeaderChange::Unchanged,
        isr: Some(vec![1, 2, 3, 4]),
        expected_partition_epoch: Some(p.partition_epoch),
        expected_leader_epoch: Some(p.leader_epoch),
    });
    assert_eq!(log.apply(add), Ok(ApplyOutcome::Applied));
    let done = log.p("t", 0);
    assert_eq!(
        (done.replicas.clone(), done.isr.clone(), done.leader),
        (vec![4, 1], vec![1, 4], Some(1))
    );
    assert_eq!(done.reassignment, None);
    assert_eq!(done.leader_epoch, p.leader_epoch);
    assert_eq!(done.partition_epoch, p.partition_epoch + 1);
    assert_eq!(done.preferred_leader(), Some(4));
}

#[test]
fn an_unclean_election_completes_a_reassignment_it_satisfies() {
    let mut log = unclean_topic_with_lagging_follower();
    // Move to 2 alone while 2 is out of sync: waits for 2 to catch up.
    log.apply(MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![2]),
    })
    .unwrap();
    assert!(log.p("t", 0).reassignment.is_some());
    // 1 dies; the unclean election makes 2 the whole ISR, which is the
    // target: nothing else would ever complete it, so fencing does.
    log.apply(MetadataCommand::FenceBroker { broker_id: 1 })
        .unwrap();
    assert_eq!(log.layout("t", 0), (vec![2], vec![2], Some(2), false));
}

#[test]
fn a_pure_addition_stays_in_progress_until_the_new_replica_is_in_sync() {
    let mut log = Log::new();
    log.brokers(&[1, 2, 3]);
    log.topic("t", vec![vec![1, 2]]);
    let start = MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![1, 2, 3]),
    };
    assert_eq!(log.apply(start), Ok(ApplyOutcome::Applied));
    let p = log.p("t", 0).clone();
    // The replica list already is the target, but 3 is still being added.
    assert_eq!(p.replicas, vec![1, 2, 3]);
    let r = p.reassignment.clone().expect("in progress");
    assert_eq!((r.adding, r.removing), (vec![3], vec![]));
    log.apply(change(
        "t",
        LeaderChange::Unchanged,
        Some(vec![1, 2, 3]),
        Some(p.partition_epoch),
    ))
    .unwrap();
    let p = log.p("t", 0);
    assert!(p.reassignment.is_none());
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![1, 2, 3], vec![1, 2, 3])
    );
}
