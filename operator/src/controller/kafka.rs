//! The operator's view of a Kafka cluster, behind a trait so reconcile
//! tests can stand in a fake cluster. [`WireAdmin`] is the real one: the
//! Kafka protocol through `rivulet-wire`, so it works against any
//! Kafka-compatible cluster, on a connection secured as the
//! [`AdminTarget`] says (mutual TLS on a secured cluster).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use futures::future::BoxFuture;
use rivulet_wire::{
    client::{
        Client, ClusterMetadata, OngoingReassignment, PartitionInfo, QuorumDescription,
        ReassignTarget, ReassignmentResult,
    },
    error::ClientError,
};
use uuid::Uuid;

pub use super::target::AdminTarget;

/// Kafka's ConfigSource for a topic-level override (DYNAMIC_TOPIC_CONFIG).
const SOURCE_TOPIC_OVERRIDE: i8 = 1;
/// UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC: i16 = 3;
/// The topic config that says how many replicas must be in sync.
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// How long one admin conversation may take, connection included.
pub(crate) const ADMIN_DEADLINE: Duration = Duration::from_secs(15);

/// What the brokers report about their cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster id.
    pub cluster_id: Option<String>,
    /// The active controller's node id, if known.
    pub controller: Option<i32>,
    /// Node ids of live brokers.
    pub brokers: Vec<i32>,
    /// Partitions whose in-sync replicas are fewer than their replicas.
    pub under_replicated: usize,
    /// Node ids named in any partition's replica list, registered or not
    /// (a broker that is gone can still be listed as a replica).
    pub replica_brokers: BTreeSet<i32>,
}

/// What one broker says about itself in Metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerView {
    /// `host:port` it advertises on the listener it was asked through.
    pub advertised: String,
    /// Its `broker.rack`.
    pub rack: Option<String>,
}

/// One partition's replicas as Metadata reports them. While a
/// reassignment runs, `replicas` holds the old and the new ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionReplicas {
    /// The leader's node id, -1 when there is none.
    pub leader: i32,
    /// Replica node ids in assignment order (the first is the preferred leader).
    pub replicas: Vec<i32>,
}

impl From<PartitionInfo> for PartitionReplicas {
    fn from(p: PartitionInfo) -> Self {
        PartitionReplicas {
            leader: p.leader,
            replicas: p.replicas,
        }
    }
}

/// Where every partition's replicas are: what reassignment plans start from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaAssignment {
    /// Node ids of registered brokers.
    pub brokers: Vec<i32>,
    /// Replicas by `(topic, partition)`, internal topics included.
    pub partitions: BTreeMap<(String, i32), PartitionReplicas>,
}

/// A topic as Kafka has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicState {
    /// The topic id.
    pub id: String,
    /// Partition count.
    pub partitions: i32,
    /// Replicas of partition 0.
    pub replication_factor: i32,
    /// Replicas of each partition, by index.
    pub replicas: BTreeMap<i32, PartitionReplicas>,
    /// Topic-level config overrides (not defaults).
    pub overrides: BTreeMap<String, String>,
}

impl TopicState {
    /// Whether every partition has exactly `replication_factor` replicas
    /// (a partition being reassigned has more, or fewer than the target).
    pub fn has_replication_factor(&self, replication_factor: i32) -> bool {
        self.replicas
            .values()
            .all(|p| p.replicas.len() == usize::try_from(replication_factor).unwrap_or(0))
    }
}

/// One partition's leader, replicas and in-sync replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// The leader's node id, -1 when there is none (the partition is offline).
    pub leader: i32,
    /// Replica node ids in assignment order.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// What one Metadata answer says about the whole cluster: all of it comes
/// from the same broker, so its cluster id vouches for every other field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// The cluster id the answering broker reports.
    pub cluster_id: Option<String>,
    /// The active controller's node id, if known.
    pub controller: Option<i32>,
    /// Node ids of registered brokers.
    pub brokers: Vec<i32>,
    /// Every partition by `(topic, partition)`, internal topics included;
    /// topics the broker could not describe are left out.
    pub partitions: BTreeMap<(String, i32), PartitionState>,
    /// `min.insync.replicas` of the topics that have a partition with
    /// fewer in-sync replicas than replicas, where it could be read (the
    /// others are fully in sync, so it does not matter).
    pub min_insync: BTreeMap<String, i32>,
}

impl ClusterSnapshot {
    /// Partitions whose in-sync replicas are fewer than their replicas.
    pub fn under_replicated(&self) -> usize {
        self.partitions
            .values()
            .filter(|p| p.isr.len() < p.replicas.len())
            .count()
    }

    /// Node ids named in any partition's replica list.
    pub fn replica_brokers(&self) -> BTreeSet<i32> {
        self.partitions
            .values()
            .flat_map(|p| p.replicas.iter().copied())
            .collect()
    }

    /// Where the replicas are, for the reassignment planners.
    pub fn assignment(&self) -> ReplicaAssignment {
        ReplicaAssignment {
            brokers: self.brokers.clone(),
            partitions: self
                .partitions
                .iter()
                .map(|(key, p)| {
                    let replicas = PartitionReplicas {
                        leader: p.leader,
                        replicas: p.replicas.clone(),
                    };
                    (key.clone(), replicas)
                })
                .collect(),
        }
    }
}

/// Kafka admin operations the controllers use.
pub trait KafkaAdmin: Send + Sync {
    /// Cluster id, controller, brokers and under-replicated partition count.
    fn cluster_info<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClientError>>;
    /// What broker `id`, reached at `address`, reports about itself; `None`
    /// when its Metadata does not list it.
    fn broker_view<'a>(
        &'a self,
        target: &'a AdminTarget,
        id: i32,
    ) -> BoxFuture<'a, Result<Option<BrokerView>, ClientError>>;
    /// The topic, or `None` if it does not exist.
    fn describe_topic<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicState>, ClientError>>;
    /// Creates a topic; returns its id.
    fn create_topic<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
        partitions: i32,
        replication_factor: i16,
        config: BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<String, ClientError>>;
    /// Grows a topic to `total` partitions.
    fn create_partitions<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Sets `set` and reverts `delete` to defaults.
    fn alter_topic_config<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Deletes a topic; a topic that does not exist is success.
    fn delete_topic<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Every partition's replicas, and the registered brokers.
    fn replica_assignment<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<ReplicaAssignment, ClientError>>;
    /// Starts reassignments (AlterPartitionReassignments); one result per
    /// target, in order, with its Kafka error code.
    fn reassign<'a>(
        &'a self,
        target: &'a AdminTarget,
        targets: Vec<ReassignTarget>,
    ) -> BoxFuture<'a, Result<Vec<ReassignmentResult>, ClientError>>;
    /// Reassignments in progress (ListPartitionReassignments), all topics.
    fn reassignments_in_progress<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<Vec<OngoingReassignment>, ClientError>>;
    /// The cluster id, brokers, controller and every partition's leader,
    /// replicas and in-sync replicas, from one Metadata answer.
    fn snapshot<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<ClusterSnapshot, ClientError>>;
    /// The cluster id broker `id`, reached at `address`, reports.
    fn broker_cluster_id<'a>(
        &'a self,
        target: &'a AdminTarget,
        id: i32,
    ) -> BoxFuture<'a, Result<Option<String>, ClientError>>;
    /// The controller quorum (DescribeQuorum).
    fn describe_quorum<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<QuorumDescription, ClientError>>;
    /// Makes the observer `id` with metadata directory `directory` a voter
    /// of the quorum of cluster `cluster_id` (AddRaftVoter).
    fn add_voter<'a>(
        &'a self,
        target: &'a AdminTarget,
        cluster_id: &'a str,
        id: i32,
        directory: Uuid,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Removes the voter `id` with metadata directory `directory` from the
    /// quorum of cluster `cluster_id` (RemoveRaftVoter).
    fn remove_voter<'a>(
        &'a self,
        target: &'a AdminTarget,
        cluster_id: &'a str,
        id: i32,
        directory: Uuid,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
}

/// [`KafkaAdmin`] over the Kafka protocol, a fresh connection per call:
/// reconciles are minutes apart and brokers come and go.
#[derive(Debug, Default, Clone, Copy)]
pub struct WireAdmin;

/// The `client.id` of the operator's connections.
const CLIENT_ID: &str = "rivulet-operator";

pub(crate) async fn connect(target: &AdminTarget) -> Result<Client, ClientError> {
    Client::connect_secure(&target.bootstrap, CLIENT_ID, target.security.clone()).await
}

/// `work`, or [`ClientError::Timeout`] after [`ADMIN_DEADLINE`].
pub(crate) async fn deadline<T>(
    work: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(ADMIN_DEADLINE, work)
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

impl KafkaAdmin for WireAdmin {
    fn cluster_info<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<ClusterInfo, ClientError>> {
        Box::pin(deadline(async move {
            let mut client = connect(target).await?;
            let metadata = client.metadata(None).await?;
            let under_replicated = metadata
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.isr.len() < p.replicas.len())
                .count();
            Ok(ClusterInfo {
                cluster_id: metadata.cluster_id,
                controller: (metadata.controller_id >= 0).then_some(metadata.controller_id),
                brokers: metadata.brokers.iter().map(|b| b.node_id).collect(),
                under_replicated,
                replica_brokers: metadata
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .flat_map(|p| p.replicas.iter().copied())
                    .collect(),
            })
        }))
    }

    fn broker_view<'a>(
        &'a self,
        target: &'a AdminTarget,
        id: i32,
    ) -> BoxFuture<'a, Result<Option<BrokerView>, ClientError>> {
        Box::pin(deadline(async move {
            // No topics: only the broker list, as seen on this listener.
            let metadata = connect(target).await?.metadata(Some(Vec::new())).await?;
            Ok(metadata
                .brokers
                .into_iter()
                .find(|b| b.node_id == id)
                .map(|b| BrokerView {
                    advertised: b.addr(),
                    rack: b.rack,
                }))
        }))
    }

    fn describe_topic<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicState>, ClientError>> {
        Box::pin(deadline(async move {
            let mut client = connect(target).await?;
            let metadata = client.metadata(Some(vec![topic.to_string()])).await?;
            let Some(info) = metadata.topics.into_iter().find(|t| t.name == topic) else {
                return Ok(None);
            };
            if info.error_code == UNKNOWN_TOPIC {
                return Ok(None);
            }
            ClientError::check(info.error_code, None)?;
            let overrides = client
                .describe_topic_configs(topic)
                .await?
                .into_iter()
                .filter(|(_, c)| c.source == SOURCE_TOPIC_OVERRIDE)
                .filter_map(|(k, c)| c.value.map(|v| (k, v)))
                .collect();
            Ok(Some(TopicState {
                id: info.topic_id.to_string(),
                partitions: i32::try_from(info.partitions.len()).unwrap_or(i32::MAX),
                replication_factor: info
                    .partitions
                    .first()
                    .map_or(0, |p| i32::try_from(p.replicas.len()).unwrap_or(i32::MAX)),
                replicas: info
                    .partitions
                    .into_iter()
                    .map(|p| (p.partition, p.into()))
                    .collect(),
                overrides,
            }))
        }))
    }

    fn create_topic<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
        partitions: i32,
        replication_factor: i16,
        config: BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<String, ClientError>> {
        Box::pin(deadline(async move {
            let mut client = connect(target).await?;
            let id = client
                .create_topics(topic, partitions, replication_factor, config)
                .await?;
            Ok(id.to_string())
        }))
    }

    fn create_partitions<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            connect(target).await?.create_partitions(topic, total).await
        }))
    }

    fn alter_topic_config<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            connect(target)
                .await?
                .incremental_alter_topic_configs(topic, set, delete)
                .await
        }))
    }

    fn delete_topic<'a>(
        &'a self,
        target: &'a AdminTarget,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            match connect(target).await?.delete_topics(&[topic]).await {
                Err(e) if e.kafka_code() == Some(UNKNOWN_TOPIC) => Ok(()),
                other => other,
            }
        }))
    }

    fn replica_assignment<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<ReplicaAssignment, ClientError>> {
        Box::pin(deadline(async move {
            let metadata = connect(target).await?.metadata(None).await?;
            Ok(assignment_of(metadata))
        }))
    }

    fn reassign<'a>(
        &'a self,
        target: &'a AdminTarget,
        targets: Vec<ReassignTarget>,
    ) -> BoxFuture<'a, Result<Vec<ReassignmentResult>, ClientError>> {
        Box::pin(deadline(async move {
            connect(target)
                .await?
                .alter_partition_reassignments(targets)
                .await
        }))
    }

    fn reassignments_in_progress<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<Vec<OngoingReassignment>, ClientError>> {
        Box::pin(deadline(async move {
            connect(target)
                .await?
                .list_partition_reassignments(None)
                .await
        }))
    }

    fn snapshot<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<ClusterSnapshot, ClientError>> {
        Box::pin(deadline(async move {
            let mut client = connect(target).await?;
            let mut snapshot = snapshot_of(client.metadata(None).await?);
            let lagging: BTreeSet<String> = snapshot
                .partitions
                .iter()
                .filter(|(_, p)| p.isr.len() < p.replicas.len())
                .map(|((topic, _), _)| topic.clone())
                .collect();
            for topic in lagging {
                // Unreadable: the health check falls back to min(2, RF).
                match client.describe_topic_configs(&topic).await {
                    Ok(configs) => {
                        if let Some(min) = configs
                            .get(MIN_INSYNC_REPLICAS)
                            .and_then(|c| c.value.as_deref())
                            .and_then(|v| v.parse().ok())
                        {
                            snapshot.min_insync.insert(topic, min);
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%topic, %error, "cannot read min.insync.replicas");
                    }
                }
            }
            Ok(snapshot)
        }))
    }

    fn broker_cluster_id<'a>(
        &'a self,
        target: &'a AdminTarget,
        _: i32,
    ) -> BoxFuture<'a, Result<Option<String>, ClientError>> {
        Box::pin(deadline(async move {
            // Metadata of no topics: answered by this broker itself.
            let metadata = connect(target).await?.metadata(Some(Vec::new())).await?;
            Ok(metadata.cluster_id)
        }))
    }

    fn describe_quorum<'a>(
        &'a self,
        target: &'a AdminTarget,
    ) -> BoxFuture<'a, Result<QuorumDescription, ClientError>> {
        Box::pin(deadline(async move {
            connect(target).await?.describe_quorum().await
        }))
    }

    fn add_voter<'a>(
        &'a self,
        target: &'a AdminTarget,
        cluster_id: &'a str,
        id: i32,
        directory: Uuid,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            connect(target)
                .await?
                .add_raft_voter(cluster_id, id, directory)
                .await
        }))
    }

    fn remove_voter<'a>(
        &'a self,
        target: &'a AdminTarget,
        cluster_id: &'a str,
        id: i32,
        directory: Uuid,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            connect(target)
                .await?
                .remove_raft_voter(cluster_id, id, directory)
                .await
        }))
    }
}

/// The snapshot in a Metadata answer; topics the broker could not
/// describe (an error code) are left out.
fn snapshot_of(metadata: ClusterMetadata) -> ClusterSnapshot {
    ClusterSnapshot {
        cluster_id: metadata.cluster_id,
        controller: (metadata.controller_id >= 0).then_some(metadata.controller_id),
        brokers: metadata.brokers.iter().map(|b| b.node_id).collect(),
        partitions: metadata
            .topics
            .into_iter()
            .filter(|t| t.error_code == 0)
            .flat_map(|t| {
                let name = t.name;
                t.partitions.into_iter().map(move |p| {
                    let state = PartitionState {
                        leader: p.leader,
                        replicas: p.replicas,
                        isr: p.isr,
                    };
                    ((name.clone(), p.partition), state)
                })
            })
            .collect(),
        min_insync: BTreeMap::new(),
    }
}

/// The replica assignment in a Metadata answer; topics the broker could
/// not describe (an error code) are left out.
fn assignment_of(metadata: ClusterMetadata) -> ReplicaAssignment {
    ReplicaAssignment {
        brokers: metadata.brokers.iter().map(|b| b.node_id).collect(),
        partitions: metadata
            .topics
            .into_iter()
            .filter(|t| t.error_code == 0)
            .flat_map(|t| {
                let name = t.name;
                t.partitions
                    .into_iter()
                    .map(move |p| ((name.clone(), p.partition), p.into()))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use rivulet_wire::client::{BrokerInfo, TopicInfo};

    use super::*;

    fn partition(index: i32, leader: i32, replicas: &[i32]) -> PartitionInfo {
        PartitionInfo {
            partition: index,
            error_code: 0,
            leader,
            leader_epoch: 1,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            offline_replicas: vec![],
        }
    }

    fn topic(name: &str, error_code: i16, partitions: Vec<PartitionInfo>) -> TopicInfo {
        TopicInfo {
            name: name.into(),
            topic_id: Default::default(),
            error_code,
            is_internal: name.starts_with("__"),
            partitions,
        }
    }

    #[test]
    fn assignment_covers_every_described_partition() {
        let broker = |id| BrokerInfo {
            node_id: id,
            host: "h".into(),
            port: 9092,
            rack: None,
        };
        let metadata = ClusterMetadata {
            cluster_id: None,
            controller_id: 0,
            brokers: vec![broker(0), broker(2)],
            topics: vec![
                topic(
                    "orders",
                    0,
                    vec![partition(0, 2, &[2, 0]), partition(1, -1, &[0])],
                ),
                topic("__consumer_offsets", 0, vec![partition(0, 0, &[0])]),
                topic("broken", 5, vec![partition(0, -1, &[1])]),
            ],
        };
        let a = assignment_of(metadata);
        assert_eq!(a.brokers, [0, 2]);
        assert_eq!(
            a.partitions.keys().cloned().collect::<Vec<_>>(),
            [
                ("__consumer_offsets".to_string(), 0),
                ("orders".to_string(), 0),
                ("orders".to_string(), 1),
            ]
        );
        assert_eq!(
            a.partitions[&("orders".to_string(), 0)],
            PartitionReplicas {
                leader: 2,
                replicas: vec![2, 0]
            }
        );
    }

    #[test]
    fn snapshot_keeps_isr_and_vouches_with_one_cluster_id() {
        let mut lagging = partition(0, 1, &[1, 2]);
        lagging.isr = vec![1];
        let metadata = ClusterMetadata {
            cluster_id: Some("MkU3OEVBNTcwNTJENDM2Qk".into()),
            controller_id: -1,
            brokers: vec![],
            topics: vec![
                topic("orders", 0, vec![lagging, partition(1, -1, &[2])]),
                topic("broken", 5, vec![partition(0, -1, &[1])]),
            ],
        };
        let s = snapshot_of(metadata);
        assert_eq!(s.cluster_id.as_deref(), Some("MkU3OEVBNTcwNTJENDM2Qk"));
        assert_eq!(s.controller, None);
        assert_eq!(s.partitions.len(), 2, "the broken topic is left out");
        assert_eq!(s.partitions[&("orders".to_string(), 0)].isr, [1]);
        assert_eq!(s.under_replicated(), 1);
        assert_eq!(s.replica_brokers(), BTreeSet::from([1, 2]));
        assert_eq!(
            s.assignment().partitions[&("orders".to_string(), 1)],
            PartitionReplicas {
                leader: -1,
                replicas: vec![2]
            }
        );
    }

    #[test]
    fn replication_factor_is_checked_on_every_partition() {
        let mut state = TopicState::default();
        state.replicas.insert(
            0,
            PartitionReplicas {
                leader: 0,
                replicas: vec![0, 1],
            },
        );
        state.replicas.insert(
            1,
            PartitionReplicas {
                leader: 1,
                replicas: vec![1],
            },
        );
        assert!(!state.has_replication_factor(2));
        assert!(!state.has_replication_factor(1));
        state.replicas.get_mut(&1).unwrap().replicas.push(2);
        assert!(state.has_replication_factor(2));
    }
}
