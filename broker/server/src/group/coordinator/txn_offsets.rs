//! TxnOffsetCommit: offsets committed inside a transaction. They are
//! written to `__consumer_offsets` as a transactional batch of the
//! producer, kept pending, and become the group's committed offsets only
//! when the transaction's COMMIT marker is written on that partition (an
//! ABORT drops them). Until then OffsetFetch with `require_stable`
//! answers UNSTABLE_OFFSET_COMMIT for them, as Kafka does.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::ResponseError;

use super::{lock, CommitPartition, Coordinator};
use crate::{
    broker::now_ms,
    group::{
        partition_for,
        state::CommittedOffset,
        store::{self, PendingOffsets},
    },
};

/// Pending offsets by producer id, then (group, topic, partition).
pub(super) type Pending = HashMap<i64, BTreeMap<(String, String, i32), CommittedOffset>>;

impl Coordinator {
    /// TxnOffsetCommit: one result per partition, in order. The producer
    /// was checked by the caller against the transaction coordinator.
    #[allow(clippy::too_many_arguments)] // the request's fields
    pub async fn txn_commit(
        &self,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        parts: Vec<CommitPartition>,
    ) -> Vec<Option<ResponseError>> {
        let all = |e: ResponseError| vec![Some(e); parts.len()];
        if let Err(e) = self.check_serving(group_id) {
            return all(e);
        }
        if generation >= 0 {
            // A consumer in a group (KIP-447): its generation must be current.
            let Some(slot) = self.slot(group_id, false) else {
                return all(ResponseError::IllegalGeneration);
            };
            let checked =
                lock(&slot)
                    .group
                    .check_commit(member_id, instance_id, generation, now_ms());
            if let Err(e) = checked {
                return all(e);
            }
        }
        let broker = self.cluster.broker();
        let now = now_ms();
        let mut results = Vec::with_capacity(parts.len());
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for p in &parts {
            results.push(match self.offset_to_commit(group_id, p, now) {
                Ok((record, (tp, value))) => {
                    records.push(record);
                    accepted.push(((group_id.to_string(), tp.0, tp.1), value));
                    None
                }
                Err(e) => Some(e),
            });
        }
        if records.is_empty() {
            return results;
        }
        let written = async {
            let partition = self.offsets_partition(group_id)?;
            let batch = store::encode_txn_batch(&records, producer_id, producer_epoch, now);
            let info = partition.append(&batch, now).map_err(|e| {
                tracing::warn!(group = group_id, error = %e, "appending transactional offsets failed");
                match e {
                    rivulet_storage::StorageError::InvalidProducerEpoch { .. } => {
                        ResponseError::ProducerFenced
                    }
                    _ => ResponseError::CoordinatorNotAvailable,
                }
            })?;
            let end = info.last_offset + 1;
            if broker.config.acks_all_fsync {
                partition
                    .flush_to(end)
                    .await
                    .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
            }
            if !partition
                .wait_for_hw(end, std::time::Duration::from_secs(5))
                .await
            {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            Ok(())
        }
        .await;
        match written {
            Ok(()) => {
                lock(&self.pending)
                    .entry(producer_id)
                    .or_default()
                    .extend(accepted);
            }
            Err(e) => {
                for r in results.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(e);
                }
            }
        }
        results
    }

    /// A transaction's marker was written on `__consumer_offsets` partition
    /// `offsets_partition`: its offsets there become committed (or are
    /// dropped on abort).
    pub fn complete_txn(&self, offsets_partition: i32, producer_id: i64, commit: bool) {
        let partitions = self.partition_count();
        let finished: Vec<((String, String, i32), CommittedOffset)> = {
            let mut pending = lock(&self.pending);
            let Some(mine) = pending.get_mut(&producer_id) else {
                return;
            };
            let keys: Vec<_> = mine
                .keys()
                .filter(|(group, _, _)| partition_for(group, partitions) == offsets_partition)
                .cloned()
                .collect();
            let out = keys
                .into_iter()
                .filter_map(|k| mine.remove_entry(&k))
                .collect();
            if mine.is_empty() {
                pending.remove(&producer_id);
            }
            out
        };
        if !commit {
            return;
        }
        let count = finished.len() as u64;
        for ((group, topic, partition), offset) in finished {
            if let Some(slot) = self.slot(&group, true) {
                lock(&slot).group.offsets.insert((topic, partition), offset);
            }
        }
        self.metrics.offset_commits.inc_by(count);
    }

    /// Whether a transaction has an offset of this partition pending.
    pub fn has_pending(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let key = (group_id.to_string(), topic.to_string(), partition);
        lock(&self.pending).values().any(|m| m.contains_key(&key))
    }

    /// Pending offsets read back from `__consumer_offsets` at load.
    pub(super) fn restore_pending(&self, loaded: PendingOffsets) {
        let mut pending = lock(&self.pending);
        for (producer_id, offsets) in loaded {
            let mine = pending.entry(producer_id).or_default();
            for (group, (topic, partition), value) in offsets {
                mine.insert((group, topic, partition), value.into());
            }
        }
    }
}
