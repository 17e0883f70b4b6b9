//! The operator process: HTTP probes and metrics, leader election, the
//! controllers (KafkaCluster, Topic, KafkaUser), and a graceful shutdown that finishes in-flight reconciles
//! and hands the lease over.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    coordination::v1::Lease,
    core::v1::{ConfigMap, Secret, Service},
};
use kube::{
    runtime::{watcher, Controller},
    Api, Client,
};
use tokio::sync::watch;

use crate::{
    build::{MonitorApis, POD_MONITOR, SERVICE_MONITOR},
    controller::{cluster, kafka::WireAdmin, topic, user, Context},
    crd::{KafkaCluster, KafkaUser, Topic},
    http::{self, Probes},
    leader::LeaseLock,
    metrics::Metrics,
    validate::OperatorConfig,
};

/// Settings of the operator process.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Watch only this namespace (namespaced mode); `None` watches all.
    pub namespace: Option<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub http_addr: SocketAddr,
    /// What shapes the built objects.
    pub operator: OperatorConfig,
    /// Leader election; `None` runs the controllers at once (one replica only).
    pub leader_election: Option<LeaderConfig>,
    /// How long a restarted broker may take before a roll stops.
    pub roll_timeout: Duration,
}

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own).
    pub lease_namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub lease_duration: Duration,
}

/// Why the operator stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No Kubernetes client could be configured.
    #[error("cannot configure a Kubernetes client")]
    Client(#[source] kube::Error),
    /// The HTTP endpoint could not bind.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// This replica lost the leader lease while reconciling; it stops so
    /// that two replicas never reconcile at once.
    #[error("lost the leader lease")]
    LostLease,
}

/// Which Prometheus operator kinds the API server serves.
async fn discover_monitor_apis(client: &Client) -> MonitorApis {
    match client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
    {
        Ok(list) => {
            let served = |plural: &str| list.resources.iter().any(|r| r.name == plural);
            MonitorApis {
                service_monitor: served(SERVICE_MONITOR.plural),
                pod_monitor: served(POD_MONITOR.plural),
            }
        }
        Err(_) => MonitorApis::default(),
    }
}

/// Runs the operator until `shutdown` completes (or the lease is lost).
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let metrics = Arc::new(Metrics::new());
    let probes = Arc::new(Probes {
        metrics: metrics.clone(),
        ready: Default::default(),
    });
    // One shutdown signal fans out to the HTTP server, the leader loop and
    // the controllers.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = http::serve(config.http_addr, probes.clone(), stopped(stop_rx.clone()))
        .await
        .map_err(|source| RunError::Bind {
            addr: config.http_addr,
            source,
        })?;
    let server = tokio::spawn(server);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
    }

    let mut ctx = Context::new(client.clone(), Arc::new(WireAdmin), metrics.clone());
    ctx.config = config.operator.clone();
    ctx.roll_timeout = config.roll_timeout;
    ctx.monitor_apis = discover_monitor_apis(&client).await;
    tracing::info!(monitor_apis = ?ctx.monitor_apis, namespace = ?config.namespace, "starting");
    let ctx = Arc::new(ctx);
    probes.ready.store(true, Ordering::Relaxed);

    let lock = config.leader_election.as_ref().map(|leader| {
        LeaseLock::new(
            Api::<Lease>::namespaced(client.clone(), &leader.lease_namespace),
            &leader.lease_name,
            &leader.identity,
            leader.lease_duration,
        )
    });
    if let Some(lock) = &lock {
        let mut stop = stop_rx.clone();
        loop {
            match lock.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "leader election request failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(lock.renew_interval()) => {}
                _ = stop.wait_for(|s| *s) => {
                    let _ = server.await;
                    return Ok(());
                }
            }
        }
        tracing::info!("became the leader");
    }
    metrics.set_leader(true);

    // Renew in the background; losing the lease stops the controllers.
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let renewer = lock.map(|lock| {
        let stop_tx = stop_tx.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(lock.renew_interval()) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                match lock.try_acquire_or_renew().await {
                    Ok(true) => last_renewal = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::error!("another replica took the leader lease");
                        let _ = lost_tx.send(true);
                        let _ = stop_tx.send(true);
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "renewing the leader lease failed");
                        if last_renewal.elapsed() >= lock.duration() {
                            let _ = lost_tx.send(true);
                            let _ = stop_tx.send(true);
                            break;
                        }
                    }
                }
            }
            lock
        })
    });

    let clusters: Api<KafkaCluster> = scoped(&client, config.namespace.as_deref());
    let topics: Api<Topic> = scoped(&client, config.namespace.as_deref());
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=rivulet-operator");
    let cluster_controller = Controller::new(clusters, watcher::Config::default())
        .owns(
            scoped::<StatefulSet>(&client, config.namespace.as_deref()),
            owned.clone(),
        )
        .owns(
            scoped::<Service>(&client, config.namespace.as_deref()),
            owned.clone(),
        )
        .owns(
            scoped::<ConfigMap>(&client, config.namespace.as_deref()),
            owned,
        )
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(cluster::reconcile, cluster::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "cluster controller event");
            }
        });
    let topic_controller = Controller::new(topics, watcher::Config::default())
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(topic::reconcile, topic::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "topic controller event");
            }
        });
    // A user's Secret edited or deleted by hand is put back at once.
    let users: Api<KafkaUser> = scoped(&client, config.namespace.as_deref());
    let user_controller = Controller::new(users, watcher::Config::default())
        .owns(
            scoped::<Secret>(&client, config.namespace.as_deref()),
            watcher::Config::default().labels("rivulet.dev/kind=KafkaUser"),
        )
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(user::reconcile, user::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "kafkauser controller event");
            }
        });
    futures::future::join3(cluster_controller, topic_controller, user_controller).await;
    metrics.set_leader(false);

    if let Some(renewer) = renewer {
        if let Ok(lock) = renewer.await {
            if !*lost_rx.borrow_and_update() {
                if let Err(error) = lock.release().await {
                    tracing::warn!(%error, "releasing the leader lease failed");
                } else {
                    tracing::info!("released the leader lease");
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    if *lost_rx.borrow() {
        return Err(RunError::LostLease);
    }
    Ok(())
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
