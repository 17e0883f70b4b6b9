//! The Topic controller: keeps a Kafka topic as its `Topic` says, through
//! the Kafka admin protocol (CreateTopics, CreatePartitions,
//! IncrementalAlterConfigs, AlterPartitionReassignments, DeleteTopics), so
//! it would work against any Kafka-compatible cluster. A finalizer deletes
//! the Kafka topic when the `Topic` is deleted.
//!
//! A replication factor change is a reassignment of every partition (see
//! [`super::reassign`]): the controller starts it, reports `Progressing`
//! while ListPartitionReassignments shows the topic's partitions moving,
//! and `Ready` once each partition has the new number of replicas.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

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
use rivulet_wire::{
    client::{OngoingReassignment, ReassignTarget},
    error::ClientError,
};

use super::{
    apply_status,
    kafka::{ReplicaAssignment, TopicState},
    reassign::{replication_targets, Loads},
    status::{stamp, PROGRESSING, READY},
    Context,
};
use crate::{
    crd::{KafkaCluster, Topic, TopicSpec, TopicStatus},
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

/// A change the topic needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    /// Create the topic.
    Create {
        /// Partitions.
        partitions: i32,
        /// Replication factor.
        replication_factor: i16,
        /// Config overrides.
        config: BTreeMap<String, String>,
    },
    /// Grow to this many partitions.
    Grow(i32),
    /// Set these overrides and revert those.
    AlterConfig {
        /// Overrides to set.
        set: BTreeMap<String, String>,
        /// Overrides to remove.
        delete: Vec<String>,
    },
}

/// What to do about a topic: changes to make, and differences the
/// operator cannot resolve (reported, not acted on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicPlan {
    /// Changes, in order.
    pub changes: Vec<TopicChange>,
    /// Why the topic cannot fully match its spec.
    pub problems: Vec<String>,
}

/// Plans the changes that take `current` to `spec` (pure).
pub fn plan(spec: &TopicSpec, current: Option<&TopicState>, brokers: Option<i32>) -> TopicPlan {
    let mut plan = TopicPlan::default();
    if let Some(brokers) = brokers.filter(|b| spec.replication_factor > *b) {
        plan.problems.push(format!(
            "replicationFactor {} exceeds the cluster's {brokers} brokers",
            spec.replication_factor
        ));
        if current.is_none() {
            return plan;
        }
    }
    let Some(current) = current else {
        plan.changes.push(TopicChange::Create {
            partitions: spec.partitions,
            replication_factor: i16::try_from(spec.replication_factor).unwrap_or(i16::MAX),
            config: spec.config.clone(),
        });
        return plan;
    };
    if spec.partitions > current.partitions {
        plan.changes.push(TopicChange::Grow(spec.partitions));
    } else if spec.partitions < current.partitions {
        plan.problems.push(format!(
            "the topic has {} partitions; Kafka cannot shrink it to {}",
            current.partitions, spec.partitions
        ));
    }
    let set: BTreeMap<String, String> = spec
        .config
        .iter()
        .filter(|(k, v)| current.overrides.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = current
        .overrides
        .keys()
        .filter(|k| !spec.config.contains_key(*k))
        .cloned()
        .collect();
    if !set.is_empty() || !delete.is_empty() {
        plan.changes.push(TopicChange::AlterConfig { set, delete });
    }
    plan
}

/// The next step of a replication factor change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationStep {
    /// This many of the topic's partitions are being reassigned: wait.
    Wait(usize),
    /// Start these reassignments. `short` lists the partitions that cannot
    /// get enough replicas because too few brokers are registered.
    Start {
        /// One target per partition whose replica count is off.
        targets: Vec<ReassignTarget>,
        /// Partitions left out for want of brokers.
        short: Vec<i32>,
    },
}

/// Plans giving every partition of `topic` `replication_factor` replicas
/// (pure): grown partitions keep their replicas in order and gain the
/// least-loaded brokers among the first `brokers` of the cluster that are
/// registered; shrunk ones drop replicas from the end, the leader last.
/// Nothing new starts while any partition of the topic is still moving.
pub fn replication_step(
    topic: &str,
    replication_factor: i32,
    assignment: &ReplicaAssignment,
    ongoing: &[OngoingReassignment],
    brokers: i32,
) -> ReplicationStep {
    let moving = ongoing.iter().filter(|o| o.topic == topic).count();
    if moving > 0 {
        return ReplicationStep::Wait(moving);
    }
    let partitions = assignment
        .partitions
        .iter()
        .filter(|((t, _), _)| t == topic)
        .map(|((_, p), replicas)| (*p, replicas.clone()))
        .collect();
    let mut loads = Loads::of(
        assignment,
        assignment
            .brokers
            .iter()
            .copied()
            .filter(|id| *id < brokers),
    );
    let (targets, short) = replication_targets(
        topic,
        &partitions,
        usize::try_from(replication_factor).unwrap_or(0),
        &mut loads,
    );
    ReplicationStep::Start { targets, short }
}

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

/// Bootstrap address and broker count of the topic's cluster, or why not.
async fn cluster_of(
    topic: &Topic,
    ctx: &Context,
) -> Result<Result<(String, i32), (String, String)>, Error> {
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
    match validate(&cluster, &ctx.config) {
        Ok(v) => Ok(Ok((v.bootstrap_servers(), v.replicas))),
        Err(e) => Ok(Err(("ClusterInvalid".into(), e.to_string()))),
    }
}

async fn apply_topic(topic: &Topic, ctx: &Context) -> Result<Action, Error> {
    let name = topic.kafka_name();
    let (bootstrap, brokers) = match cluster_of(topic, ctx).await? {
        Ok(found) => found,
        Err((reason, message)) => {
            let conditions = conditions(false, &reason, &message, None);
            write_status(ctx, topic, conditions, None).await?;
            return Ok(Action::requeue(RETRY));
        }
    };
    let was_moving = topic.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == PROGRESSING && c.status == "True" && c.reason == REASSIGNING)
    });
    let result: Result<(TopicPlan, Replication, Option<TopicState>), Error> = async {
        let current = ctx
            .kafka
            .describe_topic(&bootstrap, &name)
            .await
            .map_err(admin_error("Metadata", &name))?;
        let plan = plan(&topic.spec, current.as_ref(), Some(brokers));
        apply_changes(topic, ctx, &bootstrap, &plan.changes).await?;
        let after = if plan.changes.is_empty() {
            current
        } else {
            ctx.kafka
                .describe_topic(&bootstrap, &name)
                .await
                .map_err(admin_error("Metadata", &name))?
        };
        // A growing partition lists its new replicas before they caught
        // up, so only ListPartitionReassignments tells a move has finished.
        let rf = topic.spec.replication_factor;
        let replication = match &after {
            Some(state) if rf <= brokers && (was_moving || !state.has_replication_factor(rf)) => {
                change_replication(topic, ctx, &bootstrap, brokers).await?
            }
            _ => Replication::default(),
        };
        Ok((plan, replication, after))
    }
    .await;
    match result {
        Ok((plan, replication, state)) => {
            // Replication problems (brokers not registered, a refused
            // move) can clear up by themselves: look again soon.
            let requeue = if replication.moving > 0 {
                PROGRESS_POLL
            } else if !replication.problems.is_empty() {
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
            let conditions = if !problems.is_empty() {
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
            write_status(ctx, topic, conditions, state.as_ref()).await?;
            Ok(Action::requeue(requeue))
        }
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
            write_status(ctx, topic, conditions, None).await?;
            Ok(Action::requeue(RETRY))
        }
    }
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
    bootstrap: &str,
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
    bootstrap: &str,
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

async fn cleanup_topic(topic: &Topic, ctx: &Context) -> Result<Action, Error> {
    let name = topic.kafka_name();
    // With the cluster gone, so is the topic.
    if let Ok((bootstrap, _)) = cluster_of(topic, ctx).await? {
        ctx.kafka
            .delete_topic(&bootstrap, &name)
            .await
            .map_err(|source| Error::Admin {
                op: "DeleteTopics",
                topic: name.clone(),
                source,
            })?;
        ctx.event(
            topic,
            EventType::Normal,
            "Deleted",
            format!("Deleted Kafka topic {name}"),
        )
        .await;
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

async fn write_status(
    ctx: &Context,
    topic: &Topic,
    conditions: Vec<Condition>,
    state: Option<&TopicState>,
) -> Result<(), Error> {
    let previous = topic.status.clone().unwrap_or_default();
    let status = TopicStatus {
        observed_generation: topic.metadata.generation,
        conditions: stamp(
            conditions,
            topic.metadata.generation,
            &previous.conditions,
            Timestamp::now(),
        ),
        topic_id: state.map(|s| s.id.clone()).or(previous.topic_id.clone()),
        partitions: state.map(|s| s.partitions).or(previous.partitions),
        replication_factor: state
            .map(|s| s.replication_factor)
            .or(previous.replication_factor),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::kafka::PartitionReplicas;

    fn spec(yaml: &str) -> TopicSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn state(partitions: i32, rf: i32, overrides: &[(&str, &str)]) -> TopicState {
        TopicState {
            id: "id".into(),
            partitions,
            replication_factor: rf,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..TopicState::default()
        }
    }

    #[test]
    fn creates_a_missing_topic() {
        let s = spec(
            "cluster: demo\npartitions: 6\nreplicationFactor: 3\nconfig:\n  retention.ms: '1000'",
        );
        let p = plan(&s, None, Some(3));
        assert_eq!(
            p.changes,
            [TopicChange::Create {
                partitions: 6,
                replication_factor: 3,
                config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            }]
        );
        assert!(p.problems.is_empty());
        let too_big = plan(&s, None, Some(1));
        assert!(too_big.changes.is_empty());
        assert!(too_big.problems[0].contains("exceeds"));
    }

    #[test]
    fn grows_and_syncs_config() {
        let s = spec("cluster: demo\npartitions: 6\nreplicationFactor: 1\nconfig:\n  retention.ms: '1000'\n  cleanup.policy: compact");
        let current = state(3, 1, &[("retention.ms", "5"), ("segment.bytes", "1024")]);
        let p = plan(&s, Some(&current), Some(3));
        assert_eq!(
            p.changes,
            [
                TopicChange::Grow(6),
                TopicChange::AlterConfig {
                    set: BTreeMap::from([
                        ("cleanup.policy".into(), "compact".into()),
                        ("retention.ms".into(), "1000".into()),
                    ]),
                    delete: vec!["segment.bytes".into()],
                },
            ]
        );
    }

    #[test]
    fn in_sync_topic_needs_nothing() {
        let s = spec(
            "cluster: demo\npartitions: 3\nreplicationFactor: 1\nconfig:\n  retention.ms: '1000'",
        );
        let current = state(3, 1, &[("retention.ms", "1000")]);
        assert_eq!(plan(&s, Some(&current), Some(1)), TopicPlan::default());
    }

    #[test]
    fn reports_what_it_cannot_do() {
        let s = spec("cluster: demo\npartitions: 2\nreplicationFactor: 2");
        let p = plan(&s, Some(&state(4, 1, &[])), Some(3));
        assert!(p.changes.is_empty());
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert!(p.problems[0].contains("cannot shrink"));
        let too_big = plan(&s, Some(&state(2, 1, &[])), Some(1));
        assert!(too_big.problems[0].contains("exceeds"), "{too_big:?}");
    }

    fn assignment(brokers: &[i32], partitions: &[(&str, i32, &[i32])]) -> ReplicaAssignment {
        ReplicaAssignment {
            brokers: brokers.to_vec(),
            partitions: partitions
                .iter()
                .map(|(t, p, r)| {
                    (
                        (t.to_string(), *p),
                        PartitionReplicas {
                            leader: r[0],
                            replicas: r.to_vec(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn replication_grows_onto_the_least_loaded_brokers_of_the_cluster() {
        // Broker 3 is leaving the cluster (spec says 3 brokers) and must
        // not get replicas; broker 2 carries the least.
        let a = assignment(
            &[0, 1, 2, 3],
            &[
                ("orders", 0, &[0]),
                ("orders", 1, &[1]),
                ("other", 0, &[0, 1]),
                ("other", 1, &[2, 0]),
            ],
        );
        let step = replication_step("orders", 2, &a, &[], 3);
        assert_eq!(
            step,
            ReplicationStep::Start {
                targets: vec![
                    ("orders".into(), 0, Some(vec![0, 2])),
                    ("orders".into(), 1, Some(vec![1, 2])),
                ],
                short: vec![],
            },
            "loads 0:3 1:2 2:1, then 0:3 1:2 2:2"
        );
        let ReplicationStep::Start { targets, short } = replication_step("orders", 4, &a, &[], 3)
        else {
            panic!()
        };
        assert!(targets.is_empty());
        assert_eq!(short, [0, 1], "three brokers hold at most three replicas");
    }

    #[test]
    fn replication_shrinks_and_waits_for_moves_in_progress() {
        let a = assignment(&[0, 1, 2], &[("t", 0, &[2, 0, 1]), ("t", 1, &[1, 2])]);
        assert_eq!(
            replication_step("t", 1, &a, &[], 3),
            ReplicationStep::Start {
                targets: vec![
                    ("t".into(), 0, Some(vec![2])),
                    ("t".into(), 1, Some(vec![1]))
                ],
                short: vec![],
            }
        );
        let ongoing = [OngoingReassignment {
            topic: "t".into(),
            partition: 1,
            replicas: vec![1, 2],
            adding: vec![],
            removing: vec![2],
        }];
        assert_eq!(
            replication_step("t", 1, &a, &ongoing, 3),
            ReplicationStep::Wait(1)
        );
        assert!(
            matches!(
                replication_step("u", 1, &a, &ongoing, 3),
                ReplicationStep::Start { targets, .. } if targets.is_empty()
            ),
            "another topic's moves do not hold this one back"
        );
    }
}
