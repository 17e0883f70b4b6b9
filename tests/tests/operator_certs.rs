//! Certificates made by the operator's own code, used by a real broker and
//! real clients: the cluster CA's broker certificate on an SSL listener
//! with `ssl.client.auth=required`, a TLS KafkaUser's Secret used as-is by
//! confluent-kafka (principal `User:<name>` under the principal mapping
//! rule), and a CA key replacement driven through every phase of the
//! operator's state machine while producers keep writing.
//!
//! The Kubernetes API and the kubelet are left out: the Secrets are the
//! objects the controller would apply, and their keys are written to files
//! the way a Secret volume updates them (each file replaced by a rename).
//! The operator's certificate probe asks the broker what it presents.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference};
use rivulet_operator::{
    certs::{
        broker_dns_names,
        inspect::{fingerprint, pem_certificates, signed_by},
        issue,
        names::external_ips,
        renewal::{apply_writes, decide, CaPhase, Policy, Progress, StoredCa},
        secrets::{broker_certs, broker_common_name, reissue_reason, trust_digest, Owner},
        Issued, LeafRequest,
    },
    controller::{
        certs_probe::{CertProbe, TlsProbe},
        kafka::WireAdmin,
        user::{
            admin::AdminTarget,
            plan::validate_user,
            sync_with,
            tls::{build_tls_secret, user_request, USER_CRT, USER_KEY},
        },
    },
    crd::KafkaUser,
};
use rivulet_tests::{last_json, py_command, require_py, run_py, unique_topic, BrokerProcess};
use rivulet_wire::client::Client;
use serde_json::json;

const STANDARD: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
/// Strimzi's rule: the certificate's CN is the user name.
const MAPPING: &str = "RULE:^CN=([^,]*)(,.*)?$/$1/,DEFAULT";
const POLICY: Policy = Policy {
    validity_days: 365,
    renewal_days: 30,
    generate: true,
};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn owner() -> Owner {
    Owner {
        cluster: "demo".into(),
        namespace: "kafka".into(),
        reference: OwnerReference {
            api_version: "rivulet.dev/v1alpha1".into(),
            kind: "KafkaCluster".into(),
            name: "demo".into(),
            uid: "uid-demo".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}

/// A CA created by the operator's state machine.
fn created_ca(name: &str) -> StoredCa {
    let d = decide(
        name,
        &StoredCa::default(),
        &POLICY,
        &Progress::default(),
        now(),
    )
    .unwrap();
    apply_writes(&StoredCa::default(), &d.writes)
}

/// Broker 0's certificate as the operator requests it; the broker is
/// reached at 127.0.0.1, an "external host" here.
fn broker_request() -> LeafRequest {
    let hosts = ["127.0.0.1".to_string()];
    LeafRequest {
        common_name: broker_common_name("demo", 0),
        dns_names: broker_dns_names("demo", "kafka", 0, &hosts),
        ip_addresses: external_ips(&hosts),
        server: true,
        client: true,
        validity_days: POLICY.validity_days,
    }
}

/// Writes `key` of `secret` to `dir/key` as a Secret volume update does:
/// the new file appears whole.
fn project(secret: &Secret, key: &str, dir: &Path) -> PathBuf {
    let path = dir.join(key);
    let tmp = dir.join(format!(".{key}.new"));
    std::fs::write(&tmp, &secret.data.as_ref().unwrap()[key].0).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The brokers' Secret for `leaf`, projected into `dir`.
fn project_broker_certs(
    dir: &Path,
    leaf: &Issued,
    cluster_ca: &StoredCa,
    clients_ca: &StoredCa,
) -> Secret {
    let signing = cluster_ca.signing.as_ref().unwrap();
    let secret = broker_certs(
        &owner(),
        &BTreeMap::from([(0, leaf.clone())]),
        &signing.cert_pem,
        &cluster_ca.bundle.concat(),
        &clients_ca.bundle.concat(),
    );
    for key in ["broker-0.pem", "ca.crt", "clients-ca.crt"] {
        project(&secret, key, dir);
    }
    secret
}

fn tls_user(name: &str) -> KafkaUser {
    serde_json::from_value(json!({
        "apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser",
        "metadata": {"name": name, "namespace": "kafka", "uid": format!("u-{name}")},
        "spec": {"cluster": "demo", "authentication": {"type": "tls"}}
    }))
    .unwrap()
}

/// A TLS user's Secret as the operator builds it, projected into `dir`.
fn project_user(
    dir: &Path,
    name: &str,
    clients_ca: &StoredCa,
    cluster_ca: &StoredCa,
) -> serde_json::Value {
    let signing = clients_ca.signing.as_ref().unwrap();
    let leaf = issue(signing, &user_request(name, 30), now()).unwrap();
    let secret = build_tls_secret(
        &tls_user(name),
        &leaf,
        &signing.cert_pem,
        &cluster_ca.bundle.concat(),
        "pw",
    )
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    json!({
        "crt": project(&secret, USER_CRT, dir),
        "key": project(&secret, USER_KEY, dir),
        "ca": project(&secret, "ca.crt", dir),
    })
}

/// A broker whose `MTLS` listener serves `dir/broker-0.pem` and requires
/// client certificates of the clients CA; the PLAINTEXT listener is the
/// test's admin (a super user).
fn mtls_broker(dir: &Path, authorizer: bool) -> BrokerProcess {
    let mut builder = BrokerProcess::builder()
        .listener("MTLS", "SSL")
        .config("ssl.keystore.type", "PEM")
        .config(
            "listener.name.mtls.ssl.keystore.location",
            &dir.join("broker-0.pem").display().to_string(),
        )
        .config("listener.name.mtls.ssl.client.auth", "required")
        .config(
            "listener.name.mtls.ssl.truststore.location",
            &dir.join("clients-ca.crt").display().to_string(),
        )
        .config("ssl.principal.mapping.rules", MAPPING)
        .config("group.initial.rebalance.delay.ms", "0");
    if authorizer {
        builder = builder
            .config("authorizer.class.name", STANDARD)
            .config("super.users", "User:ANONYMOUS");
    }
    builder.start()
}

fn admin_target(broker: &BrokerProcess) -> AdminTarget {
    AdminTarget::plaintext(broker.bootstrap())
}

fn create_topics(rt: &tokio::runtime::Runtime, target: &AdminTarget, topics: &[&str]) {
    rt.block_on(async {
        let mut admin = Client::connect_secure(&target.bootstrap, "test", target.security.clone())
            .await
            .expect("admin connection");
        for topic in topics {
            admin
                .create_topics(topic, 1, 1, BTreeMap::new())
                .await
                .expect("create topic");
        }
    });
}

#[test]
fn operator_certificates_secure_an_mtls_listener_for_a_tls_kafka_user() {
    require_py!("confluent_kafka");
    let dir = tempfile::tempdir().unwrap();
    let cluster_ca = created_ca("demo cluster CA");
    let clients_ca = created_ca("demo clients CA");
    let leaf = issue(
        cluster_ca.signing.as_ref().unwrap(),
        &broker_request(),
        now(),
    )
    .unwrap();
    project_broker_certs(dir.path(), &leaf, &cluster_ca, &clients_ca);
    let broker = mtls_broker(dir.path(), true);
    let bootstrap = broker.listener_bootstrap("MTLS");
    let target = admin_target(&broker);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let topic = unique_topic("tls-user");
    let denied_topic = format!("{topic}-other");
    create_topics(&rt, &target, &[&topic, &denied_topic]);

    // The KafkaUser's ACLs, through the operator's own sync.
    let mut alice: KafkaUser = tls_user("alice");
    alice.spec.authorization = serde_json::from_value(json!({"type": "simple", "acls": [
        {"resource": {"type": "topic", "name": topic}, "operations": ["Write", "Read", "Describe"]},
        {"resource": {"type": "group", "name": "alice-"}, "operations": ["Read"]}]}))
    .unwrap();
    let valid = validate_user(&alice).unwrap();
    assert!(valid.tls);
    let changes = rt
        .block_on(sync_with(&WireAdmin, &target, &valid, None))
        .unwrap();
    assert_eq!(changes, ["created 4 ACLs"], "{changes:?}");

    // The broker presents the operator's certificate.
    let presented = rt
        .block_on(TlsProbe.presented(&bootstrap, "127.0.0.1"))
        .expect("the broker presents a certificate");
    let issued = pem_certificates(&leaf.cert_pem).unwrap().remove(0);
    assert_eq!(fingerprint(&presented), fingerprint(issued.as_ref()));

    let files = project_user(&dir.path().join("alice"), "alice", &clients_ca, &cluster_ca);
    let options = json!({"bootstrap": bootstrap, "topic": topic, "denied_topic": denied_topic,
                         "group": "alice-", "files": files});
    let out = last_json(&run_py(
        "operator_tls_clients.py",
        &["allowed", &options.to_string()],
    ));
    assert_eq!(out["consumed"], 5, "{out}");

    // Another user of the same clients CA is a different principal.
    let files = project_user(
        &dir.path().join("mallory"),
        "mallory",
        &clients_ca,
        &cluster_ca,
    );
    let options = json!({"bootstrap": bootstrap, "topic": topic, "files": files});
    last_json(&run_py(
        "operator_tls_clients.py",
        &["denied", &options.to_string()],
    ));
    let log = broker.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// What the operator's step does with the broker's leaf: issue it again
/// when the trust bundles changed or its own rules say so.
fn leaf_step(
    dir: &Path,
    leaf: &mut Issued,
    issued_with: &mut String,
    cluster_ca: &StoredCa,
    clients_ca: &StoredCa,
) {
    let digest = trust_digest(&cluster_ca.bundle.concat(), &clients_ca.bundle.concat());
    let signing = cluster_ca.signing.as_ref().unwrap();
    let request = broker_request();
    let reason = if *issued_with != digest {
        Some("the trust bundles changed")
    } else {
        reissue_reason(
            Some(&leaf.cert_pem),
            &signing.cert_pem,
            &request.dns_names,
            &request.ip_addresses,
            POLICY.renewal_days,
            now(),
        )
    };
    if reason.is_some() {
        *leaf = issue(signing, &request, now()).unwrap();
        *issued_with = digest;
        project_broker_certs(dir, leaf, cluster_ca, clients_ca);
    }
}

#[test]
fn a_ca_key_replacement_through_every_phase_fails_no_delivery() {
    require_py!("confluent_kafka");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster_ca = created_ca("demo cluster CA");
    let clients_ca = created_ca("demo clients CA");
    let mut leaf = issue(
        cluster_ca.signing.as_ref().unwrap(),
        &broker_request(),
        now(),
    )
    .unwrap();
    let mut issued_with = trust_digest(&cluster_ca.bundle.concat(), &clients_ca.bundle.concat());
    project_broker_certs(dir.path(), &leaf, &cluster_ca, &clients_ca);
    let broker = mtls_broker(dir.path(), false);
    let bootstrap = broker.listener_bootstrap("MTLS");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let topic = unique_topic("ca-rotation");
    create_topics(&rt, &admin_target(&broker), &[&topic]);

    // The application: its Secret's files, whose ca.crt follows the
    // cluster CA bundle as the operator rewrites it.
    let user_dir = dir.path().join("app");
    let files = project_user(&user_dir, "app", &clients_ca, &cluster_ca);
    let stop = dir.path().join("stop");
    let options = json!({"bootstrap": bootstrap, "topic": topic, "files": files,
                         "stop": stop.display().to_string()});
    let clients = py_command("operator_tls_clients.py", &["churn", &options.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the producers");
    std::thread::sleep(Duration::from_secs(3));

    // The user asks for a new key; the operator reconciles every second,
    // from what is stored and what the broker presents.
    cluster_ca.force_renew = true;
    let mut phases = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "stuck after {phases:?}");
        let stored_leaf = pem_certificates(&leaf.cert_pem).unwrap().remove(0);
        let presented = rt.block_on(TlsProbe.presented(&bootstrap, "127.0.0.1"));
        let digest = trust_digest(&cluster_ca.bundle.concat(), &clients_ca.bundle.concat());
        let progress = Progress {
            brokers_loaded: issued_with == digest
                && presented.as_deref().map(fingerprint) == Some(fingerprint(stored_leaf.as_ref())),
            leaves_resigned: signed_by(
                &leaf.cert_pem,
                &cluster_ca.signing.as_ref().unwrap().cert_pem,
            ),
            bundle_distributed: std::fs::read_to_string(user_dir.join("ca.crt")).unwrap()
                == cluster_ca.bundle.concat(),
        };
        let d = decide("demo cluster CA", &cluster_ca, &POLICY, &progress, now()).unwrap();
        cluster_ca = apply_writes(&cluster_ca, &d.writes);
        leaf_step(
            dir.path(),
            &mut leaf,
            &mut issued_with,
            &cluster_ca,
            &clients_ca,
        );
        // The user's Secret follows the bundle (the user controller's Trust plan).
        let user_ca = user_dir.join("ca.crt");
        if std::fs::read_to_string(&user_ca).unwrap() != cluster_ca.bundle.concat() {
            let tmp = user_dir.join(".ca.crt.new");
            std::fs::write(&tmp, cluster_ca.bundle.concat()).unwrap();
            std::fs::rename(&tmp, &user_ca).unwrap();
        }
        if phases.last() != Some(&d.phase) {
            eprintln!("phase {:?}: {:?}", d.phase, d.message);
            phases.push(d.phase);
            // Let new connections happen in every phase.
            std::thread::sleep(Duration::from_secs(3));
        }
        if d.phase == CaPhase::Ready && phases.len() > 1 && d.writes.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        phases,
        [
            CaPhase::TrustingNewCa,
            CaPhase::DroppingOldCa,
            CaPhase::Ready
        ]
    );
    assert_eq!(cluster_ca.generation, 1);
    assert_eq!(cluster_ca.bundle.len(), 1);
    // Some time in the final state, then the verdict.
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&stop, b"").unwrap();
    let out = clients.wait_with_output().expect("the producers");
    assert!(
        out.status.success(),
        "a delivery failed during the rotation: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        broker.log()
    );
    let summary = last_json(&String::from_utf8_lossy(&out.stdout));
    eprintln!("the producers: {summary}");
    assert!(summary["fresh"].as_u64().unwrap() >= 10, "{summary}");
    let log = broker.log();
    assert!(log.contains("certificates reloaded"), "{log}");
    // The broker serves a certificate of the new key.
    let presented = rt
        .block_on(TlsProbe.presented(&bootstrap, "127.0.0.1"))
        .expect("the broker presents a certificate");
    let served = pem_certificates(&leaf.cert_pem).unwrap().remove(0);
    assert_eq!(fingerprint(&presented), fingerprint(served.as_ref()));
    assert!(signed_by(&leaf.cert_pem, &cluster_ca.bundle[0]));
}
