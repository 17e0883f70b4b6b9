//! Scale-out that uses the new brokers: once every broker of a grown
//! cluster is ready, replicas move from the most- to the least-loaded
//! brokers ([`reassign::spread`], pure) until the load is even, so the new
//! brokers carry existing partitions, not only new ones. Leadership
//! spreads with the data (a moved first replica makes the new broker the
//! preferred leader; `auto.leader.rebalance.enable` then moves the
//! leadership).
//!
//! `status.balancedBrokers` remembers the broker count the partitions were
//! last spread over; a cluster with more brokers than that is rebalanced,
//! a batch of reassignments at a time, and the count is raised when
//! nothing is left to move. `spec.rebalanceOnScaleOut: false` turns this
//! off (the count then follows `replicas` at once).

use kube::runtime::events::EventType;

use super::{
    reassign::{self, Spread},
    scale_in::checked_moves,
    Context,
};
use crate::{crd::KafkaCluster, validate::ValidatedCluster};

/// What the rebalance after a scale-out is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleOut {
    /// The load is even over every broker: nothing left to move.
    Balanced,
    /// Replicas are moving (or cannot be asked about yet); what is happening.
    Rebalancing(String),
}

/// Takes one step of spreading replicas over brokers `0..cluster.replicas`
/// of cluster `cluster_id`.
pub async fn step(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    cluster_id: &str,
) -> ScaleOut {
    let brokers = cluster.replicas;
    let prefix = format!("spreading partitions over all {brokers} brokers");
    let target = ctx.target(cluster);
    let (snapshot, ongoing) = match checked_moves(ctx, &target, cluster_id).await {
        Ok(found) => found,
        Err(why) => {
            tracing::info!(cluster = %cluster.name, %why, "no rebalance without a trusted answer");
            return ScaleOut::Rebalancing(format!("{prefix}: {why}"));
        }
    };
    match reassign::spread(&snapshot.assignment(), &ongoing, brokers) {
        Spread::Balanced => {
            ctx.event(
                object,
                EventType::Normal,
                "Rebalanced",
                format!("Partitions are spread evenly over {brokers} brokers"),
            )
            .await;
            ScaleOut::Balanced
        }
        Spread::Waiting(running) => {
            ScaleOut::Rebalancing(format!("{prefix}: {running} reassignments in progress"))
        }
        Spread::Blocked(missing) => ScaleOut::Rebalancing(format!(
            "{prefix}: waiting for brokers {missing:?} to register"
        )),
        Spread::Moves(moves) => {
            let count = moves.len();
            match ctx.kafka.reassign(&target, moves).await {
                Ok(results) => {
                    let refused: Vec<_> = results.iter().filter_map(|r| r.check().err()).collect();
                    let started = results.len() - refused.len();
                    if started > 0 {
                        ctx.event(
                            object,
                            EventType::Normal,
                            "Rebalancing",
                            format!("Moving replicas of {started} partitions to even out {brokers} brokers"),
                        )
                        .await;
                    }
                    match refused.first() {
                        Some(first) => {
                            tracing::warn!(cluster = %cluster.name, error = %first, refused = refused.len(), "brokers refused rebalance reassignments");
                            ScaleOut::Rebalancing(format!(
                                "{prefix}: {started} reassignments started, the brokers refused {}, first: {first}",
                                refused.len()
                            ))
                        }
                        None => ScaleOut::Rebalancing(format!(
                            "{prefix}: {started} reassignments started"
                        )),
                    }
                }
                Err(error) => {
                    tracing::info!(cluster = %cluster.name, %error, "starting rebalance reassignments failed");
                    ScaleOut::Rebalancing(format!(
                        "{prefix}: starting {count} moves failed ({error})"
                    ))
                }
            }
        }
    }
}
