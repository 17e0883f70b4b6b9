//! The listener part of `KafkaCluster`: the internal and external Kafka
//! listeners with their TLS and authentication, the cluster's
//! authorization and its NetworkPolicies.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cluster::default_true;

/// Client listeners.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenersSpec {
    /// The listener for clients inside the Kubernetes cluster, reached
    /// through the bootstrap Service and per-broker DNS names of the
    /// headless Service.
    #[serde(default)]
    pub internal: InternalListener,

    /// An optional listener for clients outside the Kubernetes cluster,
    /// with a Service per broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalListener>,
}

/// The in-cluster listener.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.authentication) || self.authentication.type != 'tls' || (has(self.tls) && self.tls)").message("authentication type tls needs tls: true: client certificates are part of the TLS handshake"))]
#[serde(rename_all = "camelCase")]
pub struct InternalListener {
    /// Port of the Kafka protocol. Default 9092.
    #[serde(default = "default_internal_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Encrypt the listener with TLS, with each broker's certificate from
    /// the cluster CA (Secret `<cluster>-cluster-ca-cert` has the CA
    /// clients trust). Default false.
    #[serde(default)]
    pub tls: bool,

    /// How clients prove who they are. Default: `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ListenerAuthentication>,

    /// Who may connect to this listener when NetworkPolicies are on
    /// (`spec.networkPolicies.enabled`): NetworkPolicyPeers as in a
    /// NetworkPolicy's `from` (podSelector, namespaceSelector, ipBlock).
    /// Empty (default): every pod and address may connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_policy_peers: Vec<NetworkPolicyPeer>,
}

impl Default for InternalListener {
    fn default() -> Self {
        InternalListener {
            port: default_internal_port(),
            tls: false,
            authentication: None,
            network_policy_peers: Vec::new(),
        }
    }
}

/// How clients of a listener authenticate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerAuthentication {
    /// `none` (default): no authentication, every client is
    /// `User:ANONYMOUS`. `tls`: mutual TLS, a client certificate from the
    /// clients CA is required (needs `tls: true`) and the principal is
    /// `User:<CN>`. `scram-sha-512` / `scram-sha-256`: SASL SCRAM with the
    /// credentials of KafkaUsers (SASL_SSL with `tls: true`, else
    /// SASL_PLAINTEXT); the principal is `User:<name>`.
    #[serde(rename = "type")]
    pub kind: ListenerAuthenticationType,
}

/// A listener's authentication.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ListenerAuthenticationType {
    /// No authentication.
    #[default]
    #[serde(rename = "none")]
    None,
    /// Client certificates (mutual TLS).
    #[serde(rename = "tls")]
    Tls,
    /// SASL SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// SASL SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
}

impl ListenerAuthenticationType {
    /// The SASL mechanism, for the SCRAM types.
    pub fn sasl_mechanism(self) -> Option<&'static str> {
        match self {
            ListenerAuthenticationType::ScramSha512 => Some("SCRAM-SHA-512"),
            ListenerAuthenticationType::ScramSha256 => Some("SCRAM-SHA-256"),
            ListenerAuthenticationType::None | ListenerAuthenticationType::Tls => None,
        }
    }
}

/// Authorization of the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationSpec {
    /// `simple`: Kafka's StandardAuthorizer: ACLs (KafkaUsers'
    /// `authorization.acls`) decide, and a resource without ACLs is closed
    /// to all but super users.
    #[serde(rename = "type")]
    pub kind: super::AuthorizationType,

    /// Principals allowed everything (`User:NAME`, or a bare `NAME`, read
    /// as `User:NAME`). The operator (`User:rivulet-operator`) and the
    /// brokers (`User:<cluster>-broker-<id>`) are always super users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub super_users: Vec<String>,
}

/// The cluster's NetworkPolicies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPoliciesSpec {
    /// Create a NetworkPolicy that admits to the brokers only: each
    /// listener's `networkPolicyPeers` (everyone when empty), the brokers
    /// themselves (replication and controller ports), the operator
    /// (control-plane port) and, when metrics are on, anyone on the
    /// metrics port. Needs a network plugin that enforces NetworkPolicies.
    /// Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for NetworkPoliciesSpec {
    fn default() -> Self {
        NetworkPoliciesSpec { enabled: true }
    }
}

fn default_internal_port() -> i32 {
    9092
}

/// The out-of-cluster listener.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.type != 'NodePort' || has(self.nodePortBase)").message("a NodePort external listener needs nodePortBase: broker N gets node port nodePortBase+N"))]
#[x_kube(validation = Rule::new("self.type != 'NodePort' || has(self.host) || size(self.brokers) > 0").message("a NodePort external listener needs host (an address of any node) or per-broker hosts"))]
#[x_kube(validation = Rule::new("!has(self.authentication) || self.authentication.type != 'tls' || (has(self.tls) && self.tls)").message("authentication type tls needs tls: true: client certificates are part of the TLS handshake"))]
#[serde(rename_all = "camelCase")]
pub struct ExternalListener {
    /// `NodePort`: each broker is reached on `host:nodePortBase+id`.
    /// `LoadBalancer`: each broker gets its own load balancer, and is
    /// advertised at the address the load balancer reports (or `brokers[].host`).
    /// Until a load balancer reports an address, its broker advertises its
    /// in-cluster DNS name on the external listener; once the address is
    /// known, that broker alone is restarted (under the rolling-restart rules)
    /// to advertise it.
    #[serde(rename = "type")]
    pub kind: ExternalType,

    /// Port of the external listener on the brokers and of each
    /// LoadBalancer Service. Default 9094.
    #[serde(default = "default_external_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// NodePort only: broker N is exposed on node port `nodePortBase + N`
    /// (within the cluster's node port range, 30000-32767 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub node_port_base: Option<i32>,

    /// NodePort only: the host clients use to reach any node (a node's
    /// address or a DNS name that resolves to the nodes). Node ports are
    /// open on every node, so one host serves all brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,

    /// Per-broker overrides of the advertised address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<ExternalBrokerOverride>,

    /// Annotations of the per-broker Services (for example a cloud load
    /// balancer's settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Encrypt the listener with TLS (see `internal.tls`); the brokers'
    /// certificates name the hosts of `host` and `brokers[].host`.
    /// Default false.
    #[serde(default)]
    pub tls: bool,

    /// How clients prove who they are (see `internal.authentication`).
    /// Default: `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ListenerAuthentication>,

    /// Who may connect (see `internal.networkPolicyPeers`). Empty
    /// (default): every address. Traffic through a NodePort or load
    /// balancer may arrive from a node's address rather than the client's,
    /// depending on `externalTrafficPolicy` and the network plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_policy_peers: Vec<NetworkPolicyPeer>,
}

fn default_external_port() -> i32 {
    9094
}

/// How the external listener is exposed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalType {
    /// A NodePort Service per broker.
    NodePort,
    /// A LoadBalancer Service per broker.
    LoadBalancer,
}

impl ExternalType {
    /// The Service type Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        match self {
            ExternalType::NodePort => "NodePort",
            ExternalType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The advertised external address of one broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalBrokerOverride {
    /// The broker id (its pod ordinal).
    #[schemars(range(min = 0))]
    pub id: i32,
    /// Host external clients use for this broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port external clients use for this broker. Default: the node port
    /// (NodePort) or the listener port (LoadBalancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}
