//! Applying metadata commands to the image: dispatch, brokers (epochs,
//! fencing) and topics; partition-level rules live in `partition.rs`.
//!
//! Every command validates before it mutates anything, so a rejection leaves
//! the image as it was (only the offset moves, since the entry was still
//! consumed from the log).

use std::collections::BTreeSet;

use super::{
    command::{ApplyError, ApplyOutcome, ApplyResult, MetadataCommand},
    types::{BrokerId, BrokerRegistration, ClusterMetadata, PartitionState, TopicMetadata},
};

/// Longest legal Kafka topic name.
const MAX_TOPIC_NAME_LEN: usize = 249;

impl ClusterMetadata {
    /// Applies the command found at `offset` of the metadata log.
    pub fn apply(&mut self, offset: u64, command: &MetadataCommand) -> ApplyResult {
        self.advance_offset(offset);
        match command {
            MetadataCommand::Batch(commands) => {
                // Atomic: work on a copy and keep it only if all succeed.
                let mut scratch = self.clone();
                let mut changed = false;
                for c in commands {
                    changed |= scratch.apply(offset, c)? != ApplyOutcome::Unchanged;
                }
                *self = scratch;
                Ok(if changed {
                    ApplyOutcome::Applied
                } else {
                    ApplyOutcome::Unchanged
                })
            }
            MetadataCommand::RegisterBroker {
                broker_id,
                incarnation_id,
                rack,
                endpoints,
                directory_id,
            } => {
                let mut lost_disk = false;
                if let Some(existing) = self.brokers.get(broker_id) {
                    if existing.incarnation_id == *incarnation_id {
                        // A retried registration: keep the epoch it was given.
                        return Ok(ApplyOutcome::Registered {
                            broker_epoch: existing.epoch,
                        });
                    }
                    lost_disk = matches!(
                        (existing.directory_id, directory_id),
                        (Some(old), Some(new)) if old != *new
                    );
                }
                let was_live = self.is_live(*broker_id);
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        id: *broker_id,
                        incarnation_id: *incarnation_id,
                        epoch: offset,
                        rack: rack.clone(),
                        endpoints: endpoints.clone(),
                        directory_id: *directory_id,
                        fenced: true,
                    },
                );
                if was_live || lost_disk {
                    // A broker back with another directory lost its replicas:
                    // it must not stay in any ISR it was in (and could then
                    // lead with an empty log); it rejoins each ISR by
                    // catching up like a new follower. Otherwise the old
                    // incarnation is gone: move its leaderships now.
                    self.fence_partitions(*broker_id);
                }
                Ok(ApplyOutcome::Registered {
                    broker_epoch: offset,
                })
            }
            MetadataCommand::BrokerHeartbeat {
                broker_id,
                broker_epoch,
            } => {
                let broker = self
                    .brokers
                    .get_mut(broker_id)
                    .ok_or(ApplyError::UnknownBroker(*broker_id))?;
                if broker.epoch != *broker_epoch {
                    return Err(ApplyError::StaleBrokerEpoch {
                        broker: *broker_id,
                        got: *broker_epoch,
                        current: broker.epoch,
                    });
                }
                if !broker.fenced {
                    return Ok(ApplyOutcome::Unchanged);
                }
                broker.fenced = false;
                self.unfence_partitions(*broker_id);
                Ok(ApplyOutcome::Applied)
            }
            MetadataCommand::FenceBroker { broker_id } => Ok(if self.fence(*broker_id)? {
                ApplyOutcome::Applied
            } else {
                ApplyOutcome::Unchanged
            }),
            MetadataCommand::UnregisterBroker { broker_id } => {
                self.fence(*broker_id)?;
                self.brokers.remove(broker_id);
                Ok(ApplyOutcome::Applied)
            }
            MetadataCommand::CreateTopic {
                name,
                topic_id,
                assignments,
                configs,
            } => {
                validate_topic_name(name)?;
                if self.topics.contains_key(name) {
                    return Err(ApplyError::TopicExists(name.clone()));
                }
                if self.topic_by_id(*topic_id).is_some() {
                    return Err(ApplyError::TopicIdInUse(*topic_id));
                }
                if assignments.is_empty() {
                    return Err(ApplyError::InvalidAssignment(
                        "a topic needs at least one partition".into(),
                    ));
                }
                let partitions = self.new_partitions(0, assignments)?.into_iter().collect();
                let topic = TopicMetadata {
                    name: name.clone(),
                    id: *topic_id,
                    partitions,
                    configs: configs.clone(),
                };
                self.topics.insert(name.clone(), topic);
                Ok(ApplyOutcome::Applied)
            }
            MetadataCommand::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Ok(ApplyOutcome::Applied),
                None => Err(ApplyError::UnknownTopic(name.clone())),
            },
            MetadataCommand::CreatePartitions { name, assignments } => {
                let first = self.topic(name)?.partitions.len();
                if assignments.is_empty() {
                    return Ok(ApplyOutcome::Unchanged);
                }
                let first = i32::try_from(first)
                    .map_err(|_| ApplyError::InvalidAssignment("too many partitions".into()))?;
                let added = self.new_partitions(first, assignments)?;
                self.topics
                    .get_mut(name)
                    .expect("checked above")
                    .partitions
                    .extend(added);
                Ok(ApplyOutcome::Applied)
            }
            MetadataCommand::AlterTopicConfigs { name, set, delete } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| ApplyError::UnknownTopic(name.clone()))?;
                let before = topic.configs.clone();
                topic
                    .configs
                    .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
                topic.configs.retain(|k, _| !delete.contains(k));
                Ok(if topic.configs == before {
                    ApplyOutcome::Unchanged
                } else {
                    ApplyOutcome::Applied
                })
            }
            MetadataCommand::ChangePartition(change) => self.change_partition(change),
            MetadataCommand::AlterReassignment {
                topic,
                partition,
                target,
            } => self.alter_reassignment(topic, *partition, target.as_deref()),
            MetadataCommand::AlterScramCredential {
                user,
                mechanism,
                credential,
            } => self.alter_scram(user, *mechanism, credential.as_ref()),
            MetadataCommand::CreateAcls(acls) => self.create_acls(acls),
            MetadataCommand::DeleteAcls(acls) => self.delete_acls(acls),
            MetadataCommand::AlterClientQuota {
                entity,
                set,
                remove,
            } => self.alter_quota(entity, set, remove),
        }
    }

    /// Moves the offset for log entries that carry no command (Raft
    /// membership and leader no-op entries), keeping it monotonic.
    pub fn advance_offset(&mut self, offset: u64) {
        self.offset = self.offset.max(offset);
    }

    /// Fences a broker and moves its leaderships; false if already fenced.
    fn fence(&mut self, id: BrokerId) -> Result<bool, ApplyError> {
        let broker = self
            .brokers
            .get_mut(&id)
            .ok_or(ApplyError::UnknownBroker(id))?;
        if broker.fenced {
            return Ok(false);
        }
        broker.fenced = true;
        self.fence_partitions(id);
        Ok(true)
    }

    fn topic(&self, name: &str) -> Result<&TopicMetadata, ApplyError> {
        self.topics
            .get(name)
            .ok_or_else(|| ApplyError::UnknownTopic(name.to_owned()))
    }

    pub(super) fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionState, ApplyError> {
        self.topics
            .get_mut(topic)
            .ok_or_else(|| ApplyError::UnknownTopic(topic.to_owned()))?
            .partitions
            .get_mut(&partition)
            .ok_or_else(|| ApplyError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })
    }

    pub(super) fn live_set(&self) -> BTreeSet<BrokerId> {
        self.live_brokers().map(|b| b.id).collect()
    }

    /// Validated partitions numbered from `first`: the ISR is the live
    /// replicas, led by the first of them.
    fn new_partitions(
        &self,
        first: i32,
        assignments: &[Vec<BrokerId>],
    ) -> Result<Vec<(i32, PartitionState)>, ApplyError> {
        let mut out = Vec::with_capacity(assignments.len());
        for (index, replicas) in (first..).zip(assignments) {
            self.validate_replicas(replicas)?;
            let mut partition = PartitionState::new(replicas.clone());
            partition.isr.retain(|&id| self.is_live(id));
            if partition.isr.is_empty() {
                return Err(ApplyError::InvalidAssignment(format!(
                    "all replicas {replicas:?} of partition {index} are fenced"
                )));
            }
            partition.leader = partition.isr.first().copied();
            out.push((index, partition));
        }
        Ok(out)
    }

    pub(super) fn validate_replicas(&self, replicas: &[BrokerId]) -> Result<(), ApplyError> {
        if replicas.is_empty() {
            return Err(ApplyError::InvalidAssignment("empty replica list".into()));
        }
        let distinct: BTreeSet<_> = replicas.iter().collect();
        if distinct.len() != replicas.len() {
            return Err(ApplyError::InvalidAssignment(format!(
                "duplicate broker in {replicas:?}"
            )));
        }
        if let Some(unknown) = replicas.iter().find(|id| !self.brokers.contains_key(id)) {
            return Err(ApplyError::InvalidAssignment(format!(
                "broker {unknown} is not registered"
            )));
        }
        Ok(())
    }
}

fn validate_topic_name(name: &str) -> Result<(), ApplyError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > MAX_TOPIC_NAME_LEN
        || name == "."
        || name == ".."
        || !name.chars().all(legal)
    {
        return Err(ApplyError::InvalidTopicName(name.to_owned()));
    }
    Ok(())
}
