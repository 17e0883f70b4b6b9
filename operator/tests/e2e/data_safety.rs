//! processes mode: the sequence that once lost every record, as a user
//! ran it. A one-broker cluster on Ephemeral storage takes 100 records,
//! grows to three brokers, its topic to replication factor 3, and rolls
//! for a config change (each restart an empty disk). Every record must
//! still be readable exactly once, the quorum must have three voters, no
//! second cluster may ever have been founded, and a scale back to one
//! broker must be refused with the StatefulSet still at three.
//!
//! And chaos under load: a broker pod deleted, a broker's volume lost, the
//! operator killed mid-roll and mid-drain, under a producer that must see
//! every record acknowledged and read back exactly once.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
use kube::{api::Api, ResourceExt};
use rivulet_operator::crd::{KafkaCluster, Topic};
use serde_json::json;

use super::{
    brokers_on, cluster_client, condition, create_from_yaml, install, is_ready, mode, new_revision,
    patch_cluster, scale_cluster, wait_for, Clients, LocalNode, LocalOperator, Mode, TestNamespace,
    CLUSTER, RELEASE, RELEASE_NAMESPACE,
};

const TOPIC: &str = "dev-events";

/// kcat producing the numbers `1..=n` to `topic`, idempotent, acks=all.
fn produce(bootstrap: &str, n: u32) -> String {
    format!(
        "set -e; seq 1 {n} | kcat -b {bootstrap} -t {TOPIC} -P -X enable.idempotence=true \
         -X acks=all -X message.timeout.ms=120000 2>&1; echo produced-ok"
    )
}

/// Every number in the topic, sorted.
async fn read_all(clients: &Clients<'_>, name: &str, bootstrap: &str) -> Vec<u32> {
    let script = format!("kcat -b {bootstrap} -t {TOPIC} -C -e -q -o beginning -f '%s\\n'");
    let logs = clients.run(name, &script).await;
    let mut values: Vec<u32> = logs.lines().filter_map(|l| l.trim().parse().ok()).collect();
    values.sort_unstable();
    values
}

/// A client of the cluster with the chart installed when the suite runs in
/// processes mode; otherwise `None`, the test saying it was skipped.
async fn processes_mode(test: &str) -> Option<kube::Client> {
    let client = cluster_client(test).await?;
    if mode(&client).await != Mode::Processes {
        eprintln!("SKIPPED {test}: processes mode only (RIVULET_E2E_MODE=processes)");
        return None;
    }
    install(&client).await;
    Some(client)
}

/// Where the chaos test's brokers and operator run: local processes beside
/// a stand-in kubelet (processes mode), or pods on a real node with the
/// chart's operator Deployment (pods mode).
struct Rig {
    mode: Mode,
    client: kube::Client,
    namespace: String,
    node: Option<Arc<LocalNode>>,
    kubelet: Option<super::kubelet::Kubelet>,
    operator: Option<LocalOperator>,
}

impl Rig {
    /// A rig for `test` in processes or pods mode; `None` (skipped) in api mode.
    async fn start(test: &str, prefix: &str, subnet: u8) -> Option<(Rig, TestNamespace)> {
        let client = cluster_client(test).await?;
        let mode = mode(&client).await;
        if mode == Mode::Api {
            eprintln!("SKIPPED {test}: needs brokers (RIVULET_E2E_MODE=processes or pods)");
            return None;
        }
        install(&client).await;
        let ns = TestNamespace::create(&client, prefix).await;
        let mut rig = Rig {
            mode,
            client: client.clone(),
            namespace: ns.name.clone(),
            node: None,
            kubelet: None,
            operator: None,
        };
        if mode == Mode::Processes {
            let node = Arc::new(LocalNode::new(&ns.name, CLUSTER, subnet));
            rig.kubelet = Some(node.start(client.clone(), &ns.name, CLUSTER));
            rig.operator = Some(LocalOperator::start(&client, &ns.name, Some(&node)).await);
            rig.node = Some(node);
        } else {
            rig.wait_operator_available().await;
        }
        Some((rig, ns))
    }

    /// The clients of the rig's mode; `node` is the rig's node (a clone,
    /// so the operator can be killed while clients run).
    fn clients<'a>(&self, node: Option<&'a LocalNode>) -> Clients<'a> {
        match node {
            Some(node) => Clients::Local {
                node,
                running: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            },
            None => Clients::Pods(Box::new(Api::namespaced(
                self.client.clone(),
                &self.namespace,
            ))),
        }
    }

    async fn wait_operator_available(&self) {
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(self.client.clone(), RELEASE_NAMESPACE);
        wait_for(
            "the operator Deployment available",
            Duration::from_secs(300),
            || async {
                let d = deployments.get(RELEASE).await.ok()?;
                (d.status?.available_replicas? >= 1).then_some(())
            },
        )
        .await;
    }

    /// Kills the operator at once: SIGKILL of the local process, or a
    /// zero-grace delete of the operator's pod (its Deployment makes a new
    /// one). Returns when a new operator runs.
    async fn kill_operator(&mut self) {
        if let Some(old) = self.operator.take() {
            drop(old);
            let node = self.node.as_deref();
            self.operator = Some(LocalOperator::start(&self.client, &self.namespace, node).await);
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), RELEASE_NAMESPACE);
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        let list = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .expect("list the operator's pods");
        let now = kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let killed: Vec<Option<String>> = list.items.iter().map(|p| p.uid()).collect();
        assert!(!killed.is_empty(), "no operator pod to kill");
        for pod in &list.items {
            pods.delete(&pod.name_any(), &now)
                .await
                .expect("delete the operator's pod");
        }
        let selector = &selector;
        let killed = &killed;
        let pods = &pods;
        wait_for(
            "a new operator pod Ready",
            Duration::from_secs(300),
            || async move {
                let list = pods
                    .list(&kube::api::ListParams::default().labels(selector))
                    .await
                    .ok()?;
                list.items
                    .iter()
                    .any(|p| {
                        !killed.contains(&p.uid())
                            && p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|cs| {
                                    cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                    })
                    .then_some(())
            },
        )
        .await;
    }

    /// A client script producing `1..=n`, one record every `pause`
    /// seconds, idempotent with acks=all, printing `produced-ok` only when
    /// every record was acknowledged: confluent-kafka locally, kcat in a
    /// pod (whose image has no Python).
    fn producer(&self, bootstrap: &str, n: u32, pause: f64) -> String {
        if self.mode == Mode::Processes {
            return produce_through_chaos(bootstrap, n, pause);
        }
        format!(
            "i=1; while [ $i -le {n} ]; do echo $i; i=$((i+1)); sleep {pause}; done | \
             kcat -b {bootstrap} -t {TOPIC} -P -X enable.idempotence=true -X acks=all \
             -X message.timeout.ms=600000 -X linger.ms=5 && echo produced-ok"
        )
    }

    async fn stop(self) {
        drop(self.operator);
        if let Some(kubelet) = self.kubelet {
            kubelet.stop().await;
        }
    }
}

/// The voter ids in the cluster's status.
fn voters(cluster: &KafkaCluster) -> Vec<i32> {
    cluster
        .status
        .as_ref()
        .and_then(|s| s.quorum.as_ref())
        .map(|q| q.voters.iter().map(|v| v.id).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_ephemeral_cluster_grows_rolls_and_refuses_to_lose_data() {
    let test = "an_ephemeral_cluster_grows_rolls_and_refuses_to_lose_data";
    let Some(client) = processes_mode(test).await else {
        return;
    };
    let ns = TestNamespace::create(&client, "safety").await;
    let node = Arc::new(LocalNode::new(&ns.name, CLUSTER, 2));
    let kubelet = node.start(client.clone(), &ns.name, CLUSTER);
    let operator = LocalOperator::start(&client, &ns.name, Some(&node)).await;
    let clients = Clients::Local {
        node: &node,
        running: std::sync::Mutex::new(std::collections::BTreeMap::new()),
    };
    let bootstrap = format!("{CLUSTER}-bootstrap.{}.svc.cluster.local:9092", ns.name);
    let clusters: Api<KafkaCluster> = ns.api();
    let topics: Api<Topic> = ns.api();
    let statefulsets: Api<StatefulSet> = ns.api();
    let pods: Api<Pod> = ns.api();

    // One broker, Ephemeral, a topic of RF 1 with 100 records.
    create_from_yaml(
        &clusters,
        &format!(
            "apiVersion: rivulet.dev/v1alpha1\nkind: KafkaCluster\nmetadata:\n  name: {CLUSTER}\nspec:\n  replicas: 1\n  storage:\n    type: Ephemeral\n    size: 1Gi\n  config:\n    num.partitions: '3'\n  podDisruptionBudget:\n    enabled: false\n"
        ),
    )
    .await;
    let created = wait_for("1 broker Ready", Duration::from_secs(180), || async {
        let c = clusters.get(CLUSTER).await.ok()?;
        is_ready(&c, 1).then_some(c)
    })
    .await;
    let cluster_id = created
        .status
        .as_ref()
        .and_then(|s| s.cluster_id.clone())
        .expect("a cluster id");
    create_from_yaml(
        &topics,
        &format!(
            "apiVersion: rivulet.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: {TOPIC}\nspec:\n  cluster: {CLUSTER}\n  partitions: 3\n  replicationFactor: 1\n"
        ),
    )
    .await;
    let topic_ready = |rf: i32| {
        let topics = topics.clone();
        move || {
            let topics = topics.clone();
            async move {
                let t = topics.get(TOPIC).await.ok()?;
                let status = t.status?;
                (status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
                    && status.replication_factor == Some(rf))
                .then_some(())
            }
        }
    };
    wait_for(
        "Topic Ready at RF 1",
        Duration::from_secs(120),
        topic_ready(1),
    )
    .await;
    let produced = clients.run("produce", &produce(&bootstrap, 100)).await;
    assert!(produced.contains("produced-ok"), "{produced}");
    let everything: Vec<u32> = (1..=100).collect();
    assert_eq!(read_all(&clients, "read-1", &bootstrap).await, everything);

    // Three brokers: the quorum follows to three voters.
    scale_cluster(&clusters, 3).await;
    wait_for(
        "3 brokers Ready with 3 voters",
        Duration::from_secs(300),
        || async {
            let c = clusters.get(CLUSTER).await.ok()?;
            (is_ready(&c, 3) && voters(&c) == [0, 1, 2]).then_some(())
        },
    )
    .await;
    topics
        .patch(
            TOPIC,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"replicationFactor": 3}})),
        )
        .await
        .expect("raise the replication factor");
    wait_for(
        "Topic Ready at RF 3",
        Duration::from_secs(300),
        topic_ready(3),
    )
    .await;
    assert_eq!(read_all(&clients, "read-2", &bootstrap).await, everything);

    // A config change rolls the brokers; each comes back on an empty disk.
    patch_cluster(
        &clusters,
        json!({"spec": {"config": {"num.partitions": "6"}}}),
    )
    .await;
    let target = new_revision(&statefulsets).await;
    wait_for(
        "every broker restarted and the cluster Ready",
        Duration::from_secs(900),
        || async {
            let current = brokers_on(&pods, &target).await;
            let c = clusters.get(CLUSTER).await.ok()?;
            (current == 3 && is_ready(&c, 3) && voters(&c) == [0, 1, 2]).then_some(())
        },
    )
    .await;
    assert_eq!(
        read_all(&clients, "read-3", &bootstrap).await,
        everything,
        "after the roll: every record exactly once"
    );
    let rolled = clusters.get(CLUSTER).await.expect("the cluster");
    assert_eq!(
        rolled.status.as_ref().and_then(|s| s.cluster_id.clone()),
        Some(cluster_id.clone())
    );
    // Only the first broker's first start founded a quorum.
    let logs = node.broker_logs();
    let founded: usize = logs
        .values()
        .map(|l| l.matches("founding the controller quorum").count())
        .sum();
    assert_eq!(founded, 1, "quorums founded, by pod log: {:?}", logs.keys());
    for (pod, log) in &logs {
        assert!(!log.contains("INCONSISTENT_CLUSTER_ID"), "{pod}: {log}");
    }

    // Back to one broker would lose replicas of an RF 3 topic: refused.
    scale_cluster(&clusters, 1).await;
    let refused = wait_for("the scale-in refused", Duration::from_secs(120), || async {
        let c = clusters.get(CLUSTER).await.ok()?;
        let (status, reason, message) = condition(&c, "Degraded")?;
        (status == "True" && reason == "ScaleInRefused").then_some(message)
    })
    .await;
    assert!(refused.contains(TOPIC), "{refused}");
    // Give the operator several reconciles to get it wrong.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let sts = statefulsets
        .get(&format!("{CLUSTER}-broker"))
        .await
        .expect("the StatefulSet");
    assert_eq!(
        sts.spec.and_then(|s| s.replicas),
        Some(3),
        "the StatefulSet was not shrunk"
    );
    assert_eq!(read_all(&clients, "read-4", &bootstrap).await, everything);
    eprintln!(
        "--- operator log tail ---\n{}",
        operator
            .log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    kubelet.stop().await;
}

/// A confluent-kafka (librdkafka) producer of `1..=n` to the topic, one
/// record every `pause` seconds, idempotent and acks=all, that keeps going
/// through "all brokers down" (kcat gives up there) and prints
/// `produced-ok` only if every record was acknowledged.
fn produce_through_chaos(bootstrap: &str, n: u32, pause: f64) -> String {
    let python = super::python();
    let program = format!(
        r#"
import sys, time
from confluent_kafka import Producer
failed = []
def report(err, msg):
    if err is not None:
        failed.append(str(err))
p = Producer({{"bootstrap.servers": "{bootstrap}", "enable.idempotence": True, "acks": "all",
              "message.timeout.ms": 600000, "linger.ms": 5}})
for i in range(1, {n} + 1):
    p.produce("{TOPIC}", str(i).encode(), on_delivery=report)
    p.poll(0)
    time.sleep({pause})
left = p.flush(600)
print("failed", len(failed), failed[:3], "unflushed", left)
if not failed and left == 0:
    print("produced-ok")
"#
    );
    format!(
        "exec '{}' -c '{}'",
        python.display(),
        program.replace('\'', "'\"'\"'")
    )
}

/// Waits until `pod` runs again as a new pod (another uid), kcat's
/// metadata shows every partition of the topic with all replicas in
/// sync, and the cluster's status is Ready with 3 voters.
async fn wait_recovered(
    clients: &Clients<'_>,
    clusters: &Api<KafkaCluster>,
    pods: &Api<Pod>,
    pod: &str,
    old_uid: Option<String>,
    bootstrap: &str,
    step: &str,
) {
    wait_for(
        &format!("{pod} back as a new pod ({step})"),
        Duration::from_secs(300),
        || async {
            let p = pods.get_opt(pod).await.ok()??;
            let ready = p
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (p.uid() != old_uid && ready).then_some(())
        },
    )
    .await;
    let mut attempt = 0;
    wait_for(
        &format!("every replica in sync ({step})"),
        Duration::from_secs(300),
        || {
            attempt += 1;
            let name = format!("isr-{}-{attempt}", step.replace(' ', "-"));
            async move {
                let logs = clients
                    .run(&name, &format!("kcat -b {bootstrap} -L -J -t {TOPIC}"))
                    .await;
                let json: serde_json::Value =
                    logs.lines().find_map(|l| serde_json::from_str(l).ok())?;
                let partitions = json["topics"][0]["partitions"].as_array()?.clone();
                (partitions.len() == 3
                    && partitions.iter().all(|p| {
                        p["isrs"].as_array().map(Vec::len) == Some(3)
                            && p["replicas"].as_array().map(Vec::len) == Some(3)
                    }))
                .then_some(())
            }
        },
    )
    .await;
    wait_settled(clusters, 3, &format!("the cluster Ready ({step})")).await;
}

/// Waits until the cluster is Ready with `brokers` brokers and 3 voters.
async fn wait_settled(clusters: &Api<KafkaCluster>, brokers: i32, what: &str) {
    wait_for(what, Duration::from_secs(600), || async {
        let c = clusters.get(CLUSTER).await.ok()?;
        (is_ready(&c, brokers) && voters(&c) == [0, 1, 2]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn chaos_under_load_loses_no_acknowledged_record() {
    let test = "chaos_under_load_loses_no_acknowledged_record";
    let Some((mut rig, ns)) = Rig::start(test, "chaos", 3).await else {
        return;
    };
    let client = rig.client.clone();
    let node = rig.node.clone();
    let clients = rig.clients(node.as_deref());
    let bootstrap = format!("{CLUSTER}-bootstrap.{}.svc.cluster.local:9092", ns.name);
    let clusters: Api<KafkaCluster> = ns.api();
    let topics: Api<Topic> = ns.api();
    let statefulsets: Api<StatefulSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = ns.api();

    create_from_yaml(
        &clusters,
        &format!(
            "apiVersion: rivulet.dev/v1alpha1\nkind: KafkaCluster\nmetadata:\n  name: {CLUSTER}\nspec:\n  replicas: 3\n  storage:\n    size: 1Gi\n  config:\n    min.insync.replicas: '2'\n    follower.replication.throttled.rate: '20000'\n"
        ),
    )
    .await;
    wait_settled(&clusters, 3, "3 brokers Ready with 3 voters").await;
    create_from_yaml(
        &topics,
        &format!(
            "apiVersion: rivulet.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: {TOPIC}\nspec:\n  cluster: {CLUSTER}\n  partitions: 3\n  replicationFactor: 3\n"
        ),
    )
    .await;
    wait_for("Topic Ready", Duration::from_secs(120), || async {
        let t = topics.get(TOPIC).await.ok()?;
        t.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    let total = 12_000;
    let cluster_id = clusters
        .get(CLUSTER)
        .await
        .ok()
        .and_then(|c| c.status?.cluster_id)
        .expect("a cluster id in status");
    clients
        .start("load", &rig.producer(&bootstrap, total, 0.01))
        .await;
    wait_for("the producer to run", Duration::from_secs(60), || async {
        clients.is_running("load").await.then_some(())
    })
    .await;
    let delete = kube::api::DeleteParams::default();

    // 1. A broker pod deleted under load.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pod = format!("{CLUSTER}-broker-1");
    let uid = pods.get(&pod).await.expect("broker 1's pod").uid();
    pods.delete(&pod, &delete)
        .await
        .expect("delete broker 1's pod");
    wait_recovered(
        &clients,
        &clusters,
        &pods,
        &pod,
        uid,
        &bootstrap,
        "pod deleted",
    )
    .await;

    // 2. A broker's volume lost under load: its claim and pod deleted.
    let claim = format!("data-{CLUSTER}-broker-2");
    let old_uid = claims.get(&claim).await.expect("broker 2's claim").uid();
    let pod = format!("{CLUSTER}-broker-2");
    let pod_uid = pods.get(&pod).await.expect("broker 2's pod").uid();
    claims
        .delete(&claim, &delete)
        .await
        .expect("delete the claim");
    pods.delete(&pod, &delete)
        .await
        .expect("delete broker 2's pod");
    wait_for(
        "a new claim for broker 2",
        Duration::from_secs(120),
        || async {
            let uid = claims.get_opt(&claim).await.ok()??.uid();
            (uid != old_uid).then_some(())
        },
    )
    .await;
    wait_recovered(
        &clients,
        &clusters,
        &pods,
        &pod,
        pod_uid,
        &bootstrap,
        "volume lost",
    )
    .await;

    // 3. The operator killed (SIGKILL) in the middle of a roll.
    patch_cluster(
        &clusters,
        json!({"spec": {"config": {"log.retention.ms": "3600000"}}}),
    )
    .await;
    let target = new_revision(&statefulsets).await;
    wait_for(
        "the first broker restarted by the roll",
        Duration::from_secs(300),
        || async { (brokers_on(&pods, &target).await > 0).then_some(()) },
    )
    .await;
    rig.kill_operator().await;
    wait_for(
        "every broker on the new revision",
        Duration::from_secs(900),
        || async {
            let current = brokers_on(&pods, &target).await;
            let c = clusters.get(CLUSTER).await.ok()?;
            (current == 3 && is_ready(&c, 3)).then_some(())
        },
    )
    .await;

    // 4. The operator killed (SIGKILL) in the middle of a drain: a scale
    // to 4 brokers (rebalanced onto broker 3), then back to 3.
    scale_cluster(&clusters, 4).await;
    wait_for(
        "4 brokers Ready and rebalanced",
        Duration::from_secs(600),
        || async {
            let c = clusters.get(CLUSTER).await.ok()?;
            (is_ready(&c, 4) && c.status.as_ref()?.balanced_brokers == Some(4)).then_some(())
        },
    )
    .await;
    scale_cluster(&clusters, 3).await;
    wait_for("the drain under way", Duration::from_secs(120), || async {
        let c = clusters.get(CLUSTER).await.ok()?;
        let (status, reason, _) = condition(&c, "Progressing")?;
        (status == "True" && reason == "Draining").then_some(())
    })
    .await;
    // Reassignments are throttled (20 kB/s), so the drain is still moving
    // replicas when the operator dies.
    let sts = statefulsets
        .get(&format!("{CLUSTER}-broker"))
        .await
        .expect("the StatefulSet");
    assert_eq!(
        sts.spec.and_then(|s| s.replicas),
        Some(4),
        "killed while draining, before any shrink"
    );
    rig.kill_operator().await;
    wait_for(
        "drained and shrunk to 3 by the new operator",
        Duration::from_secs(600),
        || async {
            let sts = statefulsets.get(&format!("{CLUSTER}-broker")).await.ok()?;
            let c = clusters.get(CLUSTER).await.ok()?;
            (sts.spec?.replicas == Some(3) && is_ready(&c, 3)).then_some(())
        },
    )
    .await;

    // Every acknowledged record, exactly once; the status true.
    let (ok, logs) = clients.finish("load").await;
    assert!(
        ok && logs.contains("produced-ok") && !logs.contains("Delivery failed"),
        "{logs}"
    );
    assert_eq!(
        read_all(&clients, "read", &bootstrap).await,
        (1..=total).collect::<Vec<u32>>(),
        "every acknowledged record exactly once"
    );
    wait_settled(&clusters, 3, "Ready with 3 voters at the end").await;
    let now = clusters.get(CLUSTER).await.expect("the cluster");
    assert_eq!(
        now.status.and_then(|s| s.cluster_id).as_deref(),
        Some(cluster_id.as_str()),
        "the same cluster throughout"
    );
    let Some(node) = node.clone() else {
        // A real node keeps no logs of deleted pods: the broker logs below
        // are the stand-in kubelet's.
        drop(client);
        rig.stop().await;
        return;
    };
    let logs = node.broker_logs();
    let founded: usize = logs
        .values()
        .map(|l| l.matches("founding the controller quorum").count())
        .sum();
    assert_eq!(founded, 1, "quorums founded, by pod log: {:?}", logs.keys());
    // Broker 1 kept its volume through its restarts; broker 2 started once
    // more on an empty one, formatted as a member of the same cluster.
    let formatted = |pod: &str| {
        logs.get(&format!("{CLUSTER}-broker-{pod}"))
            .map_or(0, |l| l.matches("formatted the data directory").count())
    };
    assert_eq!(formatted("1"), 1);
    assert_eq!(formatted("2"), 2);
    assert!(
        logs[&format!("{CLUSTER}-broker-2")].contains("founder=false"),
        "the new volume joined"
    );
    drop(client);
    rig.stop().await;
}

/// pods mode: `spec.storage.size` grows each broker's claim through a
/// real provisioner (a StorageClass that allows expansion), no broker
/// restarts, the status shows the new capacity, and a smaller size is
/// refused with a condition while the claims keep their size.
#[tokio::test]
async fn storage_grows_in_place_and_never_shrinks() {
    let test = "storage_grows_in_place_and_never_shrinks";
    let Some(client) = cluster_client(test).await else {
        return;
    };
    if mode(&client).await != Mode::Pods {
        eprintln!("SKIPPED {test}: needs a real provisioner (RIVULET_E2E_MODE=pods)");
        return;
    }
    let Some((rig, ns)) = Rig::start(test, "storage", 4).await else {
        return;
    };
    let clusters: Api<KafkaCluster> = ns.api();
    let pods: Api<Pod> = ns.api();
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = ns.api();
    create_from_yaml(
        &clusters,
        &format!(
            "apiVersion: rivulet.dev/v1alpha1\nkind: KafkaCluster\nmetadata:\n  name: {CLUSTER}\nspec:\n  replicas: 1\n  storage:\n    size: 1Gi\n"
        ),
    )
    .await;
    wait_for("1 broker Ready", Duration::from_secs(300), || async {
        let c = clusters.get(CLUSTER).await.ok()?;
        is_ready(&c, 1).then_some(())
    })
    .await;
    let pod = format!("{CLUSTER}-broker-0");
    let claim = format!("data-{CLUSTER}-broker-0");
    let uid = pods.get(&pod).await.expect("the broker's pod").uid();

    patch_cluster(&clusters, json!({"spec": {"storage": {"size": "2Gi"}}})).await;
    wait_for(
        "the claim grown and the capacity in status",
        Duration::from_secs(300),
        || async {
            let pvc = claims.get(&claim).await.ok()?;
            let capacity = pvc.status?.capacity?.get("storage")?.0.clone();
            let c = clusters.get(CLUSTER).await.ok()?;
            let shown = c.status?.storage_capacity.get("0").cloned();
            (capacity == "2Gi" && shown.as_deref() == Some("2Gi")).then_some(())
        },
    )
    .await;
    assert_eq!(
        pods.get(&pod).await.expect("the broker's pod").uid(),
        uid,
        "the volume grew without a restart"
    );

    patch_cluster(&clusters, json!({"spec": {"storage": {"size": "1Gi"}}})).await;
    wait_for(
        "the shrink refused in a condition",
        Duration::from_secs(120),
        || async {
            let c = clusters.get(CLUSTER).await.ok()?;
            c.status?
                .conditions
                .iter()
                .any(|c| c.status == "True" && c.reason == "StorageResizeRefused")
                .then_some(())
        },
    )
    .await;
    let pvc = claims.get(&claim).await.expect("the claim");
    assert_eq!(
        pvc.spec
            .and_then(|s| s.resources?.requests?.get("storage").map(|q| q.0.clone()))
            .as_deref(),
        Some("2Gi"),
        "a volume never shrinks"
    );
    assert_eq!(pods.get(&pod).await.expect("the pod").uid(), uid);
    rig.stop().await;
}
