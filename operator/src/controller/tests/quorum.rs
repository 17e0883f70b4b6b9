//! Reconcile scenarios of cluster identity, quorum voters and data safety,
//! replaying the data loss they prevent: a one-broker Ephemeral cluster
//! scaled to three, with a replication-factor-3 topic, whose config change
//! rolled the brokers and restarted broker 0, then the only voter, on an
//! empty disk; it founded a new cluster, the others kept the old one, and
//! a scale to one broker then shrank the StatefulSet because the drain
//! asked the wrong cluster.

use serde_json::{json, Value};

use super::{pod_deletes, Harness, BOOTSTRAP_CM, CR, EVENTS, PODS, STS};
use crate::crd::ALLOW_DATA_LOSS_ANNOTATION;

const EPHEMERAL: &str = "replicas: 1\nstorage:\n  type: Ephemeral";

impl Harness {
    fn sts(&self) -> Value {
        self.api.object(STS).unwrap()
    }

    /// A config change whose new pod template the StatefulSet controller
    /// records as revision `r2`; every pod still runs `r1`.
    async fn change_config(&self, brokers: i32) {
        self.edit_spec(|spec| spec["config"] = json!({"num.partitions": "6"}));
        self.reconcile().await;
        self.api.set_status(
            STS,
            json!({"replicas": brokers, "readyReplicas": brokers, "updateRevision": "r2", "currentRevision": "r1"}),
        );
    }

    /// Plays broker `id`'s pod coming back at `r2` after a restart on an
    /// empty disk (Ephemeral storage).
    fn restarted_empty(&self, id: i32) {
        self.add_pod(id, "r2", true);
        self.kafka.lose_disk(id);
    }

    fn annotate(&self, key: &str, value: &str) {
        let mut cr = self.api.object(CR).unwrap();
        cr["metadata"]["annotations"] = json!({ key: value });
        self.api.insert(CR, cr);
    }

    /// How many Events `calls` published (a repeated Event updates its
    /// series instead of posting a new one).
    fn events(&self, calls: &[String]) -> usize {
        calls.iter().filter(|c| c.contains(EVENTS)).count()
    }
}

/// The replay, up to the roll: created with one Ephemeral broker, scaled
/// to three, an RF-3 topic. Returns with the quorum still one voter.
async fn grown_dev_cluster() -> Harness {
    let h = Harness::new(EPHEMERAL);
    h.reconcile().await;
    assert!(
        h.api.object(BOOTSTRAP_CM).is_some(),
        "bootstrap at creation"
    );
    h.run_pods(1, "r1");
    h.kafka_brokers(1);
    h.reconcile().await;
    assert!(
        h.api.object(BOOTSTRAP_CM).is_none(),
        "formed: no more founding"
    );
    assert_eq!(h.condition("Ready").0, "True");

    h.edit_spec(|spec| spec["replicas"] = json!(3));
    h.reconcile().await;
    assert_eq!(h.sts()["spec"]["replicas"], 3);
    h.run_pods(3, "r1");
    h.kafka_brokers(3);
    h.kafka
        .put_topic("orders", &[&[0, 1, 2], &[1, 2, 0], &[2, 0, 1]]);
    assert_eq!(h.kafka.voter_ids(), [0], "the quorum formed with one voter");
    h.calls();
    h
}

#[tokio::test]
async fn the_roll_waits_for_three_voters_and_in_sync_replicas_before_restarting() {
    let h = grown_dev_cluster().await;
    // The new brokers are not caught up with the metadata log yet.
    h.kafka.fall_behind(1);
    h.kafka.fall_behind(2);
    h.change_config(3).await;
    assert_eq!(h.status()["quorumVoters"], 3);

    let calls = h.reconcile().await;
    assert!(
        pod_deletes(&calls).is_empty(),
        "no restart before the voters"
    );
    assert!(h.kafka_calls().is_empty(), "nobody caught up to add");
    assert!(
        h.message("Ready")
            .contains("waiting for brokers 1, 2 to catch up"),
        "{}",
        h.message("Ready")
    );

    // Caught up: one voter per reconcile, and still no restart.
    h.kafka.catch_up(1);
    h.kafka.catch_up(2);
    let calls = h.reconcile().await;
    assert_eq!(h.kafka_calls(), ["add_voter 1"]);
    assert!(pod_deletes(&calls).is_empty());
    let calls = h.reconcile().await;
    assert_eq!(h.kafka_calls(), ["add_voter 2"]);
    assert!(pod_deletes(&calls).is_empty());
    assert_eq!(h.kafka.voter_ids(), [0, 1, 2]);
    assert!(h.events(&calls) >= 1, "a VoterAdded event");

    // Three voters, everything in sync: broker 2 goes first.
    let calls = h.reconcile().await;
    assert_eq!(
        pod_deletes(&calls),
        [&format!("DELETE {PODS}/demo-broker-2")]
    );
    assert_eq!(h.status()["quorum"]["voters"].as_array().unwrap().len(), 3);

    // It comes back on an empty disk: its replicas are out of sync, so the
    // next restart waits for them.
    h.restarted_empty(2);
    let calls = h.reconcile().await;
    assert!(pod_deletes(&calls).is_empty(), "{calls:#?}");
    assert!(h
        .message("Ready")
        .contains("waiting for 3 under-replicated partitions"));
    h.kafka.catch_up(2);
    let calls = h.reconcile().await;
    assert_eq!(
        pod_deletes(&calls),
        [&format!("DELETE {PODS}/demo-broker-1")]
    );
    h.restarted_empty(1);
    h.kafka.catch_up(1);

    // Broker 0, once the only voter and the only copy, now has two caught-up
    // voters and two in-sync replicas of everything beside it.
    let calls = h.reconcile().await;
    assert_eq!(
        pod_deletes(&calls),
        [&format!("DELETE {PODS}/demo-broker-0")]
    );
    assert!(
        h.api.object(BOOTSTRAP_CM).is_none(),
        "it will join, not found"
    );
}

#[tokio::test]
async fn a_restart_that_would_lose_the_only_copy_waits_unless_allowed() {
    let h = grown_dev_cluster().await;
    h.reconcile().await;
    h.reconcile().await;
    assert_eq!(h.kafka.voter_ids(), [0, 1, 2]);
    // A replication-factor-1 topic on broker 2, which restarts first.
    h.kafka.put_topic("scratch", &[&[2], &[0]]);
    h.change_config(3).await;

    let calls = h.reconcile().await;
    assert!(pod_deletes(&calls).is_empty(), "{calls:#?}");
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "RestartWouldLoseData".into())
    );
    let message = h.message("Degraded");
    assert!(
        message.starts_with("restarting broker 2 (Ephemeral storage: its disk starts empty) would lose data: 1 partitions have no other in-sync replica (scratch-0)"),
        "{message}"
    );
    assert_eq!(h.condition("Ready").0, "False");
    assert_eq!(h.events(&calls), 1, "one Warning");

    // Asked again: same answer, no second Event, no status write.
    let calls = h.reconcile().await;
    assert!(pod_deletes(&calls).is_empty());
    assert_eq!(h.events(&calls), 0);
    assert!(!calls.iter().any(|c| c.ends_with("/status")), "{calls:#?}");

    // A human accepts the loss.
    h.annotate(ALLOW_DATA_LOSS_ANNOTATION, "true");
    let calls = h.reconcile().await;
    assert_eq!(
        pod_deletes(&calls),
        [&format!("DELETE {PODS}/demo-broker-2")]
    );
    assert!(h.events(&calls) >= 1, "a DataLossAllowed Warning");
    assert_ne!(h.condition("Degraded").1, "RestartWouldLoseData");
}

#[tokio::test]
async fn a_single_broker_ephemeral_cluster_never_restarts_on_its_own() {
    let h = Harness::new(EPHEMERAL);
    h.reconcile().await;
    h.run_pods(1, "r1");
    h.kafka_brokers(1);
    h.reconcile().await;
    h.change_config(1).await;
    let calls = h.reconcile().await;
    assert!(pod_deletes(&calls).is_empty());
    assert_eq!(h.condition("Degraded").1, "RestartWouldLoseData");
    assert!(
        h.message("Degraded")
            .contains("the controller quorum would keep 0 of its 1 voters"),
        "{}",
        h.message("Degraded")
    );
}

#[tokio::test]
async fn a_scale_to_one_below_the_replication_factor_is_refused() {
    let h = grown_dev_cluster().await;
    h.reconcile().await;
    h.reconcile().await;
    h.kafka_calls();
    h.edit_spec(|spec| spec["replicas"] = json!(1));
    let calls = h.reconcile().await;
    assert_eq!(h.sts()["spec"]["replicas"], 3, "refused, never executed");
    assert!(
        h.kafka_calls().is_empty(),
        "no voter removed, nothing moved"
    );
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "ScaleInRefused".into())
    );
    assert!(h.message("Degraded").contains("orders (3)"));
    assert_eq!(
        h.status()["quorumVoters"],
        3,
        "the brokers stay, so do the voters"
    );
    assert!(pod_deletes(&calls).is_empty());
}

#[tokio::test]
async fn a_scale_in_moves_the_voters_off_the_leaving_brokers_before_shrinking() {
    let h = Harness::running_cluster("replicas: 3", 3).await;
    h.kafka.put_topic("orders", &[&[0], &[0]]);
    h.edit_spec(|spec| spec["replicas"] = json!(1));

    let calls = h.reconcile().await;
    assert_eq!(h.kafka_calls(), ["remove_voter 2"]);
    assert_eq!(h.sts()["spec"]["replicas"], 3, "broker 1 still votes");
    assert!(h.events(&calls) >= 1, "a VoterRemoved event");
    assert!(
        h.message("Progressing")
            .contains("brokers 1 are quorum voters"),
        "{}",
        h.message("Progressing")
    );

    h.reconcile().await;
    assert_eq!(h.kafka_calls(), ["remove_voter 1"]);
    assert_eq!(h.kafka.voter_ids(), [0]);
    assert_eq!(h.sts()["spec"]["replicas"], 1, "verified: now it shrinks");
    assert_eq!(h.status()["quorumVoters"], 1);
}

#[tokio::test]
async fn a_broker_of_another_cluster_stops_every_restart_and_shrink() {
    let h = Harness::running_cluster("replicas: 3", 3).await;
    h.kafka.put_topic("orders", &[&[0, 1, 2]]);
    // Broker 0 lost its disk and, as before this operator, founded its own.
    h.kafka
        .identities
        .lock()
        .unwrap()
        .insert(0, Some("b3RoZXItY2x1c3Rlci0xMg".into()));
    h.change_config(3).await;
    h.edit_spec(|spec| spec["replicas"] = json!(2));

    let calls = h.reconcile().await;
    assert!(pod_deletes(&calls).is_empty());
    assert_eq!(h.sts()["spec"]["replicas"], 3);
    assert!(
        h.kafka_calls().is_empty(),
        "nothing moved, no voter changed"
    );
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "ClusterIdMismatch".into())
    );
    let message = h.message("Degraded");
    assert!(
        message.contains("broker 0 reports cluster id b3RoZXItY2x1c3Rlci0xMg")
            && message.contains(&h.cluster_id()),
        "{message}"
    );
}

#[tokio::test]
async fn a_drain_that_asks_the_wrong_cluster_never_shrinks() {
    // The bootstrap Service routes to the broker that founded its own
    // cluster: no partitions there, so it looks drained.
    let h = Harness::running_cluster("replicas: 3", 3).await;
    h.kafka.put_topic("orders", &[&[0, 1, 2]]);
    let ours = h.cluster_id();
    // Every broker, asked on its own address, still answers for ours.
    for id in 0..3 {
        h.kafka
            .identities
            .lock()
            .unwrap()
            .insert(id, Some(ours.clone()));
    }
    h.kafka.topics.lock().unwrap().clear();
    h.kafka.info.lock().unwrap().as_mut().unwrap().cluster_id =
        Some("b3RoZXItY2x1c3Rlci0xMg".into());
    h.edit_spec(|spec| spec["replicas"] = json!(1));
    for _ in 0..3 {
        h.reconcile().await;
        assert_eq!(h.sts()["spec"]["replicas"], 3);
        assert!(
            h.kafka_calls().is_empty(),
            "no voter removed, nothing moved"
        );
    }
    assert_eq!(h.condition("Degraded").1, "ClusterIdMismatch");
    assert_eq!(h.cluster_id(), ours, "the recorded id never changes");
}

#[tokio::test]
async fn a_cluster_of_an_older_operator_records_the_id_its_brokers_report() {
    let h = Harness::running_cluster("replicas: 3", 3).await;
    let mut cr = h.api.object(CR).unwrap();
    cr["status"].as_object_mut().unwrap().remove("clusterId");
    h.api.insert(CR, cr);
    h.kafka.info.lock().unwrap().as_mut().unwrap().cluster_id =
        Some("bGVnYWN5LWNsdXN0ZXItMQ".into());
    let calls = h.reconcile().await;
    assert_eq!(h.cluster_id(), "bGVnYWN5LWNsdXN0ZXItMQ");
    assert!(
        !calls.iter().any(|c| c == &format!("PATCH {BOOTSTRAP_CM}")),
        "an existing cluster never gets the bootstrap permission"
    );
    let env = h.sts()["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert!(env
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "RIVULET_CLUSTER_ID" && e["value"] == "bGVnYWN5LWNsdXN0ZXItMQ"));
    assert_eq!(h.condition("Ready").0, "True");
}

#[tokio::test]
async fn offline_and_under_min_isr_partitions_keep_the_cluster_from_ready() {
    let h = Harness::running_cluster("replicas: 3", 3).await;
    h.kafka.put_topic("orders", &[&[0, 1, 2], &[1, 2, 0]]);
    h.reconcile().await;
    assert_eq!(h.condition("Ready").0, "True");
    assert!(h
        .message("Ready")
        .ends_with("2 partitions, none offline or under min ISR"));

    h.kafka.set_isr("orders", 1, &[1]);
    h.reconcile().await;
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "UnderMinIsr".into())
    );
    assert!(h
        .message("Ready")
        .contains("1 of 2 partitions under min ISR (orders-1)"));

    h.kafka.set_leader("orders", 0, -1);
    h.reconcile().await;
    assert_eq!(
        h.condition("Ready"),
        ("False".into(), "PartitionsOffline".into())
    );
    assert!(h.message("Ready").contains("1 of 2 partitions offline"));
}

impl Harness {
    /// A running cluster of `n` brokers, created by this operator, all
    /// ready, the quorum formed with the voters `spec` wants.
    async fn running_cluster(spec: &str, n: i32) -> Harness {
        let h = Harness::new(spec);
        h.reconcile().await;
        h.run_pods(n, "r1");
        h.kafka_brokers(n);
        h.reconcile().await;
        h.calls();
        h.kafka_calls();
        h
    }
}
