//! The e2e suite's harness: a namespace per test, the operator as a local
//! process, and the small helpers every test uses (waiting, creating from
//! YAML, conditions, asserting refusals).

use super::*;
/// A namespace of the test's own, deleted when dropped.
pub(crate) struct TestNamespace {
    pub(crate) client: Client,
    pub(crate) name: String,
}

impl TestNamespace {
    pub(crate) async fn create(client: &Client, test: &str) -> TestNamespace {
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

    pub(crate) fn api<K>(&self) -> Api<K>
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
pub(crate) struct LocalOperator {
    pub(crate) child: Child,
    pub(crate) http: String,
    pub(crate) _dir: tempfile::TempDir,
}

impl LocalOperator {
    pub(crate) async fn start(
        client: &Client,
        namespace: &str,
        node: Option<&LocalNode>,
    ) -> LocalOperator {
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

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("operator.log")).unwrap_or_default()
    }

    pub(crate) async fn metric(&self, line_prefix: &str) -> f64 {
        let (_, body) = http_get(&self.http, "/metrics").await;
        body.lines()
            .filter(|l| l.starts_with(line_prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM, and the exit status within `limit`.
    pub(crate) fn stop(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
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
pub(crate) fn lease_name(namespace: &str) -> String {
    format!("operator-{namespace}")
}

/// A plain HTTP/1.0 GET: (status, body).
pub(crate) async fn http_get(addr: &str, path: &str) -> (u16, String) {
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
pub(crate) async fn write_service_account_kubeconfig(client: &Client, path: &Path) {
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
pub(crate) async fn patch_cluster(
    clusters: &Api<KafkaCluster>,
    patch: serde_json::Value,
) -> KafkaCluster {
    clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch the KafkaCluster with {patch}: {e}"))
}

/// Scales the test's KafkaCluster through the scale subresource, as
/// `kubectl scale` does.
pub(crate) async fn scale_cluster(clusters: &Api<KafkaCluster>, replicas: i32) {
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
pub(crate) async fn broker_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={CLUSTER}")))
        .await
        .expect("list the broker pods")
        .items
}

pub(crate) fn from_yaml<T: DeserializeOwned>(yaml: &str) -> T {
    serde_saphyr::from_str(yaml).expect("test YAML")
}

/// Creates the object `yaml` describes.
pub(crate) async fn create_from_yaml<K>(api: &Api<K>, yaml: &str) -> K
where
    K: Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &from_yaml(yaml))
        .await
        .unwrap_or_else(|e| panic!("create {yaml}: {e}"))
}

pub(crate) fn condition(cluster: &KafkaCluster, type_: &str) -> Option<(String, String, String)> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub(crate) fn is_ready(cluster: &KafkaCluster, brokers: i32) -> bool {
    let status = cluster.status.as_ref();
    condition(cluster, "Ready").is_some_and(|(s, _, _)| s == "True")
        && status.is_some_and(|s| s.ready_brokers == brokers)
        && status.and_then(|s| s.observed_generation) == cluster.metadata.generation
}

/// Plays the kubelet (api mode): marks every broker pod that is not
/// terminating Running and Ready. Returns how many pods there are.
pub(crate) async fn mark_pods_ready(pods: &Api<Pod>) -> usize {
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

/// In api mode no broker ever answers, so the quorum never forms and the
/// cluster is never Ready: it is as far as it can get when every pod is
/// ready and the operator waits for the brokers to answer.
pub(crate) fn is_waiting_for_brokers(cluster: &KafkaCluster, brokers: i32) -> bool {
    let status = cluster.status.as_ref();
    condition(cluster, "Ready").is_some_and(|(s, reason, message)| {
        s == "False"
            && reason == "Creating"
            && message.contains("waiting for the brokers to answer")
    }) && status.is_some_and(|s| s.ready_brokers == brokers)
        && status.and_then(|s| s.observed_generation) == cluster.metadata.generation
}

/// Waits until the cluster is Ready with `brokers` ready brokers (in api
/// mode: as far as it gets), playing the kubelet meanwhile in api mode.
pub(crate) async fn wait_ready(mode: Mode, ns: &TestNamespace, brokers: i32) -> KafkaCluster {
    wait_cluster_ready(mode, ns, CLUSTER, brokers).await
}

/// [`wait_ready`] for the cluster `name`.
pub(crate) async fn wait_cluster_ready(
    mode: Mode,
    ns: &TestNamespace,
    name: &str,
    brokers: i32,
) -> KafkaCluster {
    let clusters: Api<KafkaCluster> = ns.api();
    let pods: Api<Pod> = ns.api();
    wait_for(
        &format!("KafkaCluster Ready with {brokers} brokers"),
        mode.patience(),
        || async {
            let cluster = clusters.get(name).await.ok()?;
            if mode == Mode::Api {
                mark_pods_ready(&pods).await;
                return is_waiting_for_brokers(&cluster, brokers).then_some(cluster);
            }
            is_ready(&cluster, brokers).then_some(cluster)
        },
    )
    .await
}

pub(crate) fn assert_owned_by(object: &impl Resource, cluster: &KafkaCluster, what: &str) {
    let owners = object.meta().owner_references.clone().unwrap_or_default();
    assert!(
        owners.iter().any(|o| o.kind == "KafkaCluster"
            && o.name == cluster.name_any()
            && Some(&o.uid) == cluster.metadata.uid.as_ref()
            && o.controller == Some(true)),
        "{what} is not owned by the KafkaCluster: {owners:?}"
    );
}

/// Asserts an API error is an HTTP 422 whose message contains `expected`.
pub(crate) fn assert_refused<T: std::fmt::Debug>(result: kube::Result<T>, expected: &str) {
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

/// The StatefulSet's update revision, once a change to the pod template
/// has made one (it differs from the current revision).
pub(crate) async fn new_revision(statefulsets: &Api<StatefulSet>) -> String {
    wait_for("a new revision", Duration::from_secs(60), || async {
        let status = statefulsets
            .get(&format!("{CLUSTER}-broker"))
            .await
            .ok()?
            .status?;
        (status.update_revision != status.current_revision).then_some(status.update_revision?)
    })
    .await
}

/// How many broker pods run revision `revision`.
pub(crate) async fn brokers_on(pods: &Api<Pod>, revision: &str) -> usize {
    broker_pods(pods)
        .await
        .iter()
        .filter(|p| {
            p.labels()
                .get("controller-revision-hash")
                .map(String::as_str)
                == Some(revision)
        })
        .count()
}
