//! The `prometheus.yml` that `rivulet dev` writes beside `cluster.json`: a
//! scrape job over its brokers' `/metrics`, with the target labels the
//! dashboards and alerts filter on (`namespace`, `cluster`, `pod`, and the
//! `kubernetes_pod_name`/`strimzi_io_*` ones Strimzi's dashboards use), so
//! a laptop's Prometheus sees what a Kubernetes one does.

use super::layout::{BrokerRecord, DevPlan};

/// The file name, in the data directory.
pub const PROMETHEUS_FILE: &str = "prometheus.yml";

/// The namespace label of a local cluster's series.
const NAMESPACE: &str = "local";
/// The cluster label of a local cluster's series.
const CLUSTER: &str = "dev";

/// The scrape configuration for `records` (pure).
pub fn prometheus_config(plan: &DevPlan, records: &[BrokerRecord]) -> String {
    let mut out = String::from(
        "# Written by `rivulet dev` for its brokers. Run a local Prometheus with:\n\
         #   prometheus --config.file=prometheus.yml --storage.tsdb.path=prometheus-data\n\
         # (from this directory), and add the alert rules with rule_files below.\n\
         global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n\
         # rule_files:\n#   - /path/to/rivulet/manifests/monitoring/rivulet-rules.yaml\n\
         scrape_configs:\n  - job_name: rivulet\n    static_configs:\n",
    );
    for r in records {
        let pod = format!("{CLUSTER}-broker-{}", r.id);
        out.push_str(&format!(
            "      - targets: [\"{addr}\"]\n        labels:\n          \
             namespace: {NAMESPACE}\n          cluster: {CLUSTER}\n          pod: {pod}\n          \
             kubernetes_pod_name: {pod}\n          strimzi_io_cluster: {CLUSTER}\n          \
             strimzi_io_name: {CLUSTER}-kafka\n          node_id: \"{id}\"\n",
            addr = plan.addr(r.metrics_port),
            id = r.id,
        ));
    }
    out
}
