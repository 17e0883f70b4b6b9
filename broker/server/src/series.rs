//! The metric families whose values are computed when Prometheus scrapes,
//! not bumped on a request path: process resources, runtime idleness, log
//! directory space, the per-partition state Kafka Exporter and Kafka's
//! `kafka.cluster:type=Partition` MBeans publish, controller counts, the
//! Raft gauges Kafka's KRaft dashboards read, and certificate expiry.
//!
//! Registered once beside the other families ([`crate::metrics::Metrics`]);
//! the HTTP layer fills them on each scrape from the node's state. Gauges
//! over partitions are cleared and rebuilt on each fill, so a partition that
//! moved away or was deleted stops being reported.

use prometheus::{
    Counter, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Every scrape-time family; field docs give the exported names.
#[derive(Clone)]
pub struct ScrapeSeries {
    /// `process_cpu_seconds_total`.
    pub cpu_seconds: Counter,
    /// `process_resident_memory_bytes`.
    pub resident_bytes: IntGauge,
    /// `process_virtual_memory_bytes`.
    pub virtual_bytes: IntGauge,
    /// `process_open_fds`.
    pub open_fds: IntGauge,
    /// `process_max_fds`.
    pub max_fds: IntGauge,
    /// `process_threads`.
    pub threads: IntGauge,
    /// `process_start_time_seconds`.
    pub start_time: Gauge,
    /// `kafka_server_kafkaserver_linux_disk_read_bytes` (cumulative, as Kafka's gauge).
    pub disk_read_bytes: IntGauge,
    /// `kafka_server_kafkaserver_linux_disk_write_bytes`.
    pub disk_write_bytes: IntGauge,
    /// `kafka_server_kafkarequesthandlerpool_requesthandleravgidle_percent`
    /// (a 0-1 ratio despite Kafka's name).
    pub handler_idle: Gauge,
    /// `kafka_network_socketserver_networkprocessoravgidle_percent`.
    pub network_idle: Gauge,
    /// `rivulet_runtime_worker_busy_seconds_total`.
    pub worker_busy: Counter,
    /// `rivulet_runtime_workers`.
    pub workers: IntGauge,
    /// `kafka_log_logdir_size_bytes{log_dir}`.
    pub log_dir_size: IntGaugeVec,
    /// `kafka_log_logdir_free_bytes{log_dir}`.
    pub log_dir_free: IntGaugeVec,
    /// `kafka_log_logdir_total_bytes{log_dir}`.
    pub log_dir_total: IntGaugeVec,
    /// `kafka_log_logmanager_offlinelogdirectorycount`.
    pub offline_log_dirs: IntGauge,
    /// `kafka_log_logflushstats_logflush_seconds`: fsyncs of partition logs.
    pub log_flush: Histogram,
    /// `kafka_broker_info{id,address}`.
    pub broker_info: IntGaugeVec,
    /// `kafka_topic_partitions{topic}` (active controller).
    pub topic_partitions: IntGaugeVec,
    /// The per-partition families, reported by each partition's leader.
    pub partition: PartitionSeries,
    /// `kafka_server_replicamanager_reassigningpartitions`.
    pub reassigning: IntGauge,
    /// `rivulet_reassignment_adding_replicas_pending`.
    pub reassignment_pending: IntGauge,
    /// `rivulet_metrics_partition_series_dropped`: partitions left out of
    /// per-partition series by `metrics.partition.series.max`.
    pub partition_series_dropped: IntGauge,
    /// `kafka_controller_kafkacontroller_activebrokercount` (active controller).
    pub active_brokers: IntGauge,
    /// `kafka_controller_kafkacontroller_globaltopiccount`.
    pub global_topics: IntGauge,
    /// `kafka_controller_kafkacontroller_globalpartitioncount`.
    pub global_partitions: IntGauge,
    /// `kafka_controller_kafkacontroller_preferredreplicaimbalancecount`.
    pub preferred_imbalance: IntGauge,
    /// `kafka_controller_controllerstats_uncleanleaderelections_total`.
    pub unclean_elections: IntCounter,
    /// The Raft families beyond state/epoch/offsets.
    pub raft: RaftSeries,
    /// `rivulet_tls_certificate_expiry_timestamp_seconds{listener}`.
    pub tls_expiry: GaugeVec,
}

/// Kafka Exporter's and Kafka's per-partition gauges, labelled
/// `topic`, `partition`.
#[derive(Clone)]
pub struct PartitionSeries {
    /// `kafka_topic_partition_current_offset` (high watermark).
    pub current_offset: IntGaugeVec,
    /// `kafka_topic_partition_oldest_offset` (log start offset).
    pub oldest_offset: IntGaugeVec,
    /// `kafka_topic_partition_replicas`.
    pub replicas: IntGaugeVec,
    /// `kafka_topic_partition_in_sync_replica`.
    pub in_sync: IntGaugeVec,
    /// `kafka_topic_partition_leader`.
    pub leader: IntGaugeVec,
    /// `kafka_topic_partition_leader_is_preferred`.
    pub leader_is_preferred: IntGaugeVec,
    /// `kafka_topic_partition_under_replicated_partition`.
    pub under_replicated: IntGaugeVec,
    /// `kafka_cluster_partition_replicascount`.
    pub replicas_count: IntGaugeVec,
    /// `kafka_cluster_partition_insyncreplicascount`.
    pub in_sync_count: IntGaugeVec,
    /// `kafka_cluster_partition_underreplicated`.
    pub cluster_under_replicated: IntGaugeVec,
    /// `kafka_cluster_partition_underminisr`.
    pub under_min_isr: IntGaugeVec,
    /// `kafka_cluster_partition_atminisr`.
    pub at_min_isr: IntGaugeVec,
}

impl PartitionSeries {
    fn all(&self) -> [&IntGaugeVec; 12] {
        [
            &self.current_offset,
            &self.oldest_offset,
            &self.replicas,
            &self.in_sync,
            &self.leader,
            &self.leader_is_preferred,
            &self.under_replicated,
            &self.replicas_count,
            &self.in_sync_count,
            &self.cluster_under_replicated,
            &self.under_min_isr,
            &self.at_min_isr,
        ]
    }

    /// Forgets every partition, before a fill.
    pub fn reset(&self) {
        for vec in self.all() {
            vec.reset();
        }
    }
}

/// Kafka's `raft-metrics` and `raft-channel-metrics` beyond the ones
/// [`crate::metrics::Metrics`] keeps.
#[derive(Clone)]
pub struct RaftSeries {
    /// `kafka_server_raftmetrics_current_leader` (-1 when unknown).
    pub current_leader: IntGauge,
    /// `kafka_server_raftmetrics_current_vote` (-1 when none).
    pub current_vote: IntGauge,
    /// `kafka_server_raftmetrics_append_records_rate` (leader, per second).
    pub append_rate: Gauge,
    /// `kafka_server_raftmetrics_fetch_records_rate` (followers, per second).
    pub fetch_rate: Gauge,
    /// `kafka_server_raftmetrics_commit_latency_avg` (milliseconds, as Kafka).
    pub commit_latency_avg: Gauge,
    /// `kafka_server_raftmetrics_commit_latency_max` (milliseconds).
    pub commit_latency_max: Gauge,
    /// `kafka_server_raftmetrics_number_voters`.
    pub voters: IntGauge,
    /// `kafka_server_raftchannelmetrics_request_total`.
    pub requests: IntCounter,
    /// `kafka_server_raftchannelmetrics_response_total`.
    pub responses: IntCounter,
    /// `kafka_server_raftchannelmetrics_outgoing_byte_total`.
    pub bytes_out: IntCounter,
    /// `kafka_server_raftchannelmetrics_incoming_byte_total`.
    pub bytes_in: IntCounter,
}

struct Reg<'a>(&'a Registry);

impl Reg<'_> {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0.register(Box::new(c.clone())).expect("unique metric");
        c
    }
    fn int(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }
    fn float(&self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::new(name, help).expect("valid metric"))
    }
    fn ints(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }
    fn tp(&self, name: &str, help: &str) -> IntGaugeVec {
        self.ints(name, help, &["topic", "partition"])
    }
}

impl ScrapeSeries {
    /// Registers every family in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let r = Reg(registry);
        let dir = &["log_dir"];
        let log_flush = r.add(
            Histogram::with_opts(
                HistogramOpts::new(
                    "kafka_log_logflushstats_logflush_seconds",
                    "Time an fsync of a partition log took",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )
            .expect("valid metric"),
        );
        ScrapeSeries {
            cpu_seconds: r.add(
                Counter::new(
                    "process_cpu_seconds_total",
                    "User and system CPU time spent in seconds",
                )
                .expect("valid metric"),
            ),
            resident_bytes: r.int("process_resident_memory_bytes", "Resident memory size in bytes"),
            virtual_bytes: r.int("process_virtual_memory_bytes", "Virtual memory size in bytes"),
            open_fds: r.int("process_open_fds", "Open file descriptors"),
            max_fds: r.int("process_max_fds", "Maximum number of open file descriptors"),
            threads: r.int("process_threads", "Operating system threads of the process"),
            start_time: r.float(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
            ),
            disk_read_bytes: r.int(
                "kafka_server_kafkaserver_linux_disk_read_bytes",
                "Bytes the broker process read from storage since it started",
            ),
            disk_write_bytes: r.int(
                "kafka_server_kafkaserver_linux_disk_write_bytes",
                "Bytes the broker process wrote to storage since it started",
            ),
            handler_idle: r.float(
                "kafka_server_kafkarequesthandlerpool_requesthandleravgidle_percent",
                "Idle ratio (0-1) of the runtime workers that handle requests, since the last scrape",
            ),
            network_idle: r.float(
                "kafka_network_socketserver_networkprocessoravgidle_percent",
                "Idle ratio (0-1) of the runtime workers that serve connections, since the last scrape",
            ),
            worker_busy: r.add(
                Counter::new(
                    "rivulet_runtime_worker_busy_seconds_total",
                    "Time the async runtime's worker threads spent busy, summed over workers",
                )
                .expect("valid metric"),
            ),
            workers: r.int("rivulet_runtime_workers", "Worker threads of the async runtime"),
            log_dir_size: r.ints(
                "kafka_log_logdir_size_bytes",
                "Bytes of partition data in the log directory",
                dir,
            ),
            log_dir_free: r.ints(
                "kafka_log_logdir_free_bytes",
                "Bytes available to the broker on the log directory's filesystem",
                dir,
            ),
            log_dir_total: r.ints(
                "kafka_log_logdir_total_bytes",
                "Size in bytes of the log directory's filesystem",
                dir,
            ),
            offline_log_dirs: r.int(
                "kafka_log_logmanager_offlinelogdirectorycount",
                "Log directories offline after an I/O error or that cannot be read",
            ),
            log_flush,
            broker_info: r.ints(
                "kafka_broker_info",
                "Always 1: this broker's id and advertised address",
                &["id", "address"],
            ),
            topic_partitions: r.ints(
                "kafka_topic_partitions",
                "Partitions of the topic (reported by the active controller)",
                &["topic"],
            ),
            partition: PartitionSeries::register(&r),
            reassigning: r.int(
                "kafka_server_replicamanager_reassigningpartitions",
                "Partitions led by this broker with a reassignment in progress",
            ),
            reassignment_pending: r.int(
                "rivulet_reassignment_adding_replicas_pending",
                "Replicas being added by reassignments of partitions this broker leads, not yet in sync",
            ),
            partition_series_dropped: r.int(
                "rivulet_metrics_partition_series_dropped",
                "Partitions left out of per-partition series by metrics.partition.series.max",
            ),
            active_brokers: r.int(
                "kafka_controller_kafkacontroller_activebrokercount",
                "Registered, unfenced brokers (active controller only)",
            ),
            global_topics: r.int(
                "kafka_controller_kafkacontroller_globaltopiccount",
                "Topics in the cluster (active controller only)",
            ),
            global_partitions: r.int(
                "kafka_controller_kafkacontroller_globalpartitioncount",
                "Partitions in the cluster (active controller only)",
            ),
            preferred_imbalance: r.int(
                "kafka_controller_kafkacontroller_preferredreplicaimbalancecount",
                "Partitions not led by their preferred replica (active controller only)",
            ),
            unclean_elections: r.counter(
                "kafka_controller_controllerstats_uncleanleaderelections_total",
                "Leaders elected from outside the ISR by this controller",
            ),
            raft: RaftSeries::register(&r),
            tls_expiry: r.add(
                GaugeVec::new(
                    Opts::new(
                        "rivulet_tls_certificate_expiry_timestamp_seconds",
                        "When the listener's certificate expires, in seconds since the Unix epoch",
                    ),
                    &["listener"],
                )
                .expect("valid metric"),
            ),
        }
    }
}

impl PartitionSeries {
    fn register(r: &Reg<'_>) -> Self {
        PartitionSeries {
            current_offset: r.tp(
                "kafka_topic_partition_current_offset",
                "High watermark of the partition (reported by its leader)",
            ),
            oldest_offset: r.tp(
                "kafka_topic_partition_oldest_offset",
                "Log start offset of the partition (reported by its leader)",
            ),
            replicas: r.tp(
                "kafka_topic_partition_replicas",
                "Replicas of the partition",
            ),
            in_sync: r.tp(
                "kafka_topic_partition_in_sync_replica",
                "In-sync replicas of the partition",
            ),
            leader: r.tp(
                "kafka_topic_partition_leader",
                "Leader broker id of the partition",
            ),
            leader_is_preferred: r.tp(
                "kafka_topic_partition_leader_is_preferred",
                "1 if the partition is led by its preferred replica",
            ),
            under_replicated: r.tp(
                "kafka_topic_partition_under_replicated_partition",
                "1 if the partition has fewer in-sync replicas than replicas",
            ),
            replicas_count: r.tp(
                "kafka_cluster_partition_replicascount",
                "Replicas of the partition (reported by its leader)",
            ),
            in_sync_count: r.tp(
                "kafka_cluster_partition_insyncreplicascount",
                "In-sync replicas of the partition (reported by its leader)",
            ),
            cluster_under_replicated: r.tp(
                "kafka_cluster_partition_underreplicated",
                "1 if the partition is under-replicated (reported by its leader)",
            ),
            under_min_isr: r.tp(
                "kafka_cluster_partition_underminisr",
                "1 if the partition's ISR is below min.insync.replicas",
            ),
            at_min_isr: r.tp(
                "kafka_cluster_partition_atminisr",
                "1 if the partition's ISR is exactly min.insync.replicas",
            ),
        }
    }
}

impl RaftSeries {
    fn register(r: &Reg<'_>) -> Self {
        RaftSeries {
            current_leader: r.int(
                "kafka_server_raftmetrics_current_leader",
                "Id of the metadata quorum's leader, -1 if unknown",
            ),
            current_vote: r.int(
                "kafka_server_raftmetrics_current_vote",
                "Id of the node this node voted for in the current epoch, -1 if none",
            ),
            append_rate: r.float(
                "kafka_server_raftmetrics_append_records_rate",
                "Metadata records appended per second as leader, since the last scrape",
            ),
            fetch_rate: r.float(
                "kafka_server_raftmetrics_fetch_records_rate",
                "Metadata records replicated per second as follower, since the last scrape",
            ),
            commit_latency_avg: r.float(
                "kafka_server_raftmetrics_commit_latency_avg",
                "Average milliseconds to commit a metadata proposal, since the last scrape",
            ),
            commit_latency_max: r.float(
                "kafka_server_raftmetrics_commit_latency_max",
                "Longest milliseconds to commit a metadata proposal since start",
            ),
            voters: r.int(
                "kafka_server_raftmetrics_number_voters",
                "Voters in the metadata quorum",
            ),
            requests: r.counter(
                "kafka_server_raftchannelmetrics_request_total",
                "Quorum RPC requests sent",
            ),
            responses: r.counter(
                "kafka_server_raftchannelmetrics_response_total",
                "Quorum RPC responses received",
            ),
            bytes_out: r.counter(
                "kafka_server_raftchannelmetrics_outgoing_byte_total",
                "Payload bytes of quorum RPC requests sent",
            ),
            bytes_in: r.counter(
                "kafka_server_raftchannelmetrics_incoming_byte_total",
                "Payload bytes of quorum RPC responses received",
            ),
        }
    }
}

/// Moves a counter up to `total`, a monotonic value read from elsewhere.
pub fn advance(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

/// Moves a float counter up to `total`.
pub fn advance_f64(counter: &Counter, total: f64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}
