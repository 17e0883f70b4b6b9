//! Follows the metadata log: every applied image is turned into local
//! state. Topics the image has are known here (so requests for partitions
//! hosted elsewhere get NOT_LEADER_OR_FOLLOWER, not UNKNOWN_TOPIC); the
//! partitions this broker is a replica of are opened, given their role
//! (leader or follower of whom, at which epoch), and followed; replicas
//! moved away and topics deleted are removed from disk.

use std::{collections::BTreeMap, sync::Arc};

use rivulet_quorum::metadata::ClusterMetadata;
use tokio::sync::watch;

use super::{Cluster, FollowTarget};
use crate::broker::Broker;

/// Applies each new image until the quorum node stops.
pub(super) async fn run(cluster: Arc<Cluster>, mut image: watch::Receiver<Arc<ClusterMetadata>>) {
    loop {
        let current = image.borrow_and_update().clone();
        let Some(broker) = cluster.broker() else {
            return;
        };
        let c = cluster.clone();
        let b = broker.clone();
        // Opening logs is blocking I/O.
        let follow = tokio::task::spawn_blocking(move || apply(&c, &b, &current))
            .await
            .unwrap_or_default();
        cluster.set_follow(follow);
        broker.groups.on_leadership_change(&broker);
        broker.notify_data();
        if image.changed().await.is_err() {
            return;
        }
    }
}

/// Brings local state in line with `image`; returns what to follow.
fn apply(
    cluster: &Cluster,
    broker: &Broker,
    image: &ClusterMetadata,
) -> BTreeMap<(String, i32), FollowTarget> {
    let me = cluster.node_id;
    // Until the image shows this very process registered and unfenced it is
    // an old view (the metadata log is being replayed or caught up): lead
    // nothing it names this broker leader of, so no client write lands on
    // a leadership that has already moved.
    let current = cluster.is_current_in(image);
    for topic in broker.topics() {
        let current = image.topics.get(&topic.name);
        if current.is_none_or(|t| t.id != topic.id) {
            broker.forget_topic(&topic.name);
        }
    }
    let mut follow = BTreeMap::new();
    for (name, meta) in &image.topics {
        let rf = meta
            .partitions
            .values()
            .next()
            .map_or(1, |p| p.replicas.len() as i16);
        let topic = broker.host_topic(
            name,
            meta.id,
            &meta.configs,
            rf,
            meta.partitions.len() as i32,
        );
        for (&index, p) in &meta.partitions {
            if !p.replicas.contains(&me) {
                if let Some(gone) = topic.remove_partition(index) {
                    tracing::info!(topic = %name, partition = index, "replica moved away; removing its data");
                    broker.delete_partition_data(name, gone);
                    broker.refresh_partition_gauges();
                }
                continue;
            }
            let partition = match topic.partition(index) {
                Some(p) => p,
                None => match broker.open_replica(&topic, index) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(topic = %name, partition = index, error = %e, "cannot open replica");
                        continue;
                    }
                },
            };
            if p.leader == Some(me) && current {
                partition.become_leader(me, p.leader_epoch, p.partition_epoch, &p.replicas, &p.isr);
            } else if p.leader == Some(me) {
                partition.become_follower(
                    None,
                    p.leader_epoch,
                    p.partition_epoch,
                    &p.replicas,
                    &p.isr,
                );
            } else {
                partition.become_follower(
                    p.leader,
                    p.leader_epoch,
                    p.partition_epoch,
                    &p.replicas,
                    &p.isr,
                );
                if let Some(leader) = p.leader {
                    follow.insert(
                        (name.clone(), index),
                        FollowTarget {
                            leader,
                            epoch: p.leader_epoch,
                            truncate: true,
                        },
                    );
                }
            }
        }
    }
    broker.refresh_partition_gauges();
    follow
}
