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
        let applied = current.clone();
        let broker = cluster.broker().clone();
        let c = cluster.clone();
        let b = broker.clone();
        // Opening logs is blocking I/O.
        let follow = tokio::task::spawn_blocking(move || apply(&c, &b, &current))
            .await
            .unwrap_or_default();
        cluster.set_follow(follow);
        cluster.set_applied(applied);
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
    open_missing_replicas(broker, image, me);
    let mut follow = BTreeMap::new();
    for (name, meta) in &image.topics {
        let topic = host_topic(broker, name, meta);
        for (&index, p) in &meta.partitions {
            if !p.replicas.contains(&me) {
                if let Some(gone) = topic.remove_partition(index) {
                    tracing::info!(topic = %name, partition = index, "replica moved away; removing its data");
                    broker.delete_partition_data(name, gone);
                    broker.refresh_partition_gauges();
                }
                continue;
            }
            // Opened above; a replica that could not be opened was logged.
            let Some(partition) = topic.partition(index) else {
                continue;
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

/// Opens (recovering) every replica `image` places on this broker that is
/// not open yet, on `num.recovery.threads.per.data.dir` threads: at
/// start-up that is every hosted partition.
fn open_missing_replicas(broker: &Broker, image: &ClusterMetadata, me: i32) {
    let mut missing = Vec::new();
    for (name, meta) in &image.topics {
        let topic = host_topic(broker, name, meta);
        for (&index, p) in &meta.partitions {
            if p.replicas.contains(&me) && topic.partition(index).is_none() {
                missing.push((topic.clone(), index));
            }
        }
    }
    if missing.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let count = missing.len();
    let threads = broker.config.replication.recovery_threads;
    crate::parallel::map(missing, threads, |(topic, index)| {
        if let Err(e) = broker.open_replica(&topic, index) {
            tracing::error!(topic = %topic.name, partition = index, error = %e, "cannot open replica");
        }
    });
    tracing::info!(
        replicas = count,
        threads,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "opened replicas"
    );
}

/// The local object of a topic of the image (see [`Broker::host_topic`]).
fn host_topic(
    broker: &Broker,
    name: &str,
    meta: &rivulet_quorum::metadata::TopicMetadata,
) -> Arc<crate::broker::Topic> {
    let rf = meta
        .partitions
        .values()
        .next()
        .map_or(1, |p| p.replicas.len() as i16);
    broker.host_topic(
        name,
        meta.id,
        &meta.configs,
        rf,
        meta.partitions.len() as i32,
    )
}
