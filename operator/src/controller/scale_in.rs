//! Scale-in without losing data: before the StatefulSet shrinks, every
//! partition replica on a leaving broker (ids `spec.replicas..`) is moved
//! to the brokers that stay, through AlterPartitionReassignments, and the
//! quorum voters on leaving brokers are moved too ([`super::quorum`]).
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
//! Every answer used here must carry the cluster's id: an answer from
//! another cluster (a broker that founded its own after losing its disk
//! has no partitions at all, so it looks drained) or no answer is never
//! taken as "drained". And "drained" is only a candidate: [`verify_shrink`]
//! asks every broker again right before the StatefulSet is applied, and
//! only its [`ShrinkPermit`] lets the reconcile lower the replicas.
//!
//! The same step repairs what a scale-in can still leave behind: a topic
//! created between the drain's last look and the shrink may be placed on
//! a leaving broker. A settled cluster whose partitions still name brokers
//! it no longer has moves those replicas the same way.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;
use rivulet_wire::client::OngoingReassignment;

use super::{
    kafka::{AdminTarget, ClusterSnapshot},
    observe::fresh_view,
    reassign::{self, Drain},
    safety,
    status::DEGRADED,
    Context,
};
use crate::{crd::KafkaCluster, validate::ValidatedCluster};

/// Proof that a shrink was verified with fresh answers from the cluster
/// just before the StatefulSet is applied; only [`verify_shrink`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShrinkPermit(());

/// What a scale-in may do in this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleIn {
    /// Verified: the StatefulSet may shrink now.
    Shrink(ShrinkPermit),
    /// No replica on the leaving brokers and nothing moving, by the
    /// drain's look; the shrink still needs [`verify_shrink`].
    Drained,
    /// Keep the brokers running while replicas or voters move, or while
    /// the brokers cannot be trusted; what is happening.
    Draining(String),
    /// The scale-in would lose data and cannot be planned; why.
    Refused(String),
    /// The final check found data only the leaving brokers hold; what.
    WouldLoseData(String),
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

/// Where the replicas are and what moves, from answers of cluster
/// `cluster_id` only.
pub async fn checked_moves(
    ctx: &Context,
    target: &AdminTarget,
    cluster_id: &str,
) -> Result<(ClusterSnapshot, Vec<OngoingReassignment>), String> {
    // The moves in progress first, then where the replicas are: a move
    // that finishes between the two reads then shows in both (listed, and
    // already at its target), never as a widened replica list that nothing
    // says is moving (which a planner would move again, growing the
    // replication factor).
    let ongoing = ctx
        .kafka
        .reassignments_in_progress(target)
        .await
        .map_err(|error| format!("cannot ask the brokers what is moving ({error})"))?;
    let snapshot = ctx
        .kafka
        .snapshot(target)
        .await
        .map_err(|error| format!("cannot ask the brokers where the replicas are ({error})"))?;
    if snapshot.cluster_id.as_deref() != Some(cluster_id) {
        return Err(format!(
            "the brokers answer for cluster {} instead of {cluster_id}",
            snapshot.cluster_id.as_deref().unwrap_or("(none)")
        ));
    }
    Ok((snapshot, ongoing))
}

/// Takes one step of draining brokers `target..` of cluster `cluster_id`
/// (the spec asks for `target` brokers; `why` says what the ids above are).
pub async fn step(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    target: i32,
    why: Leaving,
    cluster_id: &str,
) -> ScaleIn {
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
    let admin = ctx.target(cluster);
    let (snapshot, ongoing) = match checked_moves(ctx, &admin, cluster_id).await {
        Ok(found) => found,
        Err(why) => {
            tracing::info!(cluster = %cluster.name, %why, "no drain without a trusted answer");
            return ScaleIn::Draining(format!("{prefix}: {why}"));
        }
    };
    let (moves, remaining, in_progress, blocked) = match reassign::drain(
        &snapshot.assignment(),
        &ongoing,
        target,
    ) {
        Drain::Drained => return ScaleIn::Drained,
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
        match ctx.kafka.reassign(&admin, moves).await {
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

/// Checks, with answers asked for now, that brokers `target..running` of
/// cluster `cluster_id` can go: every ready broker answers for that
/// cluster, no replica is on them and nothing moves, no quorum voter is
/// on them, and nothing would be lost without them ([`safety::check`],
/// waived by the allow-data-loss annotation). Any doubt keeps them.
pub async fn verify_shrink(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    target: i32,
    running: i32,
    cluster_id: &str,
    ready: &[i32],
) -> ScaleIn {
    let gone = leaving(target, running);
    let prefix = format!("scaling in to {target} brokers");
    let view = match fresh_view(ctx, cluster, cluster_id, ready).await {
        Ok(view) => view,
        Err(doubt) => return ScaleIn::Draining(format!("{prefix} waits: {doubt}")),
    };
    let ongoing = match ctx
        .kafka
        .reassignments_in_progress(&ctx.target(cluster))
        .await
    {
        Ok(ongoing) => ongoing,
        Err(error) => {
            return ScaleIn::Draining(format!(
                "{prefix} waits: cannot ask the brokers what is moving ({error})"
            ))
        }
    };
    if reassign::drain(&view.snapshot.assignment(), &ongoing, target) != Drain::Drained {
        return ScaleIn::Draining(format!(
            "{prefix} waits: replicas on {gone} or reassignments appeared since the last look"
        ));
    }
    let voters: Vec<String> = view
        .quorum
        .voters
        .iter()
        .filter(|v| v.node_id >= target)
        .map(|v| v.node_id.to_string())
        .collect();
    if !voters.is_empty() {
        return ScaleIn::Draining(format!(
            "{prefix} waits: brokers {} are quorum voters, to be replaced first",
            voters.join(", ")
        ));
    }
    let lost: Vec<i32> = (target..running).collect();
    match safety::check(&lost, false, &view.snapshot, &view.quorum) {
        Ok(()) => ScaleIn::Shrink(ShrinkPermit(())),
        Err(loss) => {
            let message = loss.describe(&format!("removing {gone}"));
            if cluster.allow_data_loss {
                ctx.event(
                    object,
                    EventType::Warning,
                    "DataLossAllowed",
                    format!(
                        "{message}; removing them anyway, as the allow-data-loss annotation says"
                    ),
                )
                .await;
                ScaleIn::Shrink(ShrinkPermit(()))
            } else {
                ScaleIn::WouldLoseData(message)
            }
        }
    }
}

/// Whether the last status already reported this refusal (its Event is
/// published once, not every reconcile).
fn already_refused(object: &KafkaCluster) -> bool {
    already_degraded(object, "ScaleInRefused")
}

/// Whether the last status was Degraded for `reason`.
pub fn already_degraded(object: &KafkaCluster, reason: &str) -> bool {
    object
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
        .iter()
        .any(|c: &Condition| c.type_ == DEGRADED && c.status == "True" && c.reason == reason)
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
