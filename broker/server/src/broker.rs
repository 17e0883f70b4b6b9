//! The broker's shared state: the topics and partitions hosted here (as
//! the metadata image assigns them), producer-id allocation, and the
//! signal that wakes parked fetches on metadata changes.
//!
//! Every connection task holds an `Arc<Broker>`. Topics are changed only
//! through the controller quorum (see `cluster::admin`); the applier turns
//! each new image into hosted state here. `meta.json` keeps the producer-id
//! block (and, once, the topics of a pre-cluster standalone data directory).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    config::BrokerConfig,
    meta_store::{self, Meta, MetaError},
    metrics::{Metrics, TopicMetrics},
    partition::Partition,
    topic_config::{self, TopicConfig},
};

/// An error answered to a client: a Kafka error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The Kafka error.
    pub code: ResponseError,
    /// Text for clients that show `error_message`.
    pub message: String,
}

impl ApiError {
    /// An error with a message.
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

pub use crate::lease::LeaderLease;

/// A topic hosted by this broker.
pub struct Topic {
    /// The topic name.
    pub name: String,
    /// The topic id (Metadata v10+, Fetch v13+).
    pub id: Uuid,
    /// Replication factor requested at creation.
    pub replication_factor: i16,
    /// The partitions hosted here (those this broker is a replica of), by
    /// index.
    partitions: RwLock<BTreeMap<i32, Arc<Partition>>>,
    /// The topic's partition count (hosted here or not); only ever grows.
    count: std::sync::atomic::AtomicI32,
    /// The user's overrides and the effective config built from them.
    config: RwLock<(BTreeMap<String, String>, TopicConfig)>,
    /// Metric handles, resolved once.
    pub metrics: TopicMetrics,
    /// The broker's leader lease: without it, nothing is led here.
    lease: LeaderLease,
}

impl Topic {
    fn new(
        name: &str,
        id: Uuid,
        replication_factor: i16,
        partitions: Vec<Arc<Partition>>,
        config: (BTreeMap<String, String>, TopicConfig),
        metrics: TopicMetrics,
        lease: LeaderLease,
    ) -> Topic {
        Topic {
            name: name.to_string(),
            id,
            replication_factor,
            count: std::sync::atomic::AtomicI32::new(partitions.len() as i32),
            partitions: RwLock::new(partitions.into_iter().map(|p| (p.index, p)).collect()),
            config: RwLock::new(config),
            metrics,
            lease,
        }
    }

    /// Partition `index`, if it is hosted here.
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&index)
            .cloned()
    }

    /// The one serve-or-refuse check for client requests on partition
    /// `index`: the partition if this broker leads it (at the client's
    /// `current_leader_epoch`, -1 when it does not say), else the error
    /// Kafka answers. "Exists in the cluster" is the topic's partition
    /// count from the metadata image, never "hosted here": a partition that
    /// exists but is led (or hosted) elsewhere is NOT_LEADER_OR_FOLLOWER,
    /// which clients retry after refreshing metadata. So is one led here
    /// while the broker's leader lease has run out: the quorum may have
    /// moved it already.
    pub fn leader_partition(
        &self,
        index: i32,
        current_leader_epoch: i32,
    ) -> Result<Arc<Partition>, ResponseError> {
        let Some(partition) = self.partition(index) else {
            return Err(if self.has_partition(index) {
                ResponseError::NotLeaderOrFollower
            } else {
                ResponseError::UnknownTopicOrPartition
            });
        };
        {
            let replica = partition.replica();
            if !replica.is_leader() || !self.lease.held() {
                return Err(ResponseError::NotLeaderOrFollower);
            }
            if current_leader_epoch >= 0 && current_leader_epoch < replica.leader_epoch {
                return Err(ResponseError::FencedLeaderEpoch);
            }
            if current_leader_epoch > replica.leader_epoch {
                return Err(ResponseError::UnknownLeaderEpoch);
            }
        }
        Ok(partition)
    }

    /// Whether partition `index` exists in the cluster (wherever its
    /// replicas are).
    pub fn has_partition(&self, index: i32) -> bool {
        (0..self.partition_count()).contains(&index)
    }

    /// The partitions hosted here.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Number of partitions of the topic.
    pub fn partition_count(&self) -> i32 {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sets the partition count (cluster metadata).
    pub(crate) fn set_partition_count(&self, count: i32) {
        self.count
            .fetch_max(count, std::sync::atomic::Ordering::AcqRel);
    }

    /// Hosts `partition` here.
    pub(crate) fn insert_partition(&self, partition: Arc<Partition>) {
        self.set_partition_count(partition.index + 1);
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition.index, partition);
    }

    /// Stops hosting partition `index`, returning it.
    pub(crate) fn remove_partition(&self, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&index)
    }

    /// Takes every hosted partition out (deletion, shutdown).
    fn take_partitions(&self) -> Vec<Arc<Partition>> {
        std::mem::take(&mut *self.partitions.write().unwrap_or_else(|e| e.into_inner()))
            .into_values()
            .collect()
    }

    /// Sets the overrides and effective config, applying it to every log.
    pub(crate) fn set_config(&self, overrides: BTreeMap<String, String>, effective: TopicConfig) {
        for partition in self.partitions() {
            partition.write_log().set_config(effective.log_config());
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = (overrides, effective);
    }

    /// `min.insync.replicas` for a partition with `replicas` replicas (see
    /// [`topic_config::effective_min_insync`]).
    pub fn min_insync_replicas(&self, replicas: usize) -> i64 {
        let config = self.config.read().unwrap_or_else(|e| e.into_inner());
        topic_config::effective_min_insync(&config.1, &config.0, replicas)
    }

    /// The effective config.
    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// The overrides the user set.
    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

/// The broker.
pub struct Broker {
    /// Its configuration.
    pub config: BrokerConfig,
    /// Metric families.
    pub metrics: Metrics,
    /// Client quota rates, judged on every answered request.
    pub quotas: crate::quota::QuotaManager,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// The persisted metadata; its lock also serializes topic changes.
    meta: Mutex<Meta>,
    /// Next producer id to hand out.
    next_producer_id: Mutex<i64>,
    /// Bumped on every append so long-polling fetches re-check.
    data_version: watch::Sender<u64>,
    /// Set when shutdown starts, so parked fetches answer at once instead
    /// of holding their connection until max_wait.
    stopping: std::sync::atomic::AtomicBool,
    /// What each listener advertises, by listener name (set once bound).
    bound: Mutex<BTreeMap<String, (String, u16)>>,
    /// High watermarks read from the checkpoint at start, handed to each
    /// replica as the metadata image opens it.
    restored_hws: Mutex<crate::hw_checkpoint::HighWatermarks>,
    /// Serializes checkpoint writes (the periodic task and shutdown).
    checkpoint_lock: Mutex<()>,
    /// Whether this broker may lead now; installed by the cluster
    /// membership, shared with every topic.
    pub lease: LeaderLease,
    /// The health of `log.dirs`, shared by every hosted partition.
    pub log_dir: Arc<crate::log_dir::LogDirHealth>,
}

/// Producer ids are reserved on disk this many at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Opening the broker's data directory failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `meta.json` could not be loaded.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A partition's log could not be opened.
    #[error("open partition {topic}-{partition}: {source}")]
    Partition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The cause.
        #[source]
        source: rivulet_storage::StorageError,
    },
    /// A persisted topic config is no longer valid.
    #[error("topic {topic}: {source}")]
    TopicConfig {
        /// The topic.
        topic: String,
        /// The cause.
        #[source]
        source: topic_config::TopicConfigError,
    },
}

/// Milliseconds since the Unix epoch, by the broker's clock: the wall clock
/// at start advanced monotonically, so a stepped system clock does not move
/// retention, sessions or timeouts (see [`crate::clock`]).
pub fn now_ms() -> i64 {
    crate::clock::now_ms()
}

/// Kafka's rule for topic names.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("topic name `{name}` {why}"),
        ))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name == "." || name == ".." {
        return bad("is not allowed");
    }
    if name.len() > 249 {
        return bad("is longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("may only contain ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl Broker {
    /// Loads `meta.json` (the producer-id block, and the topics a
    /// standalone broker of an earlier version kept there, see
    /// [`Self::legacy_topics`]) and the high watermark checkpoint.
    /// Partitions are opened as the metadata image assigns them.
    /// `metrics` are built by the caller, which knows the APIs served.
    pub fn open(config: BrokerConfig, metrics: Metrics) -> Result<Arc<Self>, OpenError> {
        let meta = meta_store::load_or_create(&config.data_dir, config.node_id)?;
        let restored_hws = crate::hw_checkpoint::read(&config.data_dir);
        let next_pid = meta.producer_id_block_end;
        let quotas = crate::quota::QuotaManager::new(config.quota_window, metrics.quotas.clone());
        let log_dir = Arc::new(crate::log_dir::LogDirHealth::new(
            &config.data_dir,
            metrics.series.offline_log_dirs.clone(),
        ));
        let broker = Broker {
            config,
            metrics,
            quotas,
            topics: RwLock::new(BTreeMap::new()),
            meta: Mutex::new(meta),
            next_producer_id: Mutex::new(next_pid),
            data_version: watch::channel(0).0,
            stopping: std::sync::atomic::AtomicBool::new(false),
            bound: Mutex::new(BTreeMap::new()),
            restored_hws: Mutex::new(restored_hws),
            checkpoint_lock: Mutex::new(()),
            lease: LeaderLease::default(),
            log_dir,
        };
        broker.refresh_partition_gauges();
        Ok(Arc::new(broker))
    }

    /// Records what listener `name` advertises, once it is bound.
    pub fn set_bound(&self, name: &str, endpoint: (String, u16)) {
        self.bound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), endpoint);
    }

    /// Host and port advertised to clients of `listener` (the first
    /// listener's when the name is unknown).
    pub fn advertised(&self, listener: &str) -> (String, u16) {
        let bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(endpoint) = bound.get(listener) {
            return endpoint.clone();
        }
        let first = &self.config.listeners[0];
        bound
            .get(&first.name)
            .cloned()
            .unwrap_or_else(|| first.advertised_endpoint(first.addr))
    }

    /// The local object of a topic the metadata log knows, created (with
    /// no partitions hosted yet) if needed; its config follows `overrides`.
    pub(crate) fn host_topic(
        &self,
        name: &str,
        id: Uuid,
        overrides: &BTreeMap<String, String>,
        replication_factor: i16,
        partition_count: i32,
    ) -> Arc<Topic> {
        let effective = match self.config.topic_defaults.with_overrides(overrides) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(topic = name, error = %e, "topic config not usable here; defaults apply");
                self.config.topic_defaults.clone()
            }
        };
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if let Some(topic) = topics.get(name).filter(|t| t.id == id) {
            topic.set_partition_count(partition_count);
            if topic.overrides() != *overrides {
                topic.set_config(overrides.clone(), effective);
            }
            return topic.clone();
        }
        let topic = Arc::new(Topic::new(
            name,
            id,
            replication_factor,
            Vec::new(),
            (overrides.clone(), effective),
            self.metrics.topic(name),
            self.lease.clone(),
        ));
        topic.set_partition_count(partition_count);
        topics.insert(name.to_string(), topic.clone());
        topic
    }

    /// Opens (recovering) this broker's replica of `topic`'s partition
    /// `index`. A directory left by an earlier topic of the same name (its
    /// id file differs) is wiped first.
    pub(crate) fn open_replica(
        &self,
        topic: &Topic,
        index: i32,
    ) -> Result<Arc<Partition>, rivulet_storage::StorageError> {
        let dir = partition_dir(&self.config.data_dir, &topic.name, index);
        let id_file = dir.join("partition.metadata");
        let expected = format!("version: 0\ntopic_id: {}\n", topic.id);
        match std::fs::read_to_string(&id_file) {
            Ok(found) if found == expected => {}
            Ok(_) => {
                tracing::info!(dir = %dir.display(), "removing data of an earlier topic with this name");
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(_) => {}
        }
        let partition = Partition::open(
            index,
            &dir,
            topic.config().log_config(),
            self.metrics.partition(&topic.name, index),
            self.log_dir.clone(),
        )?;
        let restored = self
            .restored_hws
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(topic.name.clone(), index));
        if let Some(hw) = restored {
            partition.restore_hw(hw);
        }
        let written = std::fs::write(&id_file, expected).map_err(|source| {
            rivulet_storage::StorageError::Checkpoint {
                path: id_file.clone(),
                source,
            }
        });
        self.log_dir.observe(written)?;
        // The caller refreshes the gauges once for all it opened.
        let partition = Arc::new(partition);
        topic.insert_partition(partition.clone());
        Ok(partition)
    }

    /// Forgets a topic the metadata log deleted, removing its data.
    pub(crate) fn forget_topic(&self, name: &str) {
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(topic) = topic {
            let count = topic.partition_count();
            for partition in topic.take_partitions() {
                self.delete_partition_data(name, partition);
            }
            self.metrics.remove_topic(name, count);
            self.refresh_partition_gauges();
            tracing::info!(topic = name, "deleted topic");
        }
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A receiver that changes whenever data is appended anywhere.
    pub fn subscribe_data(&self) -> watch::Receiver<u64> {
        self.data_version.subscribe()
    }

    /// Marks the broker as stopping and wakes every parked fetch and every
    /// acks=all request waiting for replication.
    pub fn begin_shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.notify_data();
        self.each_partition(|_, partition| partition.abandon_leadership());
    }

    /// Whether shutdown has started.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Writes every replica's high watermark to the checkpoint file.
    pub fn checkpoint_hws(&self) {
        if self.log_dir.is_offline() {
            return;
        }
        let _one_writer = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut hws = crate::hw_checkpoint::HighWatermarks::new();
        for topic in self.topics() {
            for partition in topic.partitions() {
                hws.insert(
                    (topic.name.clone(), partition.index),
                    partition.high_watermark(),
                );
            }
        }
        if let Err(e) = crate::hw_checkpoint::write(&self.config.data_dir, &hws) {
            tracing::warn!(error = %e, "writing the high watermark checkpoint failed");
        }
    }

    /// Wakes long-polling fetches after an append.
    pub fn notify_data(&self) {
        self.data_version.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) fn refresh_partition_gauges(&self) {
        let mut hosted = 0i64;
        let mut leading = 0i64;
        let mut under_replicated = 0i64;
        let mut under_min_isr = 0i64;
        for topic in self.topics() {
            for partition in topic.partitions() {
                hosted += 1;
                let replica = partition.replica();
                let min_isr = topic.min_insync_replicas(replica.replicas.len());
                if replica.is_leader() {
                    leading += 1;
                    if replica.role == crate::partition::Role::Leader {
                        if replica.isr.len() < replica.replicas.len() {
                            under_replicated += 1;
                        }
                        if (replica.isr.len() as i64) < min_isr {
                            under_min_isr += 1;
                        }
                    }
                }
            }
        }
        self.metrics.partition_count.set(hosted);
        self.metrics.leader_count.set(leading);
        self.metrics.under_replicated.set(under_replicated);
        self.metrics.under_min_isr.set(under_min_isr);
    }

    /// Deletes a partition's files; if a request still holds it, its
    /// directory is removed under it and the open handles die with the
    /// last reference.
    pub(crate) fn delete_partition_data(&self, topic: &str, partition: Arc<Partition>) {
        // Requests still waiting on it (acks=all) end now.
        partition.become_follower(None, -1, -1, &[], &[]);
        let dir = partition_dir(&self.config.data_dir, topic, partition.index);
        match Arc::try_unwrap(partition) {
            Ok(partition) => {
                if let Err(e) = partition.delete() {
                    tracing::warn!(topic, error = %e, "deleting partition data");
                }
            }
            Err(_) => {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    /// Topics that a standalone broker of an earlier version kept in
    /// `meta.json`: imported into the metadata log at the first start of
    /// this version, with their ids, so their data is kept.
    pub fn legacy_topics(&self) -> BTreeMap<String, meta_store::TopicRecord> {
        self.meta
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .topics
            .clone()
    }

    /// Drops the imported legacy topics from `meta.json`.
    pub fn forget_legacy_topics(&self) -> Result<(), ApiError> {
        let mut meta = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        let mut updated = meta.clone();
        updated.topics.clear();
        self.persist(&updated)?;
        *meta = updated;
        Ok(())
    }

    fn persist(&self, meta: &Meta) -> Result<(), ApiError> {
        meta_store::save(&self.config.data_dir, meta)
            .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e.to_string()))
    }

    /// Hands out a fresh producer id, reserving a block on disk when needed
    /// so ids are never reused after a restart.
    pub fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        let mut next = self
            .next_producer_id
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut meta = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        if *next >= meta.producer_id_block_end {
            let mut updated = meta.clone();
            updated.producer_id_block_end = *next + PRODUCER_ID_BLOCK;
            self.persist(&updated)?;
            *meta = updated;
        }
        let id = *next;
        *next += 1;
        // Each broker hands out ids from its own range, so no two brokers
        // of a cluster ever give out the same one.
        Ok((i64::from(self.config.node_id) << 40) | id)
    }

    /// Calls `f` for every hosted partition.
    fn each_partition(&self, mut f: impl FnMut(&Topic, &Partition)) {
        for topic in self.topics() {
            for partition in topic.partitions() {
                f(&topic, &partition);
            }
        }
    }

    /// Retention and segment rolling for every partition.
    pub fn housekeeping(&self) {
        let now = now_ms();
        let expiration = self.config.transactions.producer_id_expiration_ms;
        self.each_partition(
            |topic, partition| match partition.housekeeping(now, expiration) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    topic = %topic.name,
                    partition = partition.index,
                    segments = n,
                    "retention deleted segments"
                ),
                Err(e) => tracing::warn!(
                    topic = %topic.name,
                    partition = partition.index,
                    error = %e,
                    "retention failed"
                ),
            },
        );
    }

    /// Runs compaction where a compacted topic has enough dirty data.
    pub fn compaction(&self) {
        let now = now_ms();
        self.each_partition(|topic, partition| match partition.maybe_compact(now) {
            Ok(Some(stats)) => tracing::info!(
                topic = %topic.name,
                partition = partition.index,
                segments = stats.segments_cleaned,
                removed = stats.records_removed,
                bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_after,
                "compacted"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                topic = %topic.name,
                partition = partition.index,
                error = %e,
                "compaction failed"
            ),
        });
    }

    /// Applies each partition's `flush.ms` policy.
    pub fn timed_flush(&self) {
        let now = now_ms();
        self.each_partition(|topic, partition| {
            // Most topics flush by count or never: skip them without the write lock.
            if partition.read_log().config().flush_ms == u64::MAX {
                return;
            }
            if self.log_dir.is_offline() {
                return;
            }
            let flushed = partition.write_log().maybe_flush(now);
            if let Err(e) = self.log_dir.observe(flushed) {
                tracing::warn!(
                    topic = %topic.name,
                    partition = partition.index,
                    error = %e,
                    "flush failed"
                );
            }
        });
    }

    /// Flushes and closes every log (clean shutdown). Nothing is written
    /// once the log directory failed: the next start recovers from disk.
    pub fn close(&self) {
        if self.log_dir.is_offline() {
            return;
        }
        self.checkpoint_hws();
        let topics = std::mem::take(&mut *self.topics.write().unwrap_or_else(|e| e.into_inner()));
        for (name, topic) in topics {
            for partition in topic.take_partitions() {
                let result = match Arc::try_unwrap(partition) {
                    Ok(p) => p.close(),
                    Err(shared) => shared.write_log().flush(),
                };
                if let Err(e) = result {
                    tracing::warn!(topic = %name, error = %e, "closing partition");
                }
            }
        }
    }
}
