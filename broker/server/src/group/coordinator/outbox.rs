//! After a transition: its effects become records appended under the
//! group's lock, a new timer deadline, and answers that an [`Outbox`]
//! delivers once the lock is released and the records are durable.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::{lock, Coordinator, Slot, SlotRef};
use crate::{
    broker::now_ms,
    group::{
        state::{Effect, GroupState, JoinResult, SyncResult},
        store::{self, StoreRecord},
    },
    partition::Partition,
};

/// What to do once a group's lock is released: wait for the records to be
/// durable, then answer.
#[derive(Default)]
#[must_use]
pub(super) struct Outbox {
    flush: Option<(Arc<Partition>, i64)>,
    /// Set when writing the group's records failed.
    failed: bool,
    joins: Vec<(oneshot::Sender<JoinResult>, JoinResult)>,
    syncs: Vec<(oneshot::Sender<SyncResult>, SyncResult)>,
}

impl Outbox {
    pub(super) async fn finish(mut self, fsync: bool) -> bool {
        if let (Some((partition, offset)), true) = (&self.flush, fsync) {
            if let Err(e) = partition.flush_to(*offset).await {
                tracing::warn!(error = %e, "fsync of __consumer_offsets failed");
                self.failed = true;
            }
        }
        if let Some((partition, offset)) = &self.flush {
            // In a cluster the records count once every in-sync replica
            // has them (Kafka's offsets.commit.timeout.ms is 5 s).
            if !self.failed
                && !partition
                    .wait_for_hw(*offset, std::time::Duration::from_secs(5))
                    .await
            {
                tracing::warn!("__consumer_offsets records not replicated in time");
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

impl Coordinator {
    /// Writes records of a group (under its lock) and notes what to flush.
    pub(super) fn write(&self, group_id: &str, records: &[StoreRecord], out: &mut Outbox) -> bool {
        let _broker = self.cluster.broker();
        if records.is_empty() {
            return true;
        }
        let written = self
            .offsets_partition(group_id)
            .and_then(|p| {
                store::append(&p, records, now_ms()).map(|end| (p, end)).map_err(|e| {
                    tracing::warn!(group = group_id, error = %e, "appending to __consumer_offsets failed");
                    ResponseError::CoordinatorNotAvailable
                })
            });
        match written {
            Ok((p, end)) => {
                out.flush = Some((p, end));
                true
            }
            Err(_) => {
                out.failed = true;
                false
            }
        }
    }

    /// Turns effects into writes and answers; keeps the timer and the group table current.
    pub(super) fn settle(&self, me: &SlotRef, slot: &mut Slot, fx: Vec<Effect>, out: &mut Outbox) {
        let _broker = self.cluster.broker();
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
            self.write(&slot.group.id.clone(), &[record], out);
        }
        self.reschedule(me, slot);
    }

    pub(super) fn reschedule(&self, me: &SlotRef, slot: &mut Slot) {
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
}
