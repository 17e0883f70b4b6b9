//! Reconcile tests against a fake API server (kube's mock transport) and a
//! fake Kafka cluster: each test is a scenario of calls and resulting state.

mod certs;
mod quorum;
mod reassign;
mod secured;
mod topic_identity;
mod user;

use std::sync::Arc;

use serde_json::{json, Value};

use super::{cluster, kafka::BrokerView, topic, Context};
use crate::{
    crd::{KafkaCluster, Topic},
    fixtures::{cluster_from_yaml, FakeApi, FakeKafka},
    metrics::Metrics,
    validate::desired_voters,
};

const CR: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkaclusters/demo";
const STS: &str = "/apis/apps/v1/namespaces/kafka/statefulsets/demo-broker";
const CM: &str = "/api/v1/namespaces/kafka/configmaps/demo-config";
const PODS: &str = "/api/v1/namespaces/kafka/pods";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/kafka/events";
const BOOTSTRAP_CM: &str = "/api/v1/namespaces/kafka/configmaps/demo-bootstrap";
const NETPOL: &str =
    "/apis/networking.k8s.io/v1/namespaces/kafka/networkpolicies/demo-network-policy";

struct Harness {
    api: FakeApi,
    kafka: Arc<FakeKafka>,
    ctx: Arc<Context>,
}

impl Harness {
    fn new(spec: &str) -> Harness {
        let (client, api) = FakeApi::start();
        let kafka = Arc::new(FakeKafka::default());
        let ctx = Arc::new(Context::new(
            client,
            kafka.clone(),
            Arc::new(Metrics::new()),
        ));
        api.insert(CR, serde_json::to_value(cluster_from_yaml(spec)).unwrap());
        Harness { api, kafka, ctx }
    }

    /// Reconciles the KafkaCluster as stored, as the watcher would hand it over.
    async fn reconcile(&self) -> Vec<String> {
        let cluster: KafkaCluster = serde_json::from_value(self.api.object(CR).unwrap()).unwrap();
        cluster::reconcile(Arc::new(cluster), self.ctx.clone())
            .await
            .expect("reconcile succeeds");
        self.calls()
    }

    /// A 3-broker cluster created, running at revision `r1` and Ready.
    async fn ready_cluster() -> Harness {
        let h = Harness::new("replicas: 3");
        h.reconcile().await;
        h.run_pods(3, "r1");
        h.healthy_kafka();
        h.reconcile().await;
        h.calls();
        h
    }

    fn calls(&self) -> Vec<String> {
        self.api.take_calls().iter().map(|c| c.line()).collect()
    }

    fn edit_spec(&self, edit: impl FnOnce(&mut Value)) {
        let mut cr = self.api.object(CR).unwrap();
        edit(&mut cr["spec"]);
        cr["metadata"]["generation"] = json!(cr["metadata"]["generation"].as_i64().unwrap() + 1);
        self.api.insert(CR, cr);
    }

    fn status(&self) -> Value {
        self.api.object(CR).unwrap()["status"].clone()
    }

    fn condition(&self, type_: &str) -> (String, String) {
        status_and_reason(&condition_in(&self.status(), type_))
    }

    /// Kafka admin calls since the last look, and forgets them.
    fn kafka_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.kafka.calls.lock().unwrap())
    }

    fn message(&self, type_: &str) -> String {
        condition_in(&self.status(), type_)["message"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Plays the StatefulSet controller and kubelet: `n` ready pods at `revision`.
    fn run_pods(&self, n: i32, revision: &str) {
        for id in 0..n {
            self.add_pod(id, revision, true);
        }
        self.api.set_status(
            STS,
            json!({"replicas": n, "readyReplicas": n, "updateRevision": revision, "currentRevision": revision}),
        );
    }

    fn add_pod(&self, id: i32, revision: &str, ready: bool) {
        self.api.insert(
            &format!("{PODS}/demo-broker-{id}"),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("demo-broker-{id}"), "namespace": "kafka", "labels": {
                    "app.kubernetes.io/name": "rivulet", "app.kubernetes.io/instance": "demo",
                    "app.kubernetes.io/component": "broker", "apps.kubernetes.io/pod-index": id.to_string(),
                    "controller-revision-hash": revision}},
                "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }),
        );
    }

    fn healthy_kafka(&self) {
        self.kafka_brokers(3);
    }

    /// Plays a healthy Kafka cluster of brokers `0..n`, of the cluster id
    /// the operator recorded: the quorum forms (the first time) with the
    /// voters the spec wants for `n` brokers; later brokers follow the
    /// metadata log as caught-up observers.
    fn kafka_brokers(&self, n: i32) {
        let cr = self.api.object(CR).unwrap();
        let id = cr["status"]["clusterId"]
            .as_str()
            .unwrap_or("cluster-id-not-recorded")
            .to_string();
        let asked = cr["spec"]["quorumVoters"]
            .as_i64()
            .map(|v| i32::try_from(v).unwrap());
        let voters: Vec<i32> = (0..desired_voters(n, asked)).collect();
        let brokers: Vec<i32> = (0..n).collect();
        self.kafka.set_brokers(&id, 0, &brokers, &voters);
    }

    /// The cluster id the operator recorded.
    fn cluster_id(&self) -> String {
        self.status()["clusterId"].as_str().unwrap().to_string()
    }
}

/// The pods a reconcile deleted (restarted), by path.
fn pod_deletes(calls: &[String]) -> Vec<&String> {
    calls
        .iter()
        .filter(|c| c.starts_with(&format!("DELETE {PODS}/")))
        .collect()
}

/// The condition of `type_` in an object's `status`.
fn condition_in(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
        .clone()
}

/// A condition's status and reason.
fn status_and_reason(condition: &Value) -> (String, String) {
    (
        condition["status"].as_str().unwrap().into(),
        condition["reason"].as_str().unwrap().into(),
    )
}

/// A no-op reconcile: no event, no status write, nothing deleted.
fn assert_quiet(calls: &[String]) {
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("POST") || c.starts_with("DELETE") || c.ends_with("/status")),
        "{calls:#?}"
    );
}

fn applied(calls: &[String]) -> Vec<&str> {
    calls
        .iter()
        .filter(|c| c.starts_with("PATCH") && !c.ends_with("/status"))
        .map(|c| c.rsplit('/').next().unwrap())
        .collect()
}

#[tokio::test]
async fn create_applies_everything_in_order_and_reports_progress() {
    let h = Harness::new("replicas: 3");
    let calls = h.reconcile().await;
    assert_eq!(
        calls,
        [
            format!("GET {STS}"),
            "GET /api/v1/namespaces/kafka/services".into(),
            format!("GET {PODS}"),
            // The permission to found the quorum, then the cluster id,
            // before any broker exists.
            format!("PATCH {BOOTSTRAP_CM}"),
            format!("PATCH {CR}/status"),
            format!("POST {EVENTS}"),
            // Who may reach the brokers, before the brokers exist.
            format!("PATCH {NETPOL}"),
            format!("PATCH {CM}"),
            "PATCH /api/v1/namespaces/kafka/services/demo-brokers".into(),
            "PATCH /api/v1/namespaces/kafka/services/demo-bootstrap".into(),
            "PATCH /apis/policy/v1/namespaces/kafka/poddisruptionbudgets/demo-broker".into(),
            format!("PATCH {STS}"),
            format!("POST {EVENTS}"),
            // The storage step: the claims, against the spec's size.
            "GET /api/v1/namespaces/kafka/persistentvolumeclaims".into(),
            format!("PATCH {CR}/status"),
        ]
    );
    let sts = h.api.object(STS).unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    let owner = &sts["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "KafkaCluster");
    assert_eq!(owner["controller"], true);
    assert_eq!(h.condition("Ready"), ("False".into(), "Creating".into()));
    assert_eq!(
        h.condition("Progressing"),
        ("True".into(), "Creating".into())
    );
    let status = h.status();
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(
        status["labelSelector"],
        "app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=rivulet"
    );
    assert_eq!(
        status["bootstrapServers"],
        "demo-bootstrap.kafka.svc.cluster.local:9092"
    );
    // A generated id of Kafka's form, given to every broker.
    let id = h.cluster_id();
    assert_eq!(id.len(), 22, "{id}");
    let env = sts["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    let var = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {env}"))
    };
    assert_eq!(var("RIVULET_CLUSTER_ID")["value"], id.as_str());
    assert_eq!(
        var("RIVULET_BOOTSTRAP_QUORUM")["valueFrom"]["configMapKeyRef"],
        json!({"name": "demo-bootstrap", "key": "bootstrap", "optional": true})
    );
    assert_eq!(
        h.api.object(BOOTSTRAP_CM).unwrap()["data"],
        json!({"bootstrap": "true"})
    );
}

#[tokio::test]
async fn ready_cluster_reports_kafka_facts_and_no_op_changes_nothing() {
    let h = Harness::new("replicas: 3");
    h.reconcile().await;
    h.run_pods(3, "r1");
    h.healthy_kafka();
    let first = h.reconcile().await;
    assert_eq!(
        h.condition("Ready"),
        ("True".into(), "AllBrokersReady".into())
    );
    assert_eq!(
        h.condition("Degraded"),
        ("False".into(), "AsExpected".into())
    );
    assert_eq!(
        h.kafka
            .info
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .cluster_id
            .as_deref(),
        Some(h.cluster_id().as_str())
    );
    assert_eq!(h.status()["activeController"], 0);
    assert_eq!(h.status()["readyBrokers"], 3);
    assert_eq!(
        h.status()["quorum"],
        json!({"leaderId": 0, "voters": [
            {"id": 0, "directoryId": crate::fixtures::directory(0, 0).to_string()},
            {"id": 1, "directoryId": crate::fixtures::directory(1, 0).to_string()},
            {"id": 2, "directoryId": crate::fixtures::directory(2, 0).to_string()}]})
    );
    // The quorum formed: brokers that start on an empty disk join it now.
    assert!(
        first.contains(&format!("DELETE {BOOTSTRAP_CM}")),
        "{first:#?}"
    );
    assert!(h.api.object(BOOTSTRAP_CM).is_none());

    let sts_before = h.api.object(STS).unwrap()["spec"].clone();
    let cm_before = h.api.object(CM).unwrap()["data"].clone();
    let second = h.reconcile().await;
    // Same applies, no event, no status write, no pod deleted.
    assert_eq!(applied(&first), applied(&second));
    assert_quiet(&second);
    assert_eq!(h.api.object(STS).unwrap()["spec"], sts_before);
    assert_eq!(h.api.object(CM).unwrap()["data"], cm_before);
}

#[tokio::test]
async fn scale_out_changes_replicas_but_not_the_pod_template() {
    let h = Harness::ready_cluster().await;
    let template = h.api.object(STS).unwrap()["spec"]["template"].clone();

    h.edit_spec(|spec| spec["replicas"] = json!(5));
    let calls = h.reconcile().await;
    let sts = h.api.object(STS).unwrap();
    assert_eq!(sts["spec"]["replicas"], 5);
    assert_eq!(
        sts["spec"]["template"], template,
        "scaling must not restart brokers"
    );
    assert!(h.api.object(CM).unwrap()["data"]["broker-4.properties"].is_string());
    assert!(calls.contains(&format!("POST {EVENTS}")), "a Scaled event");
    assert!(!calls.iter().any(|c| c.starts_with("DELETE")));
    assert_eq!(
        h.condition("Progressing"),
        ("True".into(), "Scaling".into())
    );
    assert_eq!(h.status()["observedGeneration"], 2);
}

#[tokio::test]
async fn config_change_rolls_one_broker_at_a_time() {
    let h = Harness::ready_cluster().await;
    let hash = |h: &Harness| {
        h.api.object(STS).unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["rivulet.dev/config-hash"]
            .clone()
    };
    let old_hash = hash(&h);

    h.edit_spec(|spec| spec["config"] = json!({"num.partitions": "6"}));
    h.reconcile().await;
    assert_ne!(hash(&h), old_hash, "new config, new template");
    // The StatefulSet controller records a new revision; pods stay (OnDelete).
    h.api.set_status(
        STS,
        json!({"replicas": 3, "readyReplicas": 3, "updateRevision": "r2", "currentRevision": "r1"}),
    );
    let calls = h.reconcile().await;
    let deletes: Vec<&String> = calls.iter().filter(|c| c.starts_with("DELETE")).collect();
    assert_eq!(
        deletes,
        [&format!("DELETE {PODS}/demo-broker-2")],
        "highest non-controller first"
    );
    assert_eq!(h.status()["roll"]["broker"], 2);
    assert_eq!(
        h.condition("Progressing"),
        ("True".into(), "RollingRestart".into())
    );

    // Broker 2 is back at r2 but not ready yet: nobody else goes.
    h.add_pod(2, "r2", false);
    let calls = h.reconcile().await;
    assert!(!calls.iter().any(|c| c.starts_with("DELETE")), "{calls:#?}");

    // Ready again, but partitions are catching up: still wait.
    h.add_pod(2, "r2", true);
    h.kafka.put_topic("orders", &[&[2, 0, 1], &[1, 2, 0]]);
    h.kafka.set_isr("orders", 0, &[0, 1]);
    let calls = h.reconcile().await;
    assert!(!calls.iter().any(|c| c.starts_with("DELETE")));
    assert!(h.condition("Ready").1.contains("RollingRestart"));
    assert!(h
        .message("Ready")
        .contains("waiting for 1 under-replicated partitions"));

    // Caught up: the next broker (1), the controller (0) last.
    h.kafka.catch_up(2);
    let calls = h.reconcile().await;
    assert!(
        calls.contains(&format!("DELETE {PODS}/demo-broker-1")),
        "{calls:#?}"
    );
}

#[tokio::test]
async fn a_broker_that_does_not_come_back_degrades_the_cluster() {
    let h = Harness::ready_cluster().await;
    h.api.set_status(
        STS,
        json!({"replicas": 3, "readyReplicas": 2, "updateRevision": "r2", "currentRevision": "r1"}),
    );
    h.add_pod(2, "r2", false);
    // The status says broker 2 was restarted for r2 an hour ago.
    let mut cr = h.api.object(CR).unwrap();
    cr["status"]["roll"] =
        json!({"targetRevision": "r2", "broker": 2, "restartedAt": "2020-01-01T00:00:00Z"});
    h.api.insert(CR, cr);
    let calls = h.reconcile().await;
    assert!(!calls.iter().any(|c| c.starts_with("DELETE")));
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "BrokerNotReady".into())
    );
    assert_eq!(
        h.condition("Progressing"),
        ("False".into(), "RollStopped".into())
    );
}

#[tokio::test]
async fn invalid_spec_is_reported_not_applied() {
    let h = Harness::new("replicas: 4\nquorumVoters: 2");
    let calls = h.reconcile().await;
    assert_eq!(
        calls,
        [format!("POST {EVENTS}"), format!("PATCH {CR}/status")]
    );
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "InvalidSpec".into())
    );
    let message = h.status()["conditions"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("1, 3 or 5"), "{message}");
}

#[tokio::test]
async fn deleted_cluster_is_left_to_the_garbage_collector() {
    let h = Harness::new("replicas: 1");
    let mut cr = h.api.object(CR).unwrap();
    cr["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    h.api.insert(CR, cr);
    assert!(
        h.reconcile().await.is_empty(),
        "owner references do the cleanup"
    );
}

#[tokio::test]
async fn removed_external_listener_deletes_its_services() {
    let h = Harness::new("replicas: 2\nlisteners:\n  external:\n    type: LoadBalancer");
    h.reconcile().await;
    let svc = "/api/v1/namespaces/kafka/services/demo-broker-1-external";
    assert!(h.api.object(svc).is_some());
    // Broker 1 holds no replicas and no vote: the scale-in goes ahead at once.
    h.run_pods(2, "r1");
    h.kafka_brokers(2);
    h.edit_spec(|spec| spec["replicas"] = json!(1));
    let calls = h.reconcile().await;
    assert!(calls.contains(&format!("DELETE {svc}")), "{calls:#?}");
    assert!(h
        .api
        .object("/api/v1/namespaces/kafka/services/demo-broker-0-external")
        .is_some());
}

const TOPIC: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/topics/orders";

async fn reconcile_topic(h: &Harness) -> Vec<String> {
    let topic: Topic = serde_json::from_value(h.api.object(TOPIC).unwrap()).unwrap();
    topic::reconcile(Arc::new(topic), h.ctx.clone())
        .await
        .expect("topic reconcile");
    h.calls()
}

#[tokio::test]
async fn topic_is_created_grown_configured_and_deleted() {
    let h = Harness::new("replicas: 3");
    let topic: Topic = serde_saphyr::from_str(
        "apiVersion: rivulet.dev/v1alpha1
kind: Topic
metadata:
  name: orders
  namespace: kafka
  uid: 00000000-0000-4000-8000-0000000000aa
  generation: 1
spec:
  cluster: demo
  partitions: 3
  replicationFactor: 3
  config:
    retention.ms: '86400000'",
    )
    .unwrap();
    h.api.insert(TOPIC, serde_json::to_value(&topic).unwrap());
    // First pass adds the finalizer only.
    reconcile_topic(&h).await;
    assert_eq!(
        h.api.object(TOPIC).unwrap()["metadata"]["finalizers"][0],
        "rivulet.dev/topic"
    );
    reconcile_topic(&h).await;
    assert_eq!(*h.kafka.calls.lock().unwrap(), ["create_topic orders 3 3"]);
    let status = h.api.object(TOPIC).unwrap()["status"].clone();
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["partitions"], 3);
    assert_eq!(status["topicId"], "id-orders");

    let mut edited = h.api.object(TOPIC).unwrap();
    edited["spec"]["partitions"] = json!(6);
    edited["spec"]["config"] = json!({"cleanup.policy": "compact"});
    h.api.insert(TOPIC, edited);
    reconcile_topic(&h).await;
    let calls = h.kafka.calls.lock().unwrap().clone();
    assert_eq!(calls[1], "create_partitions orders 6");
    assert!(
        calls[2].starts_with("alter_topic_config orders") && calls[2].contains("retention.ms"),
        "{calls:?}"
    );

    let mut deleting = h.api.object(TOPIC).unwrap();
    deleting["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    h.api.insert(TOPIC, deleting);
    reconcile_topic(&h).await;
    assert_eq!(
        h.kafka.calls.lock().unwrap().last().unwrap(),
        "delete_topic orders"
    );
    assert!(h.api.object(TOPIC).unwrap()["metadata"]["finalizers"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn topic_of_a_missing_cluster_waits() {
    let h = Harness::new("replicas: 1");
    h.api.insert(
        TOPIC,
        json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "Topic",
               "metadata": {"name": "orders", "namespace": "kafka", "uid": "u", "generation": 1, "finalizers": ["rivulet.dev/topic"]},
               "spec": {"cluster": "elsewhere", "partitions": 1, "replicationFactor": 1}}),
    );
    reconcile_topic(&h).await;
    let status = h.api.object(TOPIC).unwrap()["status"].clone();
    assert_eq!(status["conditions"][0]["reason"], "ClusterNotFound");
    assert!(h.kafka.calls.lock().unwrap().is_empty());
}

/// Where the operator asks broker `id` about itself on the external listener.
fn external_probe(id: i32) -> String {
    format!("demo-broker-{id}.demo-brokers.kafka.svc.cluster.local:9094")
}

impl Harness {
    /// Plays broker `id`: what it reports about itself when asked at `probe`.
    fn broker_reports(&self, probe: String, advertised: &str, rack: Option<&str>) {
        self.kafka.brokers.lock().unwrap().insert(
            probe,
            BrokerView {
                advertised: advertised.into(),
                rack: rack.map(String::from),
            },
        );
    }

    /// Plays the scheduler: broker `id`'s pod runs on `node`.
    fn schedule(&self, id: i32, node: &str) {
        let path = format!("{PODS}/demo-broker-{id}");
        let mut pod = self.api.object(&path).unwrap();
        pod["spec"] = json!({"nodeName": node, "containers": []});
        self.api.insert(&path, pod);
    }

    fn broker_file(&self, id: i32) -> String {
        self.api.object(CM).unwrap()["data"][format!("broker-{id}.properties")]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[tokio::test]
async fn a_load_balancer_address_restarts_only_its_broker() {
    let h = Harness::new("replicas: 3\nlisteners:\n  external:\n    type: LoadBalancer");
    h.reconcile().await;
    h.run_pods(3, "r1");
    h.healthy_kafka();
    // No load balancer has an address yet: brokers advertise their own names.
    for id in 0..3 {
        h.broker_reports(external_probe(id), &external_probe(id), None);
    }
    let calls = h.reconcile().await;
    assert!(pod_deletes(&calls).is_empty(), "{calls:#?}");
    assert_eq!(
        h.condition("Ready"),
        ("True".into(), "AllBrokersReady".into())
    );
    assert!(h
        .broker_file(1)
        .contains(&format!("EXTERNAL://{},", external_probe(1))));
    let template = h.api.object(STS).unwrap()["spec"]["template"].clone();

    // Broker 1's load balancer gets an address.
    h.api.set_status(
        "/api/v1/namespaces/kafka/services/demo-broker-1-external",
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}),
    );
    let calls = h.reconcile().await;
    assert!(h.broker_file(1).contains(",EXTERNAL://203.0.113.7:9094,"));
    assert_eq!(h.api.object(STS).unwrap()["spec"]["template"], template);
    let deletes: Vec<&String> = calls.iter().filter(|c| c.starts_with("DELETE")).collect();
    assert_eq!(deletes, [&format!("DELETE {PODS}/demo-broker-1")]);
    assert_eq!(h.status()["externalAddresses"], json!(["203.0.113.7:9094"]));
    assert_eq!(
        h.condition("Progressing"),
        ("True".into(), "RollingRestart".into())
    );

    // Broker 1 is back with the new file: nothing more to do, and a
    // reconcile after that applies identical objects.
    h.add_pod(1, "r1", true);
    h.broker_reports(external_probe(1), "203.0.113.7:9094", None);
    let calls = h.reconcile().await;
    assert!(!calls.iter().any(|c| c.starts_with("DELETE")), "{calls:#?}");
    let cm = h.api.object(CM).unwrap()["data"].clone();
    let calls = h.reconcile().await;
    assert_quiet(&calls);
    assert_eq!(h.api.object(CM).unwrap()["data"], cm);
}

#[tokio::test]
async fn racks_come_from_the_nodes_and_survive_a_restart() {
    let h = Harness::new("replicas: 3\nrack:\n  topologyKey: topology.kubernetes.io/zone");
    for (node, zone) in [("node-a", "zone-a"), ("node-b", "zone-b")] {
        h.api.insert(
            &format!("/api/v1/nodes/{node}"),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node,
                   "labels": {"topology.kubernetes.io/zone": zone}}}),
        );
    }
    h.reconcile().await;
    h.run_pods(3, "r1");
    h.healthy_kafka();
    h.schedule(0, "node-a");
    h.schedule(1, "node-b");
    h.schedule(2, "node-a");
    // The brokers started before their racks were known.
    for id in 0..3 {
        let internal = format!("demo-broker-{id}.demo-brokers.kafka.svc.cluster.local:9092");
        h.broker_reports(internal.clone(), &internal, None);
    }
    let calls = h.reconcile().await;
    // One lookup per node, not per broker.
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("GET /api/v1/nodes/"))
            .count(),
        2,
        "{calls:#?}"
    );
    assert!(h.broker_file(0).contains("\nbroker.rack=zone-a\n"));
    assert!(h.broker_file(1).contains("\nbroker.rack=zone-b\n"));
    assert!(h.broker_file(2).contains("\nbroker.rack=zone-a\n"));
    assert_eq!(
        pod_deletes(&calls),
        [&format!("DELETE {PODS}/demo-broker-2")]
    );

    // While broker 2's new pod is not scheduled, its file keeps the rack.
    h.add_pod(2, "r1", false);
    h.reconcile().await;
    assert!(h.broker_file(2).contains("\nbroker.rack=zone-a\n"));
}
