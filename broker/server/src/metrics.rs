//! Prometheus metrics with the names Kafka users know from the JMX exporter,
//! so existing dashboards and alerts work unchanged.
//!
//! Handles are resolved once per topic or partition ([`TopicMetrics`],
//! [`PartitionMetrics`]) and kept beside the data they describe: the produce
//! and fetch paths bump an atomic, they never look a label set up.

use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub use crate::series::ScrapeSeries;

/// Every broker metric family.
pub struct Metrics {
    registry: Registry,
    bytes_in: IntCounterVec,
    bytes_out: IntCounterVec,
    messages_in: IntCounterVec,
    produce_requests: IntCounterVec,
    failed_produce_requests: IntCounterVec,
    fetch_requests: IntCounterVec,
    failed_fetch_requests: IntCounterVec,
    log_size: IntGaugeVec,
    log_start_offset: IntGaugeVec,
    log_end_offset: IntGaugeVec,
    segments: IntGaugeVec,
    lso_lag: IntGaugeVec,
    /// Open transactions in the partitions this broker leads.
    pub ongoing_transactions: IntGauge,
    /// Per-API request handles, by api key.
    apis: std::collections::BTreeMap<i16, ApiMetrics>,
    /// Requests that got a connection closed instead of an answer, by reason.
    pub request_errors: IntCounterVec,
    /// Failed TLS handshakes and SASL authentications, by listener and
    /// mechanism (`SSL` for the handshake).
    pub failed_authentications: IntCounterVec,
    /// Requests refused by the ACL authorizer, by operation and resource
    /// type (Kafka's names, e.g. `WRITE`, `TOPIC`).
    pub authorization_denials: IntCounterVec,

    /// How far the system clock is from the broker's own (seconds; not zero
    /// once someone stepped the clock, see the `clock` module).
    pub wall_clock_offset: prometheus::Gauge,
    /// Open client connections.
    pub connections: IntGauge,
    /// Open client connections by listener, under Kafka's name
    /// (`kafka_server_socket_server_metrics_connection_count{listener}`).
    pub connection_count: IntGaugeVec,
    /// Partitions hosted.
    pub partition_count: IntGauge,
    /// Partitions led (all of them, on a single broker).
    pub leader_count: IntGauge,
    /// Under-replicated partitions (always 0 on a single broker).
    pub under_replicated: IntGauge,
    /// 1 on the active controller.
    pub active_controller: IntGauge,
    /// 1 while this broker's leader lease is held (always on one broker).
    pub leader_lease: IntGauge,
    /// Led partitions whose ISR is below min.insync.replicas.
    pub under_min_isr: IntGauge,
    /// Partitions without a leader (reported by the active controller).
    pub offline_partitions: IntGauge,
    /// Brokers fenced in the metadata (reported by the active controller).
    pub fenced_brokers: IntGauge,
    /// ISR shrinks proposed by this broker as leader.
    pub isr_shrinks: IntCounter,
    /// ISR expansions proposed by this broker as leader.
    pub isr_expands: IntCounter,
    /// Largest lag (messages) of a partition this broker follows.
    pub max_follower_lag: IntGauge,
    /// Raft role of this node, as Kafka's JMX exporter shows it: 1 on the
    /// series whose `current_state` label is the role, 0 on the others.
    pub raft_state: IntGaugeVec,
    /// Raft term.
    pub raft_term: IntGauge,
    /// Highest committed metadata offset.
    pub raft_commit_index: IntGauge,
    /// Highest applied metadata offset.
    pub raft_last_applied: IntGauge,
    /// The group coordinator's families.
    pub groups: GroupMetrics,
    /// Client quota throttling.
    pub quotas: QuotaMetrics,
    /// The transaction coordinator's families.
    pub txns: TxnMetrics,
    /// Families computed when Prometheus scrapes.
    pub series: ScrapeSeries,
    /// Most partitions that get per-partition series (`metrics.partition.series.max`).
    partition_series_max: AtomicUsize,
    /// Partitions holding per-partition log series now.
    partition_series: AtomicUsize,
}

/// The Raft roles under Kafka's `current-state` names.
pub const RAFT_STATES: [&str; 5] = ["leader", "candidate", "follower", "observer", "unattached"];

mod quota;
pub use quota::QuotaMetrics;

/// The group coordinator's metric families.
#[derive(Clone)]
pub struct GroupMetrics {
    /// `kafka_coordinator_group_groupmetadatamanager_numgroups{state}`.
    pub groups: IntGaugeVec,
    /// `kafka_coordinator_group_groupmetadatamanager_numoffsets`.
    pub offsets: IntGauge,
    /// `kafka_server_group_coordinator_metrics_group_completed_rebalance_total`.
    pub rebalances: IntCounter,
    /// `kafka_server_group_coordinator_metrics_offset_commit_total`.
    pub offset_commits: IntCounter,
    /// `kafka_consumergroup_lag{consumergroup,topic,partition}` (as kafka_exporter names it).
    pub lag: IntGaugeVec,
    /// `kafka_consumergroup_current_offset{consumergroup,topic,partition}`.
    pub committed: IntGaugeVec,
    /// `kafka_consumergroup_lag_sum{consumergroup,topic}`: lag over the
    /// topic's partitions (kept when per-partition series are limited).
    pub lag_sum: IntGaugeVec,
    /// `kafka_consumergroup_members{consumergroup}`.
    pub members: IntGaugeVec,
    /// Whether per-partition series (`lag`, `committed`) are exported.
    pub per_partition: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl GroupMetrics {
    fn register(r: &Registry) -> Self {
        let gtp = &["consumergroup", "topic", "partition"];
        let plain_counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let rebalances = plain_counter(
            "kafka_server_group_coordinator_metrics_group_completed_rebalance_total",
            "Rebalances completed by groups this broker coordinates",
        );
        let offset_commits = plain_counter(
            "kafka_server_group_coordinator_metrics_offset_commit_total",
            "Partition offsets committed to this coordinator",
        );
        GroupMetrics {
            groups: gauge_vec(
                r,
                "kafka_coordinator_group_groupmetadatamanager_numgroups",
                "Consumer groups this broker coordinates, by state",
                &["state"],
            ),
            offsets: gauge(
                r,
                "kafka_coordinator_group_groupmetadatamanager_numoffsets",
                "Committed offsets this broker holds",
            ),
            rebalances,
            offset_commits,
            lag: gauge_vec(
                r,
                "kafka_consumergroup_lag",
                "Log end offset minus the group's committed offset",
                gtp,
            ),
            committed: gauge_vec(
                r,
                "kafka_consumergroup_current_offset",
                "The group's committed offset",
                gtp,
            ),
            lag_sum: gauge_vec(
                r,
                "kafka_consumergroup_lag_sum",
                "Lag of the group summed over the topic's partitions",
                &["consumergroup", "topic"],
            ),
            members: gauge_vec(
                r,
                "kafka_consumergroup_members",
                "Members of the group",
                &["consumergroup"],
            ),
            per_partition: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }
}

/// The transaction coordinator's metric families.
#[derive(Clone)]
pub struct TxnMetrics {
    /// `kafka_coordinator_transaction_open_transactions`: transactions open
    /// (Ongoing) at this coordinator, as of the last expiry check.
    pub open: IntGauge,
    /// `kafka_coordinator_transaction_commits_total`.
    pub commits: IntCounter,
    /// `kafka_coordinator_transaction_aborts_total` (by clients, timeouts
    /// and fencing).
    pub aborts: IntCounter,
    /// `kafka_coordinator_transaction_expired_total`: aborted for running
    /// past `transaction.timeout.ms`.
    pub expired: IntCounter,
}

impl TxnMetrics {
    fn register(r: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        TxnMetrics {
            open: gauge(
                r,
                "kafka_coordinator_transaction_open_transactions",
                "Transactions open at this coordinator",
            ),
            commits: counter(
                "kafka_coordinator_transaction_commits_total",
                "Transactions committed by this coordinator",
            ),
            aborts: counter(
                "kafka_coordinator_transaction_aborts_total",
                "Transactions aborted by this coordinator (by clients, timeouts and fencing)",
            ),
            expired: counter(
                "kafka_coordinator_transaction_expired_total",
                "Transactions aborted for running past their timeout",
            ),
        }
    }
}

tokio::task_local! {
    /// Time the current request spent waiting on others, for the
    /// `remotetime` phase; set up by the connection around each request.
    static REMOTE_WAIT: std::cell::Cell<std::time::Duration>;
}

/// Runs `request` and returns its output with the remote wait it reported
/// through [`add_remote_wait`].
pub async fn measure_remote_wait<F: std::future::Future>(
    request: F,
) -> (F::Output, std::time::Duration) {
    REMOTE_WAIT
        .scope(std::cell::Cell::new(std::time::Duration::ZERO), async {
            let out = request.await;
            (out, REMOTE_WAIT.with(std::cell::Cell::get))
        })
        .await
}

/// Adds `waited` to the current request's remote wait (a no-op outside
/// [`measure_remote_wait`]).
pub fn add_remote_wait(waited: std::time::Duration) {
    let _ = REMOTE_WAIT.try_with(|w| w.set(w.get() + waited));
}

/// Per-API handles.
pub struct ApiMetrics {
    /// `kafka_network_requestmetrics_requests_total{request}`.
    pub requests: IntCounter,
    /// `kafka_network_requestmetrics_totaltime_seconds{request}`: from a
    /// request's arrival to its response being ready.
    pub time: prometheus::Histogram,
    /// `kafka_network_requestmetrics_requestqueuetime_seconds{request}`:
    /// from the frame read to its handler starting (decode and quota
    /// checks: requests wait in no queue, a connection's task runs them).
    pub queue_time: prometheus::Histogram,
    /// `kafka_network_requestmetrics_localtime_seconds{request}`: handling,
    /// minus the remote wait.
    pub local_time: prometheus::Histogram,
    /// `kafka_network_requestmetrics_remotetime_seconds{request}`: waiting
    /// on other replicas (acks=all) or for data (a long-polling fetch).
    pub remote_time: prometheus::Histogram,
    /// `kafka_network_requestmetrics_responsesendtime_seconds{request}`:
    /// writing the response to the socket.
    pub send_time: prometheus::Histogram,
}

/// Per-topic handles.
#[derive(Clone)]
pub struct TopicMetrics {
    /// `kafka_server_brokertopicmetrics_bytesin_total`.
    pub bytes_in: IntCounter,
    /// `kafka_server_brokertopicmetrics_bytesout_total`.
    pub bytes_out: IntCounter,
    /// `kafka_server_brokertopicmetrics_messagesin_total`.
    pub messages_in: IntCounter,
    /// `kafka_server_brokertopicmetrics_totalproducerequests_total`.
    pub produce_requests: IntCounter,
    /// `kafka_server_brokertopicmetrics_failedproducerequests_total`.
    pub failed_produce_requests: IntCounter,
    /// `kafka_server_brokertopicmetrics_totalfetchrequests_total`.
    pub fetch_requests: IntCounter,
    /// `kafka_server_brokertopicmetrics_failedfetchrequests_total`.
    pub failed_fetch_requests: IntCounter,
}

/// Per-partition handles.
#[derive(Clone)]
pub struct PartitionMetrics {
    /// `kafka_log_log_size`.
    pub size: IntGauge,
    /// `kafka_log_log_logstartoffset`.
    pub start_offset: IntGauge,
    /// `kafka_log_log_logendoffset`.
    pub end_offset: IntGauge,
    /// `kafka_log_log_numlogsegments`.
    pub segments: IntGauge,
    /// `kafka_log_logflushstats_logflush_seconds` (shared by all partitions).
    pub flush: prometheus::Histogram,
    /// `kafka_cluster_partition_laststableoffsetlag`: high watermark minus
    /// last stable offset.
    pub lso_lag: IntGauge,
    /// The broker-wide open transaction count this partition adds to.
    pub ongoing_transactions: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

const LEASE_HELP: &str =
    "1 while this broker may lead partitions: the quorum accepted a heartbeat \
     within broker.session.timeout.ms";

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

impl Metrics {
    /// Registers every family in a fresh registry, with request handles
    /// for each `(api key, Kafka name)` in `apis`.
    pub fn new(apis: &[(i16, &'static str)]) -> Self {
        let r = Registry::new();
        let t = &["topic"];
        let tp = &["topic", "partition"];
        let request_time = HistogramVec::new(
            HistogramOpts::new(
                "kafka_network_requestmetrics_totaltime_seconds",
                "Time from request arrival to response, by API",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["request"],
        )
        .expect("valid metric");
        r.register(Box::new(request_time.clone()))
            .expect("unique metric");
        let requests = counter(
            &r,
            "kafka_network_requestmetrics_requests_total",
            "Requests handled, by API",
            &["request"],
        );
        let phase = |name: &str, help: &str| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(vec![
                    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
                ]),
                &["request"],
            )
            .expect("valid metric");
            r.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        let queue_time = phase(
            "kafka_network_requestmetrics_requestqueuetime_seconds",
            "Time from a request's frame being read to its handler starting, by API",
        );
        let local_time = phase(
            "kafka_network_requestmetrics_localtime_seconds",
            "Time the handler worked on a request, without remote waits, by API",
        );
        let remote_time = phase(
            "kafka_network_requestmetrics_remotetime_seconds",
            "Time a request waited on other replicas (acks=all) or for data (fetch), by API",
        );
        let send_time = phase(
            "kafka_network_requestmetrics_responsesendtime_seconds",
            "Time writing a response to the socket, by API",
        );
        let apis = apis
            .iter()
            .map(|&(key, name)| {
                let handles = ApiMetrics {
                    requests: requests.with_label_values(&[name]),
                    time: request_time.with_label_values(&[name]),
                    queue_time: queue_time.with_label_values(&[name]),
                    local_time: local_time.with_label_values(&[name]),
                    remote_time: remote_time.with_label_values(&[name]),
                    send_time: send_time.with_label_values(&[name]),
                };
                (key, handles)
            })
            .collect();
        let active_controller = gauge(
            &r,
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 if this broker is the active controller",
        );
        active_controller.set(1);
        let plain = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let isr_shrinks = plain(
            "kafka_server_replicamanager_isrshrinks_total",
            "ISR shrinks of partitions this broker leads",
        );
        let isr_expands = plain(
            "kafka_server_replicamanager_isrexpands_total",
            "ISR expansions of partitions this broker leads",
        );
        Metrics {
            bytes_in: counter(
                &r,
                "kafka_server_brokertopicmetrics_bytesin_total",
                "Bytes produced to the topic",
                t,
            ),
            bytes_out: counter(
                &r,
                "kafka_server_brokertopicmetrics_bytesout_total",
                "Bytes fetched from the topic",
                t,
            ),
            messages_in: counter(
                &r,
                "kafka_server_brokertopicmetrics_messagesin_total",
                "Records produced to the topic",
                t,
            ),
            produce_requests: counter(
                &r,
                "kafka_server_brokertopicmetrics_totalproducerequests_total",
                "Produce requests for the topic",
                t,
            ),
            failed_produce_requests: counter(
                &r,
                "kafka_server_brokertopicmetrics_failedproducerequests_total",
                "Produce requests for the topic that failed",
                t,
            ),
            fetch_requests: counter(
                &r,
                "kafka_server_brokertopicmetrics_totalfetchrequests_total",
                "Fetch requests for the topic",
                t,
            ),
            failed_fetch_requests: counter(
                &r,
                "kafka_server_brokertopicmetrics_failedfetchrequests_total",
                "Fetch requests for the topic that failed",
                t,
            ),
            log_size: gauge_vec(
                &r,
                "kafka_log_log_size",
                "Bytes on disk of the partition's log",
                tp,
            ),
            log_start_offset: gauge_vec(
                &r,
                "kafka_log_log_logstartoffset",
                "First offset of the partition",
                tp,
            ),
            log_end_offset: gauge_vec(
                &r,
                "kafka_log_log_logendoffset",
                "Next offset of the partition",
                tp,
            ),
            segments: gauge_vec(
                &r,
                "kafka_log_log_numlogsegments",
                "Segments of the partition",
                tp,
            ),
            lso_lag: gauge_vec(
                &r,
                "kafka_cluster_partition_laststableoffsetlag",
                "High watermark minus last stable offset: records held back by open transactions",
                tp,
            ),
            ongoing_transactions: gauge(
                &r,
                "kafka_server_replicamanager_ongoingtransactions",
                "Open transactions in the partitions this broker leads",
            ),
            apis,
            request_errors: counter(
                &r,
                "kafka_network_requestmetrics_errors_total",
                "Requests answered by closing the connection, by reason",
                &["error"],
            ),
            failed_authentications: counter(
                &r,
                "kafka_server_socket_server_metrics_failed_authentication_total",
                "Failed TLS handshakes and SASL authentications, by listener and mechanism",
                &["listener", "mechanism"],
            ),
            authorization_denials: counter(
                &r,
                "kafka_server_authorizer_denied_total",
                "Requests refused by the ACL authorizer, by operation and resource type",
                &["operation", "resource_type"],
            ),
            wall_clock_offset: {
                let g = prometheus::Gauge::new(
                    "rivulet_broker_wall_clock_offset_seconds",
                    "System clock minus the broker's clock; a step of the system clock shows here",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            connections: gauge(
                &r,
                "kafka_server_socketservermetrics_connections",
                "Open client connections",
            ),
            connection_count: gauge_vec(
                &r,
                "kafka_server_socket_server_metrics_connection_count",
                "Open client connections, by listener",
                &["listener"],
            ),
            partition_count: gauge(
                &r,
                "kafka_server_replicamanager_partitioncount",
                "Partitions on this broker",
            ),
            leader_count: gauge(
                &r,
                "kafka_server_replicamanager_leadercount",
                "Partitions this broker leads",
            ),
            under_replicated: gauge(
                &r,
                "kafka_server_replicamanager_underreplicatedpartitions",
                "Partitions with fewer in-sync replicas than replicas",
            ),
            active_controller,
            under_min_isr: gauge(
                &r,
                "kafka_server_replicamanager_underminisrpartitioncount",
                "Led partitions with fewer in-sync replicas than min.insync.replicas",
            ),
            leader_lease: {
                let g = gauge(&r, "kafka_server_replicamanager_leaderlease", LEASE_HELP);
                g.set(1);
                g
            },
            offline_partitions: gauge(
                &r,
                "kafka_controller_kafkacontroller_offlinepartitionscount",
                "Partitions without a leader (active controller only)",
            ),
            fenced_brokers: gauge(
                &r,
                "kafka_controller_kafkacontroller_fencedbrokercount",
                "Brokers fenced in the cluster metadata (active controller only)",
            ),
            isr_shrinks,
            isr_expands,
            max_follower_lag: gauge(
                &r,
                "kafka_server_replicafetchermanager_maxlag",
                "Largest lag in messages of a partition this broker follows",
            ),
            raft_state: {
                let g = gauge_vec(
                    &r,
                    "kafka_server_raftmetrics_current_state",
                    "1 on the series labelled with this node's Raft role (current_state), else 0",
                    &["current_state"],
                );
                for state in RAFT_STATES {
                    g.with_label_values(&[state])
                        .set(i64::from(state == "unattached"));
                }
                g
            },
            raft_term: gauge(
                &r,
                "kafka_server_raftmetrics_current_epoch",
                "Raft term (epoch) of the metadata quorum",
            ),
            raft_commit_index: gauge(
                &r,
                "kafka_server_raftmetrics_high_watermark",
                "Highest committed offset of the metadata log",
            ),
            raft_last_applied: gauge(
                &r,
                "kafka_server_raftmetrics_log_end_offset",
                "Highest applied offset of the metadata log",
            ),
            groups: GroupMetrics::register(&r),
            quotas: QuotaMetrics::register(&r),
            txns: TxnMetrics::register(&r),
            series: ScrapeSeries::register(&r),
            partition_series_max: AtomicUsize::new(usize::MAX),
            partition_series: AtomicUsize::new(0),
            registry: r,
        }
    }

    /// The request handles of an API, if the broker serves it.
    pub fn api(&self, key: i16) -> Option<&ApiMetrics> {
        self.apis.get(&key)
    }

    /// Handles for one topic.
    pub fn topic(&self, topic: &str) -> TopicMetrics {
        TopicMetrics {
            bytes_in: self.bytes_in.with_label_values(&[topic]),
            bytes_out: self.bytes_out.with_label_values(&[topic]),
            messages_in: self.messages_in.with_label_values(&[topic]),
            produce_requests: self.produce_requests.with_label_values(&[topic]),
            failed_produce_requests: self.failed_produce_requests.with_label_values(&[topic]),
            fetch_requests: self.fetch_requests.with_label_values(&[topic]),
            failed_fetch_requests: self.failed_fetch_requests.with_label_values(&[topic]),
        }
    }

    /// Limits per-partition series to `max` partitions (Kafka has no such
    /// knob; clusters with many partitions need one). Beyond it, partitions
    /// get handles that are not exported, and per-partition group series
    /// are off (`kafka_consumergroup_lag_sum` stays).
    pub fn set_partition_series_max(&self, max: usize) {
        self.partition_series_max.store(max, Ordering::Relaxed);
        self.groups
            .per_partition
            .store(max > 0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The limit set by [`Metrics::set_partition_series_max`].
    pub fn partition_series_max(&self) -> usize {
        self.partition_series_max.load(Ordering::Relaxed)
    }

    /// Sets the Raft role series: 1 for `state` (one of [`RAFT_STATES`]).
    pub fn set_raft_state(&self, state: &str) {
        for s in RAFT_STATES {
            self.raft_state
                .with_label_values(&[s])
                .set(i64::from(s == state));
        }
    }

    /// Handles for one partition.
    pub fn partition(&self, topic: &str, partition: i32) -> PartitionMetrics {
        let p = partition.to_string();
        let taken = self.partition_series.fetch_add(1, Ordering::Relaxed);
        if taken >= self.partition_series_max() {
            self.partition_series.fetch_sub(1, Ordering::Relaxed);
            self.series.partition_series_dropped.inc();
            let detached = |name| IntGauge::new(name, "not exported").expect("valid metric");
            return PartitionMetrics {
                size: detached("kafka_log_log_size"),
                start_offset: detached("kafka_log_log_logstartoffset"),
                end_offset: detached("kafka_log_log_logendoffset"),
                segments: detached("kafka_log_log_numlogsegments"),
                flush: self.series.log_flush.clone(),
                lso_lag: detached("kafka_cluster_partition_laststableoffsetlag"),
                ongoing_transactions: self.ongoing_transactions.clone(),
            };
        }
        PartitionMetrics {
            size: self.log_size.with_label_values(&[topic, &p]),
            start_offset: self.log_start_offset.with_label_values(&[topic, &p]),
            end_offset: self.log_end_offset.with_label_values(&[topic, &p]),
            segments: self.segments.with_label_values(&[topic, &p]),
            flush: self.series.log_flush.clone(),
            lso_lag: self.lso_lag.with_label_values(&[topic, &p]),
            ongoing_transactions: self.ongoing_transactions.clone(),
        }
    }

    /// Drops every series of a deleted topic, so dashboards stop showing it.
    pub fn remove_topic(&self, topic: &str, partitions: i32) {
        for vec in [
            &self.bytes_in,
            &self.bytes_out,
            &self.messages_in,
            &self.produce_requests,
            &self.failed_produce_requests,
            &self.fetch_requests,
            &self.failed_fetch_requests,
        ] {
            let _ = vec.remove_label_values(&[topic]);
        }
        for p in 0..partitions {
            let p = p.to_string();
            if self.log_size.remove_label_values(&[topic, &p]).is_ok() {
                self.partition_series.fetch_sub(1, Ordering::Relaxed);
            }
            for vec in [
                &self.log_size,
                &self.log_start_offset,
                &self.log_end_offset,
                &self.segments,
                &self.lso_lag,
            ] {
                let _ = vec.remove_label_values(&[topic, &p]);
            }
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_appear_with_labels() {
        let m = Metrics::new(&[]);
        let t = m.topic("orders");
        t.bytes_in.inc_by(42);
        m.partition("orders", 0).size.set(7);
        let text = m.render();
        assert!(text.contains("kafka_server_brokertopicmetrics_bytesin_total{topic=\"orders\"} 42"));
        assert!(text.contains("kafka_log_log_size{partition=\"0\",topic=\"orders\"} 7"));
        m.remove_topic("orders", 1);
        assert!(!m.render().contains("orders"));
    }

    #[test]
    fn api_handles_are_resolved_up_front() {
        let m = Metrics::new(&[(0, "Produce"), (1, "Fetch")]);
        m.api(0).unwrap().requests.inc();
        m.api(1).unwrap().time.observe(0.002);
        assert!(m.api(99).is_none());
        let text = m.render();
        assert!(text.contains("kafka_network_requestmetrics_requests_total{request=\"Produce\"} 1"));
        assert!(text
            .contains("kafka_network_requestmetrics_totaltime_seconds_count{request=\"Fetch\"} 1"));
    }
}
