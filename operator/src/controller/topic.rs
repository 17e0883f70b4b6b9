//! The Topic controller: keeps a Kafka topic as its `Topic` says, through
//! the Kafka admin protocol (CreateTopics, CreatePartitions,
//! IncrementalAlterConfigs, DeleteTopics), so it would work against any
//! Kafka-compatible cluster. A finalizer deletes the Kafka topic when the
//! `Topic` is deleted.

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

use super::{
    apply_status,
    kafka::TopicState,
    status::{stamp, READY},
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
    if spec.replication_factor != current.replication_factor {
        plan.problems.push(format!(
            "changing the replication factor from {} to {} needs partition reassignment, which the operator does not do yet",
            current.replication_factor, spec.replication_factor
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
            write_status(ctx, topic, ready_condition(false, &reason, &message), None).await?;
            return Ok(Action::requeue(RETRY));
        }
    };
    let admin_error = |op: &'static str| {
        let topic = name.clone();
        move |source| Error::Admin { op, topic, source }
    };
    let result: Result<(TopicPlan, Option<TopicState>), Error> = async {
        let current = ctx
            .kafka
            .describe_topic(&bootstrap, &name)
            .await
            .map_err(admin_error("Metadata"))?;
        let plan = plan(&topic.spec, current.as_ref(), Some(brokers));
        for change in &plan.changes {
            match change {
                TopicChange::Create {
                    partitions,
                    replication_factor,
                    config,
                } => {
                    ctx.kafka
                        .create_topic(
                            &bootstrap,
                            &name,
                            *partitions,
                            *replication_factor,
                            config.clone(),
                        )
                        .await
                        .map_err(admin_error("CreateTopics"))?;
                    ctx.event(
                        topic,
                        EventType::Normal,
                        "Created",
                        format!("Created Kafka topic {name}"),
                    )
                    .await;
                }
                TopicChange::Grow(total) => {
                    ctx.kafka
                        .create_partitions(&bootstrap, &name, *total)
                        .await
                        .map_err(admin_error("CreatePartitions"))?;
                    ctx.event(
                        topic,
                        EventType::Normal,
                        "PartitionsAdded",
                        format!("Grew {name} to {total} partitions"),
                    )
                    .await;
                }
                TopicChange::AlterConfig { set, delete } => {
                    ctx.kafka
                        .alter_topic_config(&bootstrap, &name, set.clone(), delete.clone())
                        .await
                        .map_err(admin_error("IncrementalAlterConfigs"))?;
                    ctx.event(
                        topic,
                        EventType::Normal,
                        "ConfigChanged",
                        format!("Updated the config of {name}"),
                    )
                    .await;
                }
            }
        }
        let after = if plan.changes.is_empty() {
            current
        } else {
            ctx.kafka
                .describe_topic(&bootstrap, &name)
                .await
                .map_err(admin_error("Metadata"))?
        };
        Ok((plan, after))
    }
    .await;
    match result {
        Ok((plan, state)) => {
            let condition = if plan.problems.is_empty() {
                ready_condition(true, "Synced", "the topic matches its spec")
            } else {
                ready_condition(false, "CannotMatchSpec", &plan.problems.join("; "))
            };
            if !plan.problems.is_empty() {
                ctx.event(
                    topic,
                    EventType::Warning,
                    "CannotMatchSpec",
                    plan.problems.join("; "),
                )
                .await;
            }
            write_status(ctx, topic, condition, state.as_ref()).await?;
            Ok(Action::requeue(RESYNC))
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
            write_status(
                ctx,
                topic,
                ready_condition(false, "KafkaUnavailable", &message),
                None,
            )
            .await?;
            Ok(Action::requeue(RETRY))
        }
    }
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

fn ready_condition(ready: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: READY.into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

async fn write_status(
    ctx: &Context,
    topic: &Topic,
    ready: Condition,
    state: Option<&TopicState>,
) -> Result<(), Error> {
    let previous = topic.status.clone().unwrap_or_default();
    let status = TopicStatus {
        observed_generation: topic.metadata.generation,
        conditions: stamp(
            vec![ready],
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
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    }
}
