//! Topic identity and health against the fake API server and Kafka: a lost
//! or recreated topic is reported and left alone until a person names the
//! id to act on, and partitions without a leader are never Ready.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Harness, EVENTS, TOPIC};
use crate::{controller::topic, crd::Topic, fixtures::FakeApi};

/// One API call: `METHOD path` and its body.
type Call = (String, Value);

/// A Topic `orders` of cluster `demo`: 3 partitions, 3 replicas.
fn put_topic(api: &FakeApi) {
    api.insert(
        TOPIC,
        json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "Topic",
               "metadata": {"name": "orders", "namespace": "kafka", "uid": "u", "generation": 1,
                            "finalizers": ["rivulet.dev/topic"]},
               "spec": {"cluster": "demo", "partitions": 3, "replicationFactor": 3}}),
    );
}

impl Harness {
    /// Reconciles the Topic as stored; every API call it made.
    async fn topic_calls(&self) -> Vec<Call> {
        let topic: Topic = serde_json::from_value(self.api.object(TOPIC).unwrap()).unwrap();
        topic::reconcile(Arc::new(topic), self.ctx.clone())
            .await
            .expect("topic reconcile");
        self.api
            .take_calls()
            .into_iter()
            .map(|c| (c.line(), c.body))
            .collect()
    }

    fn topic_status(&self) -> Value {
        self.api.object(TOPIC).unwrap()["status"].clone()
    }

    fn topic_ready(&self) -> (String, String) {
        super::status_and_reason(&super::condition_in(&self.topic_status(), "Ready"))
    }

    fn annotate_topic(&self, key: &str, value: &str) {
        let mut topic = self.api.object(TOPIC).unwrap();
        topic["metadata"]["annotations"] = json!({ key: value });
        self.api.insert(TOPIC, topic);
    }

    /// Plays Kafka losing the topic, or recreating it under `new_id`.
    fn kafka_replaces_topic(&self, new_id: Option<&str>) {
        let mut topics = self.kafka.topics.lock().unwrap();
        match new_id {
            None => {
                topics.remove("orders");
            }
            Some(id) => topics.get_mut("orders").unwrap().id = id.into(),
        }
    }
}

/// Reasons of the Events among `calls`.
fn event_reasons(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|(line, _)| *line == format!("POST {EVENTS}"))
        .map(|(_, body)| {
            format!(
                "{} {}",
                body["type"].as_str().unwrap(),
                body["reason"].as_str().unwrap()
            )
        })
        .collect()
}

/// A topic created by the operator and Ready, its id recorded.
async fn synced() -> Harness {
    let h = Harness::new("replicas: 3");
    put_topic(&h.api);
    h.topic_calls().await;
    assert_eq!(h.kafka_calls(), ["create_topic orders 3 3"]);
    assert_eq!(h.topic_ready(), ("True".into(), "Synced".into()));
    assert_eq!(h.topic_status()["topicId"], "id-orders");
    h
}

#[tokio::test]
async fn a_lost_topic_is_reported_and_recreated_only_when_asked() {
    let h = synced().await;
    h.kafka_replaces_topic(None);
    let calls = h.topic_calls().await;
    assert!(h.kafka_calls().is_empty(), "not recreated");
    assert_eq!(h.topic_ready(), ("False".into(), "TopicLost".into()));
    assert_eq!(event_reasons(&calls), ["Warning TopicLost"]);
    let status = h.topic_status();
    assert_eq!(status["topicId"], "id-orders", "the identity is kept");
    assert!(status.get("partitions").is_none(), "{status}");
    let message = super::condition_in(&status, "Ready")["message"].clone();
    assert!(
        message.as_str().unwrap().ends_with(
            "kubectl annotate topic orders -n kafka rivulet.dev/recreate-lost-topic=id-orders"
        ),
        "{message}"
    );

    // Still lost: no second Event, no status write.
    let calls = h.topic_calls().await;
    assert!(event_reasons(&calls).is_empty());
    assert!(
        !calls.iter().any(|(line, _)| line.ends_with("/status")),
        "{calls:#?}"
    );

    // An acceptance of another id does not recreate it; naming it does.
    h.annotate_topic("rivulet.dev/recreate-lost-topic", "some-other-id");
    h.topic_calls().await;
    assert!(h.kafka_calls().is_empty());
    h.annotate_topic("rivulet.dev/recreate-lost-topic", "id-orders");
    let calls = h.topic_calls().await;
    assert_eq!(h.kafka_calls(), ["create_topic orders 3 3"]);
    // (The second `Created` joins the first one's Event series: a PATCH.)
    assert_eq!(event_reasons(&calls), ["Normal RecreatingLostTopic"]);
    assert_eq!(h.topic_ready(), ("True".into(), "Synced".into()));
}

#[tokio::test]
async fn a_recreated_topic_is_left_alone_until_its_id_is_accepted() {
    let h = synced().await;
    // Auto-created by a client: another id, and the spec now wants more.
    h.kafka_replaces_topic(Some("3VwH0XnWSfqN6DB1Q2nwbw"));
    let mut edited = h.api.object(TOPIC).unwrap();
    edited["spec"]["partitions"] = json!(6);
    h.api.insert(TOPIC, edited);
    let calls = h.topic_calls().await;
    assert!(h.kafka_calls().is_empty(), "nothing changed in a stranger");
    assert_eq!(h.topic_ready(), ("False".into(), "TopicRecreated".into()));
    assert_eq!(event_reasons(&calls), ["Warning TopicRecreated"]);
    assert_eq!(h.topic_status()["topicId"], "id-orders");

    // The same id as a UUID is the same topic: accepted in Kafka's form.
    h.annotate_topic(
        "rivulet.dev/accept-topic-id",
        "dd5c07d1-79d6-49fa-8de8-30754369f06f",
    );
    let calls = h.topic_calls().await;
    assert_eq!(h.kafka_calls(), ["create_partitions orders 6"]);
    assert_eq!(
        event_reasons(&calls),
        ["Normal TopicIdAccepted", "Normal PartitionsAdded"]
    );
    assert_eq!(h.topic_ready(), ("True".into(), "Synced".into()));
    assert_eq!(h.topic_status()["topicId"], "3VwH0XnWSfqN6DB1Q2nwbw");
    assert_eq!(h.topic_status()["partitions"], 6);
}

#[tokio::test]
async fn deleting_the_topic_resource_spares_a_stranger_of_the_same_name() {
    let h = synced().await;
    h.kafka_replaces_topic(Some("stranger"));
    let mut deleting = h.api.object(TOPIC).unwrap();
    deleting["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    h.api.insert(TOPIC, deleting);
    let calls = h.topic_calls().await;
    assert!(h.kafka_calls().is_empty(), "not deleted");
    assert_eq!(event_reasons(&calls), ["Warning NotDeleted"]);
    assert!(h.api.object(TOPIC).unwrap()["metadata"]["finalizers"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_existing_topic_is_adopted_and_its_id_recorded() {
    let h = Harness::new("replicas: 3");
    h.kafka
        .put_topic("orders", &[&[0, 1, 2], &[1, 2, 0], &[2, 0, 1]]);
    put_topic(&h.api);
    let calls = h.topic_calls().await;
    assert!(h.kafka_calls().is_empty());
    assert_eq!(event_reasons(&calls), ["Normal Adopted"]);
    assert_eq!(h.topic_ready(), ("True".into(), "Synced".into()));
    assert_eq!(h.topic_status()["topicId"], "id-orders");
    let calls = h.topic_calls().await;
    assert!(event_reasons(&calls).is_empty(), "adopted once");
}

#[tokio::test]
async fn partitions_without_a_leader_are_not_ready() {
    let h = synced().await;
    h.kafka.set_leader("orders", 1, -1);
    let calls = h.topic_calls().await;
    let (status, reason) = h.topic_ready();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PartitionsOffline")
    );
    let message = super::condition_in(&h.topic_status(), "Ready")["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .starts_with("1 of 3 partitions have no leader"),
        "{message}"
    );
    assert_eq!(event_reasons(&calls), ["Warning PartitionsOffline"]);
    assert!(
        event_reasons(&h.topic_calls().await).is_empty(),
        "one Event"
    );

    h.kafka.set_leader("orders", 1, 2);
    h.topic_calls().await;
    assert_eq!(h.topic_ready(), ("True".into(), "Synced".into()));
}
