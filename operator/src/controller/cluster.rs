//! The KafkaCluster reconcile:
//! read -> validate -> drain (scale-in only) -> build -> apply (config
//! first, StatefulSet last) -> delete orphans -> roll -> spread (after a
//! scale-out) -> status.
//!
//! Nothing here decides anything: validation, building, drain plans, the
//! roll and the conditions are pure functions; this file does the I/O
//! between them.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Node, Pod, Service},
        policy::v1::PodDisruptionBudget,
    },
    jiff::Timestamp,
};
use kube::{
    api::{Api, DynamicObject, ListParams},
    runtime::{controller::Action, events::EventType},
    ResourceExt,
};

use super::{
    apply, apply_dynamic, apply_status, delete_if_exists,
    kafka::ClusterInfo,
    roll::{self, PodView, RollDecision, RollInput},
    scale_in::{self, Leaving, ScaleIn},
    scale_out::{self, ScaleOut},
    status::{self, Phase},
    Context,
};
use crate::{
    build::{
        self, broker_expectation, external_addresses, racks_in, Desired, Observed,
        EXTERNAL_ROLE_LABEL, POD_MONITOR, SERVICE_MONITOR,
    },
    crd::{KafkaCluster, KafkaClusterStatus, MonitorKind, RollStatus},
    error::Error,
    metrics::ClusterState,
    validate::{validate, ValidatedCluster},
};

/// The controller name in metrics and logs.
pub const CONTROLLER: &str = "kafkacluster";
/// Requeue while something is changing.
const BUSY_REQUEUE: Duration = Duration::from_secs(15);
/// Requeue of a steady cluster, to notice drift the watches miss.
const IDLE_REQUEUE: Duration = Duration::from_secs(300);

/// Reconciles one KafkaCluster.
pub async fn reconcile(cluster: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let key = format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    );
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references hand every owned object to the garbage
        // collector; claims follow the StatefulSet's retention policy.
        ctx.metrics.forget_cluster(&key);
        return Ok(Action::await_change());
    }
    let mut validated = match validate(&cluster, &ctx.config) {
        Ok(v) => v,
        Err(invalid) => {
            let message = invalid.to_string();
            tracing::warn!(cluster = %key, %message, "invalid KafkaCluster spec");
            ctx.event(
                &*cluster,
                EventType::Warning,
                "InvalidSpec",
                message.clone(),
            )
            .await;
            let status = KafkaClusterStatus {
                conditions: status::conditions(
                    &Phase::InvalidSpec(message),
                    cluster.metadata.generation,
                    previous_conditions(&cluster),
                    Timestamp::now(),
                ),
                ..cluster.status.clone().unwrap_or_default()
            };
            write_status(&ctx, &cluster, status).await?;
            ctx.metrics.set_cluster_state(&key, ClusterState::Degraded);
            return Ok(Action::await_change());
        }
    };

    // Read.
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &validated.namespace);
    let existing = statefulsets
        .get_opt(&validated.statefulset_name())
        .await
        .map_err(|source| Error::Read {
            what: format!("StatefulSet {}", validated.statefulset_name()),
            source,
        })?;
    let old_replicas = existing
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas);

    // Scale-in: the leaving brokers keep running (and everything built for
    // them stays) until their replicas have moved away.
    let scale_in = match old_replicas {
        Some(running) if running > validated.replicas => {
            let step = scale_in::step(&ctx, &cluster, &validated, Leaving::ScaleIn(running)).await;
            if step != ScaleIn::Shrink {
                validated.replicas = running;
            }
            Some(step)
        }
        _ => None,
    };

    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &validated.namespace);
    let external_now = services
        .list(&ListParams::default().labels(&format!(
            "rivulet.dev/cluster={},{EXTERNAL_ROLE_LABEL}=external",
            validated.name
        )))
        .await
        .map_err(|source| Error::Read {
            what: "external Services".into(),
            source,
        })?
        .items;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &validated.namespace);
    let pod_list = pods
        .list(&ListParams::default().labels(&validated.selector_string()))
        .await
        .map_err(|source| Error::Read {
            what: "broker pods".into(),
            source,
        })?
        .items;
    let racks = match &validated.spec.rack {
        Some(rack) => observe_racks(&ctx, &validated, &rack.topology_key, &pod_list).await?,
        None => BTreeMap::new(),
    };
    let observed = Observed {
        monitor_apis: ctx.monitor_apis,
        load_balancer_hosts: load_balancer_hosts(&validated, &external_now),
        racks,
    };

    // Build and apply.
    let desired = build::build(&validated, &observed);
    let applied = apply_all(&ctx, &validated, &desired).await?;
    delete_orphans(&ctx, &validated, &desired, &external_now).await?;

    // Events for what changed.
    match old_replicas {
        None => {
            ctx.event(
                &*cluster,
                EventType::Normal,
                "Created",
                format!(
                    "Created StatefulSet {} with {} brokers",
                    validated.statefulset_name(),
                    validated.replicas
                ),
            )
            .await
        }
        Some(old) if old != validated.replicas => {
            ctx.event(
                &*cluster,
                EventType::Normal,
                "Scaled",
                format!("Scaled from {old} to {} brokers", validated.replicas),
            )
            .await
        }
        Some(_) => {}
    }

    // Ask the brokers about themselves once any is ready.
    let sts_status = applied.status.clone().unwrap_or_default();
    let ready = sts_status.ready_replicas.unwrap_or(0);
    let info = if ready > 0 {
        match ctx.kafka.cluster_info(&validated.bootstrap_servers()).await {
            Ok(info) => Some(info),
            Err(error) => {
                tracing::info!(cluster = %key, %error, "brokers not reachable yet");
                None
            }
        }
    } else {
        None
    };

    // Roll.
    let mut views: Vec<PodView> = pod_list.iter().filter_map(pod_view).collect();
    mark_config_stale(&ctx, &validated, &observed, &mut views).await;
    let previous_roll = cluster.status.as_ref().and_then(|s| s.roll.clone());
    let now = Timestamp::now();
    let decision = roll::decide(&RollInput {
        target: sts_status.update_revision.as_deref(),
        replicas: validated.replicas,
        pods: &views,
        under_replicated: info.as_ref().map(|i| i.under_replicated),
        controller: info.as_ref().and_then(|i| i.controller),
        previous: previous_roll.as_ref(),
        now,
        timeout: ctx.roll_timeout,
    });
    let roll_status = match &decision {
        RollDecision::Idle => None,
        RollDecision::Restart(id) => {
            let pod_name = validated.pod_name(*id);
            delete_if_exists(&pods, "Pod", &pod_name).await?;
            let pod_ref = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod_name.clone()),
                namespace: Some(validated.namespace.clone()),
                ..Default::default()
            };
            ctx.event_related(
                &*cluster,
                Some(pod_ref),
                EventType::Normal,
                "RestartingBroker",
                format!("Restarting broker {id} (pod {pod_name}) to apply a new config or image"),
            )
            .await;
            Some(RollStatus {
                target_revision: sts_status.update_revision.clone().unwrap_or_default(),
                broker: Some(*id),
                restarted_at: Some(now.to_string()),
            })
        }
        RollDecision::Stuck(message) => {
            ctx.event(
                &*cluster,
                EventType::Warning,
                "RollStopped",
                message.clone(),
            )
            .await;
            previous_roll.clone()
        }
        RollDecision::Wait(_) => previous_roll.clone().or_else(|| {
            Some(RollStatus {
                target_revision: sts_status.update_revision.clone().unwrap_or_default(),
                ..RollStatus::default()
            })
        }),
    };

    // Replicas on brokers the cluster no longer runs (a topic placed on a
    // leaving broker while a scale-in shrank) move like a drain's, once
    // the cluster is at its size. Not held back by a roll: those
    // partitions are under-replicated, which holds the roll back.
    let gone_up_to = info
        .as_ref()
        .and_then(|i| i.replica_brokers.last().copied())
        .filter(|&id| id >= validated.replicas);
    let scale_in = match (scale_in, gone_up_to) {
        (None, Some(id))
            if old_replicas == Some(validated.replicas) && ready >= validated.replicas =>
        {
            match scale_in::step(&ctx, &cluster, &validated, Leaving::Gone(id + 1)).await {
                ScaleIn::Shrink => None,
                step => Some(step),
            }
        }
        (scale_in, _) => scale_in,
    };

    // Spread replicas onto new brokers once a scale-out is up and no
    // roll or drain is under way.
    let mut balanced = cluster
        .status
        .as_ref()
        .and_then(|s| s.balanced_brokers)
        .unwrap_or(validated.replicas)
        .min(validated.replicas);
    if !validated.spec.rebalance_on_scale_out {
        balanced = validated.replicas;
    }
    let rebalancing = if balanced < validated.replicas
        && scale_in.is_none()
        && decision == RollDecision::Idle
        && ready >= validated.replicas
    {
        match scale_out::step(&ctx, &cluster, &validated).await {
            ScaleOut::Balanced => {
                balanced = validated.replicas;
                None
            }
            ScaleOut::Rebalancing(message) => Some(message),
        }
    } else {
        None
    };

    // Status.
    let phase = phase(
        &validated,
        old_replicas,
        ready,
        &decision,
        scale_in.as_ref(),
        rebalancing,
    );
    let state = match &phase {
        Phase::Ready(_) => ClusterState::Ready,
        Phase::Progressing { .. } => ClusterState::Progressing,
        Phase::InvalidSpec(_) | Phase::RollStopped(_) | Phase::ScaleInRefused(_) => {
            ClusterState::Degraded
        }
    };
    let status = cluster_status(
        &cluster,
        &validated,
        &phase,
        sts_status.replicas,
        ready,
        info.as_ref(),
        &observed,
        roll_status,
        balanced,
        now,
    );
    write_status(&ctx, &cluster, status).await?;
    ctx.metrics.set_cluster_state(&key, state);
    // A ready cluster whose brokers have not told us everything yet (no
    // answer, or no controller elected) is asked again soon.
    let settled = info.as_ref().is_some_and(|i| i.controller.is_some());
    Ok(Action::requeue(
        if state == ClusterState::Ready && settled {
            IDLE_REQUEUE
        } else {
            BUSY_REQUEUE
        },
    ))
}

fn previous_conditions(
    cluster: &KafkaCluster,
) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
    cluster
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
}

/// Applies every desired object in order; returns the applied StatefulSet.
async fn apply_all(
    ctx: &Context,
    cluster: &ValidatedCluster,
    desired: &Desired,
) -> Result<StatefulSet, Error> {
    let client = &ctx.client;
    apply(client, &desired.config_map).await?;
    apply(client, &desired.headless_service).await?;
    apply(client, &desired.bootstrap_service).await?;
    for service in &desired.external_services {
        apply(client, service).await?;
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &cluster.namespace);
    match &desired.pdb {
        Some(pdb) => {
            apply(client, pdb).await?;
        }
        None => {
            delete_if_exists(&pdbs, "PodDisruptionBudget", &cluster.statefulset_name()).await?;
        }
    }
    if let Some(monitor) = &desired.monitor {
        let api = if cluster.spec.metrics.monitor == MonitorKind::PodMonitor {
            POD_MONITOR
        } else {
            SERVICE_MONITOR
        };
        apply_dynamic(client, monitor, &api.api_resource()).await?;
    }
    // Last: the brokers start only once their config and names exist.
    apply(client, &desired.statefulset).await
}

/// Deletes external Services of brokers that no longer exist (or of an
/// external listener that was removed) and a monitor no longer wanted.
async fn delete_orphans(
    ctx: &Context,
    cluster: &ValidatedCluster,
    desired: &Desired,
    external_now: &[Service],
) -> Result<(), Error> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    for service in external_now {
        let name = service.name_any();
        let wanted = desired
            .external_services
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(name.as_str()));
        if !wanted {
            delete_if_exists(&services, "Service", &name).await?;
        }
    }
    for (api, served) in [
        (SERVICE_MONITOR, ctx.monitor_apis.service_monitor),
        (POD_MONITOR, ctx.monitor_apis.pod_monitor),
    ] {
        let wanted = desired
            .monitor
            .as_ref()
            .and_then(|m| m.types.as_ref())
            .is_some_and(|t| t.kind == api.kind);
        if served && !wanted {
            let monitors: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &cluster.namespace, &api.api_resource());
            delete_if_exists(&monitors, api.kind, &cluster.statefulset_name()).await?;
        }
    }
    Ok(())
}

/// Each broker's rack: the `topology_key` label of the node its pod is
/// scheduled on, else what its per-broker file says now (the pod is being
/// recreated and not scheduled yet). Reading nodes needs the cluster-scoped
/// `get nodes` permission; without it, brokers get no rack (logged).
async fn observe_racks(
    ctx: &Context,
    cluster: &ValidatedCluster,
    topology_key: &str,
    pods: &[Pod],
) -> Result<BTreeMap<i32, String>, Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let mut racks = config_maps
        .get_opt(&cluster.config_map_name())
        .await
        .map_err(|source| Error::Read {
            what: format!("ConfigMap {}", cluster.config_map_name()),
            source,
        })?
        .map(|cm| racks_in(&cm))
        .unwrap_or_default();
    racks.retain(|id, _| *id < cluster.replicas);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut by_node: BTreeMap<String, Option<String>> = BTreeMap::new();
    for pod in pods {
        let (Some(view), Some(node)) = (
            pod_view(pod),
            pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ) else {
            continue;
        };
        if view.id >= cluster.replicas || view.terminating {
            continue;
        }
        if !by_node.contains_key(&node) {
            let rack = match nodes.get_opt(&node).await {
                Ok(found) => found.and_then(|n| n.labels().get(topology_key).cloned()),
                Err(error) => {
                    tracing::warn!(%node, %error, "cannot read the node's labels for broker.rack (does the operator have `get nodes`?)");
                    None
                }
            };
            if rack.is_none() {
                tracing::info!(%node, topology_key, "node has no rack label");
            }
            by_node.insert(node.clone(), rack);
        }
        if let Some(rack) = by_node[&node].clone() {
            racks.insert(view.id, rack);
        }
    }
    Ok(racks)
}

/// Asks every ready broker what it advertises (on the external listener,
/// when there is one) and which rack it has, and marks those whose answer
/// differs from their per-broker file: they started before the file
/// changed, and the roll restarts them. Unreachable brokers are left alone.
async fn mark_config_stale(
    ctx: &Context,
    cluster: &ValidatedCluster,
    observed: &Observed,
    views: &mut [PodView],
) {
    if cluster.spec.listeners.external.is_none() && cluster.spec.rack.is_none() {
        // Nothing per broker can change after a broker started.
        return;
    }
    for view in views
        .iter_mut()
        .filter(|v| v.ready && !v.terminating && v.id < cluster.replicas)
    {
        let expected = broker_expectation(cluster, observed, view.id);
        match ctx
            .kafka
            .broker_view(&expected.probe_address, view.id)
            .await
        {
            Ok(Some(actual)) => {
                view.config_stale = actual.advertised != expected.advertised
                    || (expected.rack.is_some() && actual.rack != expected.rack);
                if view.config_stale {
                    tracing::info!(
                        broker = view.id,
                        advertised = %actual.advertised,
                        expected = %expected.advertised,
                        rack = ?actual.rack,
                        expected_rack = ?expected.rack,
                        "broker runs an outdated per-broker config"
                    );
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(broker = view.id, %error, "cannot ask the broker about itself");
            }
        }
    }
}

fn load_balancer_hosts(cluster: &ValidatedCluster, services: &[Service]) -> BTreeMap<i32, String> {
    (0..cluster.replicas)
        .filter_map(|id| {
            let name = cluster.external_service_name(id);
            let service = services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))?;
            let ingress = service
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?
                .first()?;
            ingress
                .hostname
                .clone()
                .or_else(|| ingress.ip.clone())
                .map(|host| (id, host))
        })
        .collect()
}

fn pod_view(pod: &Pod) -> Option<PodView> {
    let id = pod
        .labels()
        .get("apps.kubernetes.io/pod-index")
        .and_then(|i| i.parse().ok())
        .or_else(|| pod.name_any().rsplit('-').next()?.parse().ok())?;
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodView {
        id,
        revision: pod.labels().get("controller-revision-hash").cloned(),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        config_stale: false,
    })
}

fn phase(
    cluster: &ValidatedCluster,
    old_replicas: Option<i32>,
    ready: i32,
    decision: &RollDecision,
    scale_in: Option<&ScaleIn>,
    rebalancing: Option<String>,
) -> Phase {
    let counts = format!("{ready}/{} brokers ready", cluster.replicas);
    match (decision, scale_in) {
        (_, Some(ScaleIn::Refused(message))) => Phase::ScaleInRefused(message.clone()),
        (RollDecision::Stuck(message), _) => Phase::RollStopped(message.clone()),
        // Reassignments leave partitions under-replicated, which holds
        // back any roll: the drain is what is happening.
        (_, Some(ScaleIn::Draining(message))) => Phase::Progressing {
            reason: "Draining",
            message: format!("{counts}; {message}"),
        },
        (RollDecision::Wait(why), _) => Phase::Progressing {
            reason: "RollingRestart",
            message: format!("{counts}; rolling restart: {why}"),
        },
        (RollDecision::Restart(_), _) => Phase::Progressing {
            reason: "RollingRestart",
            message: format!("{counts}; rolling restart in progress"),
        },
        (RollDecision::Idle, _) if ready >= cluster.replicas => match rebalancing {
            Some(message) => Phase::Progressing {
                reason: "Rebalancing",
                message: format!("{counts}; {message}"),
            },
            None => Phase::Ready(counts),
        },
        (RollDecision::Idle, _) => Phase::Progressing {
            reason: match old_replicas {
                None => "Creating",
                Some(old) if old != cluster.replicas => "Scaling",
                Some(_) if ready == 0 => "Creating",
                Some(_) => "BrokersStarting",
            },
            message: counts,
        },
    }
}

#[allow(clippy::too_many_arguments)] // a plain gathering of what the reconcile saw
fn cluster_status(
    cluster: &KafkaCluster,
    validated: &ValidatedCluster,
    phase: &Phase,
    replicas: i32,
    ready: i32,
    info: Option<&ClusterInfo>,
    observed: &Observed,
    roll: Option<RollStatus>,
    balanced: i32,
    now: Timestamp,
) -> KafkaClusterStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    KafkaClusterStatus {
        observed_generation: cluster.metadata.generation,
        conditions: status::conditions(
            phase,
            cluster.metadata.generation,
            &previous.conditions,
            now,
        ),
        replicas,
        ready_brokers: ready,
        label_selector: Some(validated.selector_string()),
        bootstrap_servers: Some(validated.bootstrap_servers()),
        external_addresses: external_addresses(validated, &observed.load_balancer_hosts)
            .into_values()
            .collect(),
        // Keep what the brokers said last when they cannot be asked now.
        cluster_id: info
            .and_then(|i| i.cluster_id.clone())
            .or(previous.cluster_id),
        active_controller: info
            .and_then(|i| i.controller)
            .or(previous.active_controller),
        roll,
        quorum_voters: Some(validated.voters),
        balanced_brokers: Some(balanced),
    }
}

/// Writes the status subresource with server-side apply.
async fn write_status(
    ctx: &Context,
    cluster: &KafkaCluster,
    status: KafkaClusterStatus,
) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    apply_status(&ctx.client, cluster, &status).await
}

/// Retries a failed reconcile after a pause, counting the failure.
pub fn error_policy(cluster: Arc<KafkaCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), error = %error, source = ?std::error::Error::source(error), "reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    Action::requeue(BUSY_REQUEUE)
}
