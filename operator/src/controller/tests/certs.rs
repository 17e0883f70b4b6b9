//! The certificates step against the fake API server and a fake probe
//! standing in for the brokers: CA creation, a key replacement through
//! every phase (each reconcile with a fresh context: nothing but the
//! Secrets carries over), an expired CA, and a CA the user brings.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine;
use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use rustls_pki_types::{ServerName, UnixTime};
use serde_json::{json, Value};

use super::{CR, EVENTS};
use crate::{
    certs::{inspect::pem_certificates, new_ca, secrets::FORCE_RENEW_ANNOTATION, DAY},
    controller::{
        certs::{reconcile_certificates, CertsOutcome},
        certs_probe::CertProbe,
        Context,
    },
    fixtures::{cluster_from_yaml, validated, FakeApi, FakeKafka},
    metrics::Metrics,
};

const SECRETS: &str = "/api/v1/namespaces/kafka/secrets";

/// Brokers as the probe sees them: the leaf each presents, by host.
#[derive(Default)]
struct FakeBrokers {
    presented: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Handshakes asked for.
    probes: std::sync::atomic::AtomicUsize,
}

impl CertProbe for FakeBrokers {
    fn presented<'a>(
        &'a self,
        address: &'a str,
        server_name: &'a str,
    ) -> BoxFuture<'a, Option<Vec<u8>>> {
        assert!(address.ends_with(":9091"), "{address}");
        self.probes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seen = self.presented.lock().unwrap().get(server_name).cloned();
        Box::pin(async move { seen })
    }
}

struct Certs {
    api: FakeApi,
    client: kube::Client,
    brokers: Arc<FakeBrokers>,
    metrics: Arc<Metrics>,
    spec: String,
}

fn decode(value: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap_or_else(|| panic!("{value}")))
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

impl Certs {
    fn new(spec: &str) -> Certs {
        let (client, api) = FakeApi::start();
        api.insert(CR, serde_json::to_value(cluster_from_yaml(spec)).unwrap());
        Certs {
            api,
            client,
            brokers: Arc::new(FakeBrokers::default()),
            metrics: Arc::new(Metrics::new()),
            spec: spec.into(),
        }
    }

    /// One certificates step, with a context made for it alone.
    async fn reconcile(&self) -> (CertsOutcome, Vec<String>) {
        let mut ctx = Context::new(
            self.client.clone(),
            Arc::new(FakeKafka::default()),
            self.metrics.clone(),
        );
        ctx.probe = self.brokers.clone();
        let object = serde_json::from_value(self.api.object(CR).unwrap()).unwrap();
        let outcome =
            reconcile_certificates(&ctx, &object, &validated(&self.spec), &BTreeMap::new())
                .await
                .expect("certificates step");
        let calls = self.api.take_calls().iter().map(|c| c.line()).collect();
        (outcome, calls)
    }

    fn secret(&self, name: &str) -> Value {
        self.api
            .object(&format!("{SECRETS}/{name}"))
            .unwrap_or_else(|| panic!("no Secret {name}"))
    }

    fn text(&self, name: &str, key: &str) -> String {
        decode(&self.secret(name)["data"][key])
    }

    fn bundle_len(&self) -> usize {
        pem_certificates(&self.text("demo-cluster-ca-cert", "ca.crt"))
            .unwrap()
            .len()
    }

    /// Every broker loads its Secret as it is now (the kubelet synced).
    fn brokers_load(&self) {
        let mut presented = self.brokers.presented.lock().unwrap();
        for id in 0..3 {
            let pem = self.text("demo-broker-certs", &format!("broker-{id}.crt"));
            let leaf = pem_certificates(&pem).unwrap().remove(0);
            let host = format!("demo-broker-{id}.demo-brokers.kafka.svc.cluster.local");
            presented.insert(host, leaf.as_ref().to_vec());
        }
    }
}

fn phases(outcome: &CertsOutcome) -> (String, String) {
    (
        outcome.status.cluster_ca.as_ref().unwrap().phase.clone(),
        outcome.status.clients_ca.as_ref().unwrap().phase.clone(),
    )
}

fn writes(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| (c.starts_with("PATCH") || c.starts_with("PUT")) && c.contains("/secrets/"))
        .map(|c| {
            format!(
                "{} {}",
                &c[..c.find(' ').unwrap()],
                c.rsplit('/').next().unwrap()
            )
        })
        .collect()
}

/// Verifies `leaf_pem` (chain first) against `bundle_pem` for `host`.
fn verifies(leaf_pem: &str, bundle_pem: &str, host: &str) -> bool {
    let anchors_der = pem_certificates(bundle_pem).unwrap();
    let anchors: Vec<_> = anchors_der
        .iter()
        .map(|d| webpki::anchor_from_trusted_cert(d).unwrap())
        .collect();
    let leaf = pem_certificates(leaf_pem).unwrap().remove(0);
    let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
    let now = UnixTime::since_unix_epoch(Duration::from_secs(Timestamp::now().as_second() as u64));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .is_ok()
        && ee
            .verify_is_valid_for_subject_name(&ServerName::try_from(host).unwrap())
            .is_ok()
}

#[tokio::test]
async fn creation_makes_both_cas_every_broker_certificate_and_the_operators() {
    let c = Certs::new("replicas: 3");
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome), ("Ready".into(), "Ready".into()));
    let written = writes(&calls);
    for name in [
        "demo-cluster-ca",
        "demo-cluster-ca-cert",
        "demo-clients-ca",
        "demo-clients-ca-cert",
        "demo-broker-certs",
        "demo-operator-certs",
    ] {
        assert!(
            written.contains(&format!("PATCH {name}")),
            "{name} in {written:?}"
        );
        let owner = &c.secret(name)["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["name"].as_str()),
            (Some("KafkaCluster"), Some("demo"))
        );
    }
    let bundle = c.text("demo-cluster-ca-cert", "ca.crt");
    for id in 0..3 {
        let chain = c.text("demo-broker-certs", &format!("broker-{id}.crt"));
        let host = format!("demo-broker-{id}.demo-brokers.kafka.svc");
        assert!(verifies(&chain, &bundle, &host), "broker {id}");
        assert!(verifies(
            &chain,
            &bundle,
            "demo-bootstrap.kafka.svc.cluster.local"
        ));
    }
    assert_eq!(
        c.text("demo-broker-certs", "clients-ca.crt"),
        c.text("demo-clients-ca-cert", "ca.crt")
    );
    assert_eq!(outcome.condition.status, "True");
    let not_after = outcome
        .status
        .cluster_ca
        .as_ref()
        .unwrap()
        .not_after
        .clone()
        .unwrap();
    let days =
        (not_after.parse::<Timestamp>().unwrap().as_second() - Timestamp::now().as_second()) / DAY;
    assert!((364..=365).contains(&days), "{not_after}");
    assert!(outcome
        .status
        .brokers
        .as_ref()
        .unwrap()
        .earliest_not_after
        .is_some());
    let metrics = c.metrics.render();
    for certificate in ["cluster-ca", "clients-ca", "broker", "operator"] {
        assert!(
            metrics.contains(&format!(
                "certificate=\"{certificate}\",cluster=\"demo\",namespace=\"kafka\""
            )),
            "{certificate}: {metrics}"
        );
    }

    // A second reconcile changes nothing and asks no broker anything.
    let (again, calls) = c.reconcile().await;
    assert_eq!(writes(&calls), Vec::<String>::new());
    assert_eq!(again.status, outcome.status);
    assert_eq!(
        c.brokers.probes.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn a_forced_key_replacement_goes_through_every_phase() {
    let c = Certs::new("replicas: 3");
    c.reconcile().await;
    c.brokers_load();
    let old_ca = c.text("demo-cluster-ca", "ca.crt");
    let mut key = c.secret("demo-cluster-ca");
    key["metadata"]["annotations"][FORCE_RENEW_ANNOTATION] = json!("true");
    c.api.insert(&format!("{SECRETS}/demo-cluster-ca"), key);

    // Trust both: the old key still signs; brokers get leaves issued with
    // the two-CA bundle.
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome).0, "TrustingNewCa");
    assert!(
        writes(&calls).contains(&"PUT demo-cluster-ca".to_string()),
        "{calls:?}"
    );
    let key = c.secret("demo-cluster-ca");
    assert!(key["metadata"]["annotations"]
        .get(FORCE_RENEW_ANNOTATION)
        .is_none());
    assert!(key["data"].get("next.key").is_some());
    assert_eq!(c.bundle_len(), 2);
    assert_eq!(c.text("demo-cluster-ca", "ca.crt"), old_ca);
    let chain = c.text("demo-broker-certs", "broker-0.crt");
    assert!(crate::certs::inspect::signed_by(&chain, &old_ca));
    assert!(calls
        .iter()
        .any(|c| c.starts_with(&format!("POST {EVENTS}"))));

    // Until every broker presents its new leaf, nothing moves.
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome).0, "TrustingNewCa");
    assert_eq!(writes(&calls), Vec::<String>::new());
    assert_eq!(outcome.condition.status, "False");
    assert_eq!(outcome.condition.reason, "Renewing");

    // Switch.
    c.brokers_load();
    let (outcome, _) = c.reconcile().await;
    assert_eq!(phases(&outcome).0, "DroppingOldCa");
    let new_ca = c.text("demo-cluster-ca", "ca.crt");
    assert_ne!(new_ca, old_ca);
    assert_eq!(outcome.status.cluster_ca.as_ref().unwrap().generation, 1);
    assert_eq!(c.bundle_len(), 2, "the old CA is still trusted");
    for id in 0..3 {
        let chain = c.text("demo-broker-certs", &format!("broker-{id}.crt"));
        assert!(
            crate::certs::inspect::signed_by(&chain, &new_ca),
            "broker {id}"
        );
    }
    assert!(crate::certs::inspect::signed_by(
        &c.text("demo-operator-certs", "tls.crt"),
        &new_ca
    ));

    // Brokers still presenting the old leaves keep the old CA trusted.
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome).0, "DroppingOldCa");
    assert_eq!(writes(&calls), Vec::<String>::new());

    // Drop old.
    c.brokers_load();
    let (outcome, _) = c.reconcile().await;
    assert_eq!(phases(&outcome), ("Ready".into(), "Ready".into()));
    assert_eq!(c.bundle_len(), 1);
    assert_eq!(
        c.text("demo-cluster-ca-cert", "ca.crt").trim(),
        new_ca.trim()
    );
    c.brokers_load();
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(writes(&calls), Vec::<String>::new());
    assert_eq!(outcome.condition.reason, "Ready");
    // The clients CA was never touched.
    assert_eq!(outcome.status.clients_ca.unwrap().generation, 0);
}

fn ca_secret(name: &str, cert: &str, key: &str) -> Value {
    let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut data = json!({"ca.crt": enc(cert)});
    if !key.is_empty() {
        data["ca.key"] = json!(enc(key));
    }
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": "kafka"}, "data": data})
}

#[tokio::test]
async fn an_expired_ca_is_replaced_at_once_and_the_condition_says_so() {
    let c = Certs::new("replicas: 3");
    let long_ago = Timestamp::now().as_second() - 400 * DAY;
    let expired = new_ca("demo cluster CA v0", 365, long_ago).unwrap();
    for (name, key) in [
        ("demo-cluster-ca", expired.key_pem.as_str()),
        ("demo-cluster-ca-cert", ""),
    ] {
        c.api.insert(
            &format!("{SECRETS}/{name}"),
            ca_secret(name, &expired.cert_pem, key),
        );
    }
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome).0, "Ready");
    assert_ne!(c.text("demo-cluster-ca", "ca.crt"), expired.cert_pem);
    assert_eq!(c.bundle_len(), 1, "the expired CA is not trusted any more");
    assert_eq!(outcome.condition.status, "True");
    assert_eq!(outcome.condition.reason, "ExpiredCaReplaced");
    assert!(
        outcome.condition.message.contains("cluster CA"),
        "{}",
        outcome.condition.message
    );
    assert!(outcome
        .status
        .cluster_ca
        .as_ref()
        .unwrap()
        .expired_replaced_at
        .is_some());
    assert!(calls
        .iter()
        .any(|c| c.starts_with(&format!("POST {EVENTS}"))));
    let bundle = c.text("demo-cluster-ca-cert", "ca.crt");
    let chain = c.text("demo-broker-certs", "broker-1.crt");
    assert!(verifies(
        &chain,
        &bundle,
        "demo-broker-1.demo-brokers.kafka.svc"
    ));
}

#[tokio::test]
async fn a_ca_the_user_brings_signs_and_is_never_changed() {
    let spec = "replicas: 3\nclusterCa:\n  generateCertificateAuthority: false";
    let c = Certs::new(spec);
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome).0, "Missing");
    assert_eq!(outcome.condition.reason, "CaUnusable");
    assert!(!writes(&calls)
        .iter()
        .any(|w| w.contains("demo-cluster-ca") || w.contains("broker-certs")));

    let mine = new_ca("my corporate CA", 30, Timestamp::now().as_second()).unwrap();
    for (name, key) in [
        ("demo-cluster-ca", mine.key_pem.as_str()),
        ("demo-cluster-ca-cert", ""),
    ] {
        c.api.insert(
            &format!("{SECRETS}/{name}"),
            ca_secret(name, &mine.cert_pem, key),
        );
    }
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome), ("Ready".into(), "Ready".into()));
    let written = writes(&calls);
    assert!(
        !written
            .iter()
            .any(|w| w.ends_with("demo-cluster-ca") || w.ends_with("demo-cluster-ca-cert")),
        "{written:?}"
    );
    let chain = c.text("demo-broker-certs", "broker-2.crt");
    assert!(verifies(
        &chain,
        &mine.cert_pem,
        "demo-broker-2.demo-brokers.kafka.svc"
    ));
    // Within its renewal window it is reported, not replaced, and the
    // leaves that end with it are not issued over and over.
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome).0, "Ready");
    assert_eq!(writes(&calls), Vec::<String>::new());
}

/// A TLS user's Secret signed by the clients CA as stored now, as the
/// user controller writes it.
fn user_secret(c: &Certs) -> Value {
    use crate::{
        certs::{issue, Issued},
        controller::user::tls::{build_tls_secret, user_request},
    };
    let ca_pem = c.text("demo-clients-ca", "ca.crt");
    let ca = Issued {
        cert_pem: ca_pem.clone(),
        key_pem: c.text("demo-clients-ca", "ca.key"),
        not_before: 0,
        not_after: i64::MAX / 2,
    };
    let now = Timestamp::now().as_second();
    let leaf = issue(&ca, &user_request("alice", 30), now).unwrap();
    let user = serde_json::from_value(json!({
        "apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser",
        "metadata": {"name": "alice", "namespace": "kafka", "uid": "u-alice"},
        "spec": {"cluster": "demo", "authentication": {"type": "tls"}}}))
    .unwrap();
    let bundle = c.text("demo-cluster-ca-cert", "ca.crt");
    serde_json::to_value(build_tls_secret(&user, &leaf, &ca_pem, &bundle, "pw").unwrap()).unwrap()
}

#[tokio::test]
async fn a_clients_ca_replacement_waits_for_every_tls_user() {
    let c = Certs::new("replicas: 3");
    c.reconcile().await;
    c.api.insert(&format!("{SECRETS}/alice"), user_secret(&c));
    c.brokers_load();
    let mut key = c.secret("demo-clients-ca");
    key["metadata"]["annotations"][FORCE_RENEW_ANNOTATION] = json!("true");
    c.api.insert(&format!("{SECRETS}/demo-clients-ca"), key);

    // The brokers trust the new clients CA before any user gets it.
    let (outcome, _) = c.reconcile().await;
    assert_eq!(phases(&outcome), ("Ready".into(), "TrustingNewCa".into()));
    let clients_bundle = c.text("demo-broker-certs", "clients-ca.crt");
    assert_eq!(pem_certificates(&clients_bundle).unwrap().len(), 2);
    c.brokers_load();
    let (outcome, _) = c.reconcile().await;
    assert_eq!(phases(&outcome).1, "DroppingOldCa");

    // The user's certificate of the old key holds the old CA in place.
    c.brokers_load();
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome).1, "DroppingOldCa");
    assert!(!writes(&calls).contains(&"PATCH demo-clients-ca-cert".to_string()));
    let message = outcome.status.clients_ca.unwrap().message.unwrap();
    assert!(message.contains("issued again"), "{message}");

    // The user controller issues it again: the old CA goes.
    c.api.insert(&format!("{SECRETS}/alice"), user_secret(&c));
    let (outcome, _) = c.reconcile().await;
    assert_eq!(phases(&outcome), ("Ready".into(), "Ready".into()));
    let bundle = c.text("demo-clients-ca-cert", "ca.crt");
    assert_eq!(pem_certificates(&bundle).unwrap().len(), 1);
    assert_eq!(outcome.status.clients_ca.unwrap().generation, 1);
}

#[tokio::test]
async fn a_cluster_ca_switch_waits_until_tls_users_trust_the_new_ca() {
    let c = Certs::new("replicas: 3");
    c.reconcile().await;
    c.api.insert(&format!("{SECRETS}/alice"), user_secret(&c));
    c.brokers_load();
    let mut key = c.secret("demo-cluster-ca");
    key["metadata"]["annotations"][FORCE_RENEW_ANNOTATION] = json!("true");
    c.api.insert(&format!("{SECRETS}/demo-cluster-ca"), key);
    c.reconcile().await;
    c.brokers_load();
    // alice's application still trusts only the old CA.
    let (outcome, calls) = c.reconcile().await;
    assert_eq!(phases(&outcome).0, "TrustingNewCa");
    assert_eq!(writes(&calls), Vec::<String>::new());
    let message = outcome.status.cluster_ca.unwrap().message.unwrap();
    assert!(message.contains("TLS user"), "{message}");
    // The user controller copies the two-CA bundle into alice's Secret.
    c.api.insert(&format!("{SECRETS}/alice"), user_secret(&c));
    let (outcome, _) = c.reconcile().await;
    assert_eq!(phases(&outcome).0, "DroppingOldCa");
}
