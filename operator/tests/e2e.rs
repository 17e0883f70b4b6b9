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

use kubelet::LocalNode;

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

/// A namespace of the test's own, deleted when dropped.
struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    async fn create(client: &Client, test: &str) -> TestNamespace {
        let name = format!("rivulet-e2e-{test}-{}", std::process::id());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"rivulet.dev/e2e": "true"}}
        }))
        .unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create the test namespace");
        TestNamespace {
            client: client.clone(),
            name,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("RIVULET_E2E_KEEP").is_some() {
            eprintln!("kept namespace {} (RIVULET_E2E_KEEP)", self.name);
            return;
        }
        let name = self.name.clone();
        // The test's runtime may be unwinding, and blocking it here would
        // starve the client's worker task: delete from a thread with a
        // runtime and a client of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let Ok(client) = Client::try_default().await else {
                    return;
                };
                let namespaces: Api<Namespace> = Api::all(client);
                let _ = namespaces.delete(&name, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}

/// The operator as a local process (api mode), with the chart's
/// ServiceAccount token, watching one namespace. Killed when dropped.
struct LocalOperator {
    child: Child,
    http: String,
    _dir: tempfile::TempDir,
}

impl LocalOperator {
    async fn start(client: &Client, namespace: &str, node: Option<&LocalNode>) -> LocalOperator {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig.json");
        write_service_account_kubeconfig(client, &kubeconfig).await;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let http = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("operator.log")).expect("log file");
        let binary = Path::new(env!("CARGO_BIN_EXE_rivulet-operator"));
        let child = node
            .map_or_else(|| Command::new(binary), |n| n.command(binary))
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .args([
                "--watch-namespace",
                namespace,
                // The chart grants Leases in its own namespace only.
                "--lease-namespace",
                RELEASE_NAMESPACE,
                "--lease-name",
                &lease_name(namespace),
                "--identity",
                "e2e-local-operator",
                "--http-addr",
                &http,
                "--log-format",
                "text",
            ])
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start rivulet-operator");
        let operator = LocalOperator {
            child,
            http,
            _dir: dir,
        };
        wait_for("operator /readyz", Duration::from_secs(60), || async {
            (http_get(&operator.http, "/readyz").await.0 == 200).then_some(())
        })
        .await;
        operator
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("operator.log")).unwrap_or_default()
    }

    async fn metric(&self, line_prefix: &str) -> f64 {
        let (_, body) = http_get(&self.http, "/metrics").await;
        body.lines()
            .filter(|l| l.starts_with(line_prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM, and the exit status within `limit`.
    fn stop(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for LocalOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- operator log ---\n{}", self.log());
        }
    }
}

/// The local operator's Lease: one per test namespace, so runs do not
/// contend.
fn lease_name(namespace: &str) -> String {
    format!("operator-{namespace}")
}

/// A plain HTTP/1.0 GET: (status, body).
async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A kubeconfig for the chart's ServiceAccount: the current cluster entry
/// with a short-lived token from the TokenRequest API.
async fn write_service_account_kubeconfig(client: &Client, path: &Path) {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(RELEASE, &PostParams::default(), &request)
        .await
        .expect("a token for the chart's ServiceAccount")
        .status
        .expect("token status")
        .token;
    let kubeconfig = Kubeconfig::read().expect("read KUBECONFIG");
    let context_name = kubeconfig
        .current_context
        .clone()
        .expect("KUBECONFIG has a current context");
    let cluster_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .expect("the current context names a cluster");
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .expect("the current context's cluster");
    let file = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": serde_json::to_value(cluster).unwrap()}],
        "users": [{"name": "rivulet-operator", "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "rivulet-operator"}}],
        "current-context": "e2e",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&file).unwrap()).expect("write kubeconfig");
}

/// Merge-patches the test's KafkaCluster.
async fn patch_cluster(clusters: &Api<KafkaCluster>, patch: serde_json::Value) -> KafkaCluster {
    clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch the KafkaCluster with {patch}: {e}"))
}

/// Scales the test's KafkaCluster through the scale subresource, as
/// `kubectl scale` does.
async fn scale_cluster(clusters: &Api<KafkaCluster>, replicas: i32) {
    clusters
        .patch_scale(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap_or_else(|e| panic!("scale the KafkaCluster to {replicas}: {e}"));
}

/// The broker pods of the test's cluster.
async fn broker_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={CLUSTER}")))
        .await
        .expect("list the broker pods")
        .items
}

fn from_yaml<T: DeserializeOwned>(yaml: &str) -> T {
    serde_saphyr::from_str(yaml).expect("test YAML")
}

/// Creates the object `yaml` describes.
async fn create_from_yaml<K>(api: &Api<K>, yaml: &str) -> K
where
    K: Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &from_yaml(yaml))
        .await
        .unwrap_or_else(|e| panic!("create {yaml}: {e}"))
}

fn condition(cluster: &KafkaCluster, type_: &str) -> Option<(String, String, String)> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn is_ready(cluster: &KafkaCluster, brokers: i32) -> bool {
    let status = cluster.status.as_ref();
    condition(cluster, "Ready").is_some_and(|(s, _, _)| s == "True")
        && status.is_some_and(|s| s.ready_brokers == brokers)
        && status.and_then(|s| s.observed_generation) == cluster.metadata.generation
}

/// Plays the kubelet (api mode): marks every broker pod that is not
/// terminating Running and Ready. Returns how many pods there are.
async fn mark_pods_ready(pods: &Api<Pod>) -> usize {
    let list = broker_pods(pods).await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for pod in &list {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            continue;
        }
        let condition =
            |type_: &str| json!({"type": type_, "status": "True", "lastTransitionTime": now});
        let status = json!({"status": {
            "phase": "Running",
            "startTime": now,
            "podIP": "127.0.0.1",
            "conditions": [condition("PodScheduled"), condition("Initialized"),
                           condition("ContainersReady"), condition("Ready")],
        }});
        pods.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("mark the pod Ready through the status subresource");
    }
    list.len()
}

/// Waits until the cluster is Ready with `brokers` ready brokers, playing
/// the kubelet meanwhile in api mode.
/// In api mode no broker ever answers, so the quorum never forms and the
/// cluster is never Ready: it is as far as it can get when every pod is
/// ready and the operator waits for the brokers to answer.
fn is_waiting_for_brokers(cluster: &KafkaCluster, brokers: i32) -> bool {
    let status = cluster.status.as_ref();
    condition(cluster, "Ready").is_some_and(|(s, reason, message)| {
        s == "False"
            && reason == "Creating"
            && message.contains("waiting for the brokers to answer")
    }) && status.is_some_and(|s| s.ready_brokers == brokers)
        && status.and_then(|s| s.observed_generation) == cluster.metadata.generation
}

async fn wait_ready(mode: Mode, ns: &TestNamespace, brokers: i32) -> KafkaCluster {
    let clusters: Api<KafkaCluster> = ns.api();
    let pods: Api<Pod> = ns.api();
    wait_for(
        &format!("KafkaCluster Ready with {brokers} brokers"),
        mode.patience(),
        || async {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            if mode == Mode::Api {
                mark_pods_ready(&pods).await;
                return is_waiting_for_brokers(&cluster, brokers).then_some(cluster);
            }
            is_ready(&cluster, brokers).then_some(cluster)
        },
    )
    .await
}

fn assert_owned_by(object: &impl Resource, cluster: &KafkaCluster, what: &str) {
    let owners = object.meta().owner_references.clone().unwrap_or_default();
    assert!(
        owners.iter().any(|o| o.kind == "KafkaCluster"
            && o.name == CLUSTER
            && Some(&o.uid) == cluster.metadata.uid.as_ref()
            && o.controller == Some(true)),
        "{what} is not owned by the KafkaCluster: {owners:?}"
    );
}

/// Asserts an API error is an HTTP 422 whose message contains `expected`.
fn assert_refused<T: std::fmt::Debug>(result: kube::Result<T>, expected: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains(expected),
                "refusal message `{}` lacks `{expected}`",
                status.message
            );
        }
        other => panic!("expected a 422 mentioning `{expected}`, got {other:?}"),
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

/// api mode: the operator must not restart brokers it cannot ask about
/// replication, nor shrink a cluster whose leaving broker it cannot drain.
async fn api_mode_roll_and_scale(ns: &TestNamespace) {
    let clusters: Api<KafkaCluster> = ns.api();
    let statefulsets: Api<StatefulSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    let sts_name = format!("{CLUSTER}-broker");
    let pod_uids = || async {
        broker_pods(&pods)
            .await
            .iter()
            .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
            .collect::<BTreeMap<_, _>>()
    };
    let uids_before = pod_uids().await;
    let revision_before = statefulsets
        .get(&sts_name)
        .await
        .unwrap()
        .status
        .and_then(|s| s.update_revision);

    // A config change: a new revision, a roll that waits.
    patch_cluster(
        &clusters,
        json!({"spec": {"config": {"log.retention.ms": "3600000"}}}),
    )
    .await;
    let message = wait_for(
        "the roll to wait for the brokers",
        Duration::from_secs(60),
        || async {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            let (status, reason, message) = condition(&cluster, "Progressing")?;
            (status == "True" && reason == "RollingRestart").then_some(message)
        },
    )
    .await;
    assert!(
        message.contains("cannot reach the brokers"),
        "the roll says why it waits: {message}"
    );
    let sts = statefulsets.get(&sts_name).await.unwrap();
    assert_ne!(
        sts.status.and_then(|s| s.update_revision),
        revision_before,
        "a config change makes a new StatefulSet revision"
    );
    // Two more reconciles' worth of time: still no broker restarted.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(pod_uids().await, uids_before, "no pod may be deleted");

    // Scale out through the scale subresource (kubectl scale).
    let template_before = statefulsets
        .get(&sts_name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .template;
    scale_cluster(&clusters, 4).await;
    wait_for(
        "the StatefulSet to grow to 4",
        Duration::from_secs(60),
        || async {
            let sts = statefulsets.get(&sts_name).await.ok()?;
            (sts.spec?.replicas == Some(4)).then_some(())
        },
    )
    .await;
    assert_eq!(
        statefulsets
            .get(&sts_name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .template,
        template_before,
        "scaling does not change the pod template"
    );
    wait_for("4 brokers ready", Duration::from_secs(60), || async {
        mark_pods_ready(&pods).await;
        let cluster = clusters.get(CLUSTER).await.ok()?;
        (cluster.status?.ready_brokers == 4).then_some(())
    })
    .await;
    let data = ns
        .api::<ConfigMap>()
        .get(&format!("{CLUSTER}-config"))
        .await
        .unwrap()
        .data
        .unwrap();
    assert!(data.contains_key("broker-3.properties"));
    // Four brokers want three voters: broker 3 is not one of them.
    let broker_3 = &data["broker-3.properties"];
    assert!(
        broker_3.contains("\ncontroller.quorum.voters=0@") && !broker_3.contains(",3@"),
        "{broker_3}"
    );
    assert!(broker_3.ends_with("process.roles=broker\n"), "{broker_3}");

    // Scale in: the brokers cannot be asked, so the drain waits and the
    // StatefulSet keeps broker 3.
    scale_cluster(&clusters, 3).await;
    wait_for("the drain to wait", Duration::from_secs(60), || async {
        let cluster = clusters.get(CLUSTER).await.ok()?;
        let (status, reason, _) = condition(&cluster, "Progressing")?;
        (status == "True"
            && reason == "Draining"
            && cluster.status?.observed_generation == cluster.metadata.generation)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        statefulsets
            .get(&sts_name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(4),
        "nothing shrinks without proof the leaving broker is empty"
    );
}

/// A pod running the kcat image with `script` under `sh -c`.
fn kcat_pod(name: &str, script: &str) -> Pod {
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
enum Clients<'a> {
    Pods(Box<Api<Pod>>),
    Local {
        node: &'a LocalNode,
        running: Mutex<BTreeMap<String, Child>>,
    },
}

impl Clients<'_> {
    /// Starts `script` under `sh -c` as client `name`.
    async fn start(&self, name: &str, script: &str) {
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
    async fn is_running(&self, name: &str) -> bool {
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
    async fn finish(&self, name: &str) -> (bool, String) {
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
    async fn run(&self, name: &str, script: &str) -> String {
        self.start(name, script).await;
        let (ok, logs) = self.finish(name).await;
        assert!(ok, "client {name} failed: {logs}");
        logs
    }
}

/// A kcat producer script for the numbers `from..=to`, one record each,
/// with `pause` seconds between them, idempotent and acks=all.
fn producer(bootstrap: &str, from: u32, to: u32, pause: &str) -> String {
    format!(
        "set -e; for i in $(seq {from} {to}); do echo \"$i\"; sleep {pause}; done | \
         kcat -b {bootstrap} -t e2e-orders -P -X enable.idempotence=true -X acks=all \
         -X message.timeout.ms=300000 2>&1; echo produced-ok"
    )
}

/// Waits for producer `name` and asserts every record was delivered.
async fn assert_produced(clients: &Clients<'_>, name: &str) {
    let (ok, logs) = clients.finish(name).await;
    assert!(
        ok && logs.contains("produced-ok") && !logs.contains("Delivery failed"),
        "producer {name} failed: {logs}"
    );
}

/// Reads the whole topic with kcat: the numbers, sorted.
async fn consume_all(clients: &Clients<'_>, name: &str, bootstrap: &str) -> Vec<u32> {
    let script = format!("kcat -b {bootstrap} -t e2e-orders -C -e -q -o beginning -f '%s\\n'");
    let logs = clients.run(name, &script).await;
    let mut values: Vec<u32> = logs.lines().filter_map(|l| l.trim().parse().ok()).collect();
    values.sort_unstable();
    values
}

/// The replicas of each partition of `e2e-orders`, from kcat's metadata.
async fn replicas_by_partition(
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
async fn traffic_and_roll(clients: &Clients<'_>, ns: &TestNamespace) -> u32 {
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
    let target = wait_for("a new revision", Duration::from_secs(60), || async {
        let status = statefulsets
            .get(&format!("{CLUSTER}-broker"))
            .await
            .ok()?
            .status?;
        (status.update_revision != status.current_revision).then_some(status.update_revision?)
    })
    .await;
    wait_for(
        "every broker on the new revision",
        Duration::from_secs(900),
        || async {
            let current = broker_pods(&pods)
                .await
                .iter()
                .filter(|p| p.labels().get("controller-revision-hash") == Some(&target))
                .count();
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
async fn delete_topic(clients: &Clients<'_>, ns: &TestNamespace) {
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
async fn scale_with_real_brokers(clients: &Clients<'_>, ns: &TestNamespace, records: u32) {
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
