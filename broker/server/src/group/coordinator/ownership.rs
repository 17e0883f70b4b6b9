//! Which `__consumer_offsets` partitions this broker serves, and their life:
//! the topic is created on first use, its partitions are read into memory
//! at start (answering COORDINATOR_LOAD_IN_PROGRESS meanwhile), and parked
//! requests are released at shutdown.

use std::{collections::BTreeMap, sync::Arc};

use kafka_protocol::ResponseError;
use rivulet_quorum::metadata::ClusterMetadata;

use super::{lock, Coordinator, Slot, SlotRef};
use crate::{
    broker::{now_ms, Broker},
    group::{
        partition_for,
        state::{JoinResult, SyncResult},
        store, OFFSETS_TOPIC,
    },
    partition::Partition,
};

/// Whether this broker answers for a `__consumer_offsets` partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ownership {
    /// Leader; its records are being read.
    Loading,
    /// Leader; its groups are in memory.
    Loaded,
    /// Another broker leads it (multi-broker clusters).
    NotLeader,
}

impl Coordinator {
    /// Whether this broker can answer for `group_id` now.
    pub fn check_serving(&self, group_id: &str) -> Result<(), ResponseError> {
        // Cut off from the quorum, this broker's groups may have a new
        // coordinator already: answering from them would be a stale read.
        if !self.cluster.broker().lease.held() {
            return Err(ResponseError::NotCoordinator);
        }
        let p = self.partition_of(group_id);
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

    /// Creates `__consumer_offsets` if it does not exist yet (first use):
    /// the creation is proposed in the background and the caller answers
    /// COORDINATOR_NOT_AVAILABLE meanwhile (clients retry).
    pub fn ensure_topic(&self) -> Result<(), ResponseError> {
        let broker = self.cluster.broker();
        if broker.topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        tokio::spawn(create_offsets_topic(
            self.cluster.clone(),
            self.creating.clone(),
            self.config.offsets_partitions,
        ));
        Err(ResponseError::CoordinatorNotAvailable)
    }

    /// Creates `__consumer_offsets` (see [`create_offsets_topic`]) and
    /// waits for it, bounded.
    pub async fn create_offsets_topic(&self) {
        create_offsets_topic(
            self.cluster.clone(),
            self.creating.clone(),
            self.config.offsets_partitions,
        )
        .await
    }

    pub(super) fn offsets_partition(
        &self,
        group_id: &str,
    ) -> Result<Arc<Partition>, ResponseError> {
        let broker = self.cluster.broker();
        self.ensure_topic()?;
        let topic = broker
            .topic(OFFSETS_TOPIC)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        topic
            .partition(partition_for(group_id, topic.partition_count()))
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }

    /// Follows leadership of `__consumer_offsets` partitions:
    /// a partition this broker now leads is loaded, one it no longer leads
    /// is unloaded and its groups answer NOT_COORDINATOR, so clients find
    /// the new coordinator.
    pub fn on_leadership_change(self: &Arc<Self>, image: &ClusterMetadata) {
        let cluster = &self.cluster;
        let broker = cluster.broker();
        let Some(meta) = image.topics.get(OFFSETS_TOPIC) else {
            return;
        };
        let n = meta.partitions.len();
        let me = cluster.node_id;
        let mut to_load = Vec::new();
        let mut to_unload = Vec::new();
        {
            let mut owned = lock(&self.owned);
            let owned = owned.get_or_insert_with(Vec::new);
            owned.resize(n, Ownership::NotLeader);
            for (&p, state) in &meta.partitions {
                let Some(slot) = owned.get_mut(p as usize) else {
                    continue;
                };
                let leads = state.leader == Some(me);
                match (*slot, leads) {
                    (Ownership::NotLeader, true) => {
                        *slot = Ownership::Loading;
                        to_load.push(p);
                    }
                    (Ownership::Loading | Ownership::Loaded, false) => {
                        *slot = Ownership::NotLeader;
                        to_unload.push(p);
                    }
                    _ => {}
                }
            }
        }
        for p in to_unload {
            self.unload_partition(p, n as i32);
        }
        for p in to_load {
            let broker = broker.clone();
            let coordinator = self.clone();
            tokio::spawn(async move {
                let Some(partition) = broker.topic(OFFSETS_TOPIC).and_then(|t| t.partition(p))
                else {
                    // Not hosted after all: the next image decides again.
                    if let Some(slot) = lock(&coordinator.owned)
                        .as_mut()
                        .and_then(|o| o.get_mut(p as usize))
                    {
                        if *slot == Ownership::Loading {
                            *slot = Ownership::NotLeader;
                        }
                    }
                    return;
                };
                // What the previous leader wrote must be complete here
                // before it is read: wait for this replica's high watermark
                // to reach its log end (bounded).
                let end = partition.read_log().log_end_offset();
                let _ = partition
                    .wait_for_hw(end, std::time::Duration::from_secs(10))
                    .await;
                coordinator.load_partition(&broker, partition).await;
            });
        }
    }

    /// Reads one `__consumer_offsets` partition into memory and marks it
    /// loaded (unless leadership moved away meanwhile).
    async fn load_partition(&self, broker: &Arc<Broker>, partition: Arc<Partition>) {
        let index = partition.index as usize;
        let loaded = tokio::task::spawn_blocking(move || store::load(&partition)).await;
        let groups = match loaded {
            Ok(Ok(mut l)) => {
                self.restore_pending(std::mem::take(&mut l.pending));
                l.into_groups(now_ms())
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "loading consumer groups failed; the partition's groups start empty");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "loading consumer groups panicked");
                Vec::new()
            }
        };
        let mut owned = lock(&self.owned);
        if owned.as_ref().and_then(|o| o.get(index)) != Some(&Ownership::Loading) {
            return;
        }
        let count = groups.len();
        for group in groups {
            let id = group.id.clone();
            let slot = Slot::shared(group);
            self.reschedule(&slot, &mut lock(&slot));
            lock(&self.groups).insert(id, slot);
        }
        if let Some(o) = owned.as_mut().and_then(|o| o.get_mut(index)) {
            *o = Ownership::Loaded;
        }
        drop(owned);
        let _ = broker;
        tracing::info!(
            partition = index,
            groups = count,
            "now coordinating the groups of this partition"
        );
    }

    /// Drops the groups of partition `p` (leadership moved away),
    /// answering their parked requests NOT_COORDINATOR.
    fn unload_partition(&self, p: i32, partitions: i32) {
        let slots: Vec<SlotRef> = {
            let mut groups = lock(&self.groups);
            let ids: Vec<String> = groups
                .keys()
                .filter(|id| partition_for(id, partitions) == p)
                .cloned()
                .collect();
            ids.iter().filter_map(|id| groups.remove(id)).collect()
        };
        for slot in slots {
            let mut s = lock(&slot);
            for (id, tx) in s.joins.drain() {
                let _ = tx.send(JoinResult::error(&id, ResponseError::NotCoordinator));
            }
            for (_, tx) in s.syncs.drain() {
                let _ = tx.send(SyncResult::error(ResponseError::NotCoordinator));
            }
        }
        tracing::info!(
            partition = p,
            "no longer coordinating the groups of this partition"
        );
    }

    /// Answers every parked request NOT_COORDINATOR (shutdown): the clients
    /// find the coordinator again once a broker is back.
    pub(super) fn unload(&self) {
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
}

/// Topic configs of `__consumer_offsets`.
fn offsets_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), "104857600".to_string()),
    ])
}

/// Creates `__consumer_offsets` with `offsets.topic.replication.factor`
/// capped at the live brokers, and waits (bounded) until this broker has
/// applied it; one creation at a time (`creating`), a lost race is fine.
async fn create_offsets_topic(
    cluster: Arc<crate::cluster::Cluster>,
    creating: Arc<std::sync::atomic::AtomicBool>,
    partitions: i32,
) {
    if creating.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let broker = cluster.broker();
    let live = cluster.image().live_brokers().count() as i16;
    let wanted = broker.config.replication.offsets_topic_replication_factor;
    let new = crate::cluster::admin::NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions,
        replication_factor: wanted.min(live.max(1)),
        assignments: None,
        configs: offsets_topic_configs(),
    };
    if let Err(e) = cluster.create_topic(broker, new, false).await {
        if e.code != ResponseError::TopicAlreadyExists {
            tracing::warn!(error = %e.message, "creating __consumer_offsets failed");
        }
    }
    creating.store(false, std::sync::atomic::Ordering::Release);
}
