//! KafkaUser reconciles against the fake API server and a fake cluster's
//! users: create, drift put back, update, delete, and refused specs.

use std::{collections::BTreeMap, sync::Arc};

use base64::Engine;
use serde_json::{json, Value};

use super::{CR, EVENTS};
use crate::{
    controller::{user, Context},
    crd::KafkaUser,
    fixtures::{cluster_from_yaml, operator_certs_secret, FakeApi, FakeKafka, FakeUsers},
    metrics::Metrics,
};

const USER: &str = "/apis/rivulet.dev/v1alpha1/namespaces/kafka/kafkausers/alice";
const SECRET: &str = "/api/v1/namespaces/kafka/secrets/alice";
const OPERATOR_CERTS: &str = "/api/v1/namespaces/kafka/secrets/demo-operator-certs";

const SPEC: &str = r#"{"cluster": "demo",
  "authentication": {"type": "scram-sha-512"},
  "authorization": {"type": "simple", "acls": [
    {"resource": {"type": "topic", "name": "orders"}, "operations": ["Read", "Write"]},
    {"resource": {"type": "group", "name": "app-", "patternType": "prefix"}, "operations": ["Read"]}]},
  "quotas": {"producerByteRate": 1048576}}"#;

struct Users {
    api: FakeApi,
    users: Arc<FakeUsers>,
    ctx: Arc<Context>,
}

impl Users {
    fn new(spec: &str) -> Users {
        Users::on_cluster("replicas: 3", spec)
    }

    /// A user of a cluster with spec `cluster`.
    fn on_cluster(cluster: &str, spec: &str) -> Users {
        let (client, api) = FakeApi::start();
        let users = Arc::new(FakeUsers::default());
        let mut ctx = Context::new(
            client,
            Arc::new(FakeKafka::default()),
            Arc::new(Metrics::new()),
        );
        ctx.users = users.clone();
        api.insert(
            CR,
            serde_json::to_value(cluster_from_yaml(cluster)).unwrap(),
        );
        let spec: Value = serde_json::from_str(spec).unwrap();
        api.insert(
            USER,
            json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "KafkaUser",
                   "metadata": {"name": "alice", "namespace": "kafka", "uid": "user-uid", "generation": 1},
                   "spec": spec}),
        );
        Users {
            api,
            users,
            ctx: Arc::new(ctx),
        }
    }

    /// Reconciles the KafkaUser as stored; returns the API calls.
    async fn reconcile(&self) -> Vec<String> {
        let stored: KafkaUser = serde_json::from_value(self.api.object(USER).unwrap()).unwrap();
        user::reconcile(Arc::new(stored), self.ctx.clone())
            .await
            .expect("kafkauser reconcile");
        self.api.take_calls().iter().map(|c| c.line()).collect()
    }

    /// Created: finalizer added, then reconciled once.
    async fn created(spec: &str) -> Users {
        let u = Users::new(spec);
        u.reconcile().await;
        u.reconcile().await;
        u
    }

    fn status(&self) -> Value {
        self.api.object(USER).unwrap()["status"].clone()
    }

    fn ready(&self) -> (String, String) {
        let c = &self.status()["conditions"][0];
        assert_eq!(c["type"], "Ready");
        (
            c["status"].as_str().unwrap().into(),
            c["reason"].as_str().unwrap().into(),
        )
    }

    fn secret_value(&self, path: &str, key: &str) -> String {
        let encoded = self.api.object(path).unwrap()["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {path}"))
            .to_string();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap(),
        )
        .unwrap()
    }

    fn kafka_password(&self) -> Option<String> {
        self.users
            .scram
            .lock()
            .unwrap()
            .get("alice")
            .and_then(|m| m.get("SCRAM-SHA-512").cloned())
    }

    fn edit_spec(&self, edit: impl FnOnce(&mut Value)) {
        let mut cr = self.api.object(USER).unwrap();
        edit(&mut cr["spec"]);
        cr["metadata"]["generation"] = json!(2);
        self.api.insert(USER, cr);
    }
}

#[tokio::test]
async fn create_writes_the_secret_and_applies_credential_acls_and_quotas() {
    let u = Users::new(SPEC);
    u.reconcile().await;
    assert_eq!(
        u.api.object(USER).unwrap()["metadata"]["finalizers"][0],
        "rivulet.dev/kafkauser"
    );
    let calls = u.reconcile().await;
    assert!(
        !calls.iter().any(|c| c.contains("demo-operator")),
        "the operator needs no Secret of its own on a plain cluster: {calls:#?}"
    );
    assert!(calls.contains(&format!("PATCH {SECRET}")), "{calls:#?}");
    assert_eq!(
        u.users.take_calls(),
        [
            "set_scram alice SCRAM-SHA-512",
            "create_acls 3",
            "alter_quotas alice set [\"producer_byte_rate\"] remove []"
        ]
    );
    // Strimzi's keys: the password and a JAAS line that carries it.
    let password = u.secret_value(SECRET, "password");
    assert_eq!(password.len(), 32);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        u.secret_value(SECRET, "sasl.jaas.config"),
        format!("org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"{password}\";")
    );
    assert_eq!(u.kafka_password(), Some(password.clone()));
    let owner = &u.api.object(SECRET).unwrap()["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("KafkaUser"), Some("alice"))
    );
    // A cluster without security is administered in plaintext.
    assert_eq!(
        *u.users.last_target.lock().unwrap(),
        Some(("demo-bootstrap.kafka.svc.cluster.local:9092".into(), false))
    );
    assert_eq!(u.ready(), ("True".into(), "Synced".into()));
    assert_eq!(u.status()["username"], "alice");
    assert_eq!(u.status()["secret"], "alice");

    // Again: the same password, the credential set again, nothing else.
    let calls = u.reconcile().await;
    assert_eq!(u.users.take_calls(), ["set_scram alice SCRAM-SHA-512"]);
    assert_eq!(u.secret_value(SECRET, "password"), password);
    assert!(
        !calls
            .iter()
            .any(|c| c.ends_with("/status") || c.starts_with("POST")),
        "{calls:#?}"
    );
}

#[tokio::test]
async fn drift_behind_the_operators_back_is_put_back() {
    let u = Users::created(SPEC).await;
    let password = u.secret_value(SECRET, "password");
    u.users.take_calls();
    // An admin changes the password, adds a SHA-256 credential, deletes
    // an ACL, adds one for the principal, and raises the quota.
    let mut acls = u.users.acls.lock().unwrap().clone();
    let lost = acls.iter().next().unwrap().clone();
    acls.remove(&lost);
    let mut extra = lost.clone();
    extra.resource_name = "*".into();
    acls.insert(extra.clone());
    *u.users.acls.lock().unwrap() = acls;
    u.users.scram.lock().unwrap().insert(
        "alice".into(),
        BTreeMap::from([
            ("SCRAM-SHA-512", "hijacked".into()),
            ("SCRAM-SHA-256", "x".into()),
        ]),
    );
    u.users.quotas.lock().unwrap().insert(
        "alice".into(),
        BTreeMap::from([("producer_byte_rate".into(), 1e12)]),
    );

    let calls = u.reconcile().await;
    assert_eq!(u.kafka_password(), Some(password));
    assert_eq!(
        u.users.scram.lock().unwrap()["alice"]
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        ["SCRAM-SHA-512"]
    );
    let acls = u.users.acls.lock().unwrap().clone();
    assert!(acls.contains(&lost) && !acls.contains(&extra), "{acls:#?}");
    assert_eq!(acls.len(), 3);
    assert_eq!(
        u.users.quotas.lock().unwrap()["alice"]["producer_byte_rate"],
        1_048_576.0
    );
    // An Event says what changed (a series with the creation's: a PATCH).
    assert!(calls.iter().any(|c| c.contains(EVENTS)), "{calls:#?}");
    assert_eq!(u.ready(), ("True".into(), "Synced".into()));
}

#[tokio::test]
async fn spec_changes_add_and_remove_acls_and_quotas() {
    let u = Users::created(SPEC).await;
    u.users.take_calls();
    u.edit_spec(|spec| {
        spec["authorization"]["acls"] = json!([
            {"resource": {"type": "topic", "name": "orders"}, "operations": ["Read"]},
            {"type": "deny", "resource": {"type": "cluster"}, "operations": ["Alter"]}]);
        spec.as_object_mut().unwrap().remove("quotas");
    });
    u.reconcile().await;
    assert_eq!(
        u.users.take_calls(),
        [
            "set_scram alice SCRAM-SHA-512",
            "delete_acls 2",
            "create_acls 1",
            "alter_quotas alice set [] remove [\"producer_byte_rate\"]"
        ]
    );
    assert_eq!(u.users.acls.lock().unwrap().len(), 2);
    assert!(u.users.quotas.lock().unwrap().is_empty());
    assert_eq!(u.status()["observedGeneration"], 2);
}

#[tokio::test]
async fn delete_revokes_everything_and_releases_the_finalizer() {
    let u = Users::created(SPEC).await;
    u.users.take_calls();
    let mut cr = u.api.object(USER).unwrap();
    cr["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    u.api.insert(USER, cr);
    u.reconcile().await;
    assert_eq!(
        u.users.take_calls(),
        [
            "delete_scram alice SCRAM-SHA-512",
            "delete_acls 3",
            "alter_quotas alice set [] remove [\"producer_byte_rate\"]"
        ]
    );
    assert!(u.users.scram.lock().unwrap().is_empty());
    assert!(u.users.acls.lock().unwrap().is_empty());
    assert!(u.api.object(USER).unwrap()["metadata"]["finalizers"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn tls_and_controller_mutation_rate_are_reported_not_applied() {
    for (spec, reason, words) in [
        (
            r#"{"cluster": "demo", "authentication": {"type": "tls"}}"#,
            "ClientsCaMissing",
            "clients CA",
        ),
        (
            r#"{"cluster": "demo", "quotas": {"controllerMutationRate": 5}}"#,
            "InvalidSpec",
            "controllerMutationRate",
        ),
    ] {
        let u = Users::created(spec).await;
        assert_eq!(u.ready(), ("False".into(), reason.into()));
        let message = u.status()["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(words), "{message}");
        assert!(u.users.take_calls().is_empty());
        assert!(u.api.object(SECRET).is_none());
    }
}

#[tokio::test]
async fn a_given_password_is_used_once_its_secret_exists() {
    let u = Users::created(
        r#"{"cluster": "demo", "authentication": {"type": "scram-sha-256",
            "password": {"valueFrom": {"secretKeyRef": {"name": "alice-pw", "key": "pw"}}}}}"#,
    )
    .await;
    assert_eq!(u.ready(), ("False".into(), "PasswordSecretNotFound".into()));
    assert!(u.users.take_calls().is_empty());
    u.api.insert(
        "/api/v1/namespaces/kafka/secrets/alice-pw",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "alice-pw", "namespace": "kafka"},
               "data": {"pw": base64::engine::general_purpose::STANDARD.encode("my-own-password")}}),
    );
    u.reconcile().await;
    assert_eq!(u.ready(), ("True".into(), "Synced".into()));
    assert_eq!(u.secret_value(SECRET, "password"), "my-own-password");
    assert_eq!(
        u.users.scram.lock().unwrap()["alice"]["SCRAM-SHA-256"],
        "my-own-password"
    );
}

#[tokio::test]
async fn a_user_of_a_missing_cluster_waits() {
    let u = Users::new(r#"{"cluster": "elsewhere", "authentication": {"type": "scram-sha-512"}}"#);
    u.reconcile().await;
    u.reconcile().await;
    assert_eq!(u.ready(), ("False".into(), "ClusterNotFound".into()));
    assert!(u.users.take_calls().is_empty());
}

#[tokio::test]
async fn a_secured_cluster_is_administered_over_mutual_tls_once_the_certificate_exists() {
    let secured = "replicas: 3\nlisteners:\n  internal:\n    tls: true\n    authentication:\n      type: scram-sha-512\nauthorization:\n  type: simple";
    let u = Users::on_cluster(secured, SPEC);
    u.reconcile().await;
    u.reconcile().await;
    // No certificate yet: nothing is sent to Kafka, and the user says why.
    assert_eq!(u.users.take_calls(), Vec::<String>::new());
    assert_eq!(u.ready(), ("False".into(), "AdminUnavailable".into()));
    let message = u.status()["conditions"][0]["message"].clone();
    assert!(
        message.as_str().unwrap().contains("demo-operator-certs"),
        "{message}"
    );
    u.api.insert(
        OPERATOR_CERTS,
        serde_json::to_value(operator_certs_secret("demo")).unwrap(),
    );
    u.reconcile().await;
    assert_eq!(u.ready(), ("True".into(), "Synced".into()));
    assert_eq!(
        *u.users.last_target.lock().unwrap(),
        Some(("demo-bootstrap.kafka.svc.cluster.local:9091".into(), true)),
        "the REPLICATION listener, with the operator's client certificate"
    );
}

const TLS_SPEC: &str = r#"{"cluster": "demo", "authentication": {"type": "tls"},
  "authorization": {"type": "simple", "acls": [
    {"resource": {"type": "topic", "name": "orders"}, "operations": ["Read", "Write"]}]}}"#;

impl Users {
    /// The cluster's CAs, as the cluster's certificates step makes them.
    async fn with_cas(self) -> Users {
        let cluster = cluster_from_yaml("replicas: 3");
        crate::controller::certs::reconcile_certificates(
            &self.ctx,
            &cluster,
            &crate::fixtures::validated("replicas: 3"),
            &BTreeMap::new(),
        )
        .await
        .expect("certificates step");
        self.api.take_calls();
        self
    }

    fn secret_keys(&self) -> Vec<String> {
        let secret = self.api.object(SECRET).unwrap();
        secret["data"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }
}

#[tokio::test]
async fn a_tls_user_gets_a_certificate_that_follows_its_cas_and_goes_with_it() {
    use crate::certs::inspect::{inspect, signed_by};
    const CLIENTS_CA: &str = "/api/v1/namespaces/kafka/secrets/demo-clients-ca";
    const CLUSTER_CA_CERT: &str = "/api/v1/namespaces/kafka/secrets/demo-cluster-ca-cert";
    let u = Users::new(TLS_SPEC).with_cas().await;
    u.reconcile().await;
    let calls = u.reconcile().await;
    assert!(calls.contains(&format!("PATCH {SECRET}")), "{calls:#?}");
    assert_eq!(u.ready(), ("True".into(), "Synced".into()));
    assert_eq!(u.status()["secret"], "alice");
    assert_eq!(
        u.secret_keys(),
        [
            "ca.crt",
            "user.crt",
            "user.key",
            "user.p12",
            "user.password"
        ]
    );
    let cert = u.secret_value(SECRET, "user.crt");
    let clients_ca = u.secret_value(CLIENTS_CA, "ca.crt");
    assert!(inspect(&cert).unwrap().subject.contains("CN=alice"));
    assert!(signed_by(&cert, &clients_ca));
    assert_eq!(
        u.secret_value(SECRET, "ca.crt"),
        u.secret_value(CLUSTER_CA_CERT, "ca.crt")
    );
    // ACLs for the certificate's principal; no SCRAM credential.
    assert_eq!(u.users.take_calls(), ["create_acls 2"]);
    assert!(u.users.scram.lock().unwrap().is_empty());
    let owner = &u.api.object(SECRET).unwrap()["metadata"]["ownerReferences"][0];
    assert_eq!(owner["name"], "alice");

    // Again: the certificate is kept.
    let calls = u.reconcile().await;
    assert!(!calls.contains(&format!("PATCH {SECRET}")), "{calls:#?}");

    // The clients CA switches keys: a new certificate, the same password.
    let password = u.secret_value(SECRET, "user.password");
    let new_ca = crate::certs::new_ca(
        "demo clients CA v1",
        365,
        k8s_openapi::jiff::Timestamp::now().as_second(),
    )
    .unwrap();
    let mut secret = u.api.object(CLIENTS_CA).unwrap();
    let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    secret["data"]["ca.crt"] = json!(enc(&new_ca.cert_pem));
    secret["data"]["ca.key"] = json!(enc(&new_ca.key_pem));
    u.api.insert(CLIENTS_CA, secret);
    u.reconcile().await;
    let renewed = u.secret_value(SECRET, "user.crt");
    assert_ne!(renewed, cert);
    assert!(signed_by(&renewed, &new_ca.cert_pem));
    assert_eq!(u.secret_value(SECRET, "user.password"), password);

    // The cluster CA bundle changes: only ca.crt follows.
    let mut bundle = u.api.object(CLUSTER_CA_CERT).unwrap();
    let both = format!(
        "{}{}",
        u.secret_value(CLUSTER_CA_CERT, "ca.crt"),
        new_ca.cert_pem
    );
    bundle["data"]["ca.crt"] = json!(enc(&both));
    u.api.insert(CLUSTER_CA_CERT, bundle);
    u.reconcile().await;
    assert_eq!(u.secret_value(SECRET, "ca.crt"), both);
    assert_eq!(u.secret_value(SECRET, "user.crt"), renewed);

    // Deleted: its ACLs go; the Secret goes with its owner.
    u.users.take_calls();
    let mut cr = u.api.object(USER).unwrap();
    cr["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    u.api.insert(USER, cr);
    u.reconcile().await;
    assert_eq!(u.users.take_calls(), ["delete_acls 2"]);
    assert!(u.api.object(USER).unwrap()["metadata"]["finalizers"]
        .as_array()
        .unwrap()
        .is_empty());
}
