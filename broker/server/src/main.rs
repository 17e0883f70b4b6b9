//! `rivulet`: the broker and its command-line tools in one binary.
//!
//! This is the only place that reads flags, files and the environment; it
//! turns them into typed configs for the library.

use std::{collections::BTreeMap, net::ToSocketAddrs, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use rivulet_server::{
    cli,
    config::{BrokerConfig, ListenerConfig},
    server,
};

// Guards against the kafka-protocol decoder reserving memory for hostile
// array lengths: see rivulet_wire::alloc.
#[global_allocator]
static GLOBAL: rivulet_wire::alloc::LazyLargeAlloc = rivulet_wire::alloc::LazyLargeAlloc;

/// Rivulet: a Kafka-compatible streaming platform.
#[derive(Parser)]
#[command(name = "rivulet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker.
    Broker(BrokerArgs),
    /// Create, list, describe, alter and delete topics.
    Topic(cli::topic::TopicArgs),
    /// Produce lines from stdin as records.
    Produce(cli::produce::ProduceArgs),
    /// Consume records and print them.
    Consume(cli::consume::ConsumeArgs),
    /// List, describe and delete consumer groups; reset their offsets.
    Group(cli::group::GroupArgs),
    /// Measure produce or consume throughput and latency.
    Bench(cli::bench::BenchArgs),
    /// Run a local multi-broker cluster, each broker its own process.
    Dev(cli::dev::DevArgs),
    /// Format a data directory for a cluster (cluster id, node id, directory id).
    Format(cli::format::FormatArgs),
    /// Describe the controller quorum; add or remove voters.
    Quorum(cli::quorum::QuorumArgs),
    /// Add, list and remove SCRAM users.
    User(cli::user::UserArgs),
    /// Add, list and remove ACLs.
    Acl(cli::acl::AclArgs),
    /// List and describe transactions; abort a hanging one.
    Transactions(cli::transactions::TransactionsArgs),
    /// Set and describe client quotas (byte rates, request percentage).
    Quota(cli::quota::QuotaArgs),
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// Kafka's node.id [default: node.id from --config-file, else 0].
    #[arg(long, env = "RIVULET_NODE_ID")]
    node_id: Option<i32>,
    /// Where to accept Kafka clients: NAME://host:port[,...]; port 0 picks a free
    /// port [default: listeners from --config-file, else PLAINTEXT://0.0.0.0:9092].
    #[arg(long, env = "RIVULET_LISTENERS")]
    listeners: Option<String>,
    /// What Metadata tells clients of each listener: NAME://host:port[,...]
    /// [default: the bound address, with 0.0.0.0 as 127.0.0.1].
    #[arg(long, env = "RIVULET_ADVERTISED_LISTENERS")]
    advertised_listeners: Option<String>,
    /// Kafka's log.dirs: where partitions and metadata live [default: log.dirs
    /// from --config-file, else ./rivulet-data].
    #[arg(long, alias = "log-dirs", env = "RIVULET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP address of /metrics for Prometheus, or `none`.
    #[arg(long, env = "RIVULET_METRICS_ADDR", default_value = "0.0.0.0:9404")]
    metrics_addr: String,
    /// Any other broker config, Kafka's names (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
    /// A Java-style .properties file of broker configs (flags win over it).
    #[arg(long, env = "RIVULET_CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// The cluster this broker belongs to (`cluster.id`): an unformatted data
    /// directory becomes a member of it that joins its quorum; a directory of
    /// another cluster is refused.
    #[arg(long, env = "RIVULET_CLUSTER_ID")]
    cluster_id: Option<String>,
    /// Let an unformatted data directory found the quorum, with
    /// controller.quorum.voters as its initial voters
    /// (`controller.quorum.bootstrap`). Only for a new cluster.
    #[arg(long, env = "RIVULET_BOOTSTRAP_QUORUM")]
    bootstrap_quorum: bool,
    /// A SCRAM credential for the first admin, Kafka's `kafka-storage format
    /// --add-scram` syntax: 'SCRAM-SHA-512=[name=admin,password=secret]'
    /// (repeatable; stored only while the cluster has no credential).
    #[arg(long = "add-scram", value_name = "MECHANISM=[name=..,password=..]")]
    add_scram: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Broker(args) => run_broker(args).await,
            Command::Topic(args) => cli::topic::run(args).await,
            Command::Produce(args) => cli::produce::run(args).await,
            Command::Consume(args) => cli::consume::run(args).await,
            Command::Group(args) => cli::group::run(args).await,
            Command::Bench(args) => cli::bench::run(args).await,
            Command::Dev(args) => cli::dev::run(args).await,
            Command::Format(args) => cli::format::run(args),
            Command::Quorum(args) => cli::quorum::run(args).await,
            Command::User(args) => cli::user::run(args).await,
            Command::Acl(args) => cli::acl::run(args).await,
            Command::Transactions(args) => cli::transactions::run(args).await,
            Command::Quota(args) => cli::quota::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    let mut raw = BTreeMap::new();
    if let Some(file) = &args.config_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        raw.extend(cli::parse_properties(&text));
    }
    for kv in &args.configs {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config `{kv}` is not KEY=VALUE"))?;
        raw.insert(k.trim().to_string(), v.trim().to_string());
    }
    if let Some(id) = &args.cluster_id {
        raw.insert("cluster.id".into(), id.clone());
    }
    if args.bootstrap_quorum {
        raw.insert("controller.quorum.bootstrap".into(), "true".into());
    }
    // Flags win; a server.properties given with --config-file may carry
    // these four too, as Kafka's does.
    // Taken out of the file's configs whether or not a flag overrides them,
    // so a server.properties that sets them still loads.
    let file_listeners = raw.remove("listeners");
    let file_advertised = raw.remove("advertised.listeners");
    let file_node_id = raw.remove("node.id");
    let file_log_dirs = raw.remove("log.dirs");
    let listeners = args
        .listeners
        .or(file_listeners)
        .unwrap_or_else(|| "PLAINTEXT://0.0.0.0:9092".to_string());
    let advertised = args.advertised_listeners.or(file_advertised);
    let node_id = match (args.node_id, file_node_id) {
        (Some(id), _) => id,
        (None, Some(id)) => id
            .trim()
            .parse()
            .with_context(|| format!("node.id `{id}`"))?,
        (None, None) => 0,
    };
    let data_dir = args
        .data_dir
        .or_else(|| file_log_dirs.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("./rivulet-data"));
    let specs = rivulet_server::listeners::parse(
        &listeners,
        advertised.as_deref(),
        raw.get("listener.security.protocol.map")
            .map(String::as_str),
    )
    .map_err(anyhow::Error::msg)?;
    let mut listener_configs = Vec::with_capacity(specs.len());
    for spec in specs {
        let host = if spec.host.is_empty() {
            "0.0.0.0"
        } else {
            spec.host.as_str()
        };
        let addr = (host, spec.port)
            .to_socket_addrs()
            .with_context(|| format!("resolve listener {}", spec.name))?
            .next()
            .with_context(|| format!("listener {} resolves to no address", spec.name))?;
        listener_configs.push(ListenerConfig {
            name: spec.name,
            addr,
            advertised: spec.advertised,
            protocol: spec.protocol,
        });
    }
    let metrics_addr = if args.metrics_addr == "none" {
        None
    } else {
        Some(
            args.metrics_addr
                .parse()
                .with_context(|| format!("--metrics-addr `{}`", args.metrics_addr))?,
        )
    };
    let mut config = BrokerConfig::new(node_id, listener_configs, data_dir, metrics_addr, raw)?;
    for entry in &args.add_scram {
        config.bootstrap_scram.push(
            rivulet_server::security::config::parse_add_scram(entry)
                .map_err(|e| anyhow::anyhow!("--add-scram: {e}"))?,
        );
    }
    server::run(config, shutdown_signal(), |bound| {
        let metrics = bound
            .metrics
            .map(|m| m.to_string())
            .unwrap_or_else(|| "off".into());
        let kafka: Vec<String> = bound
            .listeners
            .iter()
            .map(|(name, addr)| format!("{name}://{addr}"))
            .collect();
        tracing::info!(
            "rivulet broker ready: kafka={} metrics={} listeners={}",
            bound.kafka,
            metrics,
            kafka.join(",")
        );
    })
    .await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
