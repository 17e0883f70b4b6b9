//! Scale-in without losing data: before the StatefulSet shrinks, every
//! partition replica on a leaving broker (ids `spec.replicas..`) is moved
//! to the brokers that stay, through AlterPartitionReassignments.
//!
//! Each reconcile of a cluster whose StatefulSet is larger than its spec
//! asks the brokers where the replicas are and what is moving, plans the
//! next moves ([`reassign::drain`], pure) and starts them. The StatefulSet
//! keeps its size (and the leaving brokers their config) until Metadata
//! shows no replica on a leaving broker and no reassignment is in
//! progress. A scale-in that would leave some partition with fewer brokers
//! than replicas is refused, never executed. Nothing is unregistered
//! afterwards: the stopped brokers stop heartbeating and the controller
//! fences them.
//!
//! The same step repairs what a scale-in can still leave behind: a topic
//! created between the drain's last look and the shrink may be placed on
//! a leaving broker. A settled cluster whose partitions still name brokers
//! it no longer has moves those replicas the same way.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;

use super::{
    kafka::replicas_and_moves,
    reassign::{self, Drain},
    status::DEGRADED,
    Context,
};
use crate::{crd::KafkaCluster, validate::ValidatedCluster};

/// What a scale-in may do in this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleIn {
    /// Nothing left on the leaving brokers: the StatefulSet may shrink.
    Shrink,
    /// Keep the brokers running while replicas move; what is happening.
    Draining(String),
    /// The scale-in would lose data; why.
    Refused(String),
}

/// Why replicas must leave brokers `spec.replicas..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// The StatefulSet still runs this many brokers: drain, then shrink.
    ScaleIn(i32),
    /// The cluster no longer runs brokers up to this count, yet some
    /// partitions still name them.
    Gone(i32),
}

/// `broker 3` or `brokers 3-4`: the ids `target..running`.
fn leaving(target: i32, running: i32) -> String {
    if running - target == 1 {
        format!("broker {target}")
    } else {
        format!("brokers {target}-{}", running - 1)
    }
}

/// Takes one step of draining brokers `cluster.replicas..` (the cluster's
/// spec asks for `cluster.replicas`; `why` says what the ids above are).
pub async fn step(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    why: Leaving,
) -> ScaleIn {
    let target = cluster.replicas;
    let (running, prefix) = match why {
        Leaving::ScaleIn(running) => (
            running,
            format!(
                "draining {} before scaling in to {target} brokers",
                leaving(target, running)
            ),
        ),
        Leaving::Gone(up_to) => (
            up_to,
            format!(
                "moving replicas off {}, no longer part of the cluster",
                leaving(target, up_to)
            ),
        ),
    };
    let bootstrap = cluster.bootstrap_servers();
    let (assignment, ongoing) = match replicas_and_moves(ctx.kafka.as_ref(), &bootstrap).await {
        Ok(found) => found,
        Err(error) => {
            tracing::info!(cluster = %cluster.name, %error, "cannot ask the brokers where the replicas are");
            return ScaleIn::Draining(format!(
                "{prefix}: cannot ask the brokers where the replicas are ({error})"
            ));
        }
    };
    let (moves, remaining, in_progress, blocked) = match reassign::drain(
        &assignment,
        &ongoing,
        target,
    ) {
        Drain::Drained => return ScaleIn::Shrink,
        Drain::Refused(topics) => {
            let list = topics
                .iter()
                .map(|(topic, rf)| format!("{topic} ({rf})"))
                .collect::<Vec<_>>()
                .join(", ");
            let most = topics.values().max().copied().unwrap_or_default();
            let message = match why {
                Leaving::ScaleIn(_) => format!(
                    "scale-in to {target} brokers refused: it would lose data, these topics have more replicas than {target} brokers can hold: {list}; lower their replication factor first, or keep at least {most} brokers"
                ),
                Leaving::Gone(_) => format!(
                    "replicas on {} cannot move: these topics have more replicas than {target} brokers can hold: {list}; lower their replication factor, or scale out to {most} brokers",
                    leaving(target, running)
                ),
            };
            if !already_refused(object) {
                ctx.event(
                    object,
                    EventType::Warning,
                    "ScaleInRefused",
                    message.clone(),
                )
                .await;
            }
            return ScaleIn::Refused(message);
        }
        Drain::Draining {
            moves,
            remaining,
            in_progress,
            blocked,
        } => (moves, remaining, in_progress, blocked),
    };
    // The message is the status: it says what is, not what this reconcile
    // did (that is the Event), so it stays put while nothing changes.
    let mut notes = Vec::new();
    let mut in_progress = in_progress;
    if !moves.is_empty() {
        let count = moves.len();
        match ctx.kafka.reassign(&bootstrap, moves).await {
            Ok(results) => {
                let refused: Vec<_> = results.iter().filter_map(|r| r.check().err()).collect();
                let started = results.len() - refused.len();
                in_progress += started;
                if started > 0 {
                    ctx.event(
                        object,
                        EventType::Normal,
                        "Draining",
                        format!(
                            "Moving the replicas of {started} partitions off {}",
                            leaving(target, running)
                        ),
                    )
                    .await;
                }
                if let Some(first) = refused.first() {
                    tracing::warn!(cluster = %cluster.name, error = %first, refused = refused.len(), "brokers refused drain reassignments");
                    notes.push(format!(
                        "the brokers refused {} moves, first: {first}",
                        refused.len()
                    ));
                }
            }
            Err(error) => {
                tracing::info!(cluster = %cluster.name, %error, "starting drain reassignments failed");
                notes.push(format!("starting {count} moves failed ({error})"));
            }
        }
    }
    notes.insert(
        0,
        format!(
            "{remaining} partitions still have replicas there, {in_progress} reassignments in progress"
        ),
    );
    if blocked > 0 {
        notes.push(format!(
            "{blocked} partitions wait for more of brokers 0-{} to be registered",
            target - 1
        ));
    }
    ScaleIn::Draining(format!("{prefix}: {}", notes.join("; ")))
}

/// Whether the last status already reported this refusal (its Event is
/// published once, not every reconcile).
fn already_refused(object: &KafkaCluster) -> bool {
    object
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
        .iter()
        .any(|c: &Condition| {
            c.type_ == DEGRADED && c.status == "True" && c.reason == "ScaleInRefused"
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_leaving_brokers() {
        assert_eq!(leaving(3, 4), "broker 3");
        assert_eq!(leaving(1, 5), "brokers 1-4");
    }
}
