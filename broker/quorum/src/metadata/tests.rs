//! Unit tests of the metadata state machine: commands applied in order to
//! an image. Brokers, topics, batches and serialization here; partition
//! rules in `partition_tests.rs`, which shares the helpers.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::*;

/// An image plus the next log offset, so tests read like a log.
pub(super) struct Log {
    pub(super) md: ClusterMetadata,
    next: u64,
}

impl Log {
    pub(super) fn new() -> Self {
        Self {
            md: ClusterMetadata::default(),
            next: 1,
        }
    }

    pub(super) fn apply(&mut self, c: MetadataCommand) -> ApplyResult {
        let offset = self.next;
        self.next += 1;
        let result = self.md.apply(offset, &c);
        assert_eq!(self.md.offset, offset, "offset moves even on rejection");
        result
    }

    /// Registers and unfences brokers; `rack` per id.
    pub(super) fn brokers(&mut self, ids: &[BrokerId]) {
        for &id in ids {
            let epoch = match self.apply(register(id, Uuid::new_v4())).unwrap() {
                ApplyOutcome::Registered { broker_epoch } => broker_epoch,
                other => panic!("unexpected {other:?}"),
            };
            self.apply(MetadataCommand::BrokerHeartbeat {
                broker_id: id,
                broker_epoch: epoch,
            })
            .unwrap();
        }
    }

    pub(super) fn topic(&mut self, name: &str, assignments: Vec<Vec<BrokerId>>) {
        self.apply(create(name, assignments, BTreeMap::new()))
            .unwrap();
    }

    pub(super) fn p(&self, topic: &str, partition: i32) -> &PartitionState {
        self.md.partition(topic, partition).unwrap()
    }

    /// Replicas, ISR, leader and whether a reassignment is in progress.
    pub(super) fn layout(
        &self,
        topic: &str,
        partition: i32,
    ) -> (Vec<BrokerId>, Vec<BrokerId>, Option<BrokerId>, bool) {
        let p = self.p(topic, partition);
        let reassigning = p.reassignment.is_some();
        (p.replicas.clone(), p.isr.clone(), p.leader, reassigning)
    }
}

pub(super) fn register(id: BrokerId, incarnation_id: Uuid) -> MetadataCommand {
    let endpoints = BTreeMap::from([(
        "PLAINTEXT".to_owned(),
        Endpoint {
            host: "localhost".into(),
            port: 9092,
        },
    )]);
    MetadataCommand::RegisterBroker {
        broker_id: id,
        incarnation_id,
        rack: None,
        endpoints,
        directory_id: None,
    }
}

/// A registration reporting data directory `dir`.
fn register_dir(id: BrokerId, dir: Uuid) -> MetadataCommand {
    match register(id, Uuid::new_v4()) {
        MetadataCommand::RegisterBroker {
            broker_id,
            incarnation_id,
            rack,
            endpoints,
            ..
        } => MetadataCommand::RegisterBroker {
            broker_id,
            incarnation_id,
            rack,
            endpoints,
            directory_id: Some(dir),
        },
        other => other,
    }
}

pub(super) fn create(
    name: &str,
    assignments: Vec<Vec<BrokerId>>,
    configs: BTreeMap<String, String>,
) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
        assignments,
        configs,
    }
}

pub(super) fn change(
    topic: &str,
    leader: LeaderChange,
    isr: Option<Vec<BrokerId>>,
    epoch: Option<i32>,
) -> MetadataCommand {
    MetadataCommand::ChangePartition(PartitionChange {
        topic: topic.into(),
        partition: 0,
        leader,
        isr,
        expected_partition_epoch: epoch,
        expected_leader_epoch: None,
    })
}

#[test]
fn registration_starts_fenced_and_heartbeat_unfences() {
    let mut log = Log::new();
    let inc = Uuid::new_v4();
    assert_eq!(
        log.apply(register(1, inc)),
        Ok(ApplyOutcome::Registered { broker_epoch: 1 })
    );
    assert!(!log.md.is_live(1));
    // A retry of the same incarnation keeps its epoch.
    assert_eq!(
        log.apply(register(1, inc)),
        Ok(ApplyOutcome::Registered { broker_epoch: 1 })
    );
    let stale = MetadataCommand::BrokerHeartbeat {
        broker_id: 1,
        broker_epoch: 7,
    };
    assert_eq!(
        log.apply(stale),
        Err(ApplyError::StaleBrokerEpoch {
            broker: 1,
            got: 7,
            current: 1
        })
    );
    let hb = MetadataCommand::BrokerHeartbeat {
        broker_id: 1,
        broker_epoch: 1,
    };
    assert_eq!(log.apply(hb.clone()), Ok(ApplyOutcome::Applied));
    assert!(log.md.is_live(1));
    assert_eq!(log.apply(hb), Ok(ApplyOutcome::Unchanged));
    let unknown = MetadataCommand::BrokerHeartbeat {
        broker_id: 9,
        broker_epoch: 1,
    };
    assert_eq!(log.apply(unknown), Err(ApplyError::UnknownBroker(9)));
}

#[test]
fn topic_lifecycle_and_configs() {
    let mut log = Log::new();
    log.brokers(&[1, 2, 3]);
    log.topic("orders", vec![vec![1, 2], vec![2, 3]]);
    assert_eq!(
        log.apply(create("orders", vec![vec![1]], BTreeMap::new())),
        Err(ApplyError::TopicExists("orders".into()))
    );
    assert!(matches!(
        log.apply(create("bad/name", vec![vec![1]], BTreeMap::new())),
        Err(ApplyError::InvalidTopicName(_))
    ));
    assert!(matches!(
        log.apply(create("dup", vec![vec![1, 1]], BTreeMap::new())),
        Err(ApplyError::InvalidAssignment(_))
    ));
    assert!(matches!(
        log.apply(create("ghost", vec![vec![7]], BTreeMap::new())),
        Err(ApplyError::InvalidAssignment(_))
    ));
    let p1 = log.p("orders", 1);
    assert_eq!(
        (p1.leader, p1.isr.clone(), p1.leader_epoch),
        (Some(2), vec![2, 3], 0)
    );

    let grow = MetadataCommand::CreatePartitions {
        name: "orders".into(),
        assignments: vec![vec![3, 1]],
    };
    assert_eq!(log.apply(grow), Ok(ApplyOutcome::Applied));
    assert_eq!(log.p("orders", 2).replicas, vec![3, 1]);

    let set = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
    let alter = MetadataCommand::AlterTopicConfigs {
        name: "orders".into(),
        set,
        delete: BTreeSet::new(),
    };
    assert_eq!(log.apply(alter.clone()), Ok(ApplyOutcome::Applied));
    assert_eq!(log.apply(alter), Ok(ApplyOutcome::Unchanged));
    let delete = BTreeSet::from(["retention.ms".to_owned()]);
    let alter = MetadataCommand::AlterTopicConfigs {
        name: "orders".into(),
        set: BTreeMap::new(),
        delete,
    };
    assert_eq!(log.apply(alter), Ok(ApplyOutcome::Applied));
    assert!(log.md.topics["orders"].configs.is_empty());

    assert_eq!(
        log.apply(MetadataCommand::DeleteTopic {
            name: "orders".into()
        }),
        Ok(ApplyOutcome::Applied)
    );
    let again = MetadataCommand::DeleteTopic {
        name: "orders".into(),
    };
    assert_eq!(
        log.apply(again),
        Err(ApplyError::UnknownTopic("orders".into()))
    );
}

#[test]
fn fenced_replicas_are_left_out_of_a_new_isr() {
    let mut log = Log::new();
    log.brokers(&[1, 2]);
    log.apply(register(3, Uuid::new_v4())).unwrap(); // registered, still fenced
    log.topic("t", vec![vec![3, 1, 2]]);
    let p = log.p("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (Some(1), vec![1, 2]));
    assert!(matches!(
        log.apply(create("u", vec![vec![3]], BTreeMap::new())),
        Err(ApplyError::InvalidAssignment(_))
    ));
}

#[test]
fn a_broker_back_with_another_directory_leaves_every_isr() {
    let mut log = Log::new();
    let dirs: BTreeMap<BrokerId, Uuid> = (1..=3).map(|id| (id, Uuid::new_v4())).collect();
    for (&id, &dir) in &dirs {
        let Ok(ApplyOutcome::Registered { broker_epoch }) = log.apply(register_dir(id, dir)) else {
            panic!("registration failed");
        };
        log.apply(MetadataCommand::BrokerHeartbeat {
            broker_id: id,
            broker_epoch,
        })
        .unwrap();
    }
    assert_eq!(log.md.brokers[&3].directory_id, Some(dirs[&3]));
    log.topic("t", vec![vec![1, 2, 3], vec![3, 2, 1]]);
    // Back with a new disk before anyone noticed it was gone.
    let new_dir = Uuid::new_v4();
    log.apply(register_dir(3, new_dir)).unwrap();
    assert_eq!(log.md.brokers[&3].directory_id, Some(new_dir));
    assert_eq!(
        log.p("t", 0).isr,
        vec![1, 2],
        "a lost disk is out of the ISR"
    );
    assert_eq!(log.p("t", 1).isr, vec![2, 1]);
    assert_ne!(log.p("t", 1).leader, Some(3), "and leads nothing");
}

#[test]
fn new_incarnation_and_unregister_move_leadership() {
    let mut log = Log::new();
    log.brokers(&[1, 2]);
    log.topic("t", vec![vec![1, 2]]);
    let Ok(ApplyOutcome::Registered { broker_epoch }) = log.apply(register(1, Uuid::new_v4()))
    else {
        panic!("registration failed");
    };
    assert!(!log.md.is_live(1));
    assert_eq!(log.p("t", 0).leader, Some(2));
    let old = log.apply(MetadataCommand::BrokerHeartbeat {
        broker_id: 1,
        broker_epoch: broker_epoch - 1,
    });
    assert!(matches!(old, Err(ApplyError::StaleBrokerEpoch { .. })));
    assert_eq!(
        log.apply(MetadataCommand::UnregisterBroker { broker_id: 2 }),
        Ok(ApplyOutcome::Applied)
    );
    assert!(!log.md.brokers.contains_key(&2));
    assert_eq!(log.p("t", 0).leader, None);
    assert_eq!(
        log.apply(MetadataCommand::UnregisterBroker { broker_id: 2 }),
        Err(ApplyError::UnknownBroker(2))
    );
}

#[test]
fn batch_is_atomic() {
    let mut log = Log::new();
    log.brokers(&[1]);
    let before = log.md.clone();
    let batch = MetadataCommand::Batch(vec![
        create("a", vec![vec![1]], BTreeMap::new()),
        MetadataCommand::DeleteTopic {
            name: "missing".into(),
        },
    ]);
    assert_eq!(
        log.apply(batch),
        Err(ApplyError::UnknownTopic("missing".into()))
    );
    assert_eq!(log.md.topics, before.topics);
    let batch = MetadataCommand::Batch(vec![
        create("a", vec![vec![1]], BTreeMap::new()),
        create("b", vec![vec![1]], BTreeMap::new()),
    ]);
    assert_eq!(log.apply(batch), Ok(ApplyOutcome::Applied));
    assert_eq!(log.md.topics.len(), 2);
}

#[test]
fn image_round_trips_through_serde_deterministically() {
    let mut log = Log::new();
    log.brokers(&[3, 1, 2]);
    log.topic("z", vec![vec![1, 2]]);
    log.topic("a", vec![vec![3]]);
    let json = serde_json::to_string(&log.md).unwrap();
    let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back, log.md);
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}
