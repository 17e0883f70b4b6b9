//! A secured KafkaCluster against real brokers, driven by the operator's
//! own code: three `rivulet` processes run the config files, arguments and
//! environment the operator builds for a cluster whose internal listener
//! is SASL_SSL with SCRAM-SHA-512 and whose ACLs are on. The certificates
//! come from the operator's own certificate code (its CAs, the broker and
//! operator leaves it issues, and the `<cluster>-broker-certs` and
//! `<cluster>-operator-certs` Secrets it stores), written out as the
//! kubelet mounts the Secret.
//!
//! Then, as in Kubernetes: the operator's admin target (mutual TLS on
//! `REPLICATION`, from the `<cluster>-operator-certs` Secret) sees three
//! brokers and creates replicated topics; the KafkaUser pipeline creates
//! a SCRAM user with ACLs; confluent-kafka logs in with the user's Secret
//! over TLS and may write and read what the ACLs allow and nothing else;
//! the replicas stay in sync (followers fetch over `REPLICATION`). The
//! `REPLICATION` listener refuses a TLS client without a certificate and
//! the SCRAM user; a SCRAM client that reaches it with a certificate is
//! told "the broker does not offer SCRAM-SHA-512 (it offers: )", the
//! message of a SASL client on a listener without SASL.
//!
//! Only what cannot work on a laptop is replaced: each `host:port` of a
//! broker (its DNS name, which the certificates also name) becomes
//! 127.0.0.1 and a free port, and the mount paths become temp paths.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference};
use rivulet_operator::{
    build::{build_config_map, build_statefulset, Observed, CERTS_MOUNT},
    certs::{
        issue,
        names::{broker_dns_names, external_ips},
        new_ca,
        secrets::{self, broker_common_name, Owner},
        Issued, LeafRequest,
    },
    controller::{
        identity::new_cluster_id,
        kafka::{KafkaAdmin, WireAdmin},
        target::admin_target_with,
        user::{
            plan::validate_user,
            secret::{build_user_secret, generate_password, secret_value, JAAS_KEY, PASSWORD_KEY},
            sync_with,
        },
    },
    crd::{KafkaCluster, KafkaUser},
    validate::{validate, OperatorConfig, ValidatedCluster},
};
use rivulet_tests::{
    broker::free_ports, last_json, require_py, rivulet_bin, run_py, unique_topic, Background,
};
use rivulet_wire::client::{Client, ClientSecurity};
use serde_json::json;

const BROKERS: i32 = 3;
/// The brokers' ports in the operator's config: internal, replication, controller.
const PORTS: [i32; 3] = [9092, 9091, 9093];

fn secured_cluster() -> ValidatedCluster {
    let cluster: KafkaCluster = serde_json::from_value(json!({
        "apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaCluster",
        "metadata": {"name": "demo", "namespace": "kafka", "uid": "0000"},
        "spec": {
            "replicas": BROKERS,
            "storage": {"type": "Ephemeral"},
            "listeners": {"internal": {
                "tls": true, "authentication": {"type": "scram-sha-512"}}},
            "authorization": {"type": "simple"},
            "config": {"offsets.topic.replication.factor": "3",
                       "group.initial.rebalance.delay.ms": "0"}
        }
    }))
    .expect("a KafkaCluster");
    let mut validated = validate(&cluster, &OperatorConfig::default()).expect("valid");
    validated.cluster_id = Some(new_cluster_id());
    validated
}

/// Local ports by (broker, operator port).
type LocalPorts = BTreeMap<(i32, i32), u16>;

/// Broker `id`'s file as the operator wrote it, made runnable here.
fn localize(
    cluster: &ValidatedCluster,
    text: &str,
    id: i32,
    ports: &LocalPorts,
    certs: &Path,
) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut line = match line.strip_prefix("listeners=") {
            Some(listeners) => {
                let local: Vec<String> = listeners
                    .split(',')
                    .map(|l| {
                        let (name, address) = l.split_once("://").expect("NAME://host:port");
                        let port: i32 = address.rsplit(':').next().unwrap().parse().unwrap();
                        format!("{name}://127.0.0.1:{}", ports[&(id, port)])
                    })
                    .collect();
                format!("listeners={}", local.join(","))
            }
            None => line.to_string(),
        };
        line = line.replace(CERTS_MOUNT, certs.to_str().expect("utf-8 path"));
        for ((broker, port), local) in ports {
            let host = format!("{}:{port}", cluster.broker_host(*broker));
            line = line.replace(&host, &format!("127.0.0.1:{local}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The cluster's certificate authorities and certificates, made by the
/// operator's certificate code; the brokers' Secret is written to
/// `dir/certs` as its volume is mounted.
struct Pki {
    cluster_ca: Issued,
    dir: PathBuf,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn owner(cluster: &ValidatedCluster) -> Owner {
    Owner {
        cluster: cluster.name.clone(),
        namespace: cluster.namespace.clone(),
        reference: OwnerReference {
            api_version: "rivulet.dev/v1alpha1".into(),
            kind: "KafkaCluster".into(),
            name: cluster.name.clone(),
            uid: "uid-demo".into(),
            ..OwnerReference::default()
        },
    }
}

fn broker_certs(cluster: &ValidatedCluster, dir: &Path) -> Pki {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let cluster_ca = new_ca("demo-cluster-ca", 365, now()).unwrap();
    let clients_ca = new_ca("demo-clients-ca", 365, now()).unwrap();
    // The brokers are reached at 127.0.0.1 here: an "external host" to
    // the operator, so an IP name of each certificate.
    let hosts = ["127.0.0.1".to_string()];
    let leaves: BTreeMap<i32, Issued> = (0..BROKERS)
        .map(|id| {
            let request = LeafRequest {
                common_name: broker_common_name(&cluster.name, id),
                dns_names: broker_dns_names(&cluster.name, &cluster.namespace, id, &hosts),
                ip_addresses: external_ips(&hosts),
                server: true,
                client: true,
                validity_days: 365,
            };
            (id, issue(&cluster_ca, &request, now()).unwrap())
        })
        .collect();
    let secret = secrets::broker_certs(
        &owner(cluster),
        &leaves,
        &cluster_ca.cert_pem,
        &cluster_ca.cert_pem,
        &clients_ca.cert_pem,
    );
    for (key, value) in secret.data.unwrap() {
        std::fs::write(certs.join(key), value.0).unwrap();
    }
    Pki {
        cluster_ca,
        dir: dir.to_path_buf(),
    }
}

impl Pki {
    /// The cluster CA bundle as mounted.
    fn ca_file(&self) -> PathBuf {
        self.dir.join("certs").join("ca.crt")
    }

    /// A client certificate for `name` from the cluster CA, as files.
    fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let leaf = issue(&self.cluster_ca, &LeafRequest::client(name, 30), now()).unwrap();
        let (cert, key) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        (cert, key)
    }
}

/// `<cluster>-operator-certs` as the operator stores it.
fn operator_certs(cluster: &ValidatedCluster, pki: &Pki) -> Secret {
    let leaf = issue(
        &pki.cluster_ca,
        &LeafRequest::client("rivulet-operator", 365),
        now(),
    )
    .unwrap();
    let ca = &pki.cluster_ca.cert_pem;
    secrets::operator_certs(&owner(cluster), &leaf, ca, ca)
}

/// Starts broker `id` with the StatefulSet's arguments and environment.
fn start_broker(cluster: &ValidatedCluster, dir: &Path, id: i32, config: &Path) -> Background {
    let sts = build_statefulset(cluster);
    let container = &sts.spec.unwrap().template.spec.unwrap().containers[0];
    let args: Vec<String> = container
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|arg| {
            if arg.starts_with("--config-file=") {
                format!("--config-file={}", config.display())
            } else if arg.starts_with("--data-dir=") {
                format!("--data-dir={}", dir.join(format!("data-{id}")).display())
            } else if arg.starts_with("--metrics-addr=") {
                "--metrics-addr=127.0.0.1:0".into()
            } else {
                arg
            }
        })
        .collect();
    let mut cmd = Command::new(rivulet_bin());
    cmd.args(&args)
        .env("RIVULET_NODE_ID", id.to_string())
        .env("RIVULET_CLUSTER_ID", cluster.cluster_id.as_ref().unwrap())
        .env("RIVULET_BOOTSTRAP_QUORUM", "true")
        .env("RUST_LOG", "info");
    Background::spawn(&mut cmd, dir, &format!("broker-{id}"))
}

fn kafka_user(prefix: &str) -> KafkaUser {
    serde_json::from_value(json!({
        "apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser",
        "metadata": {"name": "app", "namespace": "kafka", "uid": "u-1"},
        "spec": {
            "cluster": "demo",
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": [
                {"resource": {"type": "topic", "name": format!("{prefix}orders")},
                 "operations": ["Write", "Read", "Describe"]},
                {"resource": {"type": "group", "name": format!("{prefix}app"), "patternType": "prefix"},
                 "operations": ["Read"]}]}
        }
    }))
    .expect("a KafkaUser")
}

/// Polls `check` until it gives a value or `within` passes.
fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) if Instant::now() > deadline => panic!("{what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

#[test]
fn a_secured_cluster_runs_on_the_operators_config_and_admin() {
    require_py!("confluent_kafka");
    let cluster = secured_cluster();
    let dir = tempfile::tempdir().unwrap();
    let pki = broker_certs(&cluster, dir.path());
    let mut ports = LocalPorts::new();
    for id in 0..BROKERS {
        let [a, b, c] = free_ports::<3>();
        for (port, local) in PORTS.into_iter().zip([a, b, c]) {
            ports.insert((id, port), local);
        }
    }
    let files = build_config_map(&cluster, &Observed::default())
        .data
        .unwrap();
    let shared = &files["server.properties"];
    for line in [
        "inter.broker.listener.name=REPLICATION",
        "listener.security.protocol.map=INTERNAL:SASL_SSL,REPLICATION:SSL,CONTROLLER:SSL",
    ] {
        assert!(shared.lines().any(|l| l == line), "{line} in {shared}");
    }
    let mut brokers = Vec::new();
    for id in 0..BROKERS {
        let text = &files[&format!("broker-{id}.properties")];
        let config = dir.path().join(format!("broker-{id}.properties"));
        std::fs::write(
            &config,
            localize(&cluster, text, id, &ports, &dir.path().join("certs")),
        )
        .unwrap();
        brokers.push(start_broker(&cluster, dir.path(), id, &config));
    }
    let logs = |brokers: &[Background]| {
        brokers
            .iter()
            .map(|b| b.stderr())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };

    // The operator's admin connection, as every controller makes it.
    let target =
        admin_target_with(&cluster, Some(&operator_certs(&cluster, &pki))).expect("a target");
    assert!(target.mutual_tls() && target.bootstrap.ends_with(":9091"));
    let target = target.at(format!("127.0.0.1:{}", ports[&(0, 9091)]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let info = eventually(
        Duration::from_secs(90),
        "three brokers over mutual TLS",
        || {
            let info = rt
                .block_on(WireAdmin.cluster_info(&target))
                .map_err(|e| e.to_string())?;
            (info.brokers.len() == 3)
                .then_some(info.clone())
                .ok_or(format!("{info:?}"))
        },
    );
    assert_eq!(info.cluster_id, cluster.cluster_id, "{}", logs(&brokers));

    let prefix = format!("{}-", unique_topic("tls"));
    for topic in ["orders", "payments"] {
        let config = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
        let name = format!("{prefix}{topic}");
        eventually(
            Duration::from_secs(30),
            "create a topic as the operator",
            || {
                rt.block_on(WireAdmin.create_topic(&target, &name, 3, 3, config.clone()))
                    .map_err(|e| e.to_string())
            },
        );
    }

    // The KafkaUser pipeline: its Secret, then its credential and ACLs.
    let user = kafka_user(&prefix);
    let valid = validate_user(&user).expect("valid user");
    let password = generate_password();
    let secret = build_user_secret(&user, &valid.username, &password);
    rt.block_on(sync_with(&WireAdmin, &target, &valid, Some(&password)))
        .expect("the operator creates the user over mutual TLS");

    let internal = format!("127.0.0.1:{}", ports[&(0, 9092)]);
    let options = json!({
        "bootstrap": internal,
        "prefix": prefix,
        "username": valid.username,
        "ca": pki.ca_file(),
        "secret": {
            "password": secret_value(&secret, PASSWORD_KEY).unwrap(),
            "sasl.jaas.config": secret_value(&secret, JAAS_KEY).unwrap(),
        },
    })
    .to_string();
    let out = last_json(&run_py("kafka_user_clients.py", &["allowed", &options]));
    eprintln!("the application over SASL_SSL: {out}");

    // Replicated over REPLICATION: every replica back in sync.
    eventually(Duration::from_secs(30), "every replica in sync", || {
        let snapshot = rt
            .block_on(WireAdmin.snapshot(&target))
            .map_err(|e| e.to_string())?;
        let orders: Vec<_> = snapshot
            .partitions
            .iter()
            .filter(|((t, _), _)| *t == format!("{prefix}orders"))
            .map(|(_, p)| p.isr.len())
            .collect();
        (orders == [3, 3, 3])
            .then_some(())
            .ok_or(format!("{orders:?}"))
    });

    // REPLICATION lets in only holders of a cluster CA certificate.
    let replication = format!("127.0.0.1:{}", ports[&(1, 9091)]);
    let ca = pki.ca_file().display().to_string();
    let props = |pairs: &[(&str, &str)]| {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ClientSecurity::from_properties(&map).unwrap()
    };
    let refused = |security: ClientSecurity| {
        let connect = async {
            let mut client = Client::connect_secure(&replication, "test", security).await?;
            client.metadata(None).await
        };
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), connect).await })
            .map_or(true, |r| r.is_err())
    };
    assert!(
        refused(props(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &ca)
        ])),
        "a TLS client without a certificate"
    );
    assert!(
        refused(props(&[
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", &ca),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "app"),
            ("sasl.password", &password),
        ])),
        "the SCRAM user"
    );
    assert!(!refused(target.security.clone()), "the operator");

    // What a SCRAM client says when it reaches a listener without SASL
    // (here with a certificate, so TLS lets it in): the broker answers
    // SaslHandshake with no mechanism at all. A client told to use
    // SCRAM on a TLS-only listener, or sent there by advertised addresses
    // that do not match `listeners`, fails this way.
    let (probe_cert, probe_key) = pki.client("probe");
    let sasl_with_cert = props(&[
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", &ca),
        ("ssl.certificate.location", probe_cert.to_str().unwrap()),
        ("ssl.key.location", probe_key.to_str().unwrap()),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "app"),
        ("sasl.password", &password),
    ]);
    let Err(error) = rt.block_on(Client::connect_secure(&replication, "test", sasl_with_cert))
    else {
        panic!("a SASL login on REPLICATION");
    };
    let error = error.to_string();
    assert!(
        error.contains("does not offer SCRAM-SHA-512 (it offers: )"),
        "{error}"
    );
}
