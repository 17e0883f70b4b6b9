//! A secured cluster's reconcile: the NetworkPolicy is applied (and
//! deleted when turned off), the brokers mount their certificates and
//! serve the `REPLICATION` listener, and every question to Kafka goes
//! there with the operator's client certificate.

use serde_json::{json, Value};

use super::{Harness, CM, NETPOL, STS};
use crate::fixtures::operator_certs_secret;

const OPERATOR_CERTS: &str = "/api/v1/namespaces/kafka/secrets/demo-operator-certs";

const SECURED: &str = "replicas: 3
listeners:
  internal:
    tls: true
    authentication:
      type: scram-sha-512
    networkPolicyPeers:
      - podSelector:
          matchLabels:
            app: orders
authorization:
  type: simple
  superUsers: [admin]";

fn pod_spec(h: &Harness) -> Value {
    h.api.object(STS).unwrap()["spec"]["template"]["spec"].clone()
}

#[tokio::test]
async fn a_secured_cluster_gets_its_policy_mounts_and_mutual_tls_admin() {
    let h = Harness::new(SECURED);
    h.api.insert(
        OPERATOR_CERTS,
        serde_json::to_value(operator_certs_secret("demo")).unwrap(),
    );
    let calls = h.reconcile().await;
    assert!(
        calls.contains(&format!("GET {OPERATOR_CERTS}")),
        "{calls:#?}"
    );
    let policy = h.api.object(NETPOL).expect("the NetworkPolicy is applied");
    let ports: Vec<i64> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ports"][0]["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [9092, 9091, 9093, 9404]);
    assert_eq!(
        policy["spec"]["ingress"][0]["from"],
        json!([{"podSelector": {"matchLabels": {"app": "orders"}}}])
    );

    let spec = pod_spec(&h);
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "broker-certs")
        .cloned()
        .expect("the certificates volume");
    assert_eq!(volume["secret"]["secretName"], "demo-broker-certs");
    let container = &spec["containers"][0];
    assert!(container["volumeMounts"].as_array().unwrap().contains(
        &json!({"name": "broker-certs", "mountPath": "/etc/rivulet/certs", "readOnly": true})
    ));
    assert!(container["ports"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "replication", "containerPort": 9091, "protocol": "TCP"})));
    let broker_1 = h.api.object(CM).unwrap()["data"]["broker-1.properties"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        broker_1.contains("\nssl.keystore.location=/etc/rivulet/certs/broker-1.pem\n"),
        "{broker_1}"
    );

    // Running: every Kafka question goes to REPLICATION over mutual TLS.
    h.run_pods(3, "r1");
    h.healthy_kafka();
    h.reconcile().await;
    let targets = h.kafka.targets.lock().unwrap().clone();
    assert!(!targets.is_empty());
    for (address, mutual_tls) in &targets {
        assert!(address.ends_with(":9091"), "{address}");
        assert!(mutual_tls, "{address} without the operator's certificate");
    }
    assert!(targets.contains(&("demo-bootstrap.kafka.svc.cluster.local:9091".into(), true)));
    assert_eq!(
        h.condition("Ready"),
        ("True".into(), "AllBrokersReady".into())
    );
}

#[tokio::test]
async fn the_operator_issues_its_own_certificate_and_administers_over_mutual_tls() {
    let h = Harness::new(SECURED);
    h.reconcile().await;
    h.run_pods(3, "r1");
    h.healthy_kafka();
    h.reconcile().await;
    // The certificates step issued the operator's certificate before any
    // Kafka call: every one of them went out with it.
    let targets = h.kafka.targets.lock().unwrap().clone();
    assert!(!targets.is_empty());
    assert!(
        targets.iter().all(|(_, mutual_tls)| *mutual_tls),
        "{targets:?}"
    );
}

#[tokio::test]
async fn turning_network_policies_off_deletes_the_policy() {
    let h = Harness::ready_cluster().await;
    assert!(h.api.object(NETPOL).is_some(), "on by default");
    h.edit_spec(|spec| spec["networkPolicies"] = json!({"enabled": false}));
    let calls = h.reconcile().await;
    assert!(calls.contains(&format!("DELETE {NETPOL}")), "{calls:#?}");
    assert!(h.api.object(NETPOL).is_none());
    // A plain cluster: no certificates, no replication listener.
    let spec = pod_spec(&h);
    assert!(!spec["volumes"].to_string().contains("broker-certs"));
    assert!(!spec["containers"][0]["ports"].to_string().contains("9091"));
}

#[tokio::test]
async fn nonsense_security_is_a_condition_not_a_broker_that_cannot_start() {
    let h =
        Harness::new("replicas: 3\nlisteners:\n  internal:\n    authentication:\n      type: tls");
    let calls = h.reconcile().await;
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("PATCH") && !c.ends_with("/status")),
        "nothing is applied: {calls:#?}"
    );
    assert_eq!(
        h.condition("Degraded"),
        ("True".into(), "InvalidSpec".into())
    );
    assert!(
        h.message("Degraded")
            .contains("authentication type tls needs tls: true"),
        "{}",
        h.message("Degraded")
    );
}
