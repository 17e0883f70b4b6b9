//! The Prometheus operator object that scrapes the brokers: a
//! ServiceMonitor over the headless Service or a PodMonitor over the pods.
//!
//! The Prometheus operator's CRDs are optional, so these are built as
//! [`DynamicObject`]s and only when the API server serves the kind.

use kube::{
    api::{ApiResource, DynamicObject, GroupVersionKind},
    core::ObjectMeta,
};
use serde_json::json;

use super::{owned_meta, MonitorApis};
use crate::{crd::MonitorKind, validate::ValidatedCluster};

/// A Prometheus operator kind the operator may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorApi {
    /// Kind name.
    pub kind: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
}

/// `monitoring.coreos.com/v1` ServiceMonitor.
pub const SERVICE_MONITOR: MonitorApi = MonitorApi {
    kind: "ServiceMonitor",
    plural: "servicemonitors",
};
/// `monitoring.coreos.com/v1` PodMonitor.
pub const POD_MONITOR: MonitorApi = MonitorApi {
    kind: "PodMonitor",
    plural: "podmonitors",
};

impl MonitorApi {
    /// The API resource, for a dynamic `Api`.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("monitoring.coreos.com", "v1", self.kind),
            self.plural,
        )
    }
}

/// The monitor `cluster` asks for, if metrics are on and its kind is served.
pub fn build_monitor(cluster: &ValidatedCluster, apis: MonitorApis) -> Option<DynamicObject> {
    let metrics = &cluster.spec.metrics;
    if !metrics.enabled {
        return None;
    }
    let (api, served) = match metrics.monitor {
        MonitorKind::ServiceMonitor => (SERVICE_MONITOR, apis.service_monitor),
        MonitorKind::PodMonitor => (POD_MONITOR, apis.pod_monitor),
        MonitorKind::None => return None,
    };
    if !served {
        return None;
    }
    let mut meta: ObjectMeta = owned_meta(cluster, cluster.statefulset_name());
    let mut labels = metrics.monitor_labels.clone();
    labels.extend(cluster.labels());
    meta.labels = Some(labels);
    let endpoint = json!({
        "port": "metrics",
        "path": "/metrics",
        "interval": "30s",
        "relabelings": relabelings(&cluster.name),
    });
    let selector = json!({ "matchLabels": cluster.selector_labels() });
    let spec = if api == SERVICE_MONITOR {
        // The headless Service carries the selector labels too.
        json!({ "selector": selector, "endpoints": [endpoint] })
    } else {
        json!({ "selector": selector, "podMetricsEndpoints": [endpoint] })
    };
    let mut object = DynamicObject::new(
        meta.name.as_deref().unwrap_or_default(),
        &api.api_resource(),
    )
    .data(json!({ "spec": spec }));
    object.metadata = meta;
    Some(object)
}

/// The target labels dashboards and alerts filter on, beside the
/// `namespace` and `pod` the Prometheus operator adds: `cluster`, and the
/// names Strimzi's dashboards use (`kubernetes_pod_name`,
/// `strimzi_io_cluster`, `strimzi_io_name`), so those work unchanged.
fn relabelings(cluster: &str) -> serde_json::Value {
    json!([
        { "targetLabel": "cluster", "replacement": cluster, "action": "replace" },
        { "sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "kubernetes_pod_name",
          "action": "replace" },
        { "targetLabel": "strimzi_io_cluster", "replacement": cluster, "action": "replace" },
        { "targetLabel": "strimzi_io_name", "replacement": format!("{cluster}-kafka"),
          "action": "replace" },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::validated;

    const ALL: MonitorApis = MonitorApis {
        service_monitor: true,
        pod_monitor: true,
    };

    #[test]
    fn service_monitor_when_served() {
        let cluster = validated("replicas: 3\nmetrics:\n  monitorLabels:\n    release: prom");
        let monitor = build_monitor(&cluster, ALL).unwrap();
        let types = monitor.types.as_ref().unwrap();
        assert_eq!(types.kind, "ServiceMonitor");
        assert_eq!(types.api_version, "monitoring.coreos.com/v1");
        assert_eq!(monitor.metadata.labels.as_ref().unwrap()["release"], "prom");
        assert_eq!(monitor.data["spec"]["endpoints"][0]["port"], "metrics");
        let relabel = &monitor.data["spec"]["endpoints"][0]["relabelings"];
        assert_eq!(relabel[0]["targetLabel"], "cluster");
        assert_eq!(relabel[0]["replacement"], "demo");
        assert_eq!(
            monitor.data["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
            "demo"
        );
        assert!(
            build_monitor(&cluster, MonitorApis::default()).is_none(),
            "CRD missing"
        );
    }

    #[test]
    fn pod_monitor_or_none() {
        let pods = validated("replicas: 1\nmetrics:\n  monitor: PodMonitor");
        let monitor = build_monitor(&pods, ALL).unwrap();
        assert_eq!(monitor.types.as_ref().unwrap().kind, "PodMonitor");
        assert_eq!(
            monitor.data["spec"]["podMetricsEndpoints"][0]["path"],
            "/metrics"
        );
        assert!(build_monitor(&validated("replicas: 1\nmetrics:\n  monitor: None"), ALL).is_none());
        assert!(
            build_monitor(&validated("replicas: 1\nmetrics:\n  enabled: false"), ALL).is_none()
        );
    }
}
