//! The broker accepts what the operator generates: for every KafkaCluster
//! in `manifests/examples/`, the pure builders make broker 0's config file
//! and arguments, and the real `rivulet` binary must start with them (it
//! refuses unknown keys and malformed listeners) until it logs
//! `rivulet broker ready`.
//!
//! A secured example's broker gets certificates made here with rcgen, as
//! the `<cluster>-broker-certs` Secret would be mounted (cluster and
//! clients CA bundles, `broker-0.pem` with `CN=<cluster>-broker-0`), so
//! the TLS, SASL and authorizer settings the operator writes must load.
//!
//! The broker gets the environment of a new cluster's pod: its cluster id
//! (`RIVULET_CLUSTER_ID`) and, as the bootstrap ConfigMap gives it while
//! the cluster is created, `RIVULET_BOOTSTRAP_QUORUM=true`.
//!
//! Only what cannot work on a laptop is replaced: `$(VAR)`s as the kubelet
//! would expand them, the config and data paths by temp paths, and the bind
//! addresses of the listeners and metrics by 127.0.0.1 with free ports. The
//! listeners are rewritten in the file rather than overridden with
//! `--listeners`: the broker (as of this writing) takes the flag but then
//! refuses the file's `listeners` as an unknown key. The binary is `target/debug/rivulet`
//! (RIVULET_BIN to override); without it the test prints SKIPPED, unless
//! RIVULET_REQUIRE_BROKER=1 makes that a failure (CI builds it first with
//! `cargo build --bins`).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use rivulet_operator::{
    build::{build_config_map, build_statefulset, Observed, BOOTSTRAP_ENV, CERTS_MOUNT},
    controller::identity::new_cluster_id,
    crd::KafkaCluster,
    validate::{validate, OperatorConfig, ValidatedCluster},
};

/// How long a broker may take to come up on an empty data dir.
const READY_WITHIN: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn broker_binary() -> Option<PathBuf> {
    let path = std::env::var_os("RIVULET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root().join("target"), PathBuf::from)
                .join("debug/rivulet")
        });
    path.is_file().then_some(path)
}

/// Every KafkaCluster of the examples, as the API server would hand it over.
fn example_clusters() -> Vec<KafkaCluster> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("manifests/examples"))
        .expect("manifests/examples")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut clusters = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("example readable");
        for doc in text.split("\n---\n") {
            let mut value: serde_json::Value =
                serde_saphyr::from_str(doc).expect("example is YAML");
            if value["kind"] != "KafkaCluster" {
                continue;
            }
            value["metadata"]["namespace"] = "kafka".into();
            value["metadata"]["uid"] = "0000".into();
            clusters.push(serde_json::from_value(value).expect("example is a KafkaCluster"));
        }
    }
    clusters
}

/// What a running cluster would have observed: a load balancer address
/// and a rack for broker 0, so those lines are checked too.
fn observed(cluster: &ValidatedCluster) -> Observed {
    let mut observed = Observed::default();
    if cluster.spec.listeners.external.is_some() {
        observed.load_balancer_hosts = BTreeMap::from([(0, "203.0.113.7".to_string())]);
    }
    if cluster.spec.rack.is_some() {
        observed.racks = BTreeMap::from([(0, "zone-a".to_string())]);
    }
    observed
}

/// `properties` with each listener moved to 127.0.0.1 and a free port;
/// names, and every other line, unchanged.
fn local_listeners(properties: &str) -> String {
    let mut found = false;
    let mut out = String::new();
    for line in properties.lines() {
        match line.strip_prefix("listeners=") {
            Some(listeners) => {
                found = true;
                let local: Vec<String> = listeners
                    .split(',')
                    .map(|l| {
                        let (name, _) = l.split_once("://").expect("NAME://host:port");
                        format!("{name}://127.0.0.1:0")
                    })
                    .collect();
                out.push_str(&format!("listeners={}", local.join(",")));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(found, "the operator writes listeners into the file");
    out
}

fn ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-sign");
    (cert, key)
}

/// The files of the `<cluster>-broker-certs` Secret broker 0 reads.
fn write_certs(cluster: &ValidatedCluster, dir: &Path) {
    std::fs::create_dir_all(dir).expect("certs dir");
    let (cluster_ca, cluster_key) = ca(&format!("{}-cluster-ca", cluster.name));
    let (clients_ca, _) = ca(&format!("{}-clients-ca", cluster.name));
    let mut params =
        rcgen::CertificateParams::new(vec![cluster.broker_host(0)]).expect("leaf params");
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{}-broker-0", cluster.name),
    );
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = params
        .signed_by(&key, &cluster_ca, &cluster_key)
        .expect("sign");
    let files = [
        ("ca.crt", cluster_ca.pem()),
        ("clients-ca.crt", clients_ca.pem()),
        (
            "broker-0.pem",
            format!("{}{}{}", key.serialize_pem(), leaf.pem(), cluster_ca.pem()),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write a certificate file");
    }
}

/// The environment the broker container gets from values and from the
/// bootstrap ConfigMap (present while a cluster is created); the downward
/// API's values are set by [`start_broker`].
fn local_env(cluster: &ValidatedCluster) -> Vec<(String, String)> {
    let sts = build_statefulset(cluster);
    let container = &sts.spec.unwrap().template.spec.unwrap().containers[0];
    let mut env = Vec::new();
    for var in container.env.clone().unwrap_or_default() {
        if let Some(value) = var.value {
            env.push((var.name, value));
        } else if var.name == BOOTSTRAP_ENV {
            env.push((var.name, "true".into()));
        }
    }
    env
}

/// The StatefulSet's broker arguments, made runnable here.
fn local_args(cluster: &ValidatedCluster, config: &Path, data: &Path) -> Vec<String> {
    let sts = build_statefulset(cluster);
    let container = &sts.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        container.command.as_deref(),
        Some(&["rivulet".to_string()][..])
    );
    container
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|arg| {
            let arg = arg
                .replace("$(RIVULET_NODE_ID)", "0")
                .replace("$(POD_NAME)", &cluster.pod_name(0));
            assert!(!arg.contains("$("), "an unexpanded variable in `{arg}`");
            if arg.starts_with("--config-file=") {
                format!("--config-file={}", config.display())
            } else if arg.starts_with("--data-dir=") {
                format!("--data-dir={}", data.display())
            } else if arg.starts_with("--metrics-addr=") && arg != "--metrics-addr=none" {
                "--metrics-addr=127.0.0.1:0".into()
            } else {
                arg
            }
        })
        .collect()
}

/// Runs the broker until it is ready (then stops it) or gives up.
fn start_broker(binary: &Path, args: &[String], env: &[(String, String)]) -> Result<(), String> {
    let mut child = Command::new(binary)
        .args(args)
        .env_remove("RIVULET_LISTENERS")
        .env_remove("RIVULET_ADVERTISED_LISTENERS")
        .env_remove("RIVULET_CONFIG_FILE")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RIVULET_NODE_ID", "0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + READY_WITHIN;
    let mut log = Vec::new();
    let outcome = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains("rivulet broker ready") {
                    eprintln!("{line}");
                    break Ok(());
                }
                log.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break Err(format!("not ready within {READY_WITHIN:?}"))
            }
            // stderr closed: the broker exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err("the broker exited".into()),
        }
    };
    let _ = child.kill();
    let status = child.wait().map_err(|e| e.to_string())?;
    outcome.map_err(|why| format!("{why} ({status}):\n{}", log.join("\n")))
}

#[test]
fn the_broker_accepts_the_generated_config_of_every_example() {
    let Some(binary) = broker_binary() else {
        assert!(
            std::env::var_os("RIVULET_REQUIRE_BROKER").is_none(),
            "RIVULET_REQUIRE_BROKER is set but target/debug/rivulet is missing (cargo build --bins)"
        );
        eprintln!(
            "SKIPPED the_broker_accepts_the_generated_config_of_every_example: \
             no target/debug/rivulet (run `cargo build --bins` first)"
        );
        return;
    };
    let clusters = example_clusters();
    assert!(clusters.len() >= 2, "the examples have KafkaClusters");
    assert!(
        clusters
            .iter()
            .filter(|c| c.spec.listeners.internal.tls)
            .count()
            >= 1,
        "an example is secured"
    );
    for cluster in clusters {
        let mut validated =
            validate(&cluster, &OperatorConfig::default()).expect("example validates");
        // What the operator generates when it creates the cluster.
        validated.cluster_id = Some(new_cluster_id());
        let observed = observed(&validated);
        let config_map = build_config_map(&validated, &observed);
        let properties = &config_map.data.as_ref().unwrap()["broker-0.properties"];
        if validated.spec.rack.is_some() {
            assert!(
                properties.contains("\nbroker.rack=zone-a\n"),
                "{properties}"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("broker-0.properties");
        let mut local = local_listeners(properties);
        if validated.security.enabled() {
            assert!(properties.contains(CERTS_MOUNT), "{properties}");
            let certs = dir.path().join("certs");
            write_certs(&validated, &certs);
            local = local.replace(CERTS_MOUNT, certs.to_str().expect("utf-8 path"));
        }
        std::fs::write(&config, local).expect("write the config file");
        let args = local_args(&validated, &config, &dir.path().join("data"));
        let env = local_env(&validated);
        assert!(
            env.iter().any(|(k, _)| k == "RIVULET_CLUSTER_ID"),
            "{env:?}"
        );
        if let Err(why) = start_broker(&binary, &args, &env) {
            panic!(
                "the broker refused the config of example `{}`: {why}\nargs: {args:?}\nenv: {env:?}\n\
                 broker-0.properties:\n{properties}",
                validated.name
            );
        }
    }
}
