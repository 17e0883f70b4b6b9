//! Reconcile scenarios that move replicas: a Topic's replication factor
//! change, KafkaCluster scale-in (drain, refusal, waiting), replicas left
//! on removed brokers, and the rebalance after a scale-out.

use serde_json::json;

use super::{
    applied, condition_in, reconcile_topic, status_and_reason, Harness, CM, EVENTS, STS, TOPIC,
};

impl Harness {
    /// A running cluster of `n` brokers, all ready, the Kafka side healthy.
    async fn running(spec: &str, n: i32) -> Harness {
        let h = Harness::new(spec);
        h.reconcile().await;
        h.run_pods(n, "r1");
        h.kafka_brokers(n);
        h.reconcile().await;
        h.calls();
        h
    }

    fn sts_replicas(&self) -> i64 {
        self.api.object(STS).unwrap()["spec"]["replicas"]
            .as_i64()
            .unwrap()
    }

    fn scale_to(&self, n: i32) {
        self.edit_spec(|spec| spec["replicas"] = json!(n));
    }

    /// Asserts that the reconcile which made `calls` started `moves` (broker
    /// 3 replaced in place by the least-loaded broker that stays), with a
    /// Draining event and status; returns the Progressing message.
    fn assert_drain_started(&self, calls: &[String], moves: &[&str]) -> String {
        assert_eq!(self.kafka_calls(), moves);
        assert!(
            calls.contains(&format!("POST {EVENTS}")),
            "a Draining event"
        );
        assert_eq!(
            self.condition("Progressing"),
            ("True".into(), "Draining".into())
        );
        self.message("Progressing")
    }

    fn has_broker_file(&self, id: i32) -> bool {
        self.api.object(CM).unwrap()["data"][format!("broker-{id}.properties")].is_string()
    }
}

#[tokio::test]
async fn scale_in_drains_the_leaving_broker_then_shrinks() {
    let h = Harness::running("replicas: 4", 4).await;
    h.kafka
        .put_topic("orders", &[&[3, 0], &[0, 1], &[1, 3], &[2, 0]]);
    h.kafka.put_topic("audit", &[&[1, 2]]);

    h.scale_to(3);
    let calls = h.reconcile().await;
    assert_eq!(h.sts_replicas(), 4, "not shrunk while broker 3 holds data");
    assert!(h.has_broker_file(3), "the leaving broker keeps its config");
    let message = h.assert_drain_started(
        &calls,
        &["reassign orders-0 [2, 0]", "reassign orders-2 [1, 2]"],
    );
    assert!(
        message.contains("draining broker 3 before scaling in to 3 brokers"),
        "{message}"
    );

    // The new replicas are catching up: nothing new to start, same size.
    let calls = h.reconcile().await;
    assert!(h.kafka_calls().is_empty());
    assert_eq!(h.sts_replicas(), 4);
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("DELETE") || c.ends_with("/status")),
        "nothing deleted, the status already says it all: {calls:#?}"
    );
    assert!(h
        .message("Progressing")
        .contains("2 partitions still have replicas there, 2 reassignments in progress"));

    // Caught up: broker 3 holds nothing, nothing moves. Now it shrinks.
    h.kafka.complete_reassignments();
    assert_eq!(h.kafka.replicas_of("orders")[0], [2, 0]);
    let calls = h.reconcile().await;
    assert_eq!(h.sts_replicas(), 3);
    assert!(!h.has_broker_file(3));
    assert!(calls.contains(&format!("POST {EVENTS}")), "a Scaled event");
    assert!(h.kafka_calls().is_empty(), "nothing is unregistered");
    assert_ne!(h.condition("Progressing").1, "Draining");
}

/// A move that finishes between the drain's two reads (Metadata still
/// shows the target plus the leaving replica, ListPartitionReassignments
/// no longer lists it) must not be planned again from the widened list:
/// that would raise the partition's replication factor. Seen once in
/// `cluster_spread` under load.
#[tokio::test]
async fn a_move_finishing_between_the_drains_reads_is_not_planned_again() {
    let h = Harness::running("replicas: 4", 4).await;
    h.kafka.put_topic("orders", &[&[3, 0], &[0, 1]]);
    h.scale_to(3);
    h.reconcile().await;
    assert_eq!(h.kafka_calls(), ["reassign orders-0 [2, 0]"]);

    *h.kafka.complete_before_next_list.lock().unwrap() = true;
    h.reconcile().await;
    assert!(
        h.kafka_calls().is_empty(),
        "a finished move was planned again"
    );
    assert_eq!(
        h.kafka.replicas_of("orders")[0],
        [2, 0],
        "replication factor kept"
    );
}

#[tokio::test]
async fn scale_in_that_would_lose_data_is_refused() {
    let h = Harness::running("replicas: 3\nquorumVoters: 1", 3).await;
    h.kafka.put_topic("orders", &[&[0, 1, 2], &[1, 2, 0]]);
    h.kafka.put_topic("__consumer_offsets", &[&[2, 0, 1]]);
    h.kafka.put_topic("audit", &[&[0, 1]]);

    h.scale_to(2);
    let calls = h.reconcile().await;
    assert_eq!(h.sts_replicas(), 3, "refused, never executed");
    assert!(h.has_broker_file(2));
    assert!(h.kafka_calls().is_empty(), "nothing moved");
    assert!(calls.contains(&format!("POST {EVENTS}")), "a Warning event");
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "ScaleInRefused".into())
    );
    assert_eq!(
        h.condition("Ready"),
        ("False".into(), "ScaleInRefused".into())
    );
    let message = h.message("Degraded");
    assert!(
        message.contains("__consumer_offsets (3), orders (3)") && !message.contains("audit"),
        "{message}"
    );
    assert!(message.contains("keep at least 3 brokers"), "{message}");

    // Asked again: same answer, no second Event, no status write.
    let calls = h.reconcile().await;
    assert_eq!(h.sts_replicas(), 3);
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("POST") || c.ends_with("/status")),
        "{calls:#?}"
    );

    // Back to three brokers: nothing to refuse any more.
    h.scale_to(3);
    h.reconcile().await;
    assert_eq!(
        h.condition("Degraded"),
        ("False".into(), "AsExpected".into())
    );
}

#[tokio::test]
async fn replicas_left_on_a_removed_broker_are_moved_off() {
    // A topic created while a scale-in from 4 shrank landed on broker 3,
    // which is gone: partitions still name it.
    let h = Harness::running("replicas: 3", 3).await;
    h.kafka.put_topic("late", &[&[3, 0], &[1, 2]]);

    let calls = h.reconcile().await;
    assert_eq!(h.sts_replicas(), 3, "the StatefulSet keeps its size");
    let message = h.assert_drain_started(&calls, &["reassign late-0 [1, 0]"]);
    assert!(
        message.contains("moving replicas off broker 3, no longer part of the cluster"),
        "{message}"
    );

    // Caught up: nothing names broker 3 any more, the cluster is Ready.
    h.kafka.complete_reassignments();
    h.reconcile().await;
    assert!(h.kafka_calls().is_empty(), "nothing more to move");
    assert_eq!(h.kafka.replicas_of("late")[0], [1, 0]);
    assert_eq!(
        h.condition("Ready"),
        ("True".into(), "AllBrokersReady".into())
    );
}

#[tokio::test]
async fn replicas_on_a_removed_broker_that_cannot_move_degrade_the_cluster() {
    let h = Harness::running("replicas: 3", 3).await;
    h.kafka.put_topic("wide", &[&[0, 1, 2, 3]]);

    h.reconcile().await;
    assert!(h.kafka_calls().is_empty(), "nothing moved");
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "ScaleInRefused".into())
    );
    let message = h.message("Degraded");
    assert!(
        message.contains("replicas on broker 3 cannot move") && message.contains("wide (4)"),
        "{message}"
    );
}

#[tokio::test]
async fn scale_in_waits_for_a_reassignment_in_progress() {
    let h = Harness::running("replicas: 4", 4).await;
    // Nothing on broker 3, but a move (say, a replication factor change)
    // is still running.
    h.kafka.put_topic("orders", &[&[0, 1]]);
    h.kafka.put_topic("audit", &[&[2]]);
    h.kafka.reassign_now("audit", 0, &[2, 1]);

    h.scale_to(3);
    h.reconcile().await;
    assert_eq!(h.sts_replicas(), 4, "a reassignment is still running");
    assert!(h.kafka_calls().is_empty());
    assert_eq!(
        h.condition("Progressing"),
        ("True".into(), "Draining".into())
    );
    assert!(h
        .message("Progressing")
        .contains("0 partitions still have replicas there, 1 reassignments in progress"));

    h.kafka.complete_reassignments();
    h.reconcile().await;
    assert_eq!(h.sts_replicas(), 3);
}

#[tokio::test]
async fn scale_in_waits_while_the_brokers_cannot_be_asked() {
    let h = Harness::running("replicas: 4", 4).await;
    *h.kafka.info.lock().unwrap() = None;
    h.scale_to(3);
    let calls = h.reconcile().await;
    assert_eq!(h.sts_replicas(), 4, "unreachable never means drained");
    assert_eq!(applied(&calls).last(), Some(&"demo-broker"));
    assert!(h.kafka_calls().is_empty(), "nothing moved");
    // Every pod says it is up, yet none answers: that needs a look.
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "BrokersUnreachable".into())
    );
    assert!(
        h.message("Degraded")
            .contains("cannot read the cluster metadata"),
        "{}",
        h.message("Degraded")
    );
}

/// A Topic `orders` of cluster `demo`, finalizer already in place.
fn topic(h: &Harness, partitions: i32, replication_factor: i32) {
    h.api.insert(
        TOPIC,
        json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "Topic",
               "metadata": {"name": "orders", "namespace": "kafka", "uid": "u", "generation": 1,
                            "finalizers": ["rivulet.dev/topic"]},
               "spec": {"cluster": "demo", "partitions": partitions,
                        "replicationFactor": replication_factor}}),
    );
}

fn topic_condition(h: &Harness, type_: &str) -> (String, String) {
    status_and_reason(&condition_in(
        &h.api.object(TOPIC).unwrap()["status"],
        type_,
    ))
}

#[tokio::test]
async fn topic_replication_factor_grows_through_reassignment() {
    let h = Harness::new("replicas: 3");
    h.kafka_brokers(3);
    h.kafka.put_topic("orders", &[&[0], &[1], &[2]]);
    topic(&h, 3, 2);

    reconcile_topic(&h).await;
    assert_eq!(
        h.kafka_calls(),
        [
            "reassign orders-0 [0, 1]",
            "reassign orders-1 [1, 2]",
            "reassign orders-2 [2, 0]"
        ]
    );
    assert_eq!(
        topic_condition(&h, "Progressing"),
        ("True".into(), "Reassigning".into())
    );
    assert_eq!(
        topic_condition(&h, "Ready"),
        ("False".into(), "Reassigning".into())
    );

    // Still moving: nothing new is started.
    reconcile_topic(&h).await;
    assert!(h.kafka_calls().is_empty());
    assert_eq!(topic_condition(&h, "Progressing").0, "True");

    h.kafka.complete_reassignments();
    let calls = reconcile_topic(&h).await;
    assert!(h.kafka_calls().is_empty());
    assert_eq!(
        topic_condition(&h, "Ready"),
        ("True".into(), "Synced".into())
    );
    assert_eq!(
        topic_condition(&h, "Progressing"),
        ("False".into(), "Idle".into())
    );
    assert_eq!(
        h.api.object(TOPIC).unwrap()["status"]["replicationFactor"],
        2
    );
    assert!(
        calls.contains(&format!("POST {EVENTS}")),
        "a ReplicationFactorChanged event"
    );
}

#[tokio::test]
async fn topic_replication_factor_shrinks_keeping_the_leader() {
    let h = Harness::new("replicas: 3");
    h.kafka_brokers(3);
    h.kafka.put_topic("orders", &[&[2, 0, 1]]);
    h.kafka.set_leader("orders", 0, 1);
    topic(&h, 1, 1);
    reconcile_topic(&h).await;
    assert_eq!(h.kafka_calls(), ["reassign orders-0 [1]"]);
    h.kafka.complete_reassignments();
    reconcile_topic(&h).await;
    assert_eq!(h.kafka.replicas_of("orders"), [[1]]);
    assert_eq!(topic_condition(&h, "Ready").0, "True");
}

#[tokio::test]
async fn topic_replication_factor_beyond_the_cluster_is_not_attempted() {
    let h = Harness::new("replicas: 3");
    h.kafka_brokers(3);
    h.kafka.put_topic("orders", &[&[0, 1]]);
    topic(&h, 1, 4);
    reconcile_topic(&h).await;
    assert!(h.kafka_calls().is_empty());
    assert_eq!(
        topic_condition(&h, "Ready"),
        ("False".into(), "CannotMatchSpec".into())
    );
}

#[tokio::test]
async fn scale_out_spreads_existing_replicas_onto_the_new_broker() {
    let h = Harness::running("replicas: 3", 3).await;
    h.kafka.put_topic(
        "orders",
        &[&[0, 1], &[1, 2], &[2, 0], &[0, 1], &[1, 2], &[2, 0]],
    );
    assert_eq!(h.status()["balancedBrokers"], 3);

    // The StatefulSet grows; nothing moves before broker 3 is ready.
    h.scale_to(4);
    h.reconcile().await;
    assert_eq!(h.sts_replicas(), 4);
    assert!(h.kafka_calls().is_empty());
    assert_eq!(h.status()["balancedBrokers"], 3);

    // Broker 3 is up: the most-loaded brokers each give it a replica.
    h.run_pods(4, "r1");
    h.kafka_brokers(4);
    let calls = h.reconcile().await;
    assert_eq!(
        h.kafka_calls(),
        [
            "reassign orders-0 [0, 3]",
            "reassign orders-1 [1, 3]",
            "reassign orders-2 [2, 3]"
        ]
    );
    assert!(
        calls.contains(&format!("POST {EVENTS}")),
        "a Rebalancing event"
    );
    assert_eq!(
        h.condition("Progressing"),
        ("True".into(), "Rebalancing".into())
    );
    assert_eq!(h.condition("Ready").0, "False");

    // While they move, nothing new starts.
    h.reconcile().await;
    assert!(h.kafka_calls().is_empty());
    assert!(h
        .message("Progressing")
        .contains("3 reassignments in progress"));

    // Done: every broker holds 3 replicas; Ready, and it is not asked again.
    h.kafka.complete_reassignments();
    h.reconcile().await;
    assert_eq!(h.status()["balancedBrokers"], 4);
    assert_eq!(
        h.condition("Ready"),
        ("True".into(), "AllBrokersReady".into())
    );
    h.kafka_calls();
    h.reconcile().await;
    assert!(
        h.kafka_calls().is_empty(),
        "a balanced cluster is left alone"
    );
}

#[tokio::test]
async fn scale_out_without_rebalance_moves_nothing() {
    let h = Harness::running("replicas: 3\nrebalanceOnScaleOut: false", 3).await;
    h.kafka.put_topic("orders", &[&[0, 1], &[1, 2], &[2, 0]]);
    h.scale_to(4);
    h.reconcile().await;
    h.run_pods(4, "r1");
    h.kafka_brokers(4);
    h.reconcile().await;
    assert!(h.kafka_calls().is_empty());
    assert_eq!(h.status()["balancedBrokers"], 4);
    assert_eq!(h.condition("Ready").0, "True");
}
