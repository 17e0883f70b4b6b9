//! The Topic controller: keeps a Kafka topic as its `Topic` says, through
//! the Kafka admin protocol (CreateTopics, CreatePartitions,
//! IncrementalAlterConfigs, AlterPartitionReassignments, DeleteTopics), so
//! it would work against any Kafka-compatible cluster.
//!
//! A replication factor change is a reassignment of every partition (see
//! [`super::reassign`]): the controller starts it, reports `Progressing`
//! while ListPartitionReassignments shows the topic's partitions moving,
//! and `Ready` once each partition has the new number of replicas.
//!
//! `Ready` is only claimed for what was seen: the topic with the id the
//! status recorded (see the `identity` module: a lost or recreated topic is
//! reported and left alone), the spec's shape, and a leader for every
//! partition. A finalizer deletes only the topic the Topic managed.

mod identity;
mod plan;

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    api::Api,
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{finalizer, Event as Finalizer},
    },
    ResourceExt,
};
use rivulet_wire::error::ClientError;

use self::identity::{Accept, Identity};
pub use self::plan::{plan, replication_step, ReplicationStep, TopicChange, TopicPlan};
use super::{
    apply_status,
    kafka::{AdminTarget, TopicState},
    status::{stamp, PROGRESSING, READY},
    target::admin_target,
    Context,
};
use crate::{
    crd::{KafkaCluster, Topic, TopicStatus},
    error::Error,
    validate::validate,
};

/// The controller name in metrics and logs.
pub const CONTROLLER: &str = "topic";
/// Finalizer that deletes the Kafka topic with its `Topic`.
pub const TOPIC_FINALIZER: &str = "rivulet.dev/topic";
const RETRY: Duration = Duration::from_secs(30);
const RESYNC: Duration = Duration::from_secs(300);
/// How often a replication factor change is checked on while it runs.
const PROGRESS_POLL: Duration = Duration::from_secs(10);
/// Reason of the conditions while replicas move.
const REASSIGNING: &str = "Reassigning";
/// Ready reason: some partitions have no leader.
pub const PARTITIONS_OFFLINE: &str = "PartitionsOffline";

/// Where a replication factor change stands after this reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Replication {
    /// Partitions moving (reassignments running or just started).
    moving: usize,
    /// Why some partitions cannot get the replication factor.
    problems: Vec<String>,
}

/// Reconciles one Topic (behind its finalizer).
pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let api: Api<Topic> =
        Api::namespaced(ctx.client.clone(), &topic.namespace().unwrap_or_default());
    finalizer(&api, TOPIC_FINALIZER, topic, |event| async {
        match event {
            Finalizer::Apply(topic) => apply_topic(&topic, &ctx).await,
            Finalizer::Cleanup(topic) => cleanup_topic(&topic, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The admin target and broker count of the topic's cluster, or why not.
async fn cluster_of(
    topic: &Topic,
    ctx: &Context,
) -> Result<Result<(AdminTarget, i32), (String, String)>, Error> {
    let namespace = topic.namespace().unwrap_or_default();
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(cluster) = clusters
        .get_opt(&topic.spec.cluster)
        .await
        .map_err(|source| Error::Read {
            what: format!("KafkaCluster {namespace}/{}", topic.spec.cluster),
            source,
        })?
    else {
        return Ok(Err((
            "ClusterNotFound".into(),
            format!(
                "KafkaCluster {} does not exist in namespace {namespace}",
                topic.spec.cluster
            ),
        )));
    };
    let cluster = match validate(&cluster, &ctx.config) {
        Ok(v) => v,
        Err(e) => return Ok(Err(("ClusterInvalid".into(), e.to_string()))),
    };
    Ok(match admin_target(ctx, &cluster).await? {
        Ok(target) => Ok((target, cluster.replicas)),
        Err(why) => Err(("AdminUnavailable".into(), why.to_string())),
    })
}

/// What a reconcile found and did, for the status.
enum Outcome {
    /// The cluster's topic is not this Topic's (lost or recreated):
    /// nothing was changed in Kafka.
    NotOurs(Identity),
    /// The topic was brought towards its spec.
    Synced {
        /// What was planned (its problems are reported).
        plan: TopicPlan,
        /// Where a replication factor change stands.
        replication: Replication,
        /// The topic as described after the changes.
        state: Option<TopicState>,
    },
}

async fn apply_topic(topic: &Topic, ctx: &Context) -> Result<Action, Error> {
    let (bootstrap, brokers) = match cluster_of(topic, ctx).await? {
        Ok(found) => found,
        Err((reason, message)) => {
            let conditions = conditions(false, &reason, &message, None);
            write_status(ctx, topic, conditions, Seen::Nothing).await?;
            return Ok(Action::requeue(RETRY));
        }
    };
    let was_moving = topic.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == PROGRESSING && c.status == "True" && c.reason == REASSIGNING)
    });
    match sync(topic, ctx, &bootstrap, brokers, was_moving).await {
        Ok(Outcome::NotOurs(identity)) => report_not_ours(topic, ctx, &identity).await,
        Ok(Outcome::Synced {
            plan,
            replication,
            state,
        }) => report_synced(topic, ctx, plan, replication, state, was_moving).await,
        Err(error) => {
            // Brokers not up yet is normal right after the cluster was
            // created: report it on the Topic, and try again soon.
            ctx.metrics.failure(CONTROLLER, &error);
            let message = format!(
                "{error}: {}",
                std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            let conditions = conditions(false, "KafkaUnavailable", &message, None);
            write_status(ctx, topic, conditions, Seen::Nothing).await?;
            Ok(Action::requeue(RETRY))
        }
    }
}

/// Checks the topic's identity, then makes the planned changes and moves
/// replicas towards the replication factor.
async fn sync(
    topic: &Topic,
    ctx: &Context,
    bootstrap: &AdminTarget,
    brokers: i32,
    was_moving: bool,
) -> Result<Outcome, Error> {
    let name = topic.kafka_name();
    let current = ctx
        .kafka
        .describe_topic(bootstrap, &name)
        .await
        .map_err(admin_error("Metadata", &name))?;
    let recorded = topic.status.as_ref().and_then(|s| s.topic_id.as_deref());
    match identity::check(recorded, current.as_ref(), Accept::of(topic)) {
        lost_or_recreated @ (Identity::Lost { .. } | Identity::Recreated { .. }) => {
            return Ok(Outcome::NotOurs(lost_or_recreated));
        }
        Identity::Accepted { reason, note } => {
            ctx.event(topic, EventType::Normal, reason, note).await;
        }
        Identity::Ours => {
            if let (None, Some(found)) = (recorded, &current) {
                let id = identity::kafka_topic_id(&found.id)
                    .map_or_else(|| "no id".into(), |id| format!("id {id}"));
                ctx.event(
                    topic,
                    EventType::Normal,
                    "Adopted",
                    format!("Managing existing Kafka topic {name} ({id})"),
                )
                .await;
            }
        }
    }
    let plan = plan(&topic.spec, current.as_ref(), Some(brokers));
    apply_changes(topic, ctx, bootstrap, &plan.changes).await?;
    let after = if plan.changes.is_empty() {
        current
    } else {
        ctx.kafka
            .describe_topic(bootstrap, &name)
            .await
            .map_err(admin_error("Metadata", &name))?
    };
    // A growing partition lists its new replicas before they caught
    // up, so only ListPartitionReassignments tells a move has finished.
    let rf = topic.spec.replication_factor;
    let replication = match &after {
        Some(state) if rf <= brokers && (was_moving || !state.has_replication_factor(rf)) => {
            change_replication(topic, ctx, bootstrap, brokers).await?
        }
        _ => Replication::default(),
    };
    Ok(Outcome::Synced {
        plan,
        replication,
        state: after,
    })
}

/// Reports a lost or recreated topic: Ready False, a Warning Event when
/// it is first seen, and the recorded id kept.
async fn report_not_ours(
    topic: &Topic,
    ctx: &Context,
    identity: &Identity,
) -> Result<Action, Error> {
    let Some((reason, message)) = identity.problem(topic) else {
        return Ok(Action::requeue(RETRY));
    };
    if ready_reason(topic) != Some(reason) {
        tracing::warn!(topic = %topic.kafka_name(), reason, "the Kafka topic is not the one the Topic recorded");
        ctx.event(topic, EventType::Warning, reason, message.clone())
            .await;
    }
    write_status(
        ctx,
        topic,
        conditions(false, reason, &message, None),
        Seen::NotOurs,
    )
    .await?;
    // The topic may come back (a healed split brain brings the original).
    Ok(Action::requeue(RETRY))
}

/// Reports a synced topic: Ready only when it matches its spec, nothing
/// moves and every partition has a leader.
async fn report_synced(
    topic: &Topic,
    ctx: &Context,
    plan: TopicPlan,
    replication: Replication,
    state: Option<TopicState>,
    was_moving: bool,
) -> Result<Action, Error> {
    let name = topic.kafka_name();
    let offline = state.as_ref().map_or(0, offline_partitions);
    // Replication problems (brokers not registered, a refused move) and
    // offline partitions can clear up by themselves: look again soon.
    let requeue = if replication.moving > 0 {
        PROGRESS_POLL
    } else if !replication.problems.is_empty() || offline > 0 {
        RETRY
    } else {
        RESYNC
    };
    let problems: Vec<String> = plan
        .problems
        .into_iter()
        .chain(replication.problems)
        .collect();
    let moving = (replication.moving > 0).then(|| {
        format!(
            "moving the replicas of {} partitions to replication factor {}",
            replication.moving, topic.spec.replication_factor
        )
    });
    let conditions = if offline > 0 {
        let total = state.as_ref().map_or(0, |s| s.replicas.len());
        let mut message = format!(
            "{offline} of {total} partitions have no leader: clients cannot write or read them until a replica is back"
        );
        for problem in &problems {
            message.push_str("; ");
            message.push_str(problem);
        }
        if ready_reason(topic) != Some(PARTITIONS_OFFLINE) {
            ctx.event(
                topic,
                EventType::Warning,
                PARTITIONS_OFFLINE,
                message.clone(),
            )
            .await;
        }
        conditions(false, PARTITIONS_OFFLINE, &message, moving)
    } else if !problems.is_empty() {
        ctx.event(
            topic,
            EventType::Warning,
            "CannotMatchSpec",
            problems.join("; "),
        )
        .await;
        conditions(false, "CannotMatchSpec", &problems.join("; "), moving)
    } else if let Some(message) = &moving {
        conditions(false, REASSIGNING, message, moving.clone())
    } else {
        if was_moving {
            ctx.event(
                topic,
                EventType::Normal,
                "ReplicationFactorChanged",
                format!(
                    "Every partition of {name} has {} replicas",
                    topic.spec.replication_factor
                ),
            )
            .await;
        }
        conditions(true, "Synced", "the topic matches its spec", None)
    };
    let seen = state.as_ref().map_or(Seen::Nothing, Seen::Topic);
    write_status(ctx, topic, conditions, seen).await?;
    Ok(Action::requeue(requeue))
}

/// Partitions without a leader: offline for every client.
pub fn offline_partitions(state: &TopicState) -> usize {
    state.replicas.values().filter(|p| p.leader < 0).count()
}

/// The reason of the Ready condition the status has now.
fn ready_reason(topic: &Topic) -> Option<&str> {
    topic
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| c.reason.as_str())
}

/// Maps a client error of admin request `op` on `topic` to a reconcile error.
fn admin_error(op: &'static str, topic: &str) -> impl FnOnce(ClientError) -> Error {
    let topic = topic.to_string();
    move |source| Error::Admin { op, topic, source }
}

/// Makes the planned changes, in order, with an Event for each.
async fn apply_changes(
    topic: &Topic,
    ctx: &Context,
    bootstrap: &AdminTarget,
    changes: &[TopicChange],
) -> Result<(), Error> {
    let name = topic.kafka_name();
    for change in changes {
        let (reason, note) = match change {
            TopicChange::Create {
                partitions,
                replication_factor,
                config,
            } => {
                ctx.kafka
                    .create_topic(
                        bootstrap,
                        &name,
                        *partitions,
                        *replication_factor,
                        config.clone(),
                    )
                    .await
                    .map_err(admin_error("CreateTopics", &name))?;
                ("Created", format!("Created Kafka topic {name}"))
            }
            TopicChange::Grow(total) => {
                ctx.kafka
                    .create_partitions(bootstrap, &name, *total)
                    .await
                    .map_err(admin_error("CreatePartitions", &name))?;
                (
                    "PartitionsAdded",
                    format!("Grew {name} to {total} partitions"),
                )
            }
            TopicChange::AlterConfig { set, delete } => {
                ctx.kafka
                    .alter_topic_config(bootstrap, &name, set.clone(), delete.clone())
                    .await
                    .map_err(admin_error("IncrementalAlterConfigs", &name))?;
                ("ConfigChanged", format!("Updated the config of {name}"))
            }
        };
        ctx.event(topic, EventType::Normal, reason, note).await;
    }
    Ok(())
}

/// Moves the topic towards its replication factor: waits for its
/// reassignments in progress, or starts new ones.
async fn change_replication(
    topic: &Topic,
    ctx: &Context,
    bootstrap: &AdminTarget,
    brokers: i32,
) -> Result<Replication, Error> {
    let name = topic.kafka_name();
    let rf = topic.spec.replication_factor;
    let ongoing = ctx
        .kafka
        .reassignments_in_progress(bootstrap)
        .await
        .map_err(admin_error("ListPartitionReassignments", &name))?;
    let assignment = ctx
        .kafka
        .replica_assignment(bootstrap)
        .await
        .map_err(admin_error("Metadata", &name))?;
    let (targets, short) = match replication_step(&name, rf, &assignment, &ongoing, brokers) {
        ReplicationStep::Wait(moving) => {
            return Ok(Replication {
                moving,
                problems: Vec::new(),
            })
        }
        ReplicationStep::Start { targets, short } => (targets, short),
    };
    let mut problems = Vec::new();
    if !short.is_empty() {
        let registered = assignment
            .brokers
            .iter()
            .filter(|id| **id < brokers)
            .count();
        problems.push(format!(
            "{} partitions cannot get {rf} replicas: only {registered} of the cluster's {brokers} brokers are registered",
            short.len()
        ));
    }
    if targets.is_empty() {
        return Ok(Replication {
            moving: 0,
            problems,
        });
    }
    let results = ctx
        .kafka
        .reassign(bootstrap, targets)
        .await
        .map_err(admin_error("AlterPartitionReassignments", &name))?;
    let (started, refused): (Vec<_>, Vec<_>) = results.iter().partition(|r| r.check().is_ok());
    if let Some(first) = refused.first().and_then(|r| r.check().err()) {
        problems.push(format!(
            "the brokers refused to reassign {} partitions, first: {first}",
            refused.len()
        ));
    }
    if !started.is_empty() {
        ctx.event(
            topic,
            EventType::Normal,
            REASSIGNING,
            format!(
                "Reassigning {} partitions of {name} to replication factor {rf}",
                started.len()
            ),
        )
        .await;
    }
    Ok(Replication {
        moving: started.len(),
        problems,
    })
}

/// Deletes the Kafka topic with its Topic, unless it is another topic
/// of the same name: the operator never deletes data it did not manage.
async fn cleanup_topic(topic: &Topic, ctx: &Context) -> Result<Action, Error> {
    let name = topic.kafka_name();
    // With the cluster gone, so is the topic.
    let Ok((bootstrap, _)) = cluster_of(topic, ctx).await? else {
        return Ok(Action::await_change());
    };
    let current = ctx
        .kafka
        .describe_topic(&bootstrap, &name)
        .await
        .map_err(admin_error("Metadata", &name))?;
    let recorded = topic.status.as_ref().and_then(|s| s.topic_id.as_deref());
    match identity::check(recorded, current.as_ref(), Accept::of(topic)) {
        Identity::Recreated { recorded, found } => {
            ctx.event(
                topic,
                EventType::Warning,
                "NotDeleted",
                format!("Left Kafka topic {name} (id {found}) in place: it is not the topic this Topic managed (id {recorded})"),
            )
            .await;
        }
        Identity::Lost { .. } => {}
        Identity::Ours | Identity::Accepted { .. } => {
            if current.is_some() {
                ctx.kafka
                    .delete_topic(&bootstrap, &name)
                    .await
                    .map_err(admin_error("DeleteTopics", &name))?;
                ctx.event(
                    topic,
                    EventType::Normal,
                    "Deleted",
                    format!("Deleted Kafka topic {name}"),
                )
                .await;
            }
        }
    }
    Ok(Action::await_change())
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// `Ready` with `reason` and `message`, and `Progressing` with what is
/// moving, if anything.
fn conditions(ready: bool, reason: &str, message: &str, moving: Option<String>) -> Vec<Condition> {
    let progressing = match &moving {
        Some(what) => condition(PROGRESSING, true, REASSIGNING, what),
        None => condition(PROGRESSING, false, "Idle", ""),
    };
    vec![condition(READY, ready, reason, message), progressing]
}

/// What a reconcile saw of the Kafka topic, for the status fields.
#[derive(Clone, Copy)]
enum Seen<'a> {
    /// Nothing (no cluster, brokers unreachable): keep what the status says.
    Nothing,
    /// The Topic's own topic, as described: record its id and shape.
    Topic(&'a TopicState),
    /// No topic of this Topic's (lost or recreated): keep the recorded id,
    /// report no partitions.
    NotOurs,
}

async fn write_status(
    ctx: &Context,
    topic: &Topic,
    conditions: Vec<Condition>,
    seen: Seen<'_>,
) -> Result<(), Error> {
    let previous = topic.status.clone().unwrap_or_default();
    let (topic_id, partitions, replication_factor) = match seen {
        Seen::Nothing => (
            previous.topic_id.clone(),
            previous.partitions,
            previous.replication_factor,
        ),
        Seen::Topic(state) => (
            identity::kafka_topic_id(&state.id).or(previous.topic_id.clone()),
            Some(state.partitions),
            Some(state.replication_factor),
        ),
        Seen::NotOurs => (previous.topic_id.clone(), None, None),
    };
    let status = TopicStatus {
        observed_generation: topic.metadata.generation,
        conditions: stamp(
            conditions,
            topic.metadata.generation,
            &previous.conditions,
            Timestamp::now(),
        ),
        topic_id,
        partitions,
        replication_factor,
    };
    if topic.status.as_ref() == Some(&status) {
        return Ok(());
    }
    apply_status(&ctx.client, topic, &status).await
}

/// Retries a failed reconcile after a pause, counting the failure.
pub fn error_policy(topic: Arc<Topic>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(topic = %topic.name_any(), error = %error, "topic reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    Action::requeue(RETRY)
}
