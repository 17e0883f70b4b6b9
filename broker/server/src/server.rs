//! The broker process: open the data directory, listen, serve connections,
//! run housekeeping, and shut down cleanly.
//!
//! Shutdown is an injected future (SIGTERM/Ctrl-C in `main`, anything in
//! tests): on it the listener stops accepting, every connection finishes the
//! request it is handling and closes, and then every log is flushed and
//! closed, so the next start needs no recovery.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
    task::JoinSet,
};

use crate::{
    broker::Broker,
    config::BrokerConfig,
    connection::{self, ListenerRuntime},
    http,
    security::{
        scram::{ScramCredential, ScramMechanism},
        tls::TlsContext,
    },
};

/// Starting the broker failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be opened.
    #[error("open data directory: {0}")]
    Open(#[from] crate::broker::OpenError),
    /// The controller quorum node could not start.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A listener's certificates or key could not be loaded.
    #[error("listener {listener}: {source}")]
    Tls {
        /// Which listener.
        listener: String,
        /// The cause.
        #[source]
        source: crate::security::tls::TlsError,
    },
    /// The log directory failed (a device error or a failed fsync): its
    /// partitions went offline, leaderships were handed over, and the
    /// broker stopped without closing its logs, as Kafka stops a broker
    /// whose last log dir failed.
    #[error("log directory {dir} failed: {reason}")]
    LogDirFailed {
        /// The directory.
        dir: std::path::PathBuf,
        /// The error that took it offline.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Addresses a running broker is reachable on.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The first Kafka listener (the one most callers want).
    pub kafka: SocketAddr,
    /// Every Kafka listener by name, in configuration order.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The metrics endpoint, if enabled.
    pub metrics: Option<SocketAddr>,
}

/// How long shutdown waits for in-flight requests before closing logs anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a broker until `shutdown` resolves. `on_ready` is called once the
/// listeners are bound.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&Bound),
) -> Result<(), ServerError> {
    let listener_configs = config.listeners.clone();
    let runtimes = listener_runtimes(&config)?;
    let metrics_addr = config.metrics_addr;
    if let Some(file) = &config.storage_fault_injection_file {
        tracing::warn!(file = %file.display(), "storage fault injection is ON: for tests only");
        rivulet_storage::faults::watch_file(file);
    }
    let metrics = crate::metrics::Metrics::new(&crate::handlers::api_names());
    metrics.set_partition_series_max(config.metrics_partition_series_max);
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, metrics))
        .await
        .expect("opening the broker does not panic")?;
    let mut sockets = Vec::with_capacity(listener_configs.len());
    for l in &listener_configs {
        let socket = TcpListener::bind(l.addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "Kafka listener",
                addr: l.addr,
                source,
            })?;
        let local = socket.local_addr().expect("bound socket has an address");
        broker.set_bound(&l.name, l.advertised_endpoint(local));
        sockets.push((l.name.clone(), local, socket));
    }
    let listeners: Vec<(String, SocketAddr)> = sockets
        .iter()
        .map(|(name, local, _)| (name.clone(), *local))
        .collect();
    let kafka = listeners[0].1;
    // Every port is bound before anything else starts, so a port in use
    // fails the start at once instead of after a broker that looked up.
    let metrics_socket = match metrics_addr {
        Some(addr) => Some(http::bind(addr).await.map_err(|source| ServerError::Bind {
            what: "metrics endpoint",
            addr,
            source,
        })?),
        None => None,
    };
    let cluster = crate::cluster::Cluster::start(&broker).await?;
    let groups = Arc::new(crate::group::Coordinator::new(
        crate::group::CoordinatorConfig::from_broker(&broker.config),
        broker.metrics.groups.clone(),
        cluster.clone(),
    ));
    let txns = Arc::new(crate::txn::TxnCoordinator::new(
        broker.config.transactions.clone(),
        cluster.clone(),
        broker.metrics.txns.clone(),
    ));
    let node = Arc::new(crate::handlers::Node {
        broker: broker.clone(),
        cluster: cluster.clone(),
        groups: groups.clone(),
        txns: txns.clone(),
    });
    // Metrics and readiness answer while the broker waits to serve, so a
    // broker that cannot reach its quorum is seen up but not ready.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    let metrics = metrics_socket.map(|(l, local)| {
        background.spawn(http::serve(node.clone(), l, stop_rx.clone()));
        local
    });
    // A failed log directory stops the broker like a shutdown request,
    // except that the logs are not closed (see `log_dir.rs`).
    let log_dir = broker.log_dir.clone();
    let log_dir_failed = async move { log_dir.failed().await };
    let mut failure = None;
    tokio::pin!(shutdown);
    tokio::pin!(log_dir_failed);
    let stopped_while_starting = tokio::select! {
        () = serving(&broker, &cluster) => false,
        () = &mut shutdown => true,
        reason = &mut log_dir_failed => {
            failure = Some(reason);
            true
        }
    };

    background.spawn(housekeeping(broker.clone(), stop_rx.clone()));
    background.spawn(crate::clock::watch(
        broker.metrics.wall_clock_offset.clone(),
        stop_rx.clone(),
    ));
    background.spawn(reload_certificates(runtimes.clone(), stop_rx.clone()));
    if !broker.config.bootstrap_scram.is_empty() {
        background.spawn(bootstrap_scram(
            cluster.clone(),
            broker.config.bootstrap_scram.clone(),
        ));
    }
    background.spawn(crate::group::run(groups, stop_rx.clone()));
    background.spawn(txns.run(stop_rx.clone()));
    on_ready(&Bound {
        kafka,
        listeners,
        metrics,
    });

    // One acceptor per listener feeds a single queue, so the connection
    // limit and the set of connections to drain stay in one place.
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(64);
    let mut acceptors = JoinSet::new();
    for (name, _, socket) in sockets {
        let runtime = runtimes
            .iter()
            .find(|r| *r.name == *name)
            .expect("a runtime per listener")
            .clone();
        acceptors.spawn(accept(socket, runtime, limit.clone(), accepted_tx.clone()));
    }
    drop(accepted_tx);
    let mut connections = JoinSet::new();
    // A shutdown that came while starting has been consumed: serve nothing.
    let mut serving = !stopped_while_starting;
    while serving {
        let (stream, listener, permit) = tokio::select! {
            next = accepted.recv() => match next {
                Some(a) => a,
                None => break,
            },
            _ = &mut shutdown => {
                serving = false;
                continue;
            }
            reason = &mut log_dir_failed => {
                failure = Some(reason);
                serving = false;
                continue;
            }
        };
        let node = node.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            let by_listener = node
                .metrics
                .connection_count
                .with_label_values(&[&*listener.name]);
            node.metrics.connections.inc();
            by_listener.inc();
            connection::serve(node.clone(), stream, listener, stop).await;
            node.metrics.connections.dec();
            by_listener.dec();
            drop(permit);
        });
        // Reap finished connection tasks so the set does not grow forever.
        while connections.try_join_next().is_some() {}
    }

    tracing::info!("shutting down: finishing in-flight requests");
    // Leaderships move before connections close, so clients switch to the
    // new leaders instead of waiting for a session timeout.
    cluster.shutdown().await;
    broker.begin_shutdown();
    acceptors.abort_all();
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still busy after {DRAIN_TIMEOUT:?}; closing anyway");
        connections.abort_all();
    }
    background.abort_all();
    if let Some(reason) = failure {
        // Closing would fsync and mark the logs clean on a disk that just
        // failed: the next start recovers them from what is on disk.
        tracing::error!(dir = %broker.log_dir.dir().display(), "stopped: the log directory failed");
        return Err(ServerError::LogDirFailed {
            dir: broker.log_dir.dir().to_path_buf(),
            reason,
        });
    }
    let broker_for_close = broker.clone();
    tokio::task::spawn_blocking(move || broker_for_close.close())
        .await
        .expect("closing logs does not panic");
    tracing::info!("logs flushed and closed");
    Ok(())
}

/// Waits until the broker may serve clients before connections are
/// accepted (they wait in the listen backlog meanwhile), so no client ever
/// sees a broker that has not yet taken the leaderships the metadata image
/// gives it. A cluster of one waits as long as that takes (opening every
/// log); a member of a larger cluster at most one session timeout, then
/// serves what it can (its clients retry elsewhere) rather than stay dark
/// while the quorum is unreachable.
async fn serving(broker: &Broker, cluster: &crate::cluster::Cluster) {
    let solo = broker
        .config
        .cluster
        .voters
        .keys()
        .eq([&broker.config.node_id]);
    let limit = if solo {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        broker.config.replication.broker_session_timeout
    };
    let started = std::time::Instant::now();
    if solo {
        // Topics of a pre-cluster standalone data directory (see legacy.rs):
        // the single voter leads at once, so this does not wait on others.
        loop {
            match crate::cluster::legacy::import_topics(broker, cluster).await {
                Ok(0) => break,
                Ok(n) => {
                    tracing::info!(topics = n, "imported the standalone data directory");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, "importing standalone topics; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    if cluster.wait_serving(limit).await {
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "metadata applied; serving clients"
        );
    } else {
        tracing::warn!("not registered with the controller quorum yet; serving clients anyway");
    }
}

/// Each listener's security, with its certificates loaded (a broken
/// certificate fails the start, not the first client).
fn listener_runtimes(config: &BrokerConfig) -> Result<Vec<Arc<ListenerRuntime>>, ServerError> {
    config
        .listeners
        .iter()
        .map(|l| {
            let security = config.security.listener(&l.name);
            let tls = match &security.tls {
                Some(settings) => Some(Arc::new(TlsContext::load(settings.clone()).map_err(
                    |source| ServerError::Tls {
                        listener: l.name.clone(),
                        source,
                    },
                )?)),
                None => None,
            };
            Ok(Arc::new(ListenerRuntime {
                name: Arc::from(l.name.as_str()),
                security: Arc::new(security),
                tls,
            }))
        })
        .collect()
}

/// How often certificate files are checked for changes.
const CERTIFICATE_CHECK: Duration = Duration::from_secs(2);

/// Picks up rotated certificates (a Kubernetes Secret updated in place)
/// for new connections, without a restart.
async fn reload_certificates(
    listeners: Vec<Arc<ListenerRuntime>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CERTIFICATE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for l in &listeners {
            let Some(tls) = &l.tls else { continue };
            match tls.reload_if_changed() {
                Ok(true) => tracing::info!(listener = %l.name, "certificates reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    listener = %l.name,
                    error = %e,
                    "certificate files changed but cannot be used; keeping the previous ones"
                ),
            }
        }
    }
}

/// Stores `--add-scram` credentials once the quorum can take them.
async fn bootstrap_scram(
    cluster: Arc<crate::cluster::Cluster>,
    credentials: Vec<(String, ScramMechanism, ScramCredential)>,
) {
    loop {
        match cluster.bootstrap_scram(&credentials).await {
            Ok(true) => {
                tracing::info!(
                    users = credentials.len(),
                    "stored the bootstrap SCRAM credentials"
                );
                return;
            }
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(error = %e.message, "bootstrap SCRAM credentials: retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Accepts connections on one listener while a connection slot is free.
async fn accept(
    socket: TcpListener,
    listener: Arc<ListenerRuntime>,
    limit: Arc<Semaphore>,
    accepted: tokio::sync::mpsc::Sender<(
        tokio::net::TcpStream,
        Arc<ListenerRuntime>,
        tokio::sync::OwnedSemaphorePermit,
    )>,
) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        match socket.accept().await {
            Ok((stream, _)) => {
                if accepted
                    .send((stream, listener.clone(), permit))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(listener = %listener.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Retention and rolling every `log.retention.check.interval.ms`,
/// compaction every `log.cleaner.backoff.ms`, high watermark checkpoints
/// every `replica.high.watermark.checkpoint.interval.ms`, and the
/// time-based flush policy (`flush.ms`) checked every second, so a quiet
/// partition is flushed on time too.
async fn housekeeping(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut retention = tokio::time::interval(broker.config.retention_check_interval);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cleaner = tokio::time::interval(broker.config.cleaner_backoff);
    cleaner.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpoint = tokio::time::interval(broker.config.replication.hw_checkpoint_interval);
    checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = retention.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.housekeeping()).await;
            }
            _ = cleaner.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.compaction()).await;
            }
            _ = flush.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.timed_flush()).await;
            }
            _ = checkpoint.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.checkpoint_hws()).await;
            }
            _ = stop.changed() => return,
        }
    }
}
