//! Asks the brokers what [`identity::verify`] needs: a Metadata answer and
//! the quorum's description through the bootstrap address, and each ready
//! broker's cluster id on its own address. Each destructive step asks
//! again right before it acts ([`fresh_view`]), so a decision never rests
//! on answers older than the step.

use std::collections::BTreeMap;

use super::{
    identity::{self, Doubt, Observation, View},
    Context,
};
use crate::validate::ValidatedCluster;

/// Asks the cluster through its bootstrap address, and brokers `ready`
/// one by one. Failures are recorded, not returned: [`identity::verify`]
/// judges them.
pub async fn observe(ctx: &Context, cluster: &ValidatedCluster, ready: &[i32]) -> Observation {
    let target = ctx.target(cluster);
    let snapshot = ctx.kafka.snapshot(&target).await.map_err(|e| e.to_string());
    let quorum = ctx
        .kafka
        .describe_quorum(&target)
        .await
        .map_err(|e| e.to_string());
    let mut probes = BTreeMap::new();
    for &id in ready {
        let answer = ctx
            .kafka
            .broker_cluster_id(&target.at(cluster.admin_address(id)), id)
            .await
            .map_err(|e| e.to_string());
        probes.insert(id, answer);
    }
    Observation {
        snapshot,
        quorum,
        probes,
    }
}

/// New answers from the cluster, verified to come from `cluster_id` and
/// to cover brokers `ready`.
pub async fn fresh_view(
    ctx: &Context,
    cluster: &ValidatedCluster,
    cluster_id: &str,
    ready: &[i32],
) -> Result<View, Doubt> {
    let observation = observe(ctx, cluster, ready).await;
    identity::verify(cluster_id, ready, observation)
}
