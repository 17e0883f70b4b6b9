//! The committed offset APIs: OffsetCommit, OffsetFetch and OffsetDelete.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use super::{lock, outbox::Outbox, Coordinator};
use crate::{
    broker::now_ms,
    group::{
        state::{CommittedOffset, GroupState, CONSUMER_PROTOCOL_TYPE},
        store,
    },
};

/// How long OffsetFetch waits for the offsets it reports to be replicated
/// (what a commit waits, Kafka's `offsets.commit.timeout.ms`).
const REPLICATED_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

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

/// A validated offset: its record, and its entry in the group's offsets.
pub(super) type Accepted = (store::StoreRecord, ((String, i32), CommittedOffset));

impl Coordinator {
    /// Checks one partition of an OffsetCommit or TxnOffsetCommit: it must
    /// exist in the cluster (wherever its replicas are: the coordinator
    /// need not host it) and its metadata fit `offset.metadata.max.bytes`.
    pub(super) fn offset_to_commit(
        &self,
        group_id: &str,
        p: &CommitPartition,
        now: i64,
    ) -> Result<Accepted, ResponseError> {
        let known = self
            .cluster
            .broker()
            .topic(&p.topic)
            .is_some_and(|t| t.has_partition(p.partition));
        let metadata = p.metadata.clone().unwrap_or_default();
        if !known {
            return Err(ResponseError::UnknownTopicOrPartition);
        }
        if metadata.len() > self.config.max_metadata_bytes {
            return Err(ResponseError::OffsetMetadataTooLarge);
        }
        let value = CommittedOffset {
            offset: p.offset,
            leader_epoch: p.leader_epoch,
            metadata,
            commit_timestamp: now,
            expire_timestamp: None,
        };
        let record = store::offset_record(group_id, &p.topic, p.partition, Some(&value.to_value()));
        Ok((record, ((p.topic.clone(), p.partition), value)))
    }

    /// OffsetCommit: one result per partition, in order.
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        parts: Vec<CommitPartition>,
    ) -> Vec<Option<ResponseError>> {
        let broker = self.cluster.broker();
        let all = |e: ResponseError| vec![Some(e); parts.len()];
        if let Err(e) = self.check_serving(group_id) {
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
                results.push(match self.offset_to_commit(group_id, p, now) {
                    Ok((record, entry)) => {
                        records.push(record);
                        accepted.push(entry);
                        None
                    }
                    Err(e) => Some(e),
                });
            }
            if self.write(group_id, &records, &mut out) {
                self.metrics.offset_commits.inc_by(accepted.len() as u64);
                s.group.offsets.extend(accepted);
            }
            self.settle(&slot, &mut s, Vec::new(), &mut out);
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
    ///
    /// Only offsets every in-sync replica has are reported, as Kafka keeps
    /// a commit pending until it is replicated: a commit appended here
    /// but not replicated (a follower cut off) may be lost when the
    /// coordinator moves, and a member that saw it would see its offsets
    /// go back. So the answer waits until the group's `__consumer_offsets`
    /// partition is replicated up to its end as of reading the offsets,
    /// and is COORDINATOR_NOT_AVAILABLE (the client looks again) when that
    /// takes longer than a commit may.
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<FetchedTopics, ResponseError> {
        let _broker = self.cluster.broker();
        self.check_serving(group_id)?;
        let offsets = self
            .slot(group_id, false)
            .map(|s| lock(&s).group.offsets.clone())
            .unwrap_or_default();
        // Read after the offsets: every record behind them lies below it.
        let stored = self.offsets_partition(group_id).map(|p| {
            let end = p.read_log().log_end_offset();
            (p, end)
        });
        if let Ok((partition, end)) = stored {
            if !partition.wait_for_hw(end, REPLICATED_WITHIN).await {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
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
        group_id: &str,
        parts: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let broker = self.cluster.broker();
        self.check_serving(group_id)?;
        let slot = self
            .slot(group_id, false)
            .ok_or(ResponseError::GroupIdNotFound)?;
        let mut out = Outbox::default();
        let results = {
            let mut s = lock(&slot);
            let g = &s.group;
            let consumer = g.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE);
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
            self.write(group_id, &records, &mut out);
            self.settle(&slot, &mut s, Vec::new(), &mut out);
            results
        };
        out.finish(broker.config.acks_all_fsync).await;
        Ok(results)
    }
}
