//! The async shell around [`Group`]: the table of groups, the JoinGroup and
//! SyncGroup answers parked until a rebalance step completes (oneshot
//! channels), one timer task for every group's deadlines, loading of the
//! `__consumer_offsets` partitions this broker leads, offset expiry, and
//! the group metrics.
//!
//! Its ports are given at construction: the cluster (the applied image,
//! topic admin, and through it the registry of hosted partitions); no call
//! passes the broker in.
//!
//! Each group sits behind its own mutex, held only for the pure transition
//! and the (synchronous) append of its records, so records of one group are
//! appended in the order its transitions happened. Waiting for the fsync and
//! delivering answers happen after the lock is released.
//!
//! This file holds the coordinator's settings and tables; the rest is split
//! by job:
//!
//! - `ownership`: which `__consumer_offsets` partitions this broker
//!   serves, creating the topic, loading it at start and unloading at stop.
//! - `outbox`: turning a transition's effects into records, timers and
//!   answers delivered once the group's lock is released.
//! - `protocol`: JoinGroup, SyncGroup, Heartbeat and LeaveGroup.
//! - `offsets`: OffsetCommit, OffsetFetch and OffsetDelete.
//! - `admin`: ListGroups, DescribeGroups and DeleteGroups.
//! - `background`: the background task: timers, offset expiry, metrics.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::{oneshot, Notify};

use super::{
    partition_for,
    state::{Group, GroupConfig, JoinResult, SyncResult},
    OFFSETS_TOPIC,
};
use crate::{broker::now_ms, metrics::GroupMetrics};

mod admin;
mod background;
mod offsets;
mod outbox;
mod ownership;
mod protocol;
mod txn_offsets;

pub use admin::GroupSummary;
pub use background::run;
pub use offsets::{CommitPartition, FetchedTopics};
use ownership::Ownership;

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

impl Slot {
    /// A group with nothing parked and no timer yet, ready for the table.
    fn shared(group: Group) -> SlotRef {
        Arc::new(Mutex::new(Slot {
            group,
            joins: HashMap::new(),
            syncs: HashMap::new(),
            deadline: None,
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Transitions are pure and leave the group consistent between calls.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
/// The group coordinator of this broker.
pub struct Coordinator {
    config: CoordinatorConfig,
    /// Groups by id; a group leaves the table when it becomes Dead.
    groups: Mutex<BTreeMap<String, SlotRef>>,
    /// Per `__consumer_offsets` partition; `None` until loading has started.
    owned: Mutex<Option<Vec<Ownership>>>,
    /// A cluster-wide creation of `__consumer_offsets` is under way.
    creating: Arc<std::sync::atomic::AtomicBool>,
    /// Every group's next deadline, for the timer task.
    timers: Mutex<BTreeSet<(i64, String)>>,
    /// Wakes the timer task when a deadline moves earlier.
    wake: Notify,
    metrics: GroupMetrics,
    /// The metadata image (who leads `__consumer_offsets`) and topic admin.
    cluster: Arc<crate::cluster::Cluster>,
    /// Offsets committed in open transactions, by producer id: written to
    /// `__consumer_offsets` but visible only once the COMMIT marker lands.
    pending: Mutex<txn_offsets::Pending>,
}

impl Coordinator {
    /// A coordinator that answers COORDINATOR_LOAD_IN_PROGRESS until [`run`]
    /// loads the `__consumer_offsets` partitions this broker leads.
    pub fn new(
        config: CoordinatorConfig,
        metrics: GroupMetrics,
        cluster: Arc<crate::cluster::Cluster>,
    ) -> Self {
        Coordinator {
            cluster,
            config,
            groups: Mutex::new(BTreeMap::new()),
            owned: Mutex::new(None),
            creating: Arc::default(),
            timers: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
            metrics,
            pending: Mutex::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// Partitions of `__consumer_offsets` (the existing topic's, or the configured count).
    pub fn partition_count(&self) -> i32 {
        let broker = self.cluster.broker();
        broker
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partition_count())
            .unwrap_or(self.config.offsets_partitions)
    }

    /// The `__consumer_offsets` partition of a group.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        let _broker = self.cluster.broker();
        partition_for(group_id, self.partition_count())
    }

    fn slot(&self, group_id: &str, create: bool) -> Option<SlotRef> {
        let mut groups = lock(&self.groups);
        if let Some(s) = groups.get(group_id) {
            return Some(s.clone());
        }
        if !create {
            return None;
        }
        let slot = Slot::shared(Group::new(group_id, now_ms()));
        groups.insert(group_id.to_string(), slot.clone());
        Some(slot)
    }
}
