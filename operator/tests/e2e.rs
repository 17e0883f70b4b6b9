//! End-to-end tests against the Kubernetes cluster `$KUBECONFIG` names.
//! Without `$KUBECONFIG` each test says it was skipped and passes.
//!
//! Both tests install `charts/rivulet` with Helm's SDK
//! (`operator/tests/helm_release.py`, helm-python-sdk in `.venv`), release
//! `rivulet` in `rivulet-system`, and each test works in its own namespace,
//! deleted at the end. They run in one of two modes:
//!
//! - **pods** (a cluster whose nodes run pods, such as kind with the images
//!   loaded, see docs/kubernetes.md): the chart's operator Deployment runs
//!   the cluster; a 3-broker KafkaCluster must become Ready, kcat pods
//!   produce and consume through the bootstrap Service, a broker config
//!   change rolls the brokers one at a time while an idempotent acks=all
//!   producer runs, and not one record may fail or go missing.
//! - **api** (a control plane without nodes: API server, etcd and
//!   controller manager only): the operator runs here as a local process
//!   with the chart's ServiceAccount token (so the chart's RBAC is what is
//!   tested), and the test plays the kubelet by marking broker pods Ready
//!   through the status subresource. The checks are the API-level ones:
//!   the schema's CEL rules, every owned object, Ready, no-op reconciles,
//!   scaling through the scale subresource, a config change that must not
//!   restart brokers the operator cannot ask about replication, a drain
//!   that waits for the same reason, and deletion by the garbage collector.
//!
//! - **processes** (opt-in, as root): api mode with real brokers. The test
//!   also stands in for a node ([`kubelet`]), running each broker pod as a
//!   local `rivulet broker` process, and then runs the pods-mode traffic
//!   and roll with local kcat, a scale-out (the rebalance), a scale-in
//!   (the drain) and the Topic's deletion.
//!
//! The mode is `pods` when some node is Ready, else `api`;
//! `RIVULET_E2E_MODE=api|pods|processes` overrides. Images for pods mode:
//! `RIVULET_E2E_OPERATOR_IMAGE` (default `rivulet/operator:<version>`),
//! `RIVULET_E2E_BROKER_IMAGE` (default `rivulet/broker:<version>`) and
//! `RIVULET_E2E_KCAT_IMAGE` (default `edenhill/kcat:1.7.1`).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        authentication::v1::{TokenRequest, TokenRequestSpec},
        coordination::v1::Lease,
        core::v1::{ConfigMap, Namespace, Node, Pod, Service, ServiceAccount},
        events::v1::Event,
        policy::v1::PodDisruptionBudget,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams},
    config::Kubeconfig,
    Client, Resource, ResourceExt,
};
use rivulet_operator::crd::{KafkaCluster, Topic};
use serde::de::DeserializeOwned;
use serde_json::json;

#[path = "e2e/kubelet.rs"]
mod kubelet;

#[path = "e2e/data_safety.rs"]
mod data_safety;

#[path = "e2e/harness.rs"]
mod harness;

#[path = "e2e/api_mode.rs"]
mod api_mode;

#[path = "e2e/traffic.rs"]
mod traffic;

#[path = "e2e/secured.rs"]
mod secured;

#[path = "e2e/secured_users.rs"]
mod secured_users;

use api_mode::api_mode_roll_and_scale;
use harness::*;
use kubelet::LocalNode;
use traffic::*;

const RELEASE: &str = "rivulet";
const RELEASE_NAMESPACE: &str = "rivulet-system";
const CLUSTER: &str = "e2e";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nodes run pods: the real thing.
    Pods,
    /// A control plane only; the test runs broker pods as local processes.
    Processes,
    /// A control plane only: the test plays the kubelet.
    Api,
}

impl Mode {
    /// How long a cluster may take to become Ready.
    fn patience(self) -> Duration {
        match self {
            Mode::Pods => Duration::from_secs(600),
            Mode::Processes => Duration::from_secs(300),
            Mode::Api => Duration::from_secs(120),
        }
    }
}

/// A client for `$KUBECONFIG`'s cluster, or `None` (test skipped).
async fn cluster_client(test: &str) -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("SKIPPED {test}: KUBECONFIG is not set, no cluster to run against");
        return None;
    }
    let client = tokio::time::timeout(Duration::from_secs(30), Client::try_default())
        .await
        .expect("connecting to the cluster timed out")
        .expect("KUBECONFIG names a usable cluster");
    Some(client)
}

async fn mode(client: &Client) -> Mode {
    match std::env::var("RIVULET_E2E_MODE").as_deref() {
        Ok("api") => return Mode::Api,
        Ok("pods") => return Mode::Pods,
        Ok("processes") => return Mode::Processes,
        Ok(other) => panic!("RIVULET_E2E_MODE must be api, pods or processes, not {other}"),
        Err(_) => {}
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes")
        .items
        .iter()
        .any(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
    let mode = if ready { Mode::Pods } else { Mode::Api };
    eprintln!("e2e mode: {mode:?}");
    mode
}

/// The nil uuid as the status prints a voter whose directory is not
/// recorded yet.
fn uuid_nil() -> String {
    "00000000-0000-0000-0000-000000000000".to_string()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let candidates = [
        std::env::var_os("RIVULET_TEST_PYTHON").map(PathBuf::from),
        Some(root().join(".venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import helm_python"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("the e2e tests install the chart with helm-python-sdk: pip install -r tests/py/requirements.txt")
}

fn image(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| format!("{default}:{}", env!("CARGO_PKG_VERSION")))
}

/// Installs (or upgrades) the chart once per test binary.
fn install_chart() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return;
    }
    let operator = image("RIVULET_E2E_OPERATOR_IMAGE", "rivulet/operator");
    let (repository, tag) = operator
        .rsplit_once(':')
        .expect("RIVULET_E2E_OPERATOR_IMAGE is repository:tag");
    let values = json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "brokerImage": image("RIVULET_E2E_BROKER_IMAGE", "rivulet/broker"),
        "logFormat": "text",
    });
    let output = Command::new(python())
        .arg(root().join("operator/tests/helm_release.py"))
        .args(["install", RELEASE_NAMESPACE, RELEASE, &values.to_string()])
        .output()
        .expect("run helm_release.py");
    assert!(
        output.status.success(),
        "installing the chart failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim());
    *installed = true;
}

/// Installs the chart and waits until the API server serves its CRDs.
async fn install(client: &Client) {
    install_chart();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in ["kafkaclusters.rivulet.dev", "topics.rivulet.dev"] {
        wait_for(
            &format!("CRD {name} established"),
            Duration::from_secs(60),
            || async {
                let crd = crds.get(name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
}

/// Polls `check` every half second until it returns `Some` or `limit` passes.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            eprintln!("{what}: after {:.1}s", start.elapsed().as_secs_f64());
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn crd_schema_rules_refuse_what_cannot_work() {
    let Some(client) = cluster_client("crd_schema_rules_refuse_what_cannot_work").await else {
        return;
    };
    install(&client).await;
    let ns = TestNamespace::create(&client, "schema").await;
    let clusters: Api<KafkaCluster> = ns.api();
    let topics: Api<Topic> = ns.api();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let cluster = |spec: &str| -> KafkaCluster {
        from_yaml(&format!(
            "apiVersion: rivulet.dev/v1alpha1\nkind: KafkaCluster\nmetadata:\n  name: bad\nspec:\n{}",
            spec.lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        ))
    };
    let refusals = [
        ("replicas: 0", "replicas must be at least 1"),
        (
            "replicas: 4\nquorumVoters: 2",
            "quorumVoters must be 1, 3 or 5",
        ),
        (
            "replicas: 1\nconfig:\n  node.id: '7'",
            "config may not set node.id",
        ),
        (
            "replicas: 1\nlisteners:\n  external:\n    type: NodePort\n    host: 192.0.2.1",
            "needs nodePortBase",
        ),
        (
            "replicas: 1\nlisteners:\n  internal:\n    authentication:\n      type: tls",
            "authentication type tls needs tls: true",
        ),
        (
            "replicas: 1\nclusterCa:\n  renewalDays: 400",
            "renewalDays must be below validityDays",
        ),
    ];
    for (spec, message) in refusals {
        assert_refused(clusters.create(&dry, &cluster(spec)).await, message);
    }
    // The same rules let a good spec through.
    clusters
        .create(&dry, &cluster("replicas: 3"))
        .await
        .expect("a 3-broker spec is valid");

    let topic: Topic = from_yaml(
        "apiVersion: rivulet.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: t\nspec:\n  cluster: c\n  partitions: 0\n  replicationFactor: 1\n",
    );
    assert_refused(
        topics.create(&dry, &topic).await,
        "partitions must be at least 1",
    );
    let mut topic = topic;
    topic.spec.partitions = 3;
    topics
        .create(&PostParams::default(), &topic)
        .await
        .expect("create a topic");
    for (change, message) in [
        (
            json!({"spec": {"partitions": 2}}),
            "partitions cannot decrease",
        ),
        (
            json!({"spec": {"topicName": "other"}}),
            "Kafka cannot rename a topic",
        ),
    ] {
        assert_refused(
            topics
                .patch("t", &PatchParams::default(), &Patch::Merge(change))
                .await,
            message,
        );
    }

    // The voters follow the brokers: more voters asked than brokers, a
    // changed quorumVoters and a scale below it are all the operator's to
    // carry out, not the schema's to refuse.
    let mut fixed = cluster("replicas: 1\nquorumVoters: 3");
    fixed.metadata.name = Some("fixed".into());
    clusters
        .create(&PostParams::default(), &fixed)
        .await
        .expect("more voters asked than brokers is allowed");
    let changed = clusters
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5, "quorumVoters": 5}})),
        )
        .await
        .expect("quorumVoters may change");
    assert_eq!(changed.spec.quorum_voters, Some(5));
    let scaled = clusters
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("scaling below quorumVoters is allowed");
    assert_eq!(scaled.spec.replicas, 2);
    clusters
        .delete("fixed", &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test]
async fn kafka_cluster_lifecycle() {
    let Some(client) = cluster_client("kafka_cluster_lifecycle").await else {
        return;
    };
    let mode = mode(&client).await;
    install(&client).await;
    let ns = TestNamespace::create(&client, "lifecycle").await;
    let node = (mode == Mode::Processes).then(|| Arc::new(LocalNode::new(&ns.name, CLUSTER, 1)));
    let kubelet = node
        .as_ref()
        .map(|n| n.start(client.clone(), &ns.name, CLUSTER));
    let operator = match mode {
        Mode::Api | Mode::Processes => {
            Some(LocalOperator::start(&client, &ns.name, node.as_deref()).await)
        }
        Mode::Pods => {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
            wait_for("operator Deployment available", mode.patience(), || async {
                let d = deployments.get(RELEASE).await.ok()?;
                (d.status?.available_replicas? >= 1).then_some(())
            })
            .await;
            None
        }
    };

    // Create.
    let clusters: Api<KafkaCluster> = ns.api();
    create_from_yaml(
        &clusters,
        &format!(
            "apiVersion: rivulet.dev/v1alpha1\nkind: KafkaCluster\nmetadata:\n  name: {CLUSTER}\nspec:\n  replicas: 3\n  storage:\n    size: 1Gi\n  config:\n    default.replication.factor: '3'\n    min.insync.replicas: '2'\n"
        ),
    )
    .await;
    let cluster = wait_ready(mode, &ns, 3).await;
    let status = cluster.status.clone().unwrap();
    assert_eq!(
        status.bootstrap_servers.as_deref(),
        Some(format!("{CLUSTER}-bootstrap.{}.svc.cluster.local:9092", ns.name).as_str()),
        "{status:?}"
    );
    assert_eq!(status.quorum_voters, Some(3));
    if mode != Mode::Api {
        // Real brokers answer the operator: their cluster id, and the
        // active controller once the quorum has elected one.
        wait_for(
            "the active controller in the status",
            Duration::from_secs(60),
            || async {
                let s = clusters.get(CLUSTER).await.ok()?.status?;
                (s.cluster_id.is_some() && s.active_controller.is_some()).then_some(())
            },
        )
        .await;
    }
    assert_eq!(status.replicas, 3);
    assert!(
        status
            .label_selector
            .as_deref()
            .is_some_and(|s| s.contains(&format!("app.kubernetes.io/instance={CLUSTER}"))),
        "{status:?}"
    );

    // Everything the operator built, owned by the cluster.
    let sts: StatefulSet = ns
        .api::<StatefulSet>()
        .get(&format!("{CLUSTER}-broker"))
        .await
        .expect("the StatefulSet");
    assert_owned_by(&sts, &cluster, "StatefulSet");
    let sts_spec = sts.spec.clone().unwrap();
    assert_eq!(sts_spec.replicas, Some(3));
    assert_eq!(
        sts_spec.update_strategy.and_then(|u| u.type_).as_deref(),
        Some("OnDelete")
    );
    assert_eq!(sts_spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(sts_spec.volume_claim_templates.map(|v| v.len()), Some(1));
    let container = &sts_spec.template.spec.as_ref().unwrap().containers[0];
    assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    let config_map: ConfigMap = ns
        .api::<ConfigMap>()
        .get(&format!("{CLUSTER}-config"))
        .await
        .expect("the ConfigMap");
    assert_owned_by(&config_map, &cluster, "ConfigMap");
    let data = config_map.data.clone().unwrap();
    for id in 0..3 {
        assert!(
            data.contains_key(&format!("broker-{id}.properties")),
            "{data:?}"
        );
    }
    assert!(data["server.properties"].contains("min.insync.replicas=2"));
    // Identity: the operator generated the cluster id before any broker
    // existed, and every broker gets it.
    let id = status
        .cluster_id
        .clone()
        .expect("a cluster id from creation on");
    assert_eq!(id.len(), 22, "{id}");
    assert!(
        container
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "RIVULET_CLUSTER_ID" && e.value.as_deref() == Some(id.as_str())),
        "{:?}",
        container.env
    );
    let bootstrap_config = ns.api::<ConfigMap>();
    let bootstrap_name = format!("{CLUSTER}-bootstrap");
    if mode == Mode::Api {
        // No broker answers: the quorum may still be founded.
        assert!(bootstrap_config
            .get_opt(&bootstrap_name)
            .await
            .unwrap()
            .is_some());
    } else {
        wait_for(
            "the bootstrap ConfigMap gone once the quorum formed",
            Duration::from_secs(60),
            || async {
                bootstrap_config
                    .get_opt(&bootstrap_name)
                    .await
                    .ok()?
                    .is_none()
                    .then_some(())
            },
        )
        .await;
    }
    let services: Api<Service> = ns.api();
    let headless = services
        .get(&format!("{CLUSTER}-brokers"))
        .await
        .expect("the headless Service");
    assert_owned_by(&headless, &cluster, "headless Service");
    let headless_spec = headless.spec.unwrap();
    assert_eq!(headless_spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless_spec.publish_not_ready_addresses, Some(true));
    let bootstrap = services
        .get(&format!("{CLUSTER}-bootstrap"))
        .await
        .expect("the bootstrap Service");
    assert_owned_by(&bootstrap, &cluster, "bootstrap Service");
    let pdb = ns
        .api::<PodDisruptionBudget>()
        .get(&format!("{CLUSTER}-broker"))
        .await
        .expect("the PodDisruptionBudget");
    assert_owned_by(&pdb, &cluster, "PodDisruptionBudget");
    assert_eq!(
        serde_json::to_value(&pdb.spec.unwrap().max_unavailable).unwrap(),
        json!(1)
    );
    let events: Api<Event> = ns.api();
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "Created"),
        "a Created event: {reasons:?}"
    );

    if let Some(operator) = &operator {
        // Leader election took the Lease.
        let lease = Api::<Lease>::namespaced(client.clone(), RELEASE_NAMESPACE)
            .get(&lease_name(&ns.name))
            .await
            .expect("the leader election Lease");
        assert_eq!(
            lease.spec.and_then(|s| s.holder_identity).as_deref(),
            Some("e2e-local-operator")
        );
        // A reconcile that changes nothing writes nothing: poke the
        // cluster (a label: no new generation) and compare versions.
        let versions = |sts: &StatefulSet, cm: &ConfigMap, kc: &KafkaCluster| {
            (
                sts.resource_version(),
                cm.resource_version(),
                kc.status.clone(),
            )
        };
        // Once every voter has claimed its entry (the founder listed the
        // other initial voters by address; each records its directory
        // once it is current, which the status then shows).
        // A steady cluster is reconciled every 5 minutes: poke it (a label,
        // no new generation) so that the status catches up sooner.
        if mode != Mode::Api {
            let mut poke = 0;
            wait_for(
                "every voter's directory in the status",
                Duration::from_secs(120),
                || {
                    poke += 1;
                    let clusters = clusters.clone();
                    async move {
                        patch_cluster(
                            &clusters,
                            json!({"metadata": {"labels": {"e2e-claims": poke.to_string()}}}),
                        )
                        .await;
                        let quorum = clusters.get(CLUSTER).await.ok()?.status?.quorum?;
                        (quorum.voters.len() == 3
                            && quorum.voters.iter().all(|v| v.directory_id != uuid_nil()))
                        .then_some(())
                    }
                },
            )
            .await;
        }
        // As they are now (the status may have learnt the controller
        // since Ready).
        let before = versions(
            &ns.api::<StatefulSet>()
                .get(&format!("{CLUSTER}-broker"))
                .await
                .unwrap(),
            &ns.api::<ConfigMap>()
                .get(&format!("{CLUSTER}-config"))
                .await
                .unwrap(),
            &clusters.get(CLUSTER).await.unwrap(),
        );
        let reconciles = operator
            .metric("rivulet_operator_reconciles_total{controller=\"kafkacluster\"")
            .await;
        patch_cluster(
            &clusters,
            json!({"metadata": {"labels": {"e2e-poke": "1"}}}),
        )
        .await;
        wait_for(
            "a reconcile after the poke",
            Duration::from_secs(60),
            || async {
                (operator
                    .metric("rivulet_operator_reconciles_total{controller=\"kafkacluster\"")
                    .await
                    > reconciles)
                    .then_some(())
            },
        )
        .await;
        // Let that reconcile (and any it queued) finish writing.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = (
            ns.api::<StatefulSet>()
                .get(&format!("{CLUSTER}-broker"))
                .await
                .unwrap(),
            ns.api::<ConfigMap>()
                .get(&format!("{CLUSTER}-config"))
                .await
                .unwrap(),
            clusters.get(CLUSTER).await.unwrap(),
        );
        assert_eq!(
            before,
            versions(&after.0, &after.1, &after.2),
            "a no-op reconcile changed something"
        );
    }

    match (mode, node.as_deref()) {
        (Mode::Pods, _) => {
            let clients = Clients::Pods(Box::new(ns.api()));
            traffic_and_roll(&clients, &ns).await;
            delete_topic(&clients, &ns).await;
        }
        (Mode::Processes, Some(node)) => {
            let clients = Clients::Local {
                node,
                running: Mutex::new(BTreeMap::new()),
            };
            let records = traffic_and_roll(&clients, &ns).await;
            scale_with_real_brokers(&clients, &ns, records).await;
            delete_topic(&clients, &ns).await;
        }
        _ => api_mode_roll_and_scale(&ns).await,
    }

    // Delete: the garbage collector takes every owned object.
    clusters
        .delete(CLUSTER, &DeleteParams::default())
        .await
        .expect("delete the KafkaCluster");
    wait_for(
        "owned objects garbage-collected",
        mode.patience(),
        || async {
            let sts = ns
                .api::<StatefulSet>()
                .get_opt(&format!("{CLUSTER}-broker"))
                .await
                .ok()?;
            let cm = ns
                .api::<ConfigMap>()
                .get_opt(&format!("{CLUSTER}-config"))
                .await
                .ok()?;
            let svc = services
                .get_opt(&format!("{CLUSTER}-bootstrap"))
                .await
                .ok()?;
            (sts.is_none() && cm.is_none() && svc.is_none()).then_some(())
        },
    )
    .await;
    if let Some(kubelet) = kubelet {
        kubelet.stop().await;
    }

    if let Some(operator) = operator {
        let metrics = http_get(&operator.http, "/metrics").await.1;
        assert!(
            metrics.contains("rivulet_operator_reconcile_duration_seconds_bucket"),
            "{metrics}"
        );
        let status = operator
            .stop(Duration::from_secs(20))
            .expect("the operator stops within 20 s of SIGTERM");
        assert!(status.success(), "operator exit: {status:?}");
    }
}
