//! Services: a headless one for stable per-broker DNS names (and the Raft
//! quorum, which must resolve peers before they are ready), a bootstrap
//! one for clients, and one per broker for external access.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::owned_meta;
use crate::{
    crd::ExternalType,
    validate::{ValidatedCluster, CONTROLLER_PORT, METRICS_PORT, REPLICATION_PORT},
};

/// Label that marks the per-broker external Services, so the reconcile
/// finds the ones whose broker (or listener) is gone.
pub const EXTERNAL_ROLE_LABEL: &str = "rivulet.dev/role";

fn port(name: &str, port: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The headless Service that gives broker N the DNS name
/// `<name>-broker-N.<name>-brokers.<namespace>.svc.<domain>`.
pub fn build_headless_service(cluster: &ValidatedCluster) -> Service {
    let mut ports = vec![
        port("kafka", cluster.kafka_port(), "kafka"),
        port("controller", CONTROLLER_PORT, "controller"),
    ];
    if cluster.security.enabled() {
        ports.push(port("replication", REPLICATION_PORT, "replication"));
    }
    if cluster.spec.metrics.enabled {
        ports.push(port("metrics", METRICS_PORT, "metrics"));
    }
    Service {
        metadata: owned_meta(cluster, cluster.headless_service_name()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Quorum voters must find each other before any of them is
            // ready, so DNS records exist from the moment a pod has an IP.
            publish_not_ready_addresses: Some(true),
            selector: Some(cluster.selector_labels()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The ClusterIP Service clients bootstrap from; only ready brokers. On a
/// secured cluster also the operator, on the `REPLICATION` port.
pub fn build_bootstrap_service(cluster: &ValidatedCluster) -> Service {
    let mut ports = vec![port("kafka", cluster.kafka_port(), "kafka")];
    if cluster.security.enabled() {
        ports.push(port("replication", REPLICATION_PORT, "replication"));
    }
    Service {
        metadata: owned_meta(cluster, cluster.bootstrap_service_name()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(cluster.selector_labels()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// One NodePort or LoadBalancer Service per broker, selecting that
/// broker's pod by the label the StatefulSet controller puts on it.
pub fn build_external_services(cluster: &ValidatedCluster) -> Vec<Service> {
    let Some(external) = &cluster.spec.listeners.external else {
        return Vec::new();
    };
    (0..cluster.replicas)
        .map(|id| {
            let mut selector = cluster.selector_labels();
            selector.insert(
                "statefulset.kubernetes.io/pod-name".into(),
                cluster.pod_name(id),
            );
            let mut metadata = owned_meta(cluster, cluster.external_service_name(id));
            if let Some(labels) = metadata.labels.as_mut() {
                labels.insert(EXTERNAL_ROLE_LABEL.into(), "external".into());
            }
            if !external.annotations.is_empty() {
                metadata.annotations = Some(external.annotations.clone());
            }
            let mut service_port = port("external", external.port, "external");
            if external.kind == ExternalType::NodePort {
                service_port.node_port = external.node_port_base.map(|base| base + id);
            }
            Service {
                metadata,
                spec: Some(ServiceSpec {
                    type_: Some(external.kind.as_str().into()),
                    // Keep the client's address and skip a second hop: the
                    // Service only ever has one endpoint.
                    external_traffic_policy: Some("Local".into()),
                    selector: Some(selector),
                    ports: Some(vec![service_port]),
                    ..ServiceSpec::default()
                }),
                ..Service::default()
            }
        })
        .collect()
}

/// Each broker's external `host:port`, where known: per-broker overrides
/// first, then `host` with the node port (NodePort) or the observed load
/// balancer address with the listener port (LoadBalancer).
pub fn external_addresses(
    cluster: &ValidatedCluster,
    load_balancer_hosts: &BTreeMap<i32, String>,
) -> BTreeMap<i32, String> {
    let Some(external) = &cluster.spec.listeners.external else {
        return BTreeMap::new();
    };
    (0..cluster.replicas)
        .filter_map(|id| {
            let overrides = external.brokers.iter().find(|b| b.id == id);
            let (host, default_port) = match external.kind {
                ExternalType::NodePort => (
                    overrides
                        .and_then(|o| o.host.clone())
                        .or_else(|| external.host.clone()),
                    external.node_port_base.map_or(external.port, |b| b + id),
                ),
                ExternalType::LoadBalancer => (
                    overrides
                        .and_then(|o| o.host.clone())
                        .or_else(|| load_balancer_hosts.get(&id).cloned()),
                    external.port,
                ),
            };
            let port = overrides.and_then(|o| o.port).unwrap_or(default_port);
            host.map(|h| (id, format!("{h}:{port}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{validated, NODE_PORT_SPEC};

    #[test]
    fn headless_and_bootstrap() {
        let cluster = validated("replicas: 3");
        let headless = build_headless_service(&cluster);
        let spec = headless.spec.unwrap();
        assert_eq!(headless.metadata.name.as_deref(), Some("demo-brokers"));
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let names: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port))
            .collect();
        assert_eq!(
            names,
            [
                ("kafka".into(), 9092),
                ("controller".into(), 9093),
                ("metrics".into(), 9404)
            ]
        );
        let bootstrap = build_bootstrap_service(&cluster);
        assert_eq!(bootstrap.metadata.name.as_deref(), Some("demo-bootstrap"));
        let spec = bootstrap.spec.unwrap();
        assert_eq!(spec.selector, Some(cluster.selector_labels()));
        assert_eq!(spec.ports.unwrap().len(), 1);
        assert!(build_external_services(&cluster).is_empty());
    }

    #[test]
    fn node_port_per_broker() {
        let cluster = validated(NODE_PORT_SPEC);
        let services = build_external_services(&cluster);
        assert_eq!(services.len(), 3);
        let svc = &services[1];
        assert_eq!(svc.metadata.name.as_deref(), Some("demo-broker-1-external"));
        let spec = svc.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.ports.as_ref().unwrap()[0].node_port, Some(31091));
        assert_eq!(
            spec.selector.as_ref().unwrap()["statefulset.kubernetes.io/pod-name"],
            "demo-broker-1"
        );
        let addresses = external_addresses(&cluster, &BTreeMap::new());
        assert_eq!(
            addresses.values().collect::<Vec<_>>(),
            [
                "kafka.example.test:31090",
                "kafka.example.test:31091",
                "node-c.example.test:32000"
            ]
        );
    }

    #[test]
    fn load_balancer_addresses_come_from_status() {
        let cluster = validated(
            "replicas: 2
listeners:
  external:
    type: LoadBalancer
    annotations:
      lb.example/internal: 'false'",
        );
        let services = build_external_services(&cluster);
        assert_eq!(
            services[0].spec.as_ref().unwrap().type_.as_deref(),
            Some("LoadBalancer")
        );
        assert_eq!(
            services[0].spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port,
            None
        );
        assert_eq!(
            services[0].metadata.annotations.as_ref().unwrap()["lb.example/internal"],
            "false"
        );
        let observed = BTreeMap::from([(1, "203.0.113.7".to_string())]);
        let addresses = external_addresses(&cluster, &observed);
        assert_eq!(
            addresses,
            BTreeMap::from([(1, "203.0.113.7:9094".to_string())])
        );
    }
}
