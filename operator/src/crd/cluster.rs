//! `KafkaCluster`: one Rivulet cluster (brokers, storage, listeners, quorum).
//!
//! Schema rules reject specs that can never work (no brokers, an even
//! quorum, operator-owned keys in `config`) at `kubectl apply` time, with
//! CEL messages; [`crate::validate`] repeats every rule so a cluster whose
//! CRD predates a rule still gets a clear status condition.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint},
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::listeners::{AuthorizationSpec, ListenersSpec, NetworkPoliciesSpec};

/// Broker config keys the operator sets itself; `spec.config` may not name them.
pub const OPERATOR_OWNED_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "process.roles",
    "controller.quorum.voters",
    "controller.listener.names",
    "broker.rack",
];

/// Annotation on a KafkaCluster that lets a rolling restart or a scale-in
/// go ahead although it would lose the only copy of some data (value
/// `"true"`). Each use is reported with a Warning Event.
pub const ALLOW_DATA_LOSS_ANNOTATION: &str = "rivulet.dev/allow-data-loss";

/// The desired state of a Rivulet cluster.
// Clippy reads the repeated `type_` of separate printcolumns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rivulet.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    plural = "kafkaclusters",
    shortname = "kc",
    category = "rivulet",
    namespaced,
    status = "KafkaClusterStatus",
    derive = "PartialEq",
    doc = "A Rivulet cluster: Kafka-compatible brokers run as a StatefulSet on persistent volumes, with Services, config, a PodDisruptionBudget and monitoring objects managed by the operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(
        name = "Brokers",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired number of brokers"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyBrokers",
        description = "Brokers that pass their readiness probe"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Reason of the Ready condition"
    ),
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".status.bootstrapServers",
        description = "Address for Kafka clients inside the cluster",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Number of brokers. Each broker is one pod of the StatefulSet with its
    /// own persistent volume; broker ids are the pod ordinals (0, 1, ...).
    /// `kubectl scale kafkacluster NAME --replicas N` changes this field.
    /// Lowering it first moves every partition replica and quorum voter
    /// off the leaving (highest-id) brokers, then shrinks the StatefulSet;
    /// a scale-in below some topic's replication factor is refused
    /// (condition `Degraded`, reason `ScaleInRefused`). Raising it spreads existing partitions
    /// onto the new brokers once they are ready (see `rebalanceOnScaleOut`).
    /// Minimum 1.
    #[x_kube(validation = Rule::new("self >= 1").message("replicas must be at least 1: a cluster needs a broker"))]
    pub replicas: i32,

    /// The most Raft controller quorum voters the cluster should have: 1,
    /// 3 (default) or 5. An even quorum tolerates no more failures than the
    /// odd one below it. The voter set follows the cluster: 1 voter while
    /// it has fewer than 3 brokers, 3 from 3 brokers, 5 from 5 brokers when
    /// this asks for 5 (never more than this). The operator adds caught-up
    /// brokers as voters one at a time (AddRaftVoter) as the cluster grows,
    /// moves voters off brokers before a scale-in removes them, and removes
    /// voters (RemoveRaftVoter) when fewer are wanted. `status.quorumVoters`
    /// is the count wanted now, `status.quorum` the voters there are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in [1, 3, 5]").message("quorumVoters must be 1, 3 or 5: an even number of voters adds no fault tolerance"))]
    pub quorum_voters: Option<i32>,

    /// Broker container image. Default: `rivulet/broker:` followed by the
    /// operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Image pull policy of the broker container: `Always`, `IfNotPresent`
    /// or `Never`. Default: Kubernetes' default for the image tag.
    // An `Option` of an enum shows the enum's doc in the schema, so the
    // enum's doc says the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Names of Secrets in this namespace used to pull the broker image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,

    /// Where brokers keep their logs.
    #[serde(default)]
    pub storage: StorageSpec,

    /// CPU and memory requests and limits of the broker container. Default:
    /// none (the namespace's defaults apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Broker configuration with Kafka's key names (for example
    /// `log.retention.hours: "168"`, `min.insync.replicas: "2"`); see
    /// docs/configuration.md for the keys Rivulet knows. Keys the operator
    /// sets itself (node.id, listeners, advertised.listeners, log.dirs,
    /// process.roles, controller.quorum.voters, controller.listener.names,
    /// broker.rack, broker.id) are refused. A change restarts the brokers one at a time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !(k in ['node.id', 'broker.id', 'listeners', 'advertised.listeners', 'log.dirs', 'process.roles', 'controller.quorum.voters', 'controller.listener.names', 'broker.rack']))").message("config may not set node.id, broker.id, listeners, advertised.listeners, log.dirs, process.roles, controller.quorum.voters, controller.listener.names or broker.rack: the operator sets them"))]
    pub config: BTreeMap<String, String>,

    /// How clients reach the brokers.
    #[serde(default)]
    pub listeners: ListenersSpec,

    /// ACLs: who may do what. Absent (default): no authorizer, every
    /// client may do everything, as in Kafka without
    /// `authorizer.class.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationSpec>,

    /// NetworkPolicies that let only the allowed pods reach the brokers.
    #[serde(default)]
    pub network_policies: NetworkPoliciesSpec,

    /// Rack awareness: spread brokers across the values of a node label
    /// (a zone, usually) and tell each broker its rack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,

    /// Where broker pods may run.
    #[serde(default)]
    pub scheduling: SchedulingSpec,

    /// Extra metadata and settings of the broker pods.
    #[serde(default)]
    pub pod: PodSpecOverrides,

    /// Prometheus metrics of the brokers.
    #[serde(default)]
    pub metrics: MetricsSpec,

    /// The PodDisruptionBudget that keeps voluntary disruptions (node drains)
    /// from taking down more than one broker at a time.
    #[serde(default)]
    pub pod_disruption_budget: PdbSpec,

    /// After a scale-out, once every broker is ready, move replicas of
    /// existing partitions from the most- to the least-loaded brokers
    /// (AlterPartitionReassignments, at most 64 partitions at a time)
    /// until no broker holds more than one replica more than another, so
    /// the new brokers share the existing load and leadership. Set to
    /// false to place existing partitions yourself; new brokers then get
    /// new partitions only. Default: true.
    #[serde(default = "default_true")]
    pub rebalance_on_scale_out: bool,

    /// The cluster CA: signs the brokers' certificates (with every DNS
    /// name clients use) and the operator's client certificate. Its
    /// certificates are in the Secret `<cluster>-cluster-ca-cert` (`ca.crt`,
    /// `ca.p12`, `ca.password`) for clients to trust.
    #[serde(default)]
    pub cluster_ca: super::CertificateAuthoritySpec,

    /// The clients CA: signs the certificates of KafkaUsers with
    /// `authentication.type: tls`; the brokers trust it for client
    /// certificates. Its certificates are in `<cluster>-clients-ca-cert`.
    #[serde(default)]
    pub clients_ca: super::CertificateAuthoritySpec,
}

/// Image pull policy of the broker container: `Always`, `IfNotPresent` or
/// `Never`. Default: Kubernetes' default for the image tag.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only if the node does not have the image.
    IfNotPresent,
    /// Never pull; the image must already be on the node.
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Broker storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// `PersistentClaim` (default): one PersistentVolumeClaim per broker,
    /// kept across pod restarts and rescheduling. `Ephemeral`: an emptyDir
    /// that is lost whenever a pod is deleted, so every restart (a config
    /// change's rolling restart included) is a disk loss: the operator
    /// restarts a broker only while every partition it holds has another
    /// in-sync replica and the controller quorum keeps a majority without
    /// it, which a single-broker cluster never has. For development only.
    #[serde(default, rename = "type")]
    pub kind: StorageKind,

    /// Size of each broker's volume, a Kubernetes quantity. Default `10Gi`.
    /// It may grow (the operator expands every claim, when the
    /// StorageClass allows volume expansion); it never shrinks (a smaller
    /// size is refused with a condition).
    #[serde(default = "default_storage_size")]
    pub size: String,

    /// StorageClass of the claims. Default: the cluster's default class.
    /// Cannot change once the cluster exists (StatefulSet claim templates
    /// are immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// What happens to a broker's claim when the cluster is scaled in:
    /// `Retain` (default) keeps it, so scaling out again reuses the data;
    /// `Delete` removes it.
    #[serde(default)]
    pub when_scaled: ClaimRetention,

    /// What happens to the claims when the KafkaCluster is deleted: `Retain`
    /// (default) keeps the data; `Delete` removes it with the cluster.
    #[serde(default)]
    pub when_deleted: ClaimRetention,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            kind: StorageKind::default(),
            size: default_storage_size(),
            storage_class_name: None,
            when_scaled: ClaimRetention::default(),
            when_deleted: ClaimRetention::default(),
        }
    }
}

fn default_storage_size() -> String {
    "10Gi".into()
}

/// Kind of broker storage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StorageKind {
    /// A PersistentVolumeClaim per broker.
    #[default]
    PersistentClaim,
    /// An emptyDir per pod: data is lost when the pod goes.
    Ephemeral,
}

/// Whether PersistentVolumeClaims outlive their brokers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClaimRetention {
    /// Keep the claim (and its data).
    #[default]
    Retain,
    /// Delete the claim.
    Delete,
}

impl ClaimRetention {
    /// The value of a StatefulSet's `persistentVolumeClaimRetentionPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimRetention::Retain => "Retain",
            ClaimRetention::Delete => "Delete",
        }
    }
}

/// Rack awareness.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// The node label whose value is a broker's rack (`broker.rack`), for
    /// example `topology.kubernetes.io/zone`. Brokers are spread evenly across
    /// its values. The operator reads the label of each broker's node once
    /// the pod is scheduled (it needs permission to `get` nodes) and writes
    /// it into that broker's config; a broker that started before its rack
    /// was known is restarted once, under the rolling-restart rules.
    pub topology_key: String,
}

/// Placement of broker pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Node and pod affinity of broker pods, as in a PodSpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Tolerations of broker pods, as in a PodSpec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Node labels a node must have to run brokers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Topology spread constraints. When empty, the operator spreads brokers
    /// across nodes (`kubernetes.io/hostname`, maxSkew 1) and, with rack
    /// awareness, across racks; any constraint given here replaces those defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// With the default spread: `true` refuses to schedule two brokers on
    /// one node (pods stay Pending instead); `false` (default) prefers
    /// different nodes but allows sharing, so one-node dev clusters work.
    #[serde(default)]
    pub require_separate_nodes: bool,
}

/// Broker pod settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecOverrides {
    /// Extra annotations of broker pods. Changing them restarts the brokers
    /// one at a time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Extra labels of broker pods. The operator's own labels
    /// (`app.kubernetes.io/*`, `rivulet.dev/*`) win over these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Seconds a broker gets to shut down cleanly (flush, hand over
    /// leadership) before it is killed. Default 120.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub termination_grace_period_seconds: Option<i64>,

    /// PriorityClass of broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// ServiceAccount of broker pods. Default: the namespace's `default`;
    /// brokers do not call the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// Broker metrics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Serve Prometheus metrics on port 9404 of every broker. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Which Prometheus operator object scrapes the brokers: `ServiceMonitor`
    /// (default), `PodMonitor`, or `None`. Created only when metrics are
    /// enabled and the Prometheus operator's CRDs are installed.
    #[serde(default)]
    pub monitor: MonitorKind,

    /// Extra labels of the ServiceMonitor or PodMonitor (for example the
    /// `release` label a Prometheus selects monitors by).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub monitor_labels: BTreeMap<String, String>,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            enabled: true,
            monitor: MonitorKind::default(),
            monitor_labels: BTreeMap::new(),
        }
    }
}

pub(super) fn default_true() -> bool {
    true
}

/// The Prometheus operator object that scrapes brokers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MonitorKind {
    /// A ServiceMonitor over the headless Service.
    #[default]
    ServiceMonitor,
    /// A PodMonitor over the broker pods.
    PodMonitor,
    /// No monitoring object.
    None,
}

/// The PodDisruptionBudget of the brokers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// Create the PodDisruptionBudget. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Brokers that may be voluntarily disrupted at once. Default 1.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 0))]
    pub max_unavailable: i32,
}

impl Default for PdbSpec {
    fn default() -> Self {
        PdbSpec {
            enabled: true,
            max_unavailable: default_max_unavailable(),
        }
    }
}

fn default_max_unavailable() -> i32 {
    1
}

/// The observed state of a Rivulet cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: every broker is ready, no roll is pending, the quorum has
    /// its voters and every partition has a leader and at least its
    /// `min.insync.replicas` in sync (the message counts them).
    /// `Progressing`: the operator is creating, scaling, draining (moving
    /// replicas off brokers before a scale-in), changing quorum voters or
    /// restarting brokers. `Degraded`, by reason: `InvalidSpec`,
    /// `BrokerNotReady` (a restarted broker did not come back),
    /// `ScaleInRefused`, `RestartWouldLoseData` (a restart or scale-in
    /// waits because it would lose the only copy of some data),
    /// `ClusterIdMismatch` (a broker belongs to another cluster),
    /// `BrokersUnreachable` (the brokers cannot be asked, or only some of
    /// them), `PartitionsOffline` or `UnderMinIsr`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Brokers the StatefulSet runs (the scale subresource's replicas).
    #[serde(default)]
    pub replicas: i32,

    /// Brokers that pass their readiness probe.
    #[serde(default)]
    pub ready_brokers: i32,

    /// Label selector of the broker pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,

    /// `host:port` for Kafka clients inside the Kubernetes cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,

    /// Per-broker external addresses (`host:port`), when an external
    /// listener is configured and the addresses are known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_addresses: Vec<String>,

    /// The cluster's id (Kafka's 22-character form), generated by the
    /// operator when it creates the cluster and never changed afterwards.
    /// Every broker is started with it and formats an empty data directory
    /// as a member of this cluster; a broker that reports another id stops
    /// every restart, scale-in and reassignment (condition `Degraded`,
    /// reason `ClusterIdMismatch`). For a cluster created by an older
    /// operator, the id the brokers report, recorded once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,

    /// Node id of the active controller, as the brokers report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_controller: Option<i32>,

    /// The rolling restart in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll: Option<RollStatus>,

    /// Broker count the partitions were last spread over. Below
    /// `replicas` after a scale-out, until the rebalance has moved
    /// replicas onto the new brokers (see `spec.rebalanceOnScaleOut`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balanced_brokers: Option<i32>,

    /// How many controller quorum voters the cluster should have now (see
    /// `spec.quorumVoters`); `quorum` shows the voters it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_voters: Option<i32>,

    /// The controller quorum as its leader last described it
    /// (DescribeQuorum), when the brokers could be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumStatus>,

    /// Each broker's volume capacity (by broker id), as its
    /// PersistentVolumeClaim reports it; empty for Ephemeral storage.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_capacity: BTreeMap<String, String>,

    /// The certificate authorities and the brokers' certificates: their
    /// ends of validity and any CA key replacement under way. Absent while
    /// the cluster uses no TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<super::CertificatesStatus>,
}

/// The controller quorum: its leader, voters and observers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuorumStatus {
    /// Node id of the quorum leader (the active controller); absent while
    /// there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<i32>,
    /// The voters, by node id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters: Vec<QuorumVoterStatus>,
    /// Node ids of the brokers that follow the metadata log without voting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<i32>,
}

/// One quorum voter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuorumVoterStatus {
    /// The broker's node id.
    pub id: i32,
    /// The id of the broker's metadata log directory. A broker whose disk
    /// was lost comes back with a new one.
    pub directory_id: String,
}

/// A rolling restart the operator is driving, one broker at a time.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollStatus {
    /// The StatefulSet revision the brokers are being moved to.
    pub target_revision: String,
    /// The broker restarted last, which must come back before the next one goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<i32>,
    /// When that broker was restarted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
}
