//! Traffic for the pods and processes modes: kcat clients (pods, or local
//! processes that see the stand-in node's names), producing and reading
//! `e2e-orders`, and the roll, scale and delete steps run under them.

use super::*;
/// A pod running the kcat image with `script` under `sh -c`.
pub(crate) fn kcat_pod(name: &str, script: &str) -> Pod {
    let image =
        std::env::var("RIVULET_E2E_KCAT_IMAGE").unwrap_or_else(|_| "edenhill/kcat:1.7.1".into());
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "kcat",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
            }],
        },
    }))
    .unwrap()
}

/// Where kcat clients run: pods (pods mode) or local processes that see
/// the stand-in node's names (processes mode, `kcat` on the PATH).
pub(crate) enum Clients<'a> {
    Pods(Box<Api<Pod>>),
    Local {
        node: &'a LocalNode,
        running: Mutex<BTreeMap<String, Child>>,
    },
}

impl Clients<'_> {
    /// Starts `script` under `sh -c` as client `name`.
    pub(crate) async fn start(&self, name: &str, script: &str) {
        match self {
            Clients::Pods(pods) => {
                pods.create(&PostParams::default(), &kcat_pod(name, script))
                    .await
                    .expect("create the client pod");
            }
            Clients::Local { node, running } => {
                let log = std::fs::File::create(node.path(&format!("{name}.client.log")))
                    .expect("client log");
                let child = node
                    .command(Path::new("sh"))
                    .args(["-c", script])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("client log"))
                    .stderr(log)
                    .spawn()
                    .expect("run the client");
                running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.to_string(), child);
            }
        }
    }

    /// Whether client `name` is still running.
    pub(crate) async fn is_running(&self, name: &str) -> bool {
        match self {
            Clients::Pods(pods) => pods
                .get(name)
                .await
                .ok()
                .and_then(|p| p.status?.phase)
                .is_some_and(|p| p == "Running"),
            Clients::Local { running, .. } => running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(name)
                .is_some_and(|c| matches!(c.try_wait(), Ok(None))),
        }
    }

    /// Waits for client `name` to finish: (succeeded, output).
    pub(crate) async fn finish(&self, name: &str) -> (bool, String) {
        let what = format!("client {name} to finish");
        let limit = Duration::from_secs(900);
        match self {
            Clients::Pods(pods) => {
                let phase = wait_for(&what, limit, || async {
                    let phase = pods.get(name).await.ok()?.status?.phase?;
                    ["Succeeded", "Failed"]
                        .contains(&phase.as_str())
                        .then_some(phase)
                })
                .await;
                let logs = pods
                    .logs(name, &LogParams::default())
                    .await
                    .unwrap_or_default();
                (phase == "Succeeded", logs)
            }
            Clients::Local { node, running } => {
                let status = wait_for(&what, limit, || async {
                    running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_mut(name)
                        .and_then(|c| c.try_wait().ok().flatten())
                })
                .await;
                let logs = std::fs::read_to_string(node.path(&format!("{name}.client.log")))
                    .unwrap_or_default();
                (status.success(), logs)
            }
        }
    }

    /// Runs `script` as client `name` to completion and returns its output,
    /// failing the test if it fails.
    pub(crate) async fn run(&self, name: &str, script: &str) -> String {
        self.start(name, script).await;
        let (ok, logs) = self.finish(name).await;
        assert!(ok, "client {name} failed: {logs}");
        logs
    }
}

/// A kcat producer script for the numbers `from..=to`, one record each,
/// with `pause` seconds between them, idempotent and acks=all.
pub(crate) fn producer(bootstrap: &str, from: u32, to: u32, pause: &str) -> String {
    format!(
        "set -e; for i in $(seq {from} {to}); do echo \"$i\"; sleep {pause}; done | \
         kcat -b {bootstrap} -t e2e-orders -P -X enable.idempotence=true -X acks=all \
         -X message.timeout.ms=300000 2>&1; echo produced-ok"
    )
}

/// Waits for producer `name` and asserts every record was delivered.
pub(crate) async fn assert_produced(clients: &Clients<'_>, name: &str) {
    let (ok, logs) = clients.finish(name).await;
    assert!(
        ok && logs.contains("produced-ok") && !logs.contains("Delivery failed"),
        "producer {name} failed: {logs}"
    );
}

/// Reads the whole topic with kcat: the numbers, sorted.
pub(crate) async fn consume_all(clients: &Clients<'_>, name: &str, bootstrap: &str) -> Vec<u32> {
    let script = format!("kcat -b {bootstrap} -t e2e-orders -C -e -q -o beginning -f '%s\\n'");
    let logs = clients.run(name, &script).await;
    let mut values: Vec<u32> = logs.lines().filter_map(|l| l.trim().parse().ok()).collect();
    values.sort_unstable();
    values
}

/// The replicas of each partition of `e2e-orders`, from kcat's metadata.
pub(crate) async fn replicas_by_partition(
    clients: &Clients<'_>,
    name: &str,
    bootstrap: &str,
) -> BTreeMap<i64, Vec<i64>> {
    let logs = clients
        .run(name, &format!("kcat -b {bootstrap} -L -J -t e2e-orders"))
        .await;
    let json: serde_json::Value = logs
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("kcat -L -J printed no JSON: {logs}"));
    json["topics"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let replicas = p["replicas"]
                .as_array()
                .expect("replicas")
                .iter()
                .filter_map(|r| r["id"].as_i64())
                .collect();
            (p["partition"].as_i64().expect("partition"), replicas)
        })
        .collect()
}

/// pods and processes modes: traffic through the bootstrap Service, then a
/// config change rolled under a producer that must not lose or fail a
/// single record. Returns how many records the topic holds (1..=n).
pub(crate) async fn traffic_and_roll(clients: &Clients<'_>, ns: &TestNamespace) -> u32 {
    let bootstrap = format!("{CLUSTER}-bootstrap.{}.svc.cluster.local:9092", ns.name);
    let topics: Api<Topic> = ns.api();
    create_from_yaml(
        &topics,
        &format!(
            "apiVersion: rivulet.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: e2e-orders\nspec:\n  cluster: {CLUSTER}\n  partitions: 3\n  replicationFactor: 3\n  config:\n    min.insync.replicas: '2'\n"
        ),
    )
    .await;
    wait_for("Topic Ready", Duration::from_secs(120), || async {
        let t = topics.get("e2e-orders").await.ok()?;
        t.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;

    // Produce and consume through the bootstrap Service.
    clients
        .start("produce-1", &producer(&bootstrap, 1, 1000, "0"))
        .await;
    assert_produced(clients, "produce-1").await;
    assert_eq!(
        consume_all(clients, "consume-1", &bootstrap).await,
        (1..=1000).collect::<Vec<u32>>(),
        "every record exactly once"
    );

    // A config change rolls the brokers while a producer runs.
    let clusters: Api<KafkaCluster> = ns.api();
    let statefulsets: Api<StatefulSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    clients
        .start("produce-2", &producer(&bootstrap, 1001, 21000, "0.01"))
        .await;
    wait_for("the producer to run", Duration::from_secs(120), || async {
        clients.is_running("produce-2").await.then_some(())
    })
    .await;
    patch_cluster(
        &clusters,
        json!({"spec": {"config": {"log.retention.ms": "3600000"}}}),
    )
    .await;
    let target = new_revision(&statefulsets).await;
    wait_for(
        "every broker on the new revision",
        Duration::from_secs(900),
        || async {
            let current = brokers_on(&pods, &target).await;
            let cluster = clusters.get(CLUSTER).await.ok()?;
            (current == 3 && is_ready(&cluster, 3)).then_some(())
        },
    )
    .await;
    eprintln!(
        "roll done; the producer was still running: {}",
        clients.is_running("produce-2").await
    );
    // One Event per restarted broker, each naming its pod.
    let restarted: BTreeSet<String> = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RestartingBroker"))
        .filter_map(|e| e.related?.name)
        .collect();
    assert_eq!(
        restarted,
        (0..3).map(|i| format!("{CLUSTER}-broker-{i}")).collect(),
        "a RestartingBroker Event for each broker"
    );
    assert_produced(clients, "produce-2").await;
    assert_eq!(
        consume_all(clients, "consume-2", &bootstrap).await,
        (1..=21000).collect::<Vec<u32>>(),
        "after the roll: every acknowledged record exactly once"
    );
    21000
}

/// Deleting the Topic deletes the Kafka topic (its finalizer), and the
/// Topic goes once that is done.
pub(crate) async fn delete_topic(clients: &Clients<'_>, ns: &TestNamespace) {
    let bootstrap = format!("{CLUSTER}-bootstrap.{}.svc.cluster.local:9092", ns.name);
    let topics: Api<Topic> = ns.api();
    topics
        .delete("e2e-orders", &DeleteParams::default())
        .await
        .expect("delete the Topic");
    wait_for(
        "the Topic's finalizer to finish",
        Duration::from_secs(120),
        || async {
            topics
                .get_opt("e2e-orders")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let logs = clients
        .run("metadata-all", &format!("kcat -b {bootstrap} -L -J"))
        .await;
    let json: serde_json::Value = logs
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("kcat -L -J printed no JSON: {logs}"));
    let names: Vec<&str> = json["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .collect();
    assert!(
        !names.contains(&"e2e-orders"),
        "the Kafka topic is gone: {names:?}"
    );
}

/// processes mode: scale out (the rebalance puts replicas on the new
/// broker) and back in (the drain takes them off again), with real
/// brokers, losing nothing.
pub(crate) async fn scale_with_real_brokers(
    clients: &Clients<'_>,
    ns: &TestNamespace,
    records: u32,
) {
    let bootstrap = format!("{CLUSTER}-bootstrap.{}.svc.cluster.local:9092", ns.name);
    let clusters: Api<KafkaCluster> = ns.api();
    let statefulsets: Api<StatefulSet> = ns.api();
    let everything: Vec<u32> = (1..=records).collect();

    scale_cluster(&clusters, 4).await;
    let cluster = wait_for(
        "4 brokers ready and rebalanced",
        Duration::from_secs(300),
        || async {
            let c = clusters.get(CLUSTER).await.ok()?;
            (is_ready(&c, 4) && c.status.as_ref()?.balanced_brokers == Some(4)).then_some(c)
        },
    )
    .await;
    eprintln!("{:?}", condition(&cluster, "Ready"));
    let replicas = replicas_by_partition(clients, "metadata-1", &bootstrap).await;
    let on_new: usize = replicas.values().filter(|r| r.contains(&3)).count();
    assert!(
        on_new >= 2,
        "broker 3 took its share of 9 replicas: {replicas:?}"
    );
    assert!(replicas.values().all(|r| r.len() == 3), "{replicas:?}");
    assert_eq!(
        consume_all(clients, "consume-3", &bootstrap).await,
        everything
    );

    scale_cluster(&clusters, 3).await;
    wait_for(
        "drained and shrunk to 3",
        Duration::from_secs(300),
        || async {
            let sts = statefulsets.get(&format!("{CLUSTER}-broker")).await.ok()?;
            let c = clusters.get(CLUSTER).await.ok()?;
            (sts.spec?.replicas == Some(3) && is_ready(&c, 3)).then_some(())
        },
    )
    .await;
    let replicas = replicas_by_partition(clients, "metadata-2", &bootstrap).await;
    assert!(
        replicas.values().all(|r| r.len() == 3 && !r.contains(&3)),
        "nothing left on broker 3: {replicas:?}"
    );
    assert_eq!(
        consume_all(clients, "consume-4", &bootstrap).await,
        everything
    );
}
