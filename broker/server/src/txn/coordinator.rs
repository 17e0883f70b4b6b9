//! The async shell around [`state`](super::state): one async mutex per
//! transactional id (held for a transition and the write of its record),
//! ownership of the `__transaction_state` partitions this broker leads,
//! and the background duties (loading on leadership, expiry).
//!
//! A transition is persisted before it takes effect: the record is
//! appended to the id's partition and must reach the high watermark (every
//! in-sync replica) before the answer goes out, so a new coordinator
//! loading the partition after a failover knows every transaction a client
//! was told about. Markers are written after EndTxn is answered; a
//! transaction in PrepareCommit/PrepareAbort is completed by whichever
//! broker loads its partition.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::Mutex as AsyncMutex;

use super::{
    records,
    state::{self, EndPlan, InitPlan, TxnMetadata, TxnState},
    tv2::{self, EndPlanV2},
    TRANSACTION_TOPIC,
};
use crate::{
    broker::now_ms,
    cluster::{admin::NewTopic, Cluster},
    config::TransactionConfig,
    group::{partition_for, store},
    metrics::TxnMetrics,
    partition::Partition,
};

/// Whether this broker answers for a `__transaction_state` partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ownership {
    NotLeader,
    Loading,
    /// Loaded, at this leader epoch (the coordinator epoch of markers).
    Loaded(i32),
}

/// One transactional id's metadata (`None` until it is first persisted).
type Entry = Arc<AsyncMutex<Option<TxnMetadata>>>;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The transaction coordinator of this broker.
pub struct TxnCoordinator {
    pub(super) config: TransactionConfig,
    pub(super) cluster: Arc<Cluster>,
    pub(super) entries: Mutex<HashMap<String, Entry>>,
    pub(super) owned: Mutex<Vec<Ownership>>,
    creating: Arc<AtomicBool>,
    pub(super) metrics: TxnMetrics,
}

impl TxnCoordinator {
    /// A coordinator that answers NOT_COORDINATOR until [`Self::run`]
    /// loads the partitions this broker leads.
    pub fn new(config: TransactionConfig, cluster: Arc<Cluster>, metrics: TxnMetrics) -> Self {
        TxnCoordinator {
            config,
            cluster,
            entries: Mutex::new(HashMap::new()),
            owned: Mutex::new(Vec::new()),
            creating: Arc::default(),
            metrics,
        }
    }

    /// The cluster (image, registry, peers).
    pub(super) fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Partitions of `__transaction_state`.
    fn partition_count(&self) -> i32 {
        self.cluster
            .broker()
            .topic(TRANSACTION_TOPIC)
            .map(|t| t.partition_count())
            .unwrap_or(self.config.partitions)
    }

    /// The `__transaction_state` partition of a transactional id.
    pub fn partition_of(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.partition_count())
    }

    /// The coordinator epoch when this broker serves `transactional_id`,
    /// or the error that sends the client elsewhere.
    pub fn serving(&self, transactional_id: &str) -> Result<i32, ResponseError> {
        // Without the lease another broker may coordinate these ids now.
        if !self.cluster.broker().lease.held() {
            return Err(ResponseError::NotCoordinator);
        }
        if self.cluster.broker().topic(TRANSACTION_TOPIC).is_none() {
            self.spawn_create_topic();
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let p = self.partition_of(transactional_id);
        match lock(&self.owned).get(p as usize).copied() {
            Some(Ownership::Loaded(epoch)) => Ok(epoch),
            Some(Ownership::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    fn entry(&self, transactional_id: &str) -> Entry {
        lock(&self.entries)
            .entry(transactional_id.to_string())
            .or_default()
            .clone()
    }

    fn partition(&self, transactional_id: &str) -> Result<Arc<Partition>, ResponseError> {
        self.cluster
            .broker()
            .topic(TRANSACTION_TOPIC)
            .and_then(|t| t.partition(partition_for(transactional_id, t.partition_count())))
            .ok_or(ResponseError::NotCoordinator)
    }

    /// Writes a transactional id's record (`None`: a tombstone) and waits
    /// until every in-sync replica has it.
    async fn persist(
        &self,
        transactional_id: &str,
        meta: Option<&TxnMetadata>,
    ) -> Result<(), ResponseError> {
        let partition = self.partition(transactional_id)?;
        let record = (
            records::encode_key(transactional_id),
            meta.map(|m| records::encode_value(m, records::value_version(m, self.config.version))),
        );
        let batch: Bytes = store::encode_raw_batch(&[record], now_ms());
        let end = partition
            .append(&batch, now_ms())
            .map_err(|e| {
                tracing::warn!(transactional_id, error = %e, "appending to __transaction_state failed");
                ResponseError::NotCoordinator
            })?
            .last_offset
            + 1;
        if self.cluster.broker().config.acks_all_fsync {
            partition.flush_to(end).await.map_err(|e| {
                tracing::warn!(error = %e, "fsync of __transaction_state failed");
                ResponseError::CoordinatorNotAvailable
            })?;
        }
        if !partition.wait_for_hw(end, Duration::from_secs(5)).await {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        Ok(())
    }

    /// InitProducerId with a transactional id: the producer id and epoch,
    /// fencing older epochs; an open transaction is aborted first
    /// (CONCURRENT_TRANSACTIONS meanwhile, so the client retries).
    pub async fn init_producer_id(
        self: &Arc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let epoch = self.serving(transactional_id)?;
        let entry = self.entry(transactional_id);
        let mut current = entry.lock().await;
        let broker = self.cluster.broker().clone();
        let plan = state::init_producer_id(
            transactional_id,
            current.as_ref(),
            timeout_ms,
            expected,
            now_ms(),
            || broker.allocate_producer_id().map_err(|e| e.code),
        )?;
        match plan {
            InitPlan::Ready(next) => {
                self.persist(transactional_id, Some(&next)).await?;
                let ids = (next.producer_id, next.producer_epoch);
                *current = Some(next);
                Ok(ids)
            }
            InitPlan::AbortFirst(abort) => {
                self.persist(transactional_id, Some(&abort)).await?;
                *current = Some(abort.clone());
                drop(current);
                self.spawn_completion(abort, epoch);
                Err(ResponseError::ConcurrentTransactions)
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn's offsets partition); `v2`
    /// for a transaction version 2 client's partitions, added on its
    /// behalf by a leader or the group coordinator.
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        v2: bool,
    ) -> Result<(), ResponseError> {
        self.serving(transactional_id)?;
        let entry = self.entry(transactional_id);
        let mut current = entry.lock().await;
        let Some(m) = current.as_ref() else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        let added = if v2 {
            tv2::add_partitions(m, producer_id, producer_epoch, partitions, now_ms())?
        } else {
            state::add_partitions(m, producer_id, producer_epoch, partitions, now_ms())?
        };
        if let Some(next) = added {
            self.persist(transactional_id, Some(&next)).await?;
            *current = Some(next);
        }
        Ok(())
    }

    /// KIP-890 part 1: whether `partitions` belong to the ongoing
    /// transaction of `producer_id`/`producer_epoch` (a leader asks before
    /// it accepts a transaction's first batch). One answer per partition.
    pub async fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Vec<Option<ResponseError>> {
        let all = |e| vec![Some(e); partitions.len()];
        if let Err(e) = self.serving(transactional_id) {
            return all(e);
        }
        let entry = self.entry(transactional_id);
        let current = entry.lock().await;
        let Some(m) = current.as_ref() else {
            return all(ResponseError::InvalidProducerIdMapping);
        };
        if let Err(e) = state::check_producer(m, producer_id, producer_epoch) {
            return all(e);
        }
        partitions
            .iter()
            .map(|p| {
                (m.state != TxnState::Ongoing || !m.partitions.contains(p))
                    .then_some(ResponseError::InvalidTxnState)
            })
            .collect()
    }

    /// Checks that `producer_id`/`producer_epoch` is the current producer
    /// of an open transaction that includes `partition` (TxnOffsetCommit).
    pub async fn check_in_transaction(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(), ResponseError> {
        let entry = self.entry(transactional_id);
        let current = entry.lock().await;
        match current.as_ref() {
            Some(m) => state::check_producer(m, producer_id, producer_epoch),
            None => Err(ResponseError::InvalidProducerIdMapping),
        }
    }

    /// EndTxn: the decision is persisted before the answer; the markers
    /// follow in the background. With `v2` (EndTxn v5, transaction version
    /// 2) the epoch is bumped and the answer is the producer id and epoch
    /// the client continues with; the classic form answers (-1, -1).
    pub async fn end_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        v2: bool,
    ) -> Result<(i64, i16), ResponseError> {
        let epoch = self.serving(transactional_id)?;
        let entry = self.entry(transactional_id);
        let mut current = entry.lock().await;
        let Some(m) = current.as_ref() else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        let (next, answer) = if v2 {
            let broker = self.cluster.broker().clone();
            let allocate = || broker.allocate_producer_id().map_err(|e| e.code);
            match tv2::end_txn(m, producer_id, producer_epoch, commit, now_ms(), allocate)? {
                EndPlanV2::AlreadyDone(pid, epoch) => return Ok((pid, epoch)),
                EndPlanV2::Prepare(next) => {
                    let answer = tv2::answer_of(&next);
                    (next, answer)
                }
            }
        } else {
            match state::end_txn(m, producer_id, producer_epoch, commit, now_ms())? {
                EndPlan::AlreadyDone => return Ok((-1, -1)),
                EndPlan::Prepare(next) => (next, (-1, -1)),
            }
        };
        self.persist(transactional_id, Some(&next)).await?;
        *current = Some(next.clone());
        drop(current);
        self.spawn_completion(next, epoch);
        Ok(answer)
    }

    /// Writes the markers of a Prepare* transaction, then its Complete*
    /// record. Stops quietly when this broker stops coordinating the id
    /// (the new coordinator completes it after loading).
    pub(super) fn spawn_completion(
        self: &Arc<Self>,
        prepared: TxnMetadata,
        coordinator_epoch: i32,
    ) {
        let coordinator = self.clone();
        tokio::spawn(async move {
            let id = prepared.transactional_id.clone();
            if super::markers::write_markers(&coordinator, &prepared, coordinator_epoch)
                .await
                .is_err()
            {
                return;
            }
            let entry = coordinator.entry(&id);
            let mut current = entry.lock().await;
            if current.as_ref() != Some(&prepared)
                || coordinator.serving(&id) != Ok(coordinator_epoch)
            {
                return;
            }
            let done = state::complete(&prepared, now_ms());
            match coordinator.persist(&id, Some(&done)).await {
                Ok(()) => {
                    if done.state == TxnState::CompleteCommit {
                        coordinator.metrics.commits.inc();
                    } else {
                        coordinator.metrics.aborts.inc();
                    }
                    *current = Some(done);
                }
                Err(e) => {
                    // Still prepared: the next load (or expiry check) retries.
                    tracing::warn!(transactional_id = %id, error = ?e, "completing a transaction failed");
                }
            }
        });
    }

    /// Whether this broker still serves `transactional_id` at `epoch`.
    pub(super) fn still_serving(&self, transactional_id: &str, epoch: i32) -> bool {
        self.serving(transactional_id) == Ok(epoch)
    }

    /// DescribeTransactions of one id.
    pub async fn describe(&self, transactional_id: &str) -> Result<TxnMetadata, ResponseError> {
        self.serving(transactional_id)?;
        let entry = lock(&self.entries).get(transactional_id).cloned();
        let Some(entry) = entry else {
            return Err(ResponseError::TransactionalIdNotFound);
        };
        let current = entry.lock().await;
        current
            .clone()
            .filter(|m| m.state != TxnState::Dead)
            .ok_or(ResponseError::TransactionalIdNotFound)
    }

    /// Every transaction this broker coordinates (ListTransactions).
    pub async fn list(&self) -> Vec<TxnMetadata> {
        let entries: Vec<(String, Entry)> = lock(&self.entries)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = Vec::new();
        for (id, entry) in entries {
            if self.serving(&id).is_err() {
                continue;
            }
            if let Some(m) = entry.lock().await.clone() {
                out.push(m);
            }
        }
        out
    }

    /// Aborts transactions open past their timeout (fencing their
    /// producers) and forgets idle transactional ids.
    pub async fn expire(self: &Arc<Self>) {
        let now = now_ms();
        let entries: Vec<(String, Entry)> = lock(&self.entries)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut open = 0;
        for (id, entry) in entries {
            let Ok(epoch) = self.serving(&id) else {
                continue;
            };
            let mut current = entry.lock().await;
            let Some(m) = current.clone() else { continue };
            if m.state == TxnState::Ongoing {
                open += 1;
            }
            if let Some(abort) = state::expire(&m, now) {
                tracing::info!(transactional_id = %id, "aborting a transaction open past its timeout");
                if self.persist(&id, Some(&abort)).await.is_ok() {
                    *current = Some(abort.clone());
                    self.metrics.expired.inc();
                    self.spawn_completion(abort, epoch);
                }
                continue;
            }
            if m.state.is_preparing() && now - m.update_ms > 30_000 {
                // A completion that failed: try again.
                self.spawn_completion(m, epoch);
                continue;
            }
            let idle = matches!(
                m.state,
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            ) && now - m.update_ms > self.config.id_expiration_ms;
            if idle && self.persist(&id, None).await.is_ok() {
                *current = None;
                drop(current);
                lock(&self.entries).remove(&id);
            }
        }
        self.metrics.open.set(open);
    }

    fn spawn_create_topic(&self) {
        tokio::spawn(create_topic(
            self.cluster.clone(),
            self.creating.clone(),
            self.config.clone(),
        ));
    }

    /// Creates `__transaction_state` if it does not exist (first use) and
    /// waits for it, bounded; FindCoordinator does this so that its first
    /// answer already names a coordinator.
    pub async fn ensure_topic(&self) {
        if self.cluster.broker().topic(TRANSACTION_TOPIC).is_none() {
            create_topic(
                self.cluster.clone(),
                self.creating.clone(),
                self.config.clone(),
            )
            .await;
        }
    }
}

/// Creates `__transaction_state` with its replication factor capped at the
/// live brokers; one creation at a time (`creating`), a lost race is fine.
async fn create_topic(cluster: Arc<Cluster>, creating: Arc<AtomicBool>, config: TransactionConfig) {
    if creating.swap(true, Ordering::AcqRel) {
        return;
    }
    let broker = cluster.broker();
    let live = cluster.image().live_brokers().count() as i16;
    let replication_factor = config.replication_factor.min(live.max(1));
    let new = NewTopic {
        name: TRANSACTION_TOPIC.to_string(),
        partitions: config.partitions,
        replication_factor,
        assignments: None,
        configs: [
            ("cleanup.policy", "compact".to_string()),
            ("segment.bytes", config.segment_bytes.to_string()),
            (
                "min.insync.replicas",
                config.min_isr.min(replication_factor).to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    };
    if let Err(e) = cluster.create_topic(broker, new, false).await {
        if e.code != ResponseError::TopicAlreadyExists {
            tracing::warn!(error = %e.message, "creating __transaction_state failed");
        }
    }
    creating.store(false, Ordering::Release);
}
