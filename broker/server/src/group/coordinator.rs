//! The async shell around [`Group`]: the table of groups, the JoinGroup and
//! SyncGroup answers parked until a rebalance step completes (oneshot
//! channels), one timer task for every group's deadlines, loading of
//! `__consumer_offsets` at start, offset expiry, and the group metrics.
//!
//! Each group sits behind its own mutex, held only for the pure transition
//! and the (synchronous) append of its records, so records of one group are
//! appended in the order its transitions happened. Waiting for the fsync and
//! delivering answers happen after the lock is released.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, watch, Notify};

use super::{
    partition_for,
    state::{
        CommittedOffset, Effect, Group, GroupConfig, GroupState, JoinRequest, JoinResult, Reply,
        SyncResult,
    },
    store::{self, StoreRecord},
    OFFSETS_TOPIC,
};
use crate::{
    broker::{now_ms, Broker},
    metrics::GroupMetrics,
    partition::Partition,
};

/// Coordinator settings from the broker config.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Group protocol timing.
    pub group: GroupConfig,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when created.
    pub offsets_partitions: i32,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub retention_check_interval: Duration,
    /// `offset.metadata.max.bytes`.
    pub max_metadata_bytes: usize,
}

impl CoordinatorConfig {
    /// The coordinator settings of a broker config.
    pub fn from_broker(c: &crate::config::BrokerConfig) -> Self {
        CoordinatorConfig {
            group: GroupConfig {
                initial_rebalance_delay_ms: c.group_initial_rebalance_delay.as_millis() as i64,
                min_session_timeout_ms: c.group_min_session_timeout.as_millis() as i32,
                max_session_timeout_ms: c.group_max_session_timeout.as_millis() as i32,
            },
            offsets_partitions: c.offsets_topic_partitions,
            offsets_retention_ms: c.offsets_retention.as_millis() as i64,
            retention_check_interval: c.offsets_retention_check_interval,
            max_metadata_bytes: c.offset_metadata_max_bytes,
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            group: GroupConfig::default(),
            offsets_partitions: 50,
            offsets_retention_ms: 10_080 * 60_000,
            retention_check_interval: Duration::from_millis(600_000),
            max_metadata_bytes: 4096,
        }
    }
}

/// Whether this broker answers for a `__consumer_offsets` partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// Leader; its records are being read.
    Loading,
    /// Leader; its groups are in memory.
    Loaded,
    /// Another broker leads it (multi-broker clusters).
    #[allow(dead_code)]
    NotLeader,
}

/// A group with its parked answers.
struct Slot {
    group: Group,
    /// Parked JoinGroup answers by member id.
    joins: HashMap<String, oneshot::Sender<JoinResult>>,
    /// Parked SyncGroup answers by member id.
    syncs: HashMap<String, oneshot::Sender<SyncResult>>,
    /// The deadline registered in the timer set.
    deadline: Option<i64>,
}

type SlotRef = Arc<Mutex<Slot>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Transitions are pure and leave the group consistent between calls.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to do once a group's lock is released: wait for the records to be
/// durable, then answer.
#[derive(Default)]
#[must_use]
struct Outbox {
    flush: Option<(Arc<Partition>, i64)>,
    /// Set when writing the group's records failed.
    failed: bool,
    joins: Vec<(oneshot::Sender<JoinResult>, JoinResult)>,
    syncs: Vec<(oneshot::Sender<SyncResult>, SyncResult)>,
}

impl Outbox {
    async fn finish(mut self, fsync: bool) -> bool {
        if let (Some((partition, offset)), true) = (&self.flush, fsync) {
            if let Err(e) = partition.flush_to(*offset).await {
                tracing::warn!(error = %e, "fsync of __consumer_offsets failed");
                self.failed = true;
            }
        }
        for (tx, mut r) in self.syncs {
            if self.failed && r.error.is_none() {
                r = SyncResult::error(ResponseError::CoordinatorNotAvailable);
            }
            let _ = tx.send(r);
        }
        for (tx, r) in self.joins {
            let _ = tx.send(r);
        }
        !self.failed
    }
}

/// A partition's committed offset as OffsetFetch reports it.
pub type FetchedTopics = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// One partition of an OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The leader epoch (-1 unknown).
    pub leader_epoch: i32,
    /// The client's metadata.
    pub metadata: Option<String>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// The state.
    pub state: GroupState,
    /// Protocol type ("" if none).
    pub protocol_type: String,
    /// The selected protocol, when Stable.
    pub protocol: String,
    /// Members: (id, instance id, client id, client host, metadata, assignment).
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// The group coordinator of this broker.
pub struct Coordinator {
    config: CoordinatorConfig,
    /// Groups by id; a group leaves the table when it becomes Dead.
    groups: Mutex<BTreeMap<String, SlotRef>>,
    /// Per `__consumer_offsets` partition; `None` until loading has started.
    owned: Mutex<Option<Vec<Ownership>>>,
    /// Every group's next deadline, for the timer task.
    timers: Mutex<BTreeSet<(i64, String)>>,
    /// Wakes the timer task when a deadline moves earlier.
    wake: Notify,
    metrics: GroupMetrics,
}

impl Coordinator {
    /// A coordinator that answers COORDINATOR_LOAD_IN_PROGRESS until [`run`] loads it.
    pub fn new(config: CoordinatorConfig, metrics: GroupMetrics) -> Self {
        Coordinator {
            config,
            groups: Mutex::new(BTreeMap::new()),
            owned: Mutex::new(None),
            timers: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
            metrics,
        }
    }

    /// The settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// Partitions of `__consumer_offsets` (the existing topic's, or the configured count).
    pub fn partition_count(&self, broker: &Broker) -> i32 {
        broker
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partition_count())
            .unwrap_or(self.config.offsets_partitions)
    }

    /// The `__consumer_offsets` partition of a group.
    pub fn partition_of(&self, broker: &Broker, group_id: &str) -> i32 {
        partition_for(group_id, self.partition_count(broker))
    }

    /// Whether this broker can answer for `group_id` now.
    pub fn check_serving(&self, broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
        let p = self.partition_of(broker, group_id);
        match lock(&self.owned)
            .as_ref()
            .and_then(|o| o.get(p as usize).copied())
        {
            Some(Ownership::Loaded) => Ok(()),
            None | Some(Ownership::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            Some(Ownership::NotLeader) => Err(ResponseError::NotCoordinator),
        }
    }

    /// Whether any owned partition is still loading (ListGroups reports it).
    pub fn is_loading(&self) -> bool {
        lock(&self.owned)
            .as_ref()
            .is_none_or(|o| o.contains(&Ownership::Loading))
    }

    /// Creates `__consumer_offsets` if it does not exist yet (first use).
    pub fn ensure_topic(&self, broker: &Broker) -> Result<(), ResponseError> {
        if broker.topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), "104857600".to_string()),
        ]);
        match broker.create_topic(
            OFFSETS_TOPIC,
            self.config.offsets_partitions,
            1,
            configs,
            false,
        ) {
            Ok(topic) => {
                let n = topic.partition_count() as usize;
                *lock(&self.owned) = Some(vec![Ownership::Loaded; n]);
                Ok(())
            }
            Err(_) if broker.topic(OFFSETS_TOPIC).is_some() => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e.message, "creating __consumer_offsets failed");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    fn offsets_partition(
        &self,
        broker: &Broker,
        group_id: &str,
    ) -> Result<Arc<Partition>, ResponseError> {
        self.ensure_topic(broker)?;
        let topic = broker
            .topic(OFFSETS_TOPIC)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        topic
            .partition(partition_for(group_id, topic.partition_count()))
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }

    fn slot(&self, group_id: &str, create: bool) -> Option<SlotRef> {
        let mut groups = lock(&self.groups);
        if let Some(s) = groups.get(group_id) {
            return Some(s.clone());
        }
        if !create {
            return None;
        }
        let slot = Arc::new(Mutex::new(Slot {
            group: Group::new(group_id, now_ms()),
            joins: HashMap::new(),
            syncs: HashMap::new(),
            deadline: None,
        }));
        groups.insert(group_id.to_string(), slot.clone());
        Some(slot)
    }

    /// Writes records of a group (under its lock) and notes what to flush.
    fn write(
        &self,
        broker: &Broker,
        group_id: &str,
        records: &[StoreRecord],
        out: &mut Outbox,
    ) -> bool {
        if records.is_empty() {
            return true;
        }
        let written = self
            .offsets_partition(broker, group_id)
            .and_then(|p| {
                store::append(&p, records, now_ms()).map(|end| (p, end)).map_err(|e| {
                    tracing::warn!(group = group_id, error = %e, "appending to __consumer_offsets failed");
                    ResponseError::CoordinatorNotAvailable
                })
            });
        match written {
            Ok((p, end)) => {
                out.flush = Some((p, end));
                broker.notify_data();
                true
            }
            Err(_) => {
                out.failed = true;
                false
            }
        }
    }

    /// Turns effects into writes and answers; keeps the timer and the group table current.
    fn settle(
        &self,
        broker: &Broker,
        me: &SlotRef,
        slot: &mut Slot,
        fx: Vec<Effect>,
        out: &mut Outbox,
    ) {
        let mut store = false;
        for effect in fx {
            match effect {
                Effect::Join(id, r) => {
                    if let Some(tx) = slot.joins.remove(&id) {
                        out.joins.push((tx, r));
                    }
                }
                Effect::Sync(id, r) => {
                    if let Some(tx) = slot.syncs.remove(&id) {
                        out.syncs.push((tx, r));
                    }
                }
                Effect::StoreGroup => store = true,
                Effect::RebalanceCompleted => self.metrics.rebalances.inc(),
            }
        }
        let removed = slot.group.try_remove(now_ms());
        if store || removed {
            let record = store::group_record(&slot.group);
            self.write(broker, &slot.group.id.clone(), &[record], out);
        }
        self.reschedule(me, slot);
    }

    fn reschedule(&self, me: &SlotRef, slot: &mut Slot) {
        let id = slot.group.id.clone();
        let next = if slot.group.state == GroupState::Dead {
            None
        } else {
            slot.group.next_deadline()
        };
        if next != slot.deadline {
            let mut timers = lock(&self.timers);
            if let Some(old) = slot.deadline {
                timers.remove(&(old, id.clone()));
            }
            if let Some(d) = next {
                timers.insert((d, id.clone()));
            }
            slot.deadline = next;
            drop(timers);
            self.wake.notify_one();
        }
        if slot.group.state == GroupState::Dead {
            let mut groups = lock(&self.groups);
            // Never remove a newer group that took the id meanwhile.
            if groups.get(&id).is_some_and(|s| Arc::ptr_eq(s, me)) {
                groups.remove(&id);
            }
        }
    }

    // ---- the group protocol ----

    /// JoinGroup; waits while the answer is parked.
    pub async fn join(&self, broker: &Broker, group_id: &str, req: JoinRequest) -> JoinResult {
        let member_id = req.member_id.clone();
        if let Err(e) = self.check_serving(broker, group_id) {
            return JoinResult::error(&member_id, e);
        }
        let Some(slot) = self.slot(group_id, member_id.is_empty()) else {
            return JoinResult::error(&member_id, ResponseError::UnknownMemberId);
        };
        let mut out = Outbox::default();
        let (reply, rx) = {
            let mut s = lock(&slot);
            let mut fx = Vec::new();
            let reply = s.group.join(req, &self.config.group, now_ms(), &mut fx);
            let rx = match &reply {
                Reply::Parked(id) => {
                    let (tx, rx) = oneshot::channel();
                    s.joins.insert(id.clone(), tx);
                    Some(rx)
                }
                Reply::Now(_) => None,
            };
            self.settle(broker, &slot, &mut s, fx, &mut out);
            (reply, rx)
        };
        let ok = out.finish(broker.config.acks_all_fsync).await;
        match (reply, rx) {
            (Reply::Now(r), _) if !ok && r.error.is_none() => {
                JoinResult::error(&r.member_id, ResponseError::CoordinatorNotAvailable)
            }
            (Reply::Now(r), _) => r,
            (Reply::Parked(id), Some(rx)) => rx
                .await
                .unwrap_or_else(|_| JoinResult::error(&id, ResponseError::RebalanceInProgress)),
            (Reply::Parked(id), None) => JoinResult::error(&id, ResponseError::UnknownServerError),
        }
    }

    /// SyncGroup; followers wait here until the leader's assignment arrives.
    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        match self.check_serving(broker, group_id) {
            // The rebalance state was lost with the old coordinator: rejoin.
            Err(ResponseError::CoordinatorLoadInProgress) => {
                return SyncResult::error(ResponseError::RebalanceInProgress)
            }
            Err(e) => return SyncResult::error(e),
            Ok(()) => {}
        }
        let Some(slot) = self.slot(group_id, false) else {
            return SyncResult::error(ResponseError::UnknownMemberId);
        };
        let mut out = Outbox::default();
        let (reply, rx) = {
            let mut s = lock(&slot);
            let mut fx = Vec::new();
            let reply = s.group.sync(
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol,
                assignments,
                now_ms(),
                &mut fx,
            );
            let rx = match &reply {
                Reply::Parked(id) => {
                    let (tx, rx) = oneshot::channel();
                    s.syncs.insert(id.clone(), tx);
                    Some(rx)
                }
                Reply::Now(_) => None,
            };
            self.settle(broker, &slot, &mut s, fx, &mut out);
            (reply, rx)
        };
        out.finish(broker.config.acks_all_fsync).await;
        match (reply, rx) {
            (Reply::Now(r), _) => r,
            (Reply::Parked(_), Some(rx)) => rx
                .await
                .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress)),
            (Reply::Parked(_), None) => SyncResult::error(ResponseError::UnknownServerError),
        }
    }

    /// Heartbeat; `None` is success.
    pub fn heartbeat(
        &self,
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<ResponseError> {
        match self.check_serving(broker, group_id) {
            // Kafka answers blindly while loading; the member learns more once it is done.
            Err(ResponseError::CoordinatorLoadInProgress) => return None,
            Err(e) => return Some(e),
            Ok(()) => {}
        }
        let Some(slot) = self.slot(group_id, false) else {
            return Some(ResponseError::UnknownMemberId);
        };
        let mut s = lock(&slot);
        let result = s
            .group
            .heartbeat(member_id, instance_id, generation, now_ms());
        self.reschedule(&slot, &mut s);
        result
    }

    /// LeaveGroup: one result per member, or a group-level error.
    pub async fn leave(
        &self,
        broker: &Broker,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.check_serving(broker, group_id)?;
        let Some(slot) = self.slot(group_id, false) else {
            return Ok(vec![Some(ResponseError::UnknownMemberId); members.len()]);
        };
        let mut out = Outbox::default();
        let result = {
            let mut s = lock(&slot);
            let mut fx = Vec::new();
            let result = s
                .group
                .leave(members, &self.config.group, now_ms(), &mut fx);
            self.settle(broker, &slot, &mut s, fx, &mut out);
            result
        };
        out.finish(broker.config.acks_all_fsync).await;
        result
    }

    // ---- offsets ----

    /// OffsetCommit: one result per partition, in order.
    pub async fn commit(
        &self,
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        parts: Vec<CommitPartition>,
    ) -> Vec<Option<ResponseError>> {
        let all = |e: ResponseError| vec![Some(e); parts.len()];
        if let Err(e) = self.check_serving(broker, group_id) {
            return all(e);
        }
        let Some(slot) = self.slot(group_id, generation < 0) else {
            return all(ResponseError::IllegalGeneration);
        };
        let mut out = Outbox::default();
        let mut results: Vec<Option<ResponseError>> = Vec::with_capacity(parts.len());
        {
            let mut s = lock(&slot);
            let now = now_ms();
            if let Err(e) = s
                .group
                .check_commit(member_id, instance_id, generation, now)
            {
                drop(s);
                return all(e);
            }
            let mut records = Vec::new();
            let mut accepted = Vec::new();
            for p in &parts {
                let known = broker
                    .topic(&p.topic)
                    .is_some_and(|t| t.partition(p.partition).is_some());
                let metadata = p.metadata.clone().unwrap_or_default();
                let error = if !known {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else if metadata.len() > self.config.max_metadata_bytes {
                    Some(ResponseError::OffsetMetadataTooLarge)
                } else {
                    let value = CommittedOffset {
                        offset: p.offset,
                        leader_epoch: p.leader_epoch,
                        metadata,
                        commit_timestamp: now,
                        expire_timestamp: None,
                    };
                    records.push(store::offset_record(
                        group_id,
                        &p.topic,
                        p.partition,
                        Some(&value.to_value()),
                    ));
                    accepted.push(((p.topic.clone(), p.partition), value));
                    None
                };
                results.push(error);
            }
            if self.write(broker, group_id, &records, &mut out) {
                self.metrics.offset_commits.inc_by(accepted.len() as u64);
                s.group.offsets.extend(accepted);
            }
            self.settle(broker, &slot, &mut s, Vec::new(), &mut out);
        }
        if !out.finish(broker.config.acks_all_fsync).await {
            for r in results.iter_mut().filter(|r| r.is_none()) {
                *r = Some(ResponseError::CoordinatorNotAvailable);
            }
        }
        results
    }

    /// OffsetFetch: the committed offsets of the given partitions, or of
    /// every partition the group has offsets for (`topics == None`).
    pub fn fetch_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<FetchedTopics, ResponseError> {
        self.check_serving(broker, group_id)?;
        let offsets = self
            .slot(group_id, false)
            .map(|s| lock(&s).group.offsets.clone())
            .unwrap_or_default();
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let found = parts
                        .into_iter()
                        .map(|p| (p, offsets.get(&(t.clone(), p)).cloned()))
                        .collect();
                    (t, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                for ((t, p), o) in offsets {
                    by_topic.entry(t).or_default().push((p, Some(o)));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// OffsetDelete: the group-level error, or one result per partition.
    pub async fn delete_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        parts: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.check_serving(broker, group_id)?;
        let slot = self
            .slot(group_id, false)
            .ok_or(ResponseError::GroupIdNotFound)?;
        let mut out = Outbox::default();
        let results = {
            let mut s = lock(&slot);
            let g = &s.group;
            let consumer = g.protocol_type.as_deref() == Some(super::state::CONSUMER_PROTOCOL_TYPE);
            let results: Vec<Option<ResponseError>> = match g.state {
                GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
                GroupState::Empty => vec![None; parts.len()],
                _ if consumer => parts
                    .iter()
                    .map(|(t, _)| {
                        g.is_subscribed_to(t)
                            .then_some(ResponseError::GroupSubscribedToTopic)
                    })
                    .collect(),
                _ => return Err(ResponseError::NonEmptyGroup),
            };
            let mut records = Vec::new();
            for ((t, p), r) in parts.iter().zip(&results) {
                if r.is_none() && s.group.offsets.remove(&(t.clone(), *p)).is_some() {
                    records.push(store::offset_record(group_id, t, *p, None));
                }
            }
            self.write(broker, group_id, &records, &mut out);
            self.settle(broker, &slot, &mut s, Vec::new(), &mut out);
            results
        };
        out.finish(broker.config.acks_all_fsync).await;
        Ok(results)
    }

    // ---- administration ----

    /// ListGroups: (id, protocol type, state) of every live group.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let slots: Vec<SlotRef> = lock(&self.groups).values().cloned().collect();
        slots
            .iter()
            .map(|s| {
                let s = lock(s);
                (
                    s.group.id.clone(),
                    s.group.protocol_type.clone().unwrap_or_default(),
                    s.group.state,
                )
            })
            .filter(|(_, _, st)| *st != GroupState::Dead)
            .collect()
    }

    /// DescribeGroups of one group (a missing group is reported Dead, as Kafka does).
    pub fn describe(&self, broker: &Broker, group_id: &str) -> Result<GroupSummary, ResponseError> {
        self.check_serving(broker, group_id)?;
        let Some(slot) = self.slot(group_id, false) else {
            return Ok(GroupSummary {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let s = lock(&slot);
        let g = &s.group;
        Ok(GroupSummary {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == GroupState::Stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: g
                .describe_members()
                .into_iter()
                .map(|(m, meta, asg)| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        meta,
                        asg,
                    )
                })
                .collect(),
        })
    }

    /// DeleteGroups of one group.
    pub async fn delete_group(&self, broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
        self.check_serving(broker, group_id)?;
        let slot = self
            .slot(group_id, false)
            .ok_or(ResponseError::GroupIdNotFound)?;
        let mut out = Outbox::default();
        {
            let mut s = lock(&slot);
            let keys: Vec<(String, i32)> = s.group.offsets.keys().cloned().collect();
            s.group.delete(now_ms())?;
            let mut records: Vec<StoreRecord> = keys
                .iter()
                .map(|(t, p)| store::offset_record(group_id, t, *p, None))
                .collect();
            records.push(store::group_record(&s.group));
            self.write(broker, group_id, &records, &mut out);
            self.reschedule(&slot, &mut s);
        }
        if out.finish(broker.config.acks_all_fsync).await {
            Ok(())
        } else {
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }

    // ---- background work ----

    /// Fires the timers that are due.
    async fn fire_due(&self, broker: &Broker) {
        let now = now_ms();
        let due: Vec<String> = {
            let mut timers = lock(&self.timers);
            let mut due = Vec::new();
            while let Some(first) = timers.first().cloned() {
                if first.0 > now {
                    break;
                }
                timers.remove(&first);
                due.push(first.1);
            }
            due
        };
        for id in due {
            let Some(slot) = self.slot(&id, false) else {
                continue;
            };
            let mut out = Outbox::default();
            {
                let mut s = lock(&slot);
                s.deadline = None;
                let mut fx = Vec::new();
                s.group.tick(&self.config.group, now_ms(), &mut fx);
                self.settle(broker, &slot, &mut s, fx, &mut out);
            }
            out.finish(broker.config.acks_all_fsync).await;
        }
    }

    /// Expires offsets past retention and removes groups left with nothing.
    pub async fn expire_offsets(&self, broker: &Broker) {
        let slots: Vec<SlotRef> = lock(&self.groups).values().cloned().collect();
        let mut expired_total = 0;
        for slot in slots {
            let mut out = Outbox::default();
            {
                let mut s = lock(&slot);
                let now = now_ms();
                let expired = s
                    .group
                    .expire_offsets(now, self.config.offsets_retention_ms);
                expired_total += expired.len();
                let id = s.group.id.clone();
                let records: Vec<StoreRecord> = expired
                    .iter()
                    .map(|(t, p)| store::offset_record(&id, t, *p, None))
                    .collect();
                self.write(broker, &id, &records, &mut out);
                self.settle(broker, &slot, &mut s, Vec::new(), &mut out);
            }
            out.finish(broker.config.acks_all_fsync).await;
        }
        if expired_total > 0 {
            tracing::info!(offsets = expired_total, "expired committed offsets");
        }
    }

    /// Reads every `__consumer_offsets` partition into memory.
    async fn load_all(&self, broker: &Arc<Broker>) {
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
            let mut owned = lock(&self.owned);
            if owned.is_none() {
                *owned = Some(vec![
                    Ownership::Loaded;
                    self.config.offsets_partitions as usize
                ]);
            }
            return;
        };
        let partitions = topic.partitions();
        *lock(&self.owned) = Some(vec![Ownership::Loading; partitions.len()]);
        let started = std::time::Instant::now();
        let mut total = 0;
        for partition in partitions {
            let index = partition.index as usize;
            let loaded = tokio::task::spawn_blocking(move || store::load(&partition)).await;
            let groups = match loaded {
                Ok(Ok(l)) => l.into_groups(now_ms()),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "loading consumer groups failed; the partition's groups start empty");
                    Vec::new()
                }
                Err(e) => {
                    tracing::error!(error = %e, "loading consumer groups panicked");
                    Vec::new()
                }
            };
            total += groups.len();
            for group in groups {
                let id = group.id.clone();
                let slot = Arc::new(Mutex::new(Slot {
                    group,
                    joins: HashMap::new(),
                    syncs: HashMap::new(),
                    deadline: None,
                }));
                self.reschedule(&slot, &mut lock(&slot));
                lock(&self.groups).insert(id, slot);
            }
            if let Some(o) = lock(&self.owned).as_mut().and_then(|o| o.get_mut(index)) {
                *o = Ownership::Loaded;
            }
        }
        tracing::info!(
            groups = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded consumer groups"
        );
    }

    /// Answers every parked request NOT_COORDINATOR (shutdown): the clients
    /// find the coordinator again once a broker is back.
    fn unload(&self) {
        let slots: Vec<SlotRef> = lock(&self.groups).values().cloned().collect();
        for slot in slots {
            let mut s = lock(&slot);
            for (id, tx) in s.joins.drain() {
                let _ = tx.send(JoinResult::error(&id, ResponseError::NotCoordinator));
            }
            for (_, tx) in s.syncs.drain() {
                let _ = tx.send(SyncResult::error(ResponseError::NotCoordinator));
            }
        }
    }

    /// Refreshes the group gauges and per-partition consumer lag.
    pub fn refresh_metrics(&self, broker: &Broker) {
        let slots: Vec<SlotRef> = lock(&self.groups).values().cloned().collect();
        let mut by_state: BTreeMap<GroupState, i64> =
            GroupState::ALL.iter().map(|s| (*s, 0)).collect();
        let mut offsets = 0i64;
        self.metrics.lag.reset();
        self.metrics.committed.reset();
        for slot in slots {
            let s = lock(&slot);
            *by_state.entry(s.group.state).or_default() += 1;
            offsets += s.group.offsets.len() as i64;
            for ((topic, p), o) in &s.group.offsets {
                let Some(partition) = broker.topic(topic).and_then(|t| t.partition(*p)) else {
                    continue;
                };
                let end = partition.high_watermark();
                let labels = [s.group.id.as_str(), topic.as_str(), &p.to_string()];
                self.metrics
                    .lag
                    .with_label_values(&labels)
                    .set((end - o.offset).max(0));
                self.metrics
                    .committed
                    .with_label_values(&labels)
                    .set(o.offset);
            }
        }
        for (state, n) in by_state {
            self.metrics
                .groups
                .with_label_values(&[state.name()])
                .set(n);
        }
        self.metrics.offsets.set(offsets);
    }
}

/// The coordinator's background task: load `__consumer_offsets`, then fire
/// group timers, expire offsets and refresh metrics until `stop`.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let c = &broker.groups;
    tokio::select! {
        _ = c.load_all(&broker) => {}
        _ = stop.changed() => return,
    }
    let mut retention = tokio::time::interval(c.config.retention_check_interval);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gauges = tokio::time::interval(Duration::from_secs(10));
    gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = lock(&c.timers).first().map(|(d, _)| *d);
        let wait = next.map_or(Duration::from_secs(3600), |d| {
            Duration::from_millis((d - now_ms()).max(0) as u64)
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => c.fire_due(&broker).await,
            _ = c.wake.notified() => {}
            _ = retention.tick() => c.expire_offsets(&broker).await,
            _ = gauges.tick() => c.refresh_metrics(&broker),
            _ = stop.changed() => {
                c.unload();
                return;
            }
        }
    }
}
