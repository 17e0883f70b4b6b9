//! The TLS user's Secret: Strimzi's keys, a keystore its password opens,
//! and when the certificate is issued again.

use p12_keystore::KeyStore;

use super::*;
use crate::certs::{inspect::inspect, new_ca, DAY};

const NOW: i64 = 1_800_000_000;

fn user() -> KafkaUser {
    serde_saphyr::from_str(
        "apiVersion: rivulet.dev/v1alpha1
kind: KafkaUser
metadata:
  name: alice
  namespace: kafka
  uid: 0e5a6d1c-0000-4000-8000-0000000a11ce
spec:
  cluster: demo
  authentication:
    type: tls",
    )
    .unwrap()
}

fn secret_for(clients: &Issued, bundle: &str) -> Secret {
    let leaf = issue(clients, &user_request("alice", 30), NOW).unwrap();
    build_tls_secret(&user(), &leaf, &clients.cert_pem, bundle, "pw").unwrap()
}

#[test]
fn the_secret_has_strimzis_keys_and_a_keystore_its_password_opens() {
    let clients = new_ca("demo clients CA v0", 365, NOW).unwrap();
    let cluster = new_ca("demo cluster CA v0", 365, NOW).unwrap();
    let secret = secret_for(&clients, &cluster.cert_pem);
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "ca.crt",
            "user.crt",
            "user.key",
            "user.p12",
            "user.password"
        ]
    );
    assert_eq!(secret.metadata.name.as_deref(), Some("alice"));
    let labels = secret.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["rivulet.dev/cluster"], "demo");
    assert_eq!(labels["rivulet.dev/kind"], "KafkaUser");
    assert_eq!(
        secret.metadata.owner_references.as_ref().unwrap()[0].name,
        "alice"
    );
    let info = inspect(&text(&secret, USER_CRT).unwrap()).unwrap();
    assert!(info.subject.contains("CN=alice"), "{}", info.subject);
    assert_eq!(info.issuer, inspect(&clients.cert_pem).unwrap().subject);
    assert_eq!(
        text(&secret, CA_CRT).unwrap(),
        cluster.cert_pem,
        "trusts the brokers' CA"
    );
    let p12 = &secret.data.as_ref().unwrap()[USER_P12].0;
    let store = KeyStore::from_pkcs12(p12, &text(&secret, USER_PASSWORD).unwrap()).unwrap();
    let (alias, chain) = store.private_key_chain().unwrap();
    assert_eq!(alias, "alice");
    assert_eq!(
        chain.chain().len(),
        2,
        "the user's certificate then the clients CA"
    );
}

#[test]
fn a_certificate_is_kept_re_trusted_or_issued_again() {
    let clients = new_ca("demo clients CA v0", 365, NOW).unwrap();
    let cluster = new_ca("demo cluster CA v0", 365, NOW).unwrap();
    let secret = secret_for(&clients, &cluster.cert_pem);
    let plan =
        |s: Option<&Secret>, ca: &str, bundle: &str, now: i64| plan_tls(s, ca, bundle, 7, now);
    assert_eq!(
        plan(None, &clients.cert_pem, &cluster.cert_pem, NOW),
        TlsPlan::Issue("missing")
    );
    assert_eq!(
        plan(Some(&secret), &clients.cert_pem, &cluster.cert_pem, NOW),
        TlsPlan::Keep
    );
    // The cluster CA bundle grew (a key replacement): only ca.crt changes.
    let both = format!(
        "{}{}",
        cluster.cert_pem,
        new_ca("next", 365, NOW).unwrap().cert_pem
    );
    assert_eq!(
        plan(Some(&secret), &clients.cert_pem, &both, NOW),
        TlsPlan::Trust
    );
    // The clients CA switched keys.
    let new_clients = new_ca("demo clients CA v1", 365, NOW).unwrap();
    assert_eq!(
        plan(Some(&secret), &new_clients.cert_pem, &cluster.cert_pem, NOW),
        TlsPlan::Issue("signed by another CA key")
    );
    assert_eq!(
        plan(
            Some(&secret),
            &clients.cert_pem,
            &cluster.cert_pem,
            NOW + 24 * DAY
        ),
        TlsPlan::Issue("near its end of validity")
    );
    let mut partial = secret.clone();
    partial.data.as_mut().unwrap().remove(USER_P12);
    assert_eq!(
        plan(Some(&partial), &clients.cert_pem, &cluster.cert_pem, NOW),
        TlsPlan::Issue("a key of its Secret is missing")
    );
}
