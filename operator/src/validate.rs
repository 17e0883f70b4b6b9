//! Pure validation of a `KafkaCluster`: the only place that reads the raw
//! spec's optional fields and defaults; the builders take the
//! [`ValidatedCluster`] it returns.
//!
//! The CRD's schema rules already refuse most of this at `kubectl apply`;
//! repeating them here keeps the builders honest when a cluster predates a
//! rule (or the CRD was installed without CEL support), and reports the
//! problem as a `Degraded` condition instead of a crash-looping broker.

mod security;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

pub use self::security::{
    validate_security, ClusterSecurity, ListenerSecurity, SecurityError, OPERATOR_PRINCIPAL,
    REPLICATION_PORT, SECURITY_OWNED_KEYS,
};
use crate::crd::{
    ExternalListener, ExternalType, KafkaCluster, KafkaClusterSpec, StorageKind,
    ALLOW_DATA_LOSS_ANNOTATION, OPERATOR_OWNED_KEYS,
};

/// Port of the Raft controller listener (Kafka's conventional 9093).
pub const CONTROLLER_PORT: i32 = 9093;
/// Port of the broker's Prometheus endpoint.
pub const METRICS_PORT: i32 = 9404;
/// Longest cluster name: pods are named `<name>-broker-<ordinal>` and the
/// StatefulSet's revision label `<name>-broker-<10-char hash>` must stay
/// within Kubernetes' 63-character label limit.
pub const MAX_NAME_LEN: usize = 40;

/// Settings of the operator process that shape what it builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorConfig {
    /// The Kubernetes cluster's DNS domain (`cluster.local` unless the
    /// cluster was set up otherwise), used in broker addresses.
    pub cluster_domain: String,
    /// Broker image for clusters that do not name one.
    pub default_image: String,
    /// Where the operator runs: NetworkPolicies let it reach the brokers.
    pub operator: OperatorPeer,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            cluster_domain: "cluster.local".into(),
            default_image: format!("rivulet/broker:{}", env!("CARGO_PKG_VERSION")),
            operator: OperatorPeer::default(),
        }
    }
}

/// The operator's pods, as NetworkPolicies name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPeer {
    /// The operator's namespace.
    pub namespace: String,
    /// Labels that select the operator's pods.
    pub labels: BTreeMap<String, String>,
}

impl Default for OperatorPeer {
    /// The chart's defaults: release `rivulet` in `rivulet-system`.
    fn default() -> Self {
        OperatorPeer {
            namespace: "rivulet-system".into(),
            labels: BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "rivulet-operator".to_string(),
            )]),
        }
    }
}

/// Why a spec can never work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The object lacks a name, namespace or uid (never true of objects
    /// the API server returns).
    #[error("the KafkaCluster has no {0}")]
    MissingMetadata(&'static str),
    /// The name is too long for the pod and label names derived from it.
    #[error(
        "name `{0}` is longer than {MAX_NAME_LEN} characters, too long for the broker pod names"
    )]
    NameTooLong(String),
    /// `replicas` below 1.
    #[error("replicas must be at least 1, not {0}: a cluster needs a broker")]
    NoBrokers(i32),
    /// `quorumVoters` not 1, 3 or 5.
    #[error(
        "quorumVoters must be 1, 3 or 5, not {0}: an even number of voters adds no fault tolerance"
    )]
    BadVoterCount(i32),
    /// `config` names a key the operator sets.
    #[error("config may not set `{0}`: the operator sets it")]
    OwnedConfigKey(String),
    /// A storage size that is not a Kubernetes quantity.
    #[error("storage.size `{0}` is not a Kubernetes quantity such as 10Gi")]
    BadStorageSize(String),
    /// Two listeners (or the controller/metrics port) on one port.
    #[error("port {0} is used twice (internal 9092-style, external, controller 9093, metrics 9404 and, with security, replication 9091 must differ)")]
    PortClash(i32),
    /// A NodePort listener without what it needs.
    #[error("external listener: {0}")]
    External(String),
    /// An empty rack topology key.
    #[error("rack.topologyKey must not be empty")]
    EmptyTopologyKey,
    /// Listener security or authorization that can never work.
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// A spec that passed validation, with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCluster {
    /// The KafkaCluster's name.
    pub name: String,
    /// Its namespace; every object it owns lives there too.
    pub namespace: String,
    /// The owner reference every built object carries.
    pub owner: OwnerReference,
    /// Brokers to run: the spec's count, except while a scale-in drains
    /// the leaving brokers, when the cluster reconcile keeps the
    /// StatefulSet's current count here (`spec.replicas` has the target).
    pub replicas: i32,
    /// Quorum voters wanted ([`desired_voters`] of the brokers that stay):
    /// the brokers 0..voters-1 are named in `controller.quorum.voters`.
    pub voters: i32,
    /// `status.clusterId`: what every broker is formatted with. `None`
    /// until the operator generated it (creation) or learnt it from the
    /// brokers (a cluster created by an older operator).
    pub cluster_id: Option<String>,
    /// The KafkaCluster carries `rivulet.dev/allow-data-loss: "true"`.
    pub allow_data_loss: bool,
    /// Broker image.
    pub image: String,
    /// The Kubernetes DNS domain.
    pub cluster_domain: String,
    /// Listener security and authorization.
    pub security: ClusterSecurity,
    /// The operator's pods (NetworkPolicies let them in).
    pub operator: OperatorPeer,
    /// The spec, for the fields that need no resolving.
    pub spec: KafkaClusterSpec,
}

/// The quorum voters a cluster of `brokers` brokers should have: the
/// largest of 1, 3 and 5 that is at most `brokers` and at most `asked`
/// (`spec.quorumVoters`, default 3).
pub fn desired_voters(brokers: i32, asked: Option<i32>) -> i32 {
    let cap = asked.unwrap_or(3);
    [5, 3]
        .into_iter()
        .find(|&n| n <= cap && n <= brokers)
        .unwrap_or(1)
}

/// Checks `cluster` and resolves its defaults.
pub fn validate(
    cluster: &KafkaCluster,
    config: &OperatorConfig,
) -> Result<ValidatedCluster, ValidationError> {
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or(ValidationError::MissingMetadata("name"))?;
    let namespace = cluster
        .namespace()
        .ok_or(ValidationError::MissingMetadata("namespace"))?;
    let owner = cluster
        .controller_owner_ref(&())
        .ok_or(ValidationError::MissingMetadata("uid"))?;
    if name.len() > MAX_NAME_LEN {
        return Err(ValidationError::NameTooLong(name));
    }
    let spec = &cluster.spec;
    if spec.replicas < 1 {
        return Err(ValidationError::NoBrokers(spec.replicas));
    }
    if let Some(asked) = spec.quorum_voters.filter(|n| ![1, 3, 5].contains(n)) {
        return Err(ValidationError::BadVoterCount(asked));
    }
    if let Some(key) = spec
        .config
        .keys()
        .find(|k| OPERATOR_OWNED_KEYS.contains(&k.as_str()))
    {
        return Err(ValidationError::OwnedConfigKey(key.clone()));
    }
    if !is_quantity(&spec.storage.size) {
        return Err(ValidationError::BadStorageSize(spec.storage.size.clone()));
    }
    let security = validate_security(spec)?;
    let mut ports = vec![spec.listeners.internal.port, CONTROLLER_PORT, METRICS_PORT];
    if security.enabled() {
        ports.push(REPLICATION_PORT);
    }
    if let Some(external) = &spec.listeners.external {
        validate_external(external, spec.replicas)?;
        ports.push(external.port);
    }
    let mut seen = BTreeMap::new();
    for port in ports {
        if seen.insert(port, ()).is_some() {
            return Err(ValidationError::PortClash(port));
        }
    }
    if spec
        .rack
        .as_ref()
        .is_some_and(|r| r.topology_key.is_empty())
    {
        return Err(ValidationError::EmptyTopologyKey);
    }
    Ok(ValidatedCluster {
        name,
        namespace,
        owner,
        replicas: spec.replicas,
        voters: desired_voters(spec.replicas, spec.quorum_voters),
        cluster_id: cluster.status.as_ref().and_then(|s| s.cluster_id.clone()),
        allow_data_loss: cluster
            .annotations()
            .get(ALLOW_DATA_LOSS_ANNOTATION)
            .is_some_and(|v| v == "true"),
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| config.default_image.clone()),
        cluster_domain: config.cluster_domain.clone(),
        security,
        operator: config.operator.clone(),
        spec: spec.clone(),
    })
}

fn validate_external(external: &ExternalListener, replicas: i32) -> Result<(), ValidationError> {
    if external.kind != ExternalType::NodePort {
        return Ok(());
    }
    let base = external.node_port_base.ok_or_else(|| {
        ValidationError::External(
            "NodePort needs nodePortBase (broker N gets nodePortBase+N)".into(),
        )
    })?;
    if base + replicas - 1 > 65535 {
        return Err(ValidationError::External(format!(
            "nodePortBase {base} leaves no port for broker {}",
            replicas - 1
        )));
    }
    for id in 0..replicas {
        let overridden = external
            .brokers
            .iter()
            .any(|b| b.id == id && b.host.is_some());
        if external.host.is_none() && !overridden {
            return Err(ValidationError::External(format!(
                "NodePort needs host, or brokers[].host for broker {id}"
            )));
        }
    }
    Ok(())
}

/// Whether `s` is a Kubernetes quantity of the forms used for sizes
/// (`10Gi`, `500M`, `1.5Ti`, `1e9`, `2048`).
pub fn is_quantity(s: &str) -> bool {
    const SUFFIXES: [&str; 13] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "m",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|suffix| s.strip_suffix(suffix))
        .unwrap_or(s);
    let (mantissa, exponent) = match number.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (number, None),
    };
    let digits_ok = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((i, f)) => digits_ok(i) && digits_ok(f),
        None => digits_ok(mantissa),
    };
    mantissa_ok
        && exponent.is_none_or(|e| digits_ok(e.strip_prefix(['+', '-']).unwrap_or(e)))
        && mantissa.chars().any(|c| c != '0' && c != '.')
}

impl ValidatedCluster {
    /// Labels on every object of the cluster.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(
            "app.kubernetes.io/managed-by".into(),
            "rivulet-operator".into(),
        );
        labels.insert("rivulet.dev/cluster".into(), self.name.clone());
        labels
    }

    /// The labels that select the broker pods; never change for a cluster.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "rivulet".into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
            ("app.kubernetes.io/component".into(), "broker".into()),
        ])
    }

    /// `key=value,...` form of [`Self::selector_labels`] (the scale subresource's selector).
    pub fn selector_string(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Name of the ConfigMap with the broker config.
    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }

    /// Name of the ConfigMap whose presence lets an empty data directory
    /// found the controller quorum: it exists only while the cluster is
    /// being created.
    pub fn bootstrap_config_map_name(&self) -> String {
        format!("{}-bootstrap", self.name)
    }

    /// Whether every broker restart loses the broker's data (`Ephemeral`
    /// storage).
    pub fn ephemeral(&self) -> bool {
        self.spec.storage.kind == StorageKind::Ephemeral
    }

    /// `host:port` of broker `id` on the internal listener.
    pub fn broker_address(&self, id: i32) -> String {
        format!("{}:{}", self.broker_host(id), self.kafka_port())
    }

    /// Name of the headless Service that gives each broker a DNS name.
    pub fn headless_service_name(&self) -> String {
        format!("{}-brokers", self.name)
    }

    /// Name of the bootstrap Service.
    pub fn bootstrap_service_name(&self) -> String {
        format!("{}-bootstrap", self.name)
    }

    /// Name of the StatefulSet (and of the PodDisruptionBudget and monitor).
    pub fn statefulset_name(&self) -> String {
        format!("{}-broker", self.name)
    }

    /// Name of broker `id`'s pod.
    pub fn pod_name(&self, id: i32) -> String {
        format!("{}-{id}", self.statefulset_name())
    }

    /// Name of broker `id`'s external Service.
    pub fn external_service_name(&self, id: i32) -> String {
        format!("{}-external", self.pod_name(id))
    }

    /// Fully qualified DNS name of broker `id`.
    pub fn broker_host(&self, id: i32) -> String {
        format!(
            "{}.{}.{}.svc.{}",
            self.pod_name(id),
            self.headless_service_name(),
            self.namespace,
            self.cluster_domain
        )
    }

    /// The Kafka port of the internal listener.
    pub fn kafka_port(&self) -> i32 {
        self.spec.listeners.internal.port
    }

    /// `host:port` of the bootstrap Service.
    pub fn bootstrap_servers(&self) -> String {
        format!(
            "{}.{}.svc.{}:{}",
            self.bootstrap_service_name(),
            self.namespace,
            self.cluster_domain,
            self.kafka_port()
        )
    }

    /// The Secret with every broker's certificate and key
    /// (`broker-<id>.pem`) and the CA bundles, mounted into the brokers.
    pub fn broker_certs_secret_name(&self) -> String {
        format!("{}-broker-certs", self.name)
    }

    /// The Secret with the operator's client certificate.
    pub fn operator_certs_secret_name(&self) -> String {
        format!("{}-operator-certs", self.name)
    }

    /// Principal of broker `id`'s certificate (`CN=<cluster>-broker-<id>`).
    pub fn broker_principal(&self, id: i32) -> String {
        format!("User:{}-broker-{id}", self.name)
    }

    /// `host:port` the operator administers the cluster through: the
    /// bootstrap Service's `REPLICATION` port (mutual TLS) on a secured
    /// cluster, its Kafka port otherwise.
    pub fn admin_bootstrap(&self) -> String {
        if self.security.enabled() {
            format!(
                "{}.{}.svc.{}:{REPLICATION_PORT}",
                self.bootstrap_service_name(),
                self.namespace,
                self.cluster_domain
            )
        } else {
            self.bootstrap_servers()
        }
    }

    /// `host:port` of broker `id` on the listener the operator asks through.
    pub fn admin_address(&self, id: i32) -> String {
        if self.security.enabled() {
            format!("{}:{REPLICATION_PORT}", self.broker_host(id))
        } else {
            self.broker_address(id)
        }
    }

    /// Kafka's `controller.quorum.voters`: `id@host:port` of every voter.
    pub fn quorum_voters(&self) -> String {
        (0..self.voters)
            .map(|id| format!("{id}@{}:{CONTROLLER_PORT}", self.broker_host(id)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::cluster_from_yaml;

    fn check(spec: &str) -> Result<ValidatedCluster, ValidationError> {
        validate(&cluster_from_yaml(spec), &OperatorConfig::default())
    }

    #[test]
    fn defaults_resolve() {
        let v = check("replicas: 3").unwrap();
        assert_eq!(v.voters, 3);
        assert_eq!(
            v.image,
            format!("rivulet/broker:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            v.quorum_voters(),
            "0@demo-broker-0.demo-brokers.kafka.svc.cluster.local:9093,\
             1@demo-broker-1.demo-brokers.kafka.svc.cluster.local:9093,\
             2@demo-broker-2.demo-brokers.kafka.svc.cluster.local:9093"
        );
        assert_eq!(check("replicas: 2").unwrap().voters, 1);
        assert_eq!(check("replicas: 7").unwrap().voters, 3);
        assert_eq!(
            v.selector_string(),
            "app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=rivulet"
        );
    }

    #[test]
    fn refuses_what_can_never_work() {
        assert_eq!(check("replicas: 0"), Err(ValidationError::NoBrokers(0)));
        assert_eq!(
            check("replicas: 5\nquorumVoters: 4"),
            Err(ValidationError::BadVoterCount(4))
        );
        assert_eq!(
            check("replicas: 1\nconfig:\n  node.id: '7'"),
            Err(ValidationError::OwnedConfigKey("node.id".into()))
        );
        assert_eq!(
            check("replicas: 1\nstorage:\n  size: ten"),
            Err(ValidationError::BadStorageSize("ten".into()))
        );
        assert_eq!(
            check("replicas: 1\nlisteners:\n  internal:\n    port: 9404"),
            Err(ValidationError::PortClash(9404))
        );
        assert!(matches!(
            check(
                "replicas: 2\nlisteners:\n  external:\n    type: NodePort\n    nodePortBase: 31000"
            ),
            Err(ValidationError::External(_))
        ));
        // The replication port is taken only on a secured cluster.
        assert!(check("replicas: 1\nlisteners:\n  internal:\n    port: 9091").is_ok());
        assert_eq!(
            check("replicas: 1\nlisteners:\n  internal:\n    port: 9091\n    tls: true"),
            Err(ValidationError::PortClash(9091))
        );
        let message =
            check("replicas: 1\nlisteners:\n  internal:\n    authentication:\n      type: tls")
                .unwrap_err()
                .to_string();
        assert!(message.contains("needs tls: true"), "{message}");
        let message = check("replicas: 4\nquorumVoters: 2")
            .unwrap_err()
            .to_string();
        assert!(message.contains("1, 3 or 5"), "{message}");
    }

    #[test]
    fn voters_follow_the_brokers_up_to_what_is_asked() {
        let voters = |brokers, asked| desired_voters(brokers, asked);
        assert_eq!(
            [1, 2, 3, 4, 5, 7].map(|n| voters(n, None)),
            [1, 1, 3, 3, 3, 3]
        );
        assert_eq!(
            [1, 2, 3, 4, 5, 7].map(|n| voters(n, Some(5))),
            [1, 1, 3, 3, 5, 5]
        );
        assert_eq!([1, 3, 5].map(|n| voters(n, Some(1))), [1, 1, 1]);
        // A spec asking more voters than brokers is valid: it gets fewer.
        let v = check("replicas: 2\nquorumVoters: 5").unwrap();
        assert_eq!(v.voters, 1);
        assert_eq!(check("replicas: 5\nquorumVoters: 5").unwrap().voters, 5);
    }

    #[test]
    fn identity_and_the_data_loss_annotation_come_from_the_object() {
        let mut cluster = cluster_from_yaml("replicas: 3");
        let v = validate(&cluster, &OperatorConfig::default()).unwrap();
        assert_eq!((v.cluster_id, v.allow_data_loss), (None, false));
        cluster.status = Some(crate::crd::KafkaClusterStatus {
            cluster_id: Some("MkU3OEVBNTcwNTJENDM2Qk".into()),
            ..Default::default()
        });
        cluster.metadata.annotations = Some(BTreeMap::from([(
            ALLOW_DATA_LOSS_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        let v = validate(&cluster, &OperatorConfig::default()).unwrap();
        assert_eq!(v.cluster_id.as_deref(), Some("MkU3OEVBNTcwNTJENDM2Qk"));
        assert!(v.allow_data_loss);
    }

    #[test]
    fn quantities() {
        for ok in ["10Gi", "500M", "1.5Ti", "1e9", "2048", "100m"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "ten", "1..5Gi", "-1Gi", "0", "10 Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
