//! The KafkaCluster reconcile:
//! read -> identity (the cluster id, the brokers' answers verified against
//! it) -> size (drain, quorum voters, the verified shrink) -> build ->
//! apply (config first, StatefulSet last) -> delete orphans -> roll (each
//! restart checked to lose nothing) -> repair and spread -> status.
//!
//! Nothing here decides anything: validation, building, drain and voter
//! plans, the identity and loss checks, the roll and the phase are pure
//! functions; this file does the I/O between them. Every destructive step
//! (a pod restart, a shrink, a reassignment) acts only on answers that
//! provably come from the cluster in `status.clusterId` and cover every
//! ready broker; anything less holds it back.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetStatus},
        core::v1::{ConfigMap, Pod, Service},
        networking::v1::NetworkPolicy,
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
    apply, apply_dynamic, apply_status, certs, delete_if_exists, health,
    identity::{self, adoptable, formed, new_cluster_id, Doubt, Observation, View},
    observe::observe,
    phase::{phase, PhaseInput},
    pods::{load_balancer_hosts, mark_config_stale, observe_racks, pod_view},
    quorum, restart,
    roll::{PodView, RollDecision},
    scale_in::{self, Leaving, ScaleIn},
    scale_out::{self, ScaleOut},
    status::{self, Phase},
    storage::{self, StorageStep},
    Context,
};
use crate::{
    build::{
        self, build_bootstrap_config_map, external_addresses, network_policy_name, Desired,
        Observed, EXTERNAL_ROLE_LABEL, POD_MONITOR, SERVICE_MONITOR,
    },
    crd::{KafkaCluster, KafkaClusterStatus, MonitorKind, RollStatus},
    error::Error,
    metrics::ClusterState,
    validate::{desired_voters, validate, ValidatedCluster},
};

/// The controller name in metrics and logs.
pub const CONTROLLER: &str = "kafkacluster";
/// Requeue while something is changing.
const BUSY_REQUEUE: Duration = Duration::from_secs(15);
/// Requeue of a steady cluster, to notice drift the watches miss.
const IDLE_REQUEUE: Duration = Duration::from_secs(300);

/// What the reconcile knows about the brokers before it decides anything.
struct Trust {
    /// Answers verified to come from this cluster and to cover every
    /// ready broker; `None` when the brokers were not (all) asked or
    /// could not be trusted.
    view: Option<View>,
    /// Why the answers cannot be acted on, when there were answers.
    doubt: Option<Doubt>,
    /// The quorum is still being founded (the bootstrap ConfigMap exists).
    bootstrapping: bool,
    /// Brokers whose pods are ready: they must answer for themselves.
    ready: Vec<i32>,
}

/// The outcome of the size step.
struct Size {
    /// The scale-in's state, when the StatefulSet is larger than the spec.
    scale_in: Option<ScaleIn>,
    /// A voter change still to make.
    quorum_pending: Option<String>,
}

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
        Err(invalid) => return report_invalid(&ctx, &cluster, &key, invalid.to_string()).await,
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
    let target = validated.replicas;
    // The StatefulSet keeps every broker it runs until a verified shrink;
    // the leaving brokers keep everything built for them meanwhile.
    let running = old_replicas.map_or(target, |r| r.max(target));
    validated.replicas = running;
    // Every step below asks the brokers through this target.
    let unresolved = ctx.resolve_target(&validated).await?;
    if let Some(why) = &unresolved {
        tracing::warn!(cluster = %key, %why, "cannot administer the brokers yet");
    }
    let Surroundings {
        external_now,
        pod_list,
        observed,
    } = surroundings(&ctx, &validated).await?;

    // Identity, then the decisions that change the cluster's size.
    let trust = establish_identity(
        &ctx,
        &cluster,
        &mut validated,
        existing.is_some(),
        &pod_list,
    )
    .await?;
    let size = size_step(&ctx, &cluster, &mut validated, target, running, &trust).await;

    // Certificates, before a broker could start without its own.
    let certificates = if certs::certificates_wanted(&validated) {
        let external = external_addresses(&validated, &observed.load_balancer_hosts);
        let outcome = certs::reconcile_certificates(&ctx, &cluster, &validated, &external).await?;
        // The operator's own certificate may have been issued just now.
        if unresolved.is_some() {
            ctx.resolve_target(&validated).await?;
        }
        Some(outcome)
    } else {
        None
    };

    // Build and apply. A StatefulSet's claim templates cannot change:
    // volumes grow through their claims (the storage step) instead.
    let mut desired = build::build(&validated, &observed);
    storage::keep_claim_templates(&mut desired.statefulset, existing.as_ref());
    let applied = apply_all(&ctx, &validated, &desired, existing.as_ref()).await?;
    delete_orphans(&ctx, &validated, &desired, &external_now).await?;
    scaled_events(&ctx, &cluster, &validated, old_replicas).await;
    let storage = storage::step(&ctx, &cluster, &validated, &pod_list).await;

    // Roll. A broker whose filesystem grows only on a restart is restarted
    // like one with an outdated config: one at a time, under the checks.
    let sts_status = applied.status.clone().unwrap_or_default();
    let ready = sts_status.ready_replicas.unwrap_or(0);
    let mut views: Vec<PodView> = pod_list.iter().filter_map(pod_view).collect();
    mark_config_stale(&ctx, &validated, &observed, &mut views).await;
    let remount = storage.restart();
    for view in views.iter_mut().filter(|v| remount.contains(&v.id)) {
        view.config_stale = true;
    }
    let now = Timestamp::now();
    let roll = restart::step(
        &ctx,
        &cluster,
        &validated,
        &views,
        &sts_status,
        trust.view.as_ref(),
        &trust.ready,
        size.quorum_pending.as_deref(),
        now,
    )
    .await?;

    // Repair and spread, on trusted answers only.
    let scale_in = repair_step(
        &ctx,
        &cluster,
        &validated,
        &trust,
        size.scale_in,
        old_replicas,
        ready,
    )
    .await;
    let (balanced, rebalancing) = spread_step(
        &ctx,
        &cluster,
        &validated,
        &trust,
        &scale_in,
        &roll.decision,
        ready,
    )
    .await;

    // Status.
    let health = trust.view.as_ref().map(|v| health::assess(&v.snapshot));
    let phase = phase(&PhaseInput {
        replicas: validated.replicas,
        old_replicas,
        ready,
        roll: &roll.decision,
        restart_blocked: roll.blocked.as_deref(),
        scale_in: scale_in.as_ref(),
        doubt: trust.doubt.as_ref(),
        quorum_pending: size.quorum_pending.as_deref(),
        rebalancing: rebalancing.as_deref(),
        health: health.as_ref(),
        bootstrapping: trust.bootstrapping,
        storage_refused: match &storage {
            StorageStep::Refused { message, .. } => Some(message),
            _ => None,
        },
        storage_growing: match &storage {
            StorageStep::Growing { message, .. } => Some(message),
            _ => None,
        },
    });
    let state = match &phase {
        Phase::Ready(_) => ClusterState::Ready,
        Phase::Progressing { .. } => ClusterState::Progressing,
        Phase::InvalidSpec(_)
        | Phase::RollStopped(_)
        | Phase::ScaleInRefused(_)
        | Phase::Degraded { .. } => ClusterState::Degraded,
    };
    let mut status = cluster_status(
        &cluster,
        &validated,
        &phase,
        &sts_status,
        trust.view.as_ref(),
        &observed,
        roll.status,
        balanced,
        &storage,
        now,
    );
    certs::record(
        &mut status,
        certificates,
        previous_conditions(&cluster),
        cluster.metadata.generation,
        now,
    );
    write_status(&ctx, &cluster, status).await?;
    ctx.metrics.set_cluster_state(&key, state);
    // A cluster the brokers have not fully answered for is asked again
    // soon, and so is one whose voters have not all recorded their
    // directories yet (the status would show them unknown for minutes).
    let settled = trust.view.as_ref().is_some_and(|v| {
        v.quorum
            .voters
            .iter()
            .all(|voter| !voter.directory_id.is_nil())
    });
    Ok(Action::requeue(
        if state == ClusterState::Ready && settled {
            IDLE_REQUEUE
        } else {
            BUSY_REQUEUE
        },
    ))
}

/// What the brokers' surroundings look like in the Kubernetes API.
struct Surroundings {
    /// The per-broker external Services that exist.
    external_now: Vec<Service>,
    /// The broker pods.
    pod_list: Vec<Pod>,
    /// What shapes the built objects: monitor kinds, load balancer
    /// addresses, racks.
    observed: Observed,
}

/// Reads the external Services, the broker pods and what the objects are
/// built from.
async fn surroundings(ctx: &Context, cluster: &ValidatedCluster) -> Result<Surroundings, Error> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let external_now = services
        .list(&ListParams::default().labels(&format!(
            "rivulet.dev/cluster={},{EXTERNAL_ROLE_LABEL}=external",
            cluster.name
        )))
        .await
        .map_err(|source| Error::Read {
            what: "external Services".into(),
            source,
        })?
        .items;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let pod_list = pods
        .list(&ListParams::default().labels(&cluster.selector_string()))
        .await
        .map_err(|source| Error::Read {
            what: "broker pods".into(),
            source,
        })?
        .items;
    let racks = match &cluster.spec.rack {
        Some(rack) => observe_racks(ctx, cluster, &rack.topology_key, &pod_list).await?,
        None => BTreeMap::new(),
    };
    let observed = Observed {
        monitor_apis: ctx.monitor_apis,
        load_balancer_hosts: load_balancer_hosts(cluster, &external_now),
        racks,
    };
    Ok(Surroundings {
        external_now,
        pod_list,
        observed,
    })
}

/// Reports a spec that can never work: an Event and a Degraded status.
async fn report_invalid(
    ctx: &Context,
    cluster: &KafkaCluster,
    key: &str,
    message: String,
) -> Result<Action, Error> {
    tracing::warn!(cluster = %key, %message, "invalid KafkaCluster spec");
    ctx.event(cluster, EventType::Warning, "InvalidSpec", message.clone())
        .await;
    let status = KafkaClusterStatus {
        conditions: status::conditions(
            &Phase::InvalidSpec(message),
            cluster.metadata.generation,
            previous_conditions(cluster),
            Timestamp::now(),
        ),
        ..cluster.status.clone().unwrap_or_default()
    };
    write_status(ctx, cluster, status).await?;
    ctx.metrics.set_cluster_state(key, ClusterState::Degraded);
    Ok(Action::await_change())
}

/// Makes sure the cluster has its id and asks the brokers for answers
/// checked against it.
///
/// A new cluster (no StatefulSet, no id) gets the bootstrap ConfigMap,
/// then a generated id written to the status before any broker exists; a
/// crash in between only repeats this. A cluster created by an older
/// operator records the id its brokers agree on. The bootstrap ConfigMap
/// is deleted once the brokers of this cluster answer with a quorum leader.
async fn establish_identity(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &mut ValidatedCluster,
    sts_exists: bool,
    pods: &[Pod],
) -> Result<Trust, Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let bootstrap_name = cluster.bootstrap_config_map_name();
    if cluster.cluster_id.is_none() && !sts_exists {
        apply(&ctx.client, &build_bootstrap_config_map(cluster)).await?;
        let id = new_cluster_id();
        let status = KafkaClusterStatus {
            cluster_id: Some(id.clone()),
            ..object.status.clone().unwrap_or_default()
        };
        apply_status(&ctx.client, object, &status).await?;
        ctx.event(
            object,
            EventType::Normal,
            "ClusterIdGenerated",
            format!("The cluster's id is {id}; its first brokers may found the controller quorum"),
        )
        .await;
        cluster.cluster_id = Some(id);
        return Ok(Trust {
            view: None,
            doubt: None,
            bootstrapping: true,
            ready: Vec::new(),
        });
    }
    let ready: Vec<i32> = pods
        .iter()
        .filter_map(pod_view)
        .filter(|p| p.ready && !p.terminating && p.id < cluster.replicas)
        .map(|p| p.id)
        .collect();
    let observation: Option<Observation> = if ready.is_empty() {
        None
    } else {
        Some(observe(ctx, cluster, &ready).await)
    };
    if cluster.cluster_id.is_none() {
        if let Some(Ok(id)) = observation.as_ref().map(adoptable) {
            ctx.event(
                object,
                EventType::Normal,
                "ClusterIdRecorded",
                format!(
                    "The brokers report cluster id {id}; it is recorded and checked from now on"
                ),
            )
            .await;
            cluster.cluster_id = Some(id);
        }
    }
    let mut bootstrapping = false;
    if let Some(id) = &cluster.cluster_id {
        let exists = config_maps
            .get_opt(&bootstrap_name)
            .await
            .map_err(|source| Error::Read {
                what: format!("ConfigMap {bootstrap_name}"),
                source,
            })?
            .is_some();
        bootstrapping = exists;
        if exists && observation.as_ref().is_some_and(|o| formed(id, o)) {
            delete_if_exists(&config_maps, "ConfigMap", &bootstrap_name).await?;
            ctx.event(
                object,
                EventType::Normal,
                "QuorumFormed",
                "The controller quorum has a leader: a broker that starts on an empty disk now joins it".into(),
            )
            .await;
            bootstrapping = false;
        }
    }
    let verdict = match (observation, &cluster.cluster_id) {
        (None, _) => None,
        (Some(o), Some(id)) => Some(identity::verify(id, &ready, o)),
        (Some(o), None) => Some(Err(adoptable(&o).err().unwrap_or_else(|| {
            Doubt::Unreachable("the cluster id is not known yet".into())
        }))),
    };
    let (view, doubt) = match verdict {
        None => (None, None),
        Some(Ok(view)) => (Some(view), None),
        Some(Err(doubt)) => {
            tracing::info!(cluster = %cluster.name, %doubt, "the brokers' answers cannot be acted on");
            (None, Some(doubt))
        }
    };
    Ok(Trust {
        view,
        doubt,
        bootstrapping,
        ready,
    })
}

/// Drains a scale-in, moves the quorum voters, and verifies a shrink, in
/// that order; sets the voters wanted and, only with a verified shrink,
/// the smaller broker count on `cluster`.
async fn size_step(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &mut ValidatedCluster,
    target: i32,
    running: i32,
    trust: &Trust,
) -> Size {
    let id = cluster.cluster_id.clone();
    let mut scale_in = (running > target).then(|| {
        ScaleIn::Draining(format!(
            "scaling in to {target} brokers waits for a trusted answer from every broker"
        ))
    });
    if let (Some(_), Some(_), Some(id)) = (&scale_in, &trust.view, &id) {
        let step = scale_in::step(ctx, object, cluster, target, Leaving::ScaleIn(running), id);
        scale_in = Some(step.await);
    }
    // The brokers that stay: the target, unless the scale-in cannot happen.
    let keep = match &scale_in {
        Some(ScaleIn::Refused(_)) => running,
        _ => target,
    };
    cluster.voters = desired_voters(keep, cluster.spec.quorum_voters);
    let quorum_pending = match (&trust.view, &id) {
        (Some(view), Some(id)) => quorum::step(ctx, object, cluster, view, keep, id).await,
        _ => None,
    };
    if let (Some(ScaleIn::Drained), Some(id)) = (&scale_in, &id) {
        let verified =
            scale_in::verify_shrink(ctx, object, cluster, target, running, id, &trust.ready);
        scale_in = Some(verified.await);
    }
    if let Some(ScaleIn::Shrink(_)) = &scale_in {
        cluster.replicas = target;
    }
    Size {
        scale_in,
        quorum_pending,
    }
}

/// Replicas on brokers the cluster no longer runs (a topic placed on a
/// leaving broker while a scale-in shrank) move like a drain's, once the
/// cluster is at its size. Not held back by a roll: those partitions are
/// under-replicated, which holds the roll back.
async fn repair_step(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    trust: &Trust,
    scale_in: Option<ScaleIn>,
    old_replicas: Option<i32>,
    ready: i32,
) -> Option<ScaleIn> {
    let (Some(view), Some(id), None) = (&trust.view, &cluster.cluster_id, &scale_in) else {
        return scale_in;
    };
    let gone_up_to = view
        .snapshot
        .replica_brokers()
        .last()
        .copied()
        .filter(|&broker| broker >= cluster.replicas)?;
    if old_replicas != Some(cluster.replicas) || ready < cluster.replicas {
        return None;
    }
    let why = Leaving::Gone(gone_up_to + 1);
    match scale_in::step(ctx, object, cluster, cluster.replicas, why, id).await {
        ScaleIn::Drained => None,
        step => Some(step),
    }
}

/// Spreads replicas onto new brokers once a scale-out is up and no roll
/// or drain is under way. Returns the broker count the partitions are
/// spread over, and what the rebalance is doing.
async fn spread_step(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    trust: &Trust,
    scale_in: &Option<ScaleIn>,
    decision: &RollDecision,
    ready: i32,
) -> (i32, Option<String>) {
    let mut balanced = object
        .status
        .as_ref()
        .and_then(|s| s.balanced_brokers)
        .unwrap_or(cluster.replicas)
        .min(cluster.replicas);
    if !cluster.spec.rebalance_on_scale_out {
        balanced = cluster.replicas;
    }
    let (Some(_), Some(id)) = (&trust.view, &cluster.cluster_id) else {
        return (balanced, None);
    };
    if balanced >= cluster.replicas
        || scale_in.is_some()
        || *decision != RollDecision::Idle
        || ready < cluster.replicas
    {
        return (balanced, None);
    }
    match scale_out::step(ctx, object, cluster, id).await {
        ScaleOut::Balanced => (cluster.replicas, None),
        ScaleOut::Rebalancing(message) => (balanced, Some(message)),
    }
}

/// Events for a created or resized StatefulSet.
async fn scaled_events(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    old_replicas: Option<i32>,
) {
    match old_replicas {
        None => {
            ctx.event(
                object,
                EventType::Normal,
                "Created",
                format!(
                    "Created StatefulSet {} with {} brokers",
                    cluster.statefulset_name(),
                    cluster.replicas
                ),
            )
            .await
        }
        Some(old) if old != cluster.replicas => {
            ctx.event(
                object,
                EventType::Normal,
                "Scaled",
                format!("Scaled from {old} to {} brokers", cluster.replicas),
            )
            .await
        }
        Some(_) => {}
    }
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
/// A StatefulSet is only applied once the cluster id is known (its pods
/// are formatted with it); until then the `existing` one stays as it is.
async fn apply_all(
    ctx: &Context,
    cluster: &ValidatedCluster,
    desired: &Desired,
    existing: Option<&StatefulSet>,
) -> Result<StatefulSet, Error> {
    let client = &ctx.client;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &cluster.namespace);
    match &desired.network_policy {
        Some(policy) => {
            apply(client, policy).await?;
        }
        None => {
            delete_if_exists(&policies, "NetworkPolicy", &network_policy_name(cluster)).await?;
        }
    }
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
    match (&cluster.cluster_id, existing) {
        (None, Some(existing)) => Ok(existing.clone()),
        _ => apply(client, &desired.statefulset).await,
    }
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

#[allow(clippy::too_many_arguments)] // a plain gathering of what the reconcile saw
fn cluster_status(
    cluster: &KafkaCluster,
    validated: &ValidatedCluster,
    phase: &Phase,
    sts_status: &StatefulSetStatus,
    view: Option<&View>,
    observed: &Observed,
    roll: Option<RollStatus>,
    balanced: i32,
    storage: &StorageStep,
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
        replicas: sts_status.replicas,
        ready_brokers: sts_status.ready_replicas.unwrap_or(0),
        label_selector: Some(validated.selector_string()),
        bootstrap_servers: Some(validated.bootstrap_servers()),
        external_addresses: external_addresses(validated, &observed.load_balancer_hosts)
            .into_values()
            .collect(),
        // Never what a broker says: the id the cluster was created with.
        cluster_id: validated.cluster_id.clone().or(previous.cluster_id),
        // Keep what the brokers said last when they cannot be trusted now.
        active_controller: view
            .and_then(|v| v.snapshot.controller)
            .or(previous.active_controller),
        roll,
        quorum_voters: Some(validated.voters),
        quorum: view
            .map(|v| quorum::status_of(&v.quorum))
            .or(previous.quorum),
        balanced_brokers: Some(balanced),
        storage_capacity: match storage {
            StorageStep::Steady { capacity, .. }
            | StorageStep::Growing { capacity, .. }
            | StorageStep::Refused { capacity, .. } => capacity
                .iter()
                .map(|(broker, size)| (broker.to_string(), size.clone()))
                .collect(),
            StorageStep::Unknown(_) => previous.storage_capacity,
        },
        certificates: previous.certificates,
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
