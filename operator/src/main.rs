//! `rivulet-operator`: reads flags and the environment, sets up logging,
//! and runs the operator until SIGTERM or Ctrl-C.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use rivulet_operator::{
    run::{run, LeaderConfig, RunConfig},
    validate::{OperatorConfig, OperatorPeer},
};
use tracing_subscriber::EnvFilter;

/// Kubernetes operator for Rivulet: KafkaCluster and Topic resources.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Watch only this namespace (namespaced mode); all namespaces if unset.
    #[arg(long, env = "RIVULET_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "RIVULET_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// The Kubernetes cluster's DNS domain, used in broker addresses.
    #[arg(long, env = "RIVULET_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Broker image for KafkaClusters that do not name one
    /// (default: rivulet/broker:<operator version>).
    #[arg(long, env = "RIVULET_BROKER_IMAGE")]
    broker_image: Option<String>,
    /// Elect a leader through a Lease, so several replicas can run.
    #[arg(long, env = "RIVULET_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(long, env = "RIVULET_LEASE_NAME", default_value = "rivulet-operator")]
    lease_name: String,
    /// Namespace of the Lease: the operator's own (POD_NAMESPACE from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Labels of the operator's own pods (`key=value,...`), which broker
    /// NetworkPolicies let reach the brokers' admin listener (the
    /// operator's namespace is `--lease-namespace`).
    #[arg(
        long,
        env = "RIVULET_OPERATOR_POD_LABELS",
        default_value = "app.kubernetes.io/name=rivulet-operator"
    )]
    operator_pod_labels: String,
    /// This replica's identity in the Lease (POD_NAME from the downward API).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease lasts without renewal.
    #[arg(long, env = "RIVULET_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// Seconds a restarted broker may take to become ready before a
    /// rolling restart stops with a Degraded condition.
    #[arg(long, env = "RIVULET_ROLL_TIMEOUT_SECONDS", default_value_t = 600)]
    roll_timeout_seconds: u64,
    /// Log format.
    #[arg(long, env = "RIVULET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines.
    Text,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let mut operator = OperatorConfig {
        cluster_domain: args.cluster_domain,
        operator: OperatorPeer {
            namespace: args.lease_namespace.clone(),
            labels: parse_labels(&args.operator_pod_labels)?,
        },
        ..OperatorConfig::default()
    };
    if let Some(image) = args.broker_image {
        operator.default_image = image;
    }
    let identity = args.identity.unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("rivulet-operator-{}", std::process::id()))
    });
    let config = RunConfig {
        namespace: args.watch_namespace.filter(|n| !n.is_empty()),
        http_addr: args.http_addr,
        operator,
        leader_election: args.leader_election.then(|| LeaderConfig {
            lease_name: args.lease_name,
            lease_namespace: args.lease_namespace,
            identity,
            lease_duration: Duration::from_secs(args.lease_seconds),
        }),
        roll_timeout: Duration::from_secs(args.roll_timeout_seconds),
    };
    run(config, shutdown_signal())
        .await
        .context("rivulet-operator")
}

/// `key=value,...` as a label map; at least one label, so the operator's
/// NetworkPolicy peer never selects every pod of its namespace.
fn parse_labels(text: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let labels = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--operator-pod-labels: `{pair}` is not key=value"))
        })
        .collect::<anyhow::Result<std::collections::BTreeMap<_, _>>>()?;
    anyhow::ensure!(!labels.is_empty(), "--operator-pod-labels names no label");
    Ok(labels)
}
