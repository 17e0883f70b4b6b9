//! `rivulet`: the broker and its command-line tools in one binary.
//!
//! This is the only place that reads flags, files and the environment; it
//! turns them into typed configs for the library.

use std::{collections::BTreeMap, net::ToSocketAddrs, path::PathBuf, process::ExitCode};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rivulet_server::{cli, config::BrokerConfig, server};

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
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// Kafka's node.id.
    #[arg(long, env = "RIVULET_NODE_ID", default_value_t = 0)]
    node_id: i32,
    /// Where to accept Kafka clients (PLAINTEXT://host:port; port 0 picks a free port).
    #[arg(
        long,
        env = "RIVULET_LISTENERS",
        default_value = "PLAINTEXT://0.0.0.0:9092"
    )]
    listeners: String,
    /// What Metadata tells clients to connect to (default: the listener, with 0.0.0.0 as 127.0.0.1).
    #[arg(long, env = "RIVULET_ADVERTISED_LISTENERS")]
    advertised_listeners: Option<String>,
    /// Kafka's log.dirs: where partitions and metadata live.
    #[arg(
        long,
        alias = "log-dirs",
        env = "RIVULET_DATA_DIR",
        default_value = "./rivulet-data"
    )]
    data_dir: PathBuf,
    /// HTTP address of /metrics for Prometheus, or `none`.
    #[arg(long, env = "RIVULET_METRICS_ADDR", default_value = "0.0.0.0:9404")]
    metrics_addr: String,
    /// Any other broker config, Kafka's names (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
    /// A Java-style .properties file of broker configs (flags win over it).
    #[arg(long, env = "RIVULET_CONFIG_FILE")]
    config_file: Option<PathBuf>,
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
    let (host, port) =
        rivulet_server::config::parse_listener(&args.listeners).map_err(anyhow::Error::msg)?;
    let listener = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolve listener {}", args.listeners))?
        .next()
        .with_context(|| format!("listener {} resolves to no address", args.listeners))?;
    let advertised = match &args.advertised_listeners {
        Some(url) => Some(rivulet_server::config::parse_listener(url).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let metrics_addr = if args.metrics_addr == "none" {
        None
    } else {
        Some(
            args.metrics_addr
                .parse()
                .with_context(|| format!("--metrics-addr `{}`", args.metrics_addr))?,
        )
    };
    let config = BrokerConfig::new(
        args.node_id,
        listener,
        advertised,
        args.data_dir,
        metrics_addr,
        raw,
    )?;
    if config
        .advertised
        .as_ref()
        .is_some_and(|(h, _)| h == "0.0.0.0")
    {
        bail!("--advertised-listeners must name a host clients can reach, not 0.0.0.0");
    }
    server::run(config, shutdown_signal(), |bound| {
        let metrics = bound
            .metrics
            .map(|m| m.to_string())
            .unwrap_or_else(|| "off".into());
        tracing::info!(
            "rivulet broker ready: kafka={} metrics={}",
            bound.kafka,
            metrics
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
