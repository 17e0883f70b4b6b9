//! Restarting brokers: the roll's decision ([`roll::decide`], pure), checked
//! right before it is carried out. A restart the roll chooses goes ahead
//! only on fresh answers of this cluster that cover every ready broker,
//! and only if [`safety::check`] finds that nothing would be lost: on
//! `Ephemeral` storage a restarted broker starts on an empty disk, so each
//! of its partitions needs another in-sync replica and the quorum a
//! caught-up majority without it. Otherwise the roll waits, Degraded with
//! reason `RestartWouldLoseData` and a message naming what would be lost,
//! unless the KafkaCluster carries the allow-data-loss annotation (each use
//! is a Warning Event).

use k8s_openapi::{
    api::{
        apps::v1::StatefulSetStatus,
        core::v1::{ObjectReference, Pod},
    },
    jiff::Timestamp,
};
use kube::{api::Api, runtime::events::EventType};

use super::{
    delete_if_exists,
    identity::View,
    observe::fresh_view,
    roll::{self, PodView, RollDecision, RollInput},
    safety,
    scale_in::already_degraded,
    Context,
};
use crate::{
    crd::{KafkaCluster, RollStatus},
    error::Error,
    validate::ValidatedCluster,
};

/// The outcome of the roll step.
pub struct Roll {
    /// What the roll does.
    pub decision: RollDecision,
    /// The restart chosen would lose data; what.
    pub blocked: Option<String>,
    /// `status.roll` to record.
    pub status: Option<RollStatus>,
}

/// Decides the roll's next step and, for a restart, checks with fresh
/// answers that it loses nothing before deleting the pod.
#[allow(clippy::too_many_arguments)] // what the roll is decided from
pub async fn step(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    views: &[PodView],
    sts_status: &StatefulSetStatus,
    view: Option<&View>,
    ready: &[i32],
    quorum_pending: Option<&str>,
    now: Timestamp,
) -> Result<Roll, Error> {
    let previous = object.status.as_ref().and_then(|s| s.roll.clone());
    let decision = roll::decide(&RollInput {
        target: sts_status.update_revision.as_deref(),
        replicas: cluster.replicas,
        pods: views,
        under_replicated: view.map(|v| v.snapshot.under_replicated()),
        controller: view.and_then(|v| v.snapshot.controller),
        quorum_pending,
        previous: previous.as_ref(),
        now,
        timeout: ctx.roll_timeout,
    });
    let (decision, blocked) = match decision {
        RollDecision::Restart(id) => guard_restart(ctx, object, cluster, id, ready).await,
        other => (other, None),
    };
    let status = match &decision {
        RollDecision::Idle => None,
        RollDecision::Restart(id) => {
            restart(ctx, object, cluster, *id).await?;
            Some(RollStatus {
                target_revision: sts_status.update_revision.clone().unwrap_or_default(),
                broker: Some(*id),
                restarted_at: Some(now.to_string()),
            })
        }
        RollDecision::Stuck(message) => {
            ctx.event(object, EventType::Warning, "RollStopped", message.clone())
                .await;
            previous
        }
        RollDecision::Wait(_) => previous.or_else(|| {
            Some(RollStatus {
                target_revision: sts_status.update_revision.clone().unwrap_or_default(),
                ..RollStatus::default()
            })
        }),
    };
    Ok(Roll {
        decision,
        blocked,
        status,
    })
}

/// Asks the cluster again and checks that restarting broker `id` loses
/// nothing: on `Ephemeral` storage the restart empties its disk. Returns
/// the restart, or a wait with what it would lose (unless the
/// allow-data-loss annotation waives that, with a Warning Event).
async fn guard_restart(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    id: i32,
    ready: &[i32],
) -> (RollDecision, Option<String>) {
    let Some(cluster_id) = &cluster.cluster_id else {
        return (
            RollDecision::Wait("the cluster id is not known".into()),
            None,
        );
    };
    let view = match fresh_view(ctx, cluster, cluster_id, ready).await {
        Ok(view) => view,
        Err(doubt) => {
            return (
                RollDecision::Wait(format!("before restarting broker {id}: {doubt}")),
                None,
            )
        }
    };
    let Err(loss) = safety::check(&[id], !cluster.ephemeral(), &view.snapshot, &view.quorum) else {
        return (RollDecision::Restart(id), None);
    };
    let message = loss.describe(&format!(
        "restarting broker {id}{}",
        if cluster.ephemeral() {
            " (Ephemeral storage: its disk starts empty)"
        } else {
            ""
        }
    ));
    if cluster.allow_data_loss {
        ctx.event(
            object,
            EventType::Warning,
            "DataLossAllowed",
            format!("{message}; restarting it anyway, as the allow-data-loss annotation says"),
        )
        .await;
        return (RollDecision::Restart(id), None);
    }
    if !already_degraded(object, "RestartWouldLoseData") {
        ctx.event(
            object,
            EventType::Warning,
            "RestartWouldLoseData",
            message.clone(),
        )
        .await;
    }
    (RollDecision::Wait(message.clone()), Some(message))
}

/// Deletes broker `id`'s pod so the StatefulSet recreates it on the new revision.
async fn restart(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    id: i32,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let pod_name = cluster.pod_name(id);
    delete_if_exists(&pods, "Pod", &pod_name).await?;
    let pod_ref = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod_name.clone()),
        namespace: Some(cluster.namespace.clone()),
        ..Default::default()
    };
    ctx.event_related(
        object,
        Some(pod_ref),
        EventType::Normal,
        "RestartingBroker",
        format!("Restarting broker {id} (pod {pod_name}) to apply a new config or image"),
    )
    .await;
    Ok(())
}
