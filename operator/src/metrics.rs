//! The operator's Prometheus metrics, served on `/metrics`.
//!
//! Names carry the `rivulet_operator_` prefix and follow Prometheus'
//! conventions (`_total` counters, `_seconds` durations), so
//! `promtool check metrics` accepts the exposition. The process's own
//! resource use is exported under the conventional `process_*` names, the
//! same as the broker's, read from `/proc/self` on each scrape.

use std::{collections::BTreeMap, sync::Mutex, time::Instant};

use prometheus::{
    Counter, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use rivulet_wire::process::ProcessStats;

use crate::error::Error;

/// The state a cluster's conditions put it in, for the `clusters` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClusterState {
    /// Every broker ready, nothing pending.
    Ready,
    /// Creating, scaling or rolling.
    Progressing,
    /// Invalid spec or a broker that did not come back.
    Degraded,
}

impl ClusterState {
    const ALL: [ClusterState; 3] = [
        ClusterState::Ready,
        ClusterState::Progressing,
        ClusterState::Degraded,
    ];

    fn label(self) -> &'static str {
        match self {
            ClusterState::Ready => "ready",
            ClusterState::Progressing => "progressing",
            ClusterState::Degraded => "degraded",
        }
    }
}

/// The `certificate` label values of the certificate expiry gauge.
pub const CERTIFICATES: [&str; 4] = ["cluster-ca", "clients-ca", "broker", "operator"];

/// Every metric of the operator, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    clusters: IntGaugeVec,
    leader: IntGauge,
    certificate_expiry: GaugeVec,
    process: ProcessSeries,
    /// Last known state per `namespace/name`, so the gauge counts each
    /// cluster once however often it is reconciled.
    cluster_states: Mutex<BTreeMap<String, ClusterState>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "rivulet_operator_reconciles_total",
                "Reconciles started, by controller.",
            ),
            &["controller"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "rivulet_operator_reconcile_failures_total",
                "Reconciles that failed, by controller and the step that failed.",
            ),
            &["controller", "error"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "rivulet_operator_reconcile_duration_seconds",
                "Time a reconcile took, by controller.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["controller"],
        )
        .expect("valid metric");
        let clusters = IntGaugeVec::new(
            Opts::new(
                "rivulet_operator_clusters",
                "KafkaClusters known to this operator, by state (ready, progressing, degraded).",
            ),
            &["state"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "rivulet_operator_leader",
            "1 while this replica holds the leader lease and runs the controllers.",
        )
        .expect("valid metric");
        let certificate_expiry = GaugeVec::new(
            Opts::new(
                "rivulet_operator_certificate_expiry_timestamp_seconds",
                "End of validity (Unix seconds) of a cluster's certificate the operator manages: cluster-ca, clients-ca, broker (the earliest), operator.",
            ),
            &["namespace", "cluster", "certificate"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(clusters.clone()),
            Box::new(leader.clone()),
            Box::new(certificate_expiry.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        for state in ClusterState::ALL {
            clusters.with_label_values(&[state.label()]).set(0);
        }
        let process = ProcessSeries::register(&registry);
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            clusters,
            leader,
            certificate_expiry,
            process,
            cluster_states: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts a reconcile of `controller`; the returned guard records its
    /// duration when dropped, however the reconcile ends.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles.with_label_values(&[controller]).inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile by the step that failed.
    pub fn failure(&self, controller: &'static str, error: &Error) {
        self.failures
            .with_label_values(&[controller, error.metric_label()])
            .inc();
    }

    /// Records the state of cluster `key` (`namespace/name`).
    pub fn set_cluster_state(&self, key: &str, state: ClusterState) {
        let mut states = self.cluster_states.lock().expect("metrics lock");
        states.insert(key.to_string(), state);
        self.publish_states(&states);
    }

    /// Forgets a deleted cluster (`namespace/name`), its certificates too.
    pub fn forget_cluster(&self, key: &str) {
        let mut states = self.cluster_states.lock().expect("metrics lock");
        states.remove(key);
        self.publish_states(&states);
        if let Some((namespace, cluster)) = key.split_once('/') {
            for certificate in CERTIFICATES {
                // Absent series are fine: not every cluster uses TLS.
                let _ =
                    self.certificate_expiry
                        .remove_label_values(&[namespace, cluster, certificate]);
            }
        }
    }

    /// Records when a certificate of a cluster expires (Unix seconds);
    /// `certificate` is one of `cluster-ca`, `clients-ca`, `broker`, `operator`.
    pub fn set_certificate_expiry(
        &self,
        namespace: &str,
        cluster: &str,
        certificate: &str,
        not_after: i64,
    ) {
        self.certificate_expiry
            .with_label_values(&[namespace, cluster, certificate])
            .set(not_after as f64);
    }

    fn publish_states(&self, states: &BTreeMap<String, ClusterState>) {
        for state in ClusterState::ALL {
            let count = states.values().filter(|s| **s == state).count();
            self.clusters
                .with_label_values(&[state.label()])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Sets whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The text exposition format of every metric, process series read now.
    pub fn render(&self) -> String {
        self.process.refresh();
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("exposition is UTF-8")
    }
}

/// The `process_*` series, under the names and help texts the broker uses
/// (and Prometheus client libraries export), so one dashboard query covers
/// both programs.
struct ProcessSeries {
    cpu_seconds: Counter,
    resident_bytes: IntGauge,
    virtual_bytes: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
}

impl ProcessSeries {
    fn register(registry: &Registry) -> Self {
        let int = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(gauge.clone()))
                .expect("metric names are unique");
            gauge
        };
        let cpu_seconds = Counter::new(
            "process_cpu_seconds_total",
            "User and system CPU time spent in seconds",
        )
        .expect("valid metric");
        let start_time = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
        )
        .expect("valid metric");
        for collector in [
            Box::new(cpu_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(start_time.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        ProcessSeries {
            cpu_seconds,
            resident_bytes: int(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ),
            virtual_bytes: int(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
            ),
            open_fds: int("process_open_fds", "Open file descriptors"),
            max_fds: int("process_max_fds", "Maximum number of open file descriptors"),
            threads: int("process_threads", "Operating system threads of the process"),
            start_time,
        }
    }

    /// Reads `/proc/self`; without it the series keep their last values (0).
    fn refresh(&self) {
        let Some(p) = ProcessStats::read() else {
            return;
        };
        // A counter only moves up: advance it to the kernel's total.
        let cpu = self.cpu_seconds.get();
        if p.cpu_seconds > cpu {
            self.cpu_seconds.inc_by(p.cpu_seconds - cpu);
        }
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.resident_bytes.set(clamp(p.resident_bytes));
        self.virtual_bytes.set(clamp(p.virtual_bytes));
        self.open_fds.set(clamp(p.open_fds));
        self.max_fds.set(clamp(p.max_fds));
        self.threads.set(clamp(p.threads));
        self.start_time.set(p.start_time_seconds);
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .with_label_values(&[self.controller])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_states() {
        let metrics = Metrics::new();
        drop(metrics.reconcile("kafkacluster"));
        metrics.set_cluster_state("kafka/a", ClusterState::Ready);
        metrics.set_cluster_state("kafka/b", ClusterState::Degraded);
        metrics.set_cluster_state("kafka/b", ClusterState::Ready);
        metrics.set_leader(true);
        let text = metrics.render();
        assert!(
            text.contains("rivulet_operator_reconciles_total{controller=\"kafkacluster\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rivulet_operator_clusters{state=\"ready\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("rivulet_operator_clusters{state=\"degraded\"} 0"),
            "{text}"
        );
        assert!(text.contains("rivulet_operator_leader 1"), "{text}");
        assert!(text.contains(
            "rivulet_operator_reconcile_duration_seconds_count{controller=\"kafkacluster\"} 1"
        ));
        metrics.set_certificate_expiry("kafka", "a", "cluster-ca", 1_900_000_000);
        let text = metrics.render();
        assert!(
            text.contains("rivulet_operator_certificate_expiry_timestamp_seconds{certificate=\"cluster-ca\",cluster=\"a\",namespace=\"kafka\"} 1900000000"),
            "{text}"
        );
        metrics.forget_cluster("kafka/a");
        let text = metrics.render();
        assert!(text.contains("rivulet_operator_clusters{state=\"ready\"} 1"));
        assert!(!text.contains("certificate=\"cluster-ca\""), "{text}");
    }

    /// The value of an unlabelled series in an exposition.
    fn value(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn process_series_under_the_brokers_names() {
        let text = Metrics::new().render();
        for name in [
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
            "process_start_time_seconds",
        ] {
            let v = value(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
            assert!(v > 0.0, "{name} {v}");
        }
        assert!(
            value(&text, "process_cpu_seconds_total").is_some(),
            "{text}"
        );
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
        // Each scrape reads anew: burn CPU until the kernel's count moves,
        // and the next scrape shows it.
        let metrics = Metrics::new();
        let first = value(&metrics.render(), "process_cpu_seconds_total").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ProcessStats::read().unwrap().cpu_seconds <= first {
            assert!(
                std::time::Instant::now() < deadline,
                "CPU time stands still"
            );
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        let second = value(&metrics.render(), "process_cpu_seconds_total").unwrap();
        assert!(second > first, "{first} then {second}");
    }
}
