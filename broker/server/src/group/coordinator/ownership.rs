//! Which `__consumer_offsets` partitions this broker serves, and their life:
//! the topic is created on first use, its partitions are read into memory
//! at start (answering COORDINATOR_LOAD_IN_PROGRESS meanwhile), and parked
//! requests are released at shutdown.

use std::{collections::BTreeMap, sync::Arc};

use kafka_protocol::ResponseError;

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
    #[allow(dead_code)]
    NotLeader,
}

impl Coordinator {
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

    pub(super) fn offsets_partition(
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

    /// Reads every `__consumer_offsets` partition into memory.
    pub(super) async fn load_all(&self, broker: &Arc<Broker>) {
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
                let slot = Slot::shared(group);
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
