//! The brokers' NetworkPolicy: who may open a connection to which port.
//!
//! One policy selects the broker pods and lists an ingress rule per port:
//! - each client listener's port admits its `networkPolicyPeers`, or
//!   everyone when the list is empty (Strimzi's rule);
//! - the controller port admits only brokers, and so does `REPLICATION`
//!   on a secured cluster, plus the operator there (its admin listener);
//! - on a cluster without security the brokers replicate, and the operator
//!   administers, over the internal listener, so a restricted internal
//!   listener always admits both too;
//! - a restricted external listener without authentication admits the
//!   operator too: it reads what each broker advertises there;
//! - the metrics port admits everyone: Prometheus may run anywhere, and
//!   the kubelet's probes use it (probes come from the node, which most
//!   network plugins let through whatever the policy says).
//!
//! Egress is not restricted. With `spec.networkPolicies.enabled: false`
//! no policy is built and the reconcile deletes an existing one.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::owned_meta;
use crate::{
    crd::ListenerAuthenticationType,
    validate::{OperatorPeer, ValidatedCluster, CONTROLLER_PORT, METRICS_PORT, REPLICATION_PORT},
};

/// The operator's pods, as a peer.
fn operator_peer(operator: &OperatorPeer) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                operator.namespace.clone(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(operator.labels.clone()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn brokers(cluster: &ValidatedCluster) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(cluster.selector_labels()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// A rule for `port` from `from`; `None` admits everyone.
fn rule(port: i32, from: Option<Vec<NetworkPolicyPeer>>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            ..NetworkPolicyPort::default()
        }]),
        from,
    }
}

/// `peers`, or everyone when empty; `always` are added to a restricted list.
fn restricted(
    peers: &[NetworkPolicyPeer],
    always: Vec<NetworkPolicyPeer>,
) -> Option<Vec<NetworkPolicyPeer>> {
    if peers.is_empty() {
        return None;
    }
    let mut from = peers.to_vec();
    from.extend(always);
    Some(from)
}

/// Name of the cluster's NetworkPolicy.
pub fn network_policy_name(cluster: &ValidatedCluster) -> String {
    format!("{}-network-policy", cluster.name)
}

/// The brokers' NetworkPolicy, unless `spec.networkPolicies.enabled` is false.
pub fn build_network_policy(cluster: &ValidatedCluster) -> Option<NetworkPolicy> {
    let spec = &cluster.spec;
    let operator = operator_peer(&cluster.operator);
    if !spec.network_policies.enabled {
        return None;
    }
    let secured = cluster.security.enabled();
    let internal_always = if secured {
        Vec::new()
    } else {
        vec![brokers(cluster), operator.clone()]
    };
    let mut rules = vec![rule(
        cluster.kafka_port(),
        restricted(
            &spec.listeners.internal.network_policy_peers,
            internal_always,
        ),
    )];
    if let Some(external) = &spec.listeners.external {
        // Unless it asks for authentication, the operator asks each
        // broker there what it advertises (a load balancer's address).
        let asked = cluster
            .security
            .external
            .is_some_and(|s| s.authentication == ListenerAuthenticationType::None);
        let always = if asked {
            vec![operator.clone()]
        } else {
            Vec::new()
        };
        rules.push(rule(
            external.port,
            restricted(&external.network_policy_peers, always),
        ));
    }
    if secured {
        rules.push(rule(
            REPLICATION_PORT,
            Some(vec![brokers(cluster), operator.clone()]),
        ));
    }
    rules.push(rule(CONTROLLER_PORT, Some(vec![brokers(cluster)])));
    if spec.metrics.enabled {
        rules.push(rule(METRICS_PORT, None));
    }
    Some(NetworkPolicy {
        metadata: owned_meta(cluster, network_policy_name(cluster)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(cluster.selector_labels()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..NetworkPolicySpec::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::fixtures::validated;

    /// The ingress rules as JSON, by port.
    fn rules(spec: &str) -> BTreeMap<i64, Value> {
        let policy = build_network_policy(&validated(spec)).expect("a policy");
        let json = serde_json::to_value(policy.spec.unwrap()).unwrap();
        assert_eq!(json["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            json["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
            "demo"
        );
        json["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["ports"][0]["port"].as_i64().unwrap(), r["from"].clone()))
            .collect()
    }

    fn brokers_json() -> Value {
        json!({"podSelector": {"matchLabels": {
            "app.kubernetes.io/component": "broker",
            "app.kubernetes.io/instance": "demo",
            "app.kubernetes.io/name": "rivulet"}}})
    }

    fn operator_json() -> Value {
        json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "rivulet-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "rivulet-operator"}}})
    }

    #[test]
    fn an_open_plain_cluster_admits_everyone_to_kafka_and_only_brokers_to_the_quorum() {
        let rules = rules("replicas: 3");
        assert_eq!(
            rules.keys().copied().collect::<Vec<_>>(),
            [9092, 9093, 9404]
        );
        assert_eq!(rules[&9092], Value::Null, "no `from`: everyone");
        assert_eq!(rules[&9093], json!([brokers_json()]));
        assert_eq!(rules[&9404], Value::Null);
    }

    #[test]
    fn listener_peers_restrict_their_port_only() {
        let rules = rules(
            "replicas: 3
listeners:
  internal:
    tls: true
    authentication:
      type: tls
    networkPolicyPeers:
      - podSelector:
          matchLabels:
            app: orders
  external:
    type: LoadBalancer
    tls: true
    networkPolicyPeers:
      - ipBlock:
          cidr: 203.0.113.0/24
metrics:
  enabled: false",
        );
        assert_eq!(
            rules.keys().copied().collect::<Vec<_>>(),
            [9091, 9092, 9093, 9094]
        );
        assert_eq!(
            rules[&9092],
            json!([{"podSelector": {"matchLabels": {"app": "orders"}}}]),
            "a secured cluster's brokers and operator use REPLICATION, not the client listener"
        );
        assert_eq!(
            rules[&9094],
            json!([{"ipBlock": {"cidr": "203.0.113.0/24"}}, operator_json()]),
            "the operator reads what brokers advertise on an unauthenticated listener"
        );
        assert_eq!(rules[&9091], json!([brokers_json(), operator_json()]));
        assert_eq!(rules[&9093], json!([brokers_json()]));
    }

    #[test]
    fn a_restricted_plain_internal_listener_still_admits_brokers_and_operator() {
        let rules = rules(
            "replicas: 3
listeners:
  internal:
    networkPolicyPeers:
      - namespaceSelector:
          matchLabels:
            team: payments
  external:
    type: LoadBalancer
    networkPolicyPeers:
      - ipBlock:
          cidr: 203.0.113.0/24",
        );
        assert_eq!(
            rules[&9094],
            json!([{"ipBlock": {"cidr": "203.0.113.0/24"}}, operator_json()])
        );
        assert_eq!(
            rules[&9092],
            json!([
                {"namespaceSelector": {"matchLabels": {"team": "payments"}}},
                brokers_json(),
                operator_json()
            ])
        );
        assert!(!rules.contains_key(&9091));
    }

    #[test]
    fn disabled_means_no_policy() {
        let cluster = validated("replicas: 1\nnetworkPolicies:\n  enabled: false");
        assert_eq!(build_network_policy(&cluster), None);
        let policy = build_network_policy(&validated("replicas: 1")).unwrap();
        assert_eq!(policy.metadata.name.as_deref(), Some("demo-network-policy"));
        assert_eq!(
            policy.metadata.owner_references.unwrap()[0].kind,
            "KafkaCluster"
        );
    }
}
