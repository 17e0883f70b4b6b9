//! The `processes` mode's stand-in for a node: every broker pod the
//! StatefulSet controller creates is run as a local `rivulet broker`
//! process, the way its container would run, so the operator drives real
//! brokers through a real API server without a container runtime.
//!
//! - Each pod ordinal N gets its own loopback address, 127.0.S.(N+1) on
//!   the node's subnet S, like a pod IP; the broker's listeners bind there
//!   instead of 0.0.0.0. Tests that run at once use different subnets.
//! - Names resolve through a hosts file that is bind-mounted over
//!   `/etc/hosts` in a private mount namespace (`unshare --mount`) for the
//!   brokers, the operator and the clients only: each pod's DNS name maps
//!   to its address, the bootstrap Service's name to broker 0's (no
//!   load balancing: clients only bootstrap through it). This needs root.
//! - The container's args and env are taken from the pod itself, with the
//!   config file read from the ConfigMap as the volume would show it.
//!   Secret volumes are projected as files (a directory per pod and
//!   volume, written again at every start), and their mount paths in the
//!   config file and args are rewritten to those directories; a pod
//!   whose Secret does not exist yet waits, as one in ContainerCreating. The
//!   data directory is the `data` volume's: per claim (its uid, so a
//!   deleted and recreated claim is a new, empty volume) for a
//!   PersistentVolumeClaim, per pod (its uid) for an emptyDir, which a
//!   restarted pod therefore finds empty.
//! - Readiness is the pod's own probe: the broker's `GET /ready` (or a TCP
//!   connect to the Kafka port when the probe is one). A
//!   pod that disappears (the operator deletes it to roll it; an
//!   unscheduled pod is deleted at once) has its process stopped with
//!   SIGTERM, as the kubelet would, before its replacement starts.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    Client, ResourceExt,
};
use serde_json::json;
use tokio::{process::Command, sync::watch, task::JoinHandle};

/// Highest broker ordinal the hosts file names.
const MAX_BROKERS: i32 = 8;

/// The pod address of broker `ordinal` on `subnet`.
pub fn pod_ip(subnet: u8, ordinal: i32) -> String {
    format!("127.0.{subnet}.{}", ordinal + 1)
}

/// The broker binary: `target/debug/rivulet`, or RIVULET_BIN.
pub fn broker_binary() -> PathBuf {
    let path = std::env::var_os("RIVULET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(
                    || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                    PathBuf::from,
                )
                .join("debug/rivulet")
        });
    assert!(
        path.is_file(),
        "processes mode runs {} (cargo build --bins)",
        path.display()
    );
    path
}

/// Where the stand-in node keeps its files, and how it names things.
pub struct LocalNode {
    dir: tempfile::TempDir,
    hosts: PathBuf,
    /// The third octet of its pod addresses.
    subnet: u8,
}

impl LocalNode {
    /// A node for `cluster` in `namespace` whose pods have addresses
    /// 127.0.`subnet`.N, with its hosts file written.
    pub fn new(namespace: &str, cluster: &str, subnet: u8) -> LocalNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts = dir.path().join("hosts");
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for ordinal in 0..MAX_BROKERS {
            text.push_str(&format!(
                "{} {cluster}-broker-{ordinal}.{cluster}-brokers.{namespace}.svc.cluster.local\n",
                pod_ip(subnet, ordinal)
            ));
        }
        text.push_str(&format!(
            "{} {cluster}-bootstrap.{namespace}.svc.cluster.local\n",
            pod_ip(subnet, 0)
        ));
        std::fs::write(&hosts, text).expect("write the hosts file");
        LocalNode { dir, hosts, subnet }
    }

    /// A command that runs `program` with the node's hosts file as
    /// `/etc/hosts`.
    pub fn command(&self, program: &Path) -> std::process::Command {
        let mut command = std::process::Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(&self.hosts)
            .arg(program);
        command
    }

    /// The pod address of broker `ordinal`.
    pub fn pod_ip(&self, ordinal: i32) -> String {
        pod_ip(self.subnet, ordinal)
    }

    /// Everything the brokers printed, across restarts, by pod name.
    pub fn broker_logs(&self) -> BTreeMap<String, String> {
        std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let pod = name.strip_suffix(".log")?.to_owned();
                (!pod.ends_with(".client"))
                    .then(|| (pod, std::fs::read_to_string(e.path()).unwrap_or_default()))
            })
            .collect()
    }

    /// A path for a file of the node's own.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts running the broker pods of `cluster` in `namespace`.
    pub fn start(
        self: &std::sync::Arc<Self>,
        client: Client,
        namespace: &str,
        cluster: &str,
    ) -> Kubelet {
        let (stop, stopped) = watch::channel(false);
        let node = self.clone();
        let namespace = namespace.to_string();
        let cluster = cluster.to_string();
        let task = tokio::spawn(async move {
            run(node, client, namespace, cluster, stopped).await;
        });
        Kubelet {
            stop,
            task: Some(task),
        }
    }
}

/// The running stand-in kubelet; stops every broker when stopped.
pub struct Kubelet {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Kubelet {
    /// Stops every broker process and the loop.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

struct Running {
    uid: String,
    child: tokio::process::Child,
}

async fn run(
    node: std::sync::Arc<LocalNode>,
    client: Client,
    namespace: String,
    cluster: String,
    mut stopped: watch::Receiver<bool>,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let selector =
        format!("app.kubernetes.io/instance={cluster},app.kubernetes.io/component=broker");
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        if *stopped.borrow() {
            break;
        }
        if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
            let current: BTreeMap<String, &Pod> =
                list.items.iter().map(|p| (p.name_any(), p)).collect();
            // Pods gone or replaced: stop their processes first.
            let gone: Vec<String> = running
                .iter()
                .filter(|(name, r)| {
                    current
                        .get(*name)
                        .is_none_or(|p| p.uid().as_deref() != Some(r.uid.as_str()))
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in gone {
                if let Some(r) = running.remove(&name) {
                    terminate(r.child).await;
                }
            }
            for (name, pod) in &current {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let Some(ordinal) = ordinal(pod) else {
                    continue;
                };
                // A process that died is restarted (restartPolicy Always).
                if let Some(r) = running.get_mut(name) {
                    if let Ok(Some(_)) = r.child.try_wait() {
                        running.remove(name);
                    }
                }
                if !running.contains_key(name) {
                    let apis = (&config_maps, &claims, &secrets);
                    let started = start(&node, apis, pod, ordinal, &cluster);
                    if let Some(child) = started.await {
                        running.insert(
                            name.clone(),
                            Running {
                                uid: pod.uid().unwrap_or_default(),
                                child,
                            },
                        );
                    }
                }
                let ready = probe_ready(&node.pod_ip(ordinal), pod).await;
                set_ready(&pods, pod, ready).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stopped.changed() => {}
        }
    }
    for (_, r) in running {
        terminate(r.child).await;
    }
}

fn ordinal(pod: &Pod) -> Option<i32> {
    pod.labels()
        .get("apps.kubernetes.io/pod-index")
        .and_then(|i| i.parse().ok())
}

fn container(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::Container> {
    pod.spec.as_ref()?.containers.first()
}

/// The container port named `name`.
fn named_port(pod: &Pod, name: &str) -> Option<i32> {
    container(pod)
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port)
        })
}

/// The pod's readiness probe, run as the kubelet would: an HTTP GET that
/// must answer 2xx, or a TCP connect to the Kafka port.
async fn probe_ready(ip: &str, pod: &Pod) -> bool {
    let http = container(pod)
        .and_then(|c| c.readiness_probe.as_ref())
        .and_then(|p| p.http_get.as_ref())
        .and_then(|g| Some((g.path.clone()?, named_port(pod, "metrics")?)));
    let attempt = async {
        match http {
            Some((path, port)) => {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut stream = tokio::net::TcpStream::connect(format!("{ip}:{port}"))
                    .await
                    .ok()?;
                let request =
                    format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
                stream.write_all(request.as_bytes()).await.ok()?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.ok()?;
                answer.starts_with("HTTP/1.1 2").then_some(())
            }
            None => {
                let port = named_port(pod, "kafka").unwrap_or(9092);
                tokio::net::TcpStream::connect(format!("{ip}:{port}"))
                    .await
                    .ok()
                    .map(|_| ())
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(1000), attempt)
        .await
        .is_ok_and(|r| r.is_some())
}

/// Starts the broker of `pod` as its container would run.
async fn start(
    node: &LocalNode,
    (config_maps, claims, secrets): (&Api<ConfigMap>, &Api<PersistentVolumeClaim>, &Api<Secret>),
    pod: &Pod,
    ordinal: i32,
    cluster: &str,
) -> Option<tokio::process::Child> {
    let container = container(pod)?;
    let config_map = config_maps.get(&format!("{cluster}-config")).await.ok()?;
    let file = format!("broker-{ordinal}.properties");
    let properties = config_map.data.as_ref()?.get(&file)?;
    let ip = node.pod_ip(ordinal);
    let name = pod.name_any();
    let mounts = project_secrets(node, secrets, pod, container).await?;
    let relocate = |text: &str| {
        mounts
            .iter()
            .fold(text.replace("0.0.0.0", &ip), |text, (mount, dir)| {
                text.replace(mount.as_str(), &dir.display().to_string())
            })
    };
    let config_path = node.path(&format!("{name}.properties"));
    std::fs::write(&config_path, relocate(properties)).ok()?;
    let data = node.path(&data_volume(claims, pod).await?);
    let expand = |arg: &str| {
        arg.replace("$(RIVULET_NODE_ID)", &ordinal.to_string())
            .replace("$(POD_NAME)", &name)
    };
    let args: Vec<String> = container
        .args
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|arg| {
            let arg = expand(arg);
            if arg.starts_with("--config-file=") {
                format!("--config-file={}", config_path.display())
            } else if arg.starts_with("--data-dir=") {
                format!("--data-dir={}", data.display())
            } else {
                relocate(&arg)
            }
        })
        .collect();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.path(&format!("{name}.log")))
        .ok()?;
    let mut command = Command::from(node.command(&broker_binary()));
    for (key, value) in container_env(config_maps, container).await {
        command.env(key, value);
    }
    command
        .args(&args)
        .env("RIVULET_NODE_ID", ordinal.to_string())
        .env("POD_NAME", &name)
        .env("HOST_IP", "127.0.0.1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().ok()?)
        .stderr(log)
        .kill_on_drop(true);
    command.spawn().ok()
}

/// Writes the files of every Secret volume `container` mounts, as the
/// kubelet projects them (every key, or the volume's `items`), into a
/// directory of the node's per pod and volume: (mount path, directory),
/// longest mount path first so that a nested mount is rewritten before
/// its parent. `None` while a Secret that is not optional is missing.
async fn project_secrets(
    node: &LocalNode,
    secrets: &Api<Secret>,
    pod: &Pod,
    container: &k8s_openapi::api::core::v1::Container,
) -> Option<Vec<(String, PathBuf)>> {
    let volumes = pod.spec.as_ref()?.volumes.clone().unwrap_or_default();
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(source) = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .and_then(|v| v.secret.as_ref())
        else {
            continue;
        };
        let secret_name = source.secret_name.as_deref()?;
        let data = match secrets.get_opt(secret_name).await.ok()? {
            Some(secret) => secret.data.unwrap_or_default(),
            None if source.optional == Some(true) => BTreeMap::new(),
            None => return None,
        };
        let dir = node.path(&format!("{}-{}", pod.name_any(), mount.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let files: Vec<(String, String)> = match &source.items {
            Some(items) => items
                .iter()
                .map(|i| (i.key.clone(), i.path.clone()))
                .collect(),
            None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        for (key, path) in files {
            let bytes = data.get(&key)?;
            std::fs::write(dir.join(path), &bytes.0).ok()?;
        }
        mounts.push((mount.mount_path.clone(), dir));
    }
    mounts.sort_by_key(|(mount, _)| std::cmp::Reverse(mount.len()));
    Some(mounts)
}

/// The directory (under the node's) that backs the pod's `data` volume:
/// one per claim uid for a PersistentVolumeClaim (`None` while the claim
/// does not exist), one per pod uid for an emptyDir.
async fn data_volume(claims: &Api<PersistentVolumeClaim>, pod: &Pod) -> Option<String> {
    let volume = pod
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "data")?;
    if let Some(claim) = &volume.persistent_volume_claim {
        let uid = claims.get(&claim.claim_name).await.ok()?.uid()?;
        return Some(format!("{}-{uid}-data", claim.claim_name));
    }
    Some(format!("{}-{}-data", pod.name_any(), pod.uid()?))
}

/// The container's environment as the kubelet resolves it when the
/// container starts: plain values, and keys of ConfigMaps (an optional
/// reference to a missing ConfigMap or key sets nothing). The downward
/// API's values are set by [`start`].
async fn container_env(
    config_maps: &Api<ConfigMap>,
    container: &k8s_openapi::api::core::v1::Container,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for var in container.env.clone().unwrap_or_default() {
        if let Some(value) = var.value {
            env.push((var.name, value));
            continue;
        }
        let Some(key_ref) = var.value_from.and_then(|f| f.config_map_key_ref) else {
            continue;
        };
        let found = config_maps
            .get_opt(&key_ref.name)
            .await
            .ok()
            .flatten()
            .and_then(|cm| cm.data)
            .and_then(|data| data.get(&key_ref.key).cloned());
        if let Some(value) = found {
            env.push((var.name, value));
        }
    }
    env
}

/// SIGTERM, up to 30 s for a clean shutdown, then SIGKILL.
async fn terminate(mut child: tokio::process::Child) {
    if let Some(pid) = child.id() {
        // The broker runs under `unshare` and `sh -c ... exec`: the pid is
        // the broker's own once the shell has exec'd.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Writes the pod's Ready condition when it differs from `ready`.
async fn set_ready(pods: &Api<Pod>, pod: &Pod, ready: bool) {
    let was = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if was == ready {
        return;
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = if ready { "True" } else { "False" };
    let condition = |type_: &str, status: &str| json!({"type": type_, "status": status, "lastTransitionTime": now});
    let patch = json!({"status": {
        "phase": "Running",
        "startTime": now,
        "conditions": [condition("PodScheduled", "True"), condition("Initialized", "True"),
                       condition("ContainersReady", status), condition("Ready", status)],
    }});
    let _ = pods
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await;
}
