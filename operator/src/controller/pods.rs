//! The Kubernetes side of what a KafkaCluster reconcile observes: the
//! broker pods (id, revision, readiness), the racks of the nodes they run
//! on, the addresses their load balancers got, and which brokers run an
//! outdated per-broker file (asked over the Kafka protocol).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::{api::Api, ResourceExt};

use super::{roll::PodView, target::AdminTarget, Context};
use crate::{
    build::{broker_expectation, racks_in, Observed},
    error::Error,
    validate::ValidatedCluster,
};

/// Each broker's rack: the `topology_key` label of the node its pod is
/// scheduled on, else what its per-broker file says now (the pod is being
/// recreated and not scheduled yet). Reading nodes needs the cluster-scoped
/// `get nodes` permission; without it, brokers get no rack (logged).
pub async fn observe_racks(
    ctx: &Context,
    cluster: &ValidatedCluster,
    topology_key: &str,
    pods: &[Pod],
) -> Result<BTreeMap<i32, String>, Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let mut racks = config_maps
        .get_opt(&cluster.config_map_name())
        .await
        .map_err(|source| Error::Read {
            what: format!("ConfigMap {}", cluster.config_map_name()),
            source,
        })?
        .map(|cm| racks_in(&cm))
        .unwrap_or_default();
    racks.retain(|id, _| *id < cluster.replicas);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut by_node: BTreeMap<String, Option<String>> = BTreeMap::new();
    for pod in pods {
        let (Some(view), Some(node)) = (
            pod_view(pod),
            pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ) else {
            continue;
        };
        if view.id >= cluster.replicas || view.terminating {
            continue;
        }
        if !by_node.contains_key(&node) {
            let rack = match nodes.get_opt(&node).await {
                Ok(found) => found.and_then(|n| n.labels().get(topology_key).cloned()),
                Err(error) => {
                    tracing::warn!(%node, %error, "cannot read the node's labels for broker.rack (does the operator have `get nodes`?)");
                    None
                }
            };
            if rack.is_none() {
                tracing::info!(%node, topology_key, "node has no rack label");
            }
            by_node.insert(node.clone(), rack);
        }
        if let Some(rack) = by_node[&node].clone() {
            racks.insert(view.id, rack);
        }
    }
    Ok(racks)
}

/// Asks every ready broker what it advertises (on the external listener,
/// when there is one) and which rack it has, and marks those whose answer
/// differs from their per-broker file: they started before the file
/// changed, and the roll restarts them. Unreachable brokers are left alone.
pub async fn mark_config_stale(
    ctx: &Context,
    cluster: &ValidatedCluster,
    observed: &Observed,
    views: &mut [PodView],
) {
    if cluster.spec.listeners.external.is_none() && cluster.spec.rack.is_none() {
        // Nothing per broker can change after a broker started.
        return;
    }
    for view in views
        .iter_mut()
        .filter(|v| v.ready && !v.terminating && v.id < cluster.replicas)
    {
        let target = ctx.target(cluster);
        let expected = broker_expectation(cluster, observed, view.id);
        let probe = if expected.probe_plaintext {
            AdminTarget::plaintext(expected.probe_address.clone())
        } else {
            target.at(expected.probe_address.clone())
        };
        match ctx.kafka.broker_view(&probe, view.id).await {
            Ok(Some(actual)) => {
                view.config_stale = actual.advertised != expected.advertised
                    || (expected.rack.is_some() && actual.rack != expected.rack);
                if view.config_stale {
                    tracing::info!(
                        broker = view.id,
                        advertised = %actual.advertised,
                        expected = %expected.advertised,
                        rack = ?actual.rack,
                        expected_rack = ?expected.rack,
                        "broker runs an outdated per-broker config"
                    );
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(broker = view.id, %error, "cannot ask the broker about itself");
            }
        }
    }
}

/// The address each broker's external load balancer got, by broker id.
pub fn load_balancer_hosts(
    cluster: &ValidatedCluster,
    services: &[Service],
) -> BTreeMap<i32, String> {
    (0..cluster.replicas)
        .filter_map(|id| {
            let name = cluster.external_service_name(id);
            let service = services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))?;
            let ingress = service
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?
                .first()?;
            ingress
                .hostname
                .clone()
                .or_else(|| ingress.ip.clone())
                .map(|host| (id, host))
        })
        .collect()
}

/// The broker `pod` is, as the roll sees it.
pub fn pod_view(pod: &Pod) -> Option<PodView> {
    let id = pod
        .labels()
        .get("apps.kubernetes.io/pod-index")
        .and_then(|i| i.parse().ok())
        .or_else(|| pod.name_any().rsplit('-').next()?.parse().ok())?;
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodView {
        id,
        revision: pod.labels().get("controller-revision-hash").cloned(),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        config_stale: false,
    })
}
