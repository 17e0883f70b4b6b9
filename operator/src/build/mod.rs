//! Pure builders: a [`ValidatedCluster`] (plus what the operator observed)
//! in, the desired Kubernetes objects out. One file per Kubernetes kind.
//!
//! Builders do no I/O and read no clock, and every map they emit is a
//! `BTreeMap`, so the same input always yields byte-identical objects: a
//! no-op reconcile applies nothing new and restarts no broker.

mod configmap;
mod listeners;
mod monitoring;
mod networkpolicy;
mod pdb;
mod service;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Service},
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::api::DynamicObject;

pub use self::{
    configmap::{
        broker_expectation, broker_properties, build_bootstrap_config_map, build_config_map,
        config_hash, fnv1a64, racks_in, shared_properties, BrokerExpectation, BOOTSTRAP_KEY,
    },
    listeners::{
        broker_keystore, brokers_principal, listener_entries, CERTS_MOUNT, CN_MAPPING_RULE,
        CONTROLLER_LISTENER, EXTERNAL_LISTENER, INTERNAL_LISTENER, REPLICATION_LISTENER,
        STANDARD_AUTHORIZER,
    },
    monitoring::{build_monitor, MonitorApi, POD_MONITOR, SERVICE_MONITOR},
    networkpolicy::{build_network_policy, network_policy_name},
    pdb::build_pdb,
    service::{
        build_bootstrap_service, build_external_services, build_headless_service,
        external_addresses, EXTERNAL_ROLE_LABEL,
    },
    statefulset::{
        build_statefulset, BOOTSTRAP_ENV, CLUSTER_ID_ENV, CONFIG_HASH_ANNOTATION, DATA_MOUNT,
        NODE_ID_ENV,
    },
};
use crate::validate::ValidatedCluster;

/// What the operator observed in the cluster that shapes the desired objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Which Prometheus operator kinds the API server serves.
    pub monitor_apis: MonitorApis,
    /// Load balancer addresses of the per-broker external Services, by broker id.
    pub load_balancer_hosts: BTreeMap<i32, String>,
    /// Racks of the brokers (the `rack.topologyKey` label of each broker's
    /// node), by broker id, where known.
    pub racks: BTreeMap<i32, String>,
}

/// Prometheus operator kinds present in the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonitorApis {
    /// `monitoring.coreos.com/v1` ServiceMonitor is served.
    pub service_monitor: bool,
    /// `monitoring.coreos.com/v1` PodMonitor is served.
    pub pod_monitor: bool,
}

/// Every object a cluster should have, in apply order: config before the
/// Services, the StatefulSet after everything it refers to (the
/// NetworkPolicy goes first: it narrows who reaches the new pods).
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Broker config files.
    pub config_map: ConfigMap,
    /// Per-broker DNS names.
    pub headless_service: Service,
    /// The address clients bootstrap from.
    pub bootstrap_service: Service,
    /// One Service per broker when an external listener is configured.
    pub external_services: Vec<Service>,
    /// The brokers.
    pub statefulset: StatefulSet,
    /// The disruption budget, unless disabled.
    pub pdb: Option<PodDisruptionBudget>,
    /// The ServiceMonitor or PodMonitor, when wanted and served.
    pub monitor: Option<DynamicObject>,
    /// The brokers' NetworkPolicy, unless disabled.
    pub network_policy: Option<NetworkPolicy>,
}

/// Builds every desired object of `cluster`.
pub fn build(cluster: &ValidatedCluster, observed: &Observed) -> Desired {
    Desired {
        config_map: build_config_map(cluster, observed),
        headless_service: build_headless_service(cluster),
        bootstrap_service: build_bootstrap_service(cluster),
        external_services: build_external_services(cluster),
        statefulset: build_statefulset(cluster),
        pdb: build_pdb(cluster),
        monitor: build_monitor(cluster, observed.monitor_apis),
        network_policy: build_network_policy(cluster),
    }
}

/// Metadata of an object named `name` owned by `cluster`.
pub(crate) fn owned_meta(cluster: &ValidatedCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(cluster.labels()),
        owner_references: Some(vec![cluster.owner.clone()]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        crd::{KafkaCluster, KafkaUser, Topic},
        fixtures::validated,
        validate::{validate, OperatorConfig},
    };

    const ALL_APIS: Observed = Observed {
        monitor_apis: MonitorApis {
            service_monitor: true,
            pod_monitor: true,
        },
        load_balancer_hosts: BTreeMap::new(),
        racks: BTreeMap::new(),
    };

    /// The examples users copy, parsed as the API server would see them.
    fn examples() -> Vec<serde_json::Value> {
        [
            include_str!("../../../manifests/examples/dev-cluster.yaml"),
            include_str!("../../../manifests/examples/production-cluster.yaml"),
            include_str!("../../../manifests/examples/topics.yaml"),
            include_str!("../../../manifests/examples/secure-cluster.yaml"),
        ]
        .iter()
        .flat_map(|text| text.split("\n---\n"))
        .map(|doc| serde_saphyr::from_str(doc).expect("example is YAML"))
        .collect()
    }

    #[test]
    fn examples_are_valid_and_build() {
        let mut clusters = 0;
        for mut doc in examples() {
            doc["metadata"]["namespace"] = "kafka".into();
            doc["metadata"]["uid"] = "0000".into();
            match doc["kind"].as_str() {
                Some("KafkaCluster") => {
                    let cluster: KafkaCluster = serde_json::from_value(doc).unwrap();
                    let v =
                        validate(&cluster, &OperatorConfig::default()).expect("example validates");
                    let desired = build(&v, &ALL_APIS);
                    assert_eq!(
                        desired.statefulset.spec.unwrap().replicas,
                        Some(cluster.spec.replicas)
                    );
                    clusters += 1;
                }
                Some("Topic") => {
                    let topic: Topic = serde_json::from_value(doc).unwrap();
                    assert!(topic.spec.partitions >= 1);
                }
                Some("KafkaUser") => {
                    let user: KafkaUser = serde_json::from_value(doc).unwrap();
                    assert_eq!(user.spec.cluster, "secure");
                }
                other => panic!("unexpected example kind {other:?}"),
            }
        }
        assert_eq!(clusters, 3);
    }

    #[test]
    fn building_twice_gives_identical_objects() {
        let spec = include_str!("../../../manifests/examples/production-cluster.yaml");
        let spec_only: String = spec
            .split("\nspec:\n")
            .nth(1)
            .unwrap()
            .lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let first = build(&validated(&spec_only), &ALL_APIS);
        let second = build(&validated(&spec_only), &ALL_APIS);
        assert_eq!(first, second);
        // Byte-identical as sent to the API server, too.
        let json = |d: &Desired| {
            serde_json::to_string(&(
                &d.config_map,
                &d.headless_service,
                &d.bootstrap_service,
                &d.external_services,
                &d.statefulset,
                &d.pdb,
                &d.monitor,
                &d.network_policy,
            ))
            .unwrap()
        };
        assert_eq!(json(&first), json(&second));
        assert_eq!(first.external_services.len(), 3);
        assert!(first.monitor.is_some());
        assert!(first.network_policy.is_some());
    }
}
