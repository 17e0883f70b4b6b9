//! The pure planning of the KafkaUser controller: spec -> ACLs and quotas,
//! and drift planned back.

use std::collections::{BTreeMap, BTreeSet};

use rivulet_wire::scram::ScramMechanism;

use super::*;

fn user(spec: &str) -> KafkaUser {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    serde_saphyr::from_str(&format!(
        "apiVersion: rivulet.dev/v1alpha1
kind: KafkaUser
metadata:
  name: alice
  namespace: kafka
spec:
{indented}"
    ))
    .expect("test spec is a KafkaUser")
}

const APP: &str = "cluster: demo
authentication:
  type: scram-sha-512
authorization:
  type: simple
  acls:
    - resource: {type: topic, name: orders}
      operations: [Read, Describe]
    - resource: {type: topic, name: orders-, patternType: prefix}
      operations: [Write]
      host: 10.0.0.1
    - resource: {type: group, name: app}
      operations: [Read]
    - type: deny
      resource: {type: cluster}
      operations: [Alter]
quotas:
  producerByteRate: 1048576
  requestPercentage: 50";

fn acl(resource_type: i8, name: &str, pattern: i8, host: &str, op: i8, perm: i8) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type: pattern,
        principal: "User:alice".into(),
        host: host.into(),
        operation: op,
        permission: perm,
    }
}

#[test]
fn spec_becomes_kafka_acls_and_quotas() {
    let v = validate_user(&user(APP)).unwrap();
    assert_eq!(v.username, "alice");
    assert_eq!(v.principal(), "User:alice");
    assert_eq!(v.mechanism, Some(ScramMechanism::Sha512));
    assert_eq!(v.password_ref, None);
    let expected: BTreeSet<AclBinding> = [
        acl(2, "orders", 3, "*", 3, 3),
        acl(2, "orders", 3, "*", 8, 3),
        acl(2, "orders-", 4, "10.0.0.1", 4, 3),
        acl(3, "app", 3, "*", 3, 3),
        acl(4, "kafka-cluster", 3, "*", 7, 2),
    ]
    .into();
    assert_eq!(v.acls, expected);
    assert_eq!(
        v.quotas,
        BTreeMap::from([
            ("producer_byte_rate".to_string(), 1_048_576.0),
            ("request_percentage".to_string(), 50.0)
        ])
    );
}

#[test]
fn tls_is_a_certificate_user_and_controller_mutation_rate_is_refused() {
    let tls = validate_user(&user("cluster: demo\nauthentication:\n  type: tls")).unwrap();
    assert!(tls.tls);
    assert_eq!((tls.mechanism, tls.password_ref), (None, None));
    let with_password = validate_user(&user(
        "cluster: demo\nauthentication:\n  type: tls\n  password:\n    valueFrom:\n      secretKeyRef: {name: s, key: k}",
    ))
    .unwrap_err();
    assert_eq!(with_password.reason, INVALID_SPEC);
    assert!(
        with_password.message.contains("SCRAM"),
        "{}",
        with_password.message
    );
    let rate = validate_user(&user(
        "cluster: demo\nquotas:\n  controllerMutationRate: 10",
    ))
    .unwrap_err();
    assert_eq!(rate.reason, INVALID_SPEC);
    assert!(rate.message.contains("controllerMutationRate"));
    let unnamed = validate_user(&user(
        "cluster: demo\nauthorization:\n  type: simple\n  acls:\n    - resource: {type: topic}\n      operations: [Read]",
    ))
    .unwrap_err();
    assert!(unnamed.message.contains("acls[0]"), "{}", unnamed.message);
}

#[test]
fn given_password_and_sha256_are_taken() {
    let v = validate_user(&user(
        "cluster: demo
authentication:
  type: scram-sha-256
  password:
    valueFrom:
      secretKeyRef: {name: app-pw, key: pw}",
    ))
    .unwrap();
    assert_eq!(v.mechanism, Some(ScramMechanism::Sha256));
    let r = v.password_ref.unwrap();
    assert_eq!((r.name.as_str(), r.key.as_str()), ("app-pw", "pw"));
}

#[test]
fn acl_drift_is_planned_back_and_extras_removed() {
    let v = validate_user(&user(APP)).unwrap();
    assert!(plan_acls(&v.acls, &v.acls).is_empty(), "in sync: nothing");
    // Someone deleted one ACL and added a broader one for the principal.
    let mut current = v.acls.clone();
    let lost = acl(3, "app", 3, "*", 3, 3);
    current.remove(&lost);
    let extra = acl(2, "*", 3, "*", 2, 3);
    current.insert(extra.clone());
    let plan = plan_acls(&v.acls, &current);
    assert_eq!(plan.create, [lost]);
    assert_eq!(plan.delete, [extra]);
    // Authorization removed from the spec: every ACL goes.
    let bare = validate_user(&user("cluster: demo")).unwrap();
    assert_eq!(plan_acls(&bare.acls, &v.acls).delete.len(), 5);
}

#[test]
fn quota_drift_is_planned_back() {
    let v = validate_user(&user(APP)).unwrap();
    assert!(plan_quotas(&v.quotas, &v.quotas).is_empty());
    let current = BTreeMap::from([
        ("producer_byte_rate".to_string(), 999.0),
        ("request_percentage".to_string(), 50.0),
        ("consumer_byte_rate".to_string(), 10.0),
    ]);
    let plan = plan_quotas(&v.quotas, &current);
    assert_eq!(
        plan.set,
        BTreeMap::from([("producer_byte_rate".to_string(), 1_048_576.0)])
    );
    assert_eq!(plan.remove, ["consumer_byte_rate"]);
}

#[test]
fn credentials_are_set_every_time_and_other_mechanisms_removed() {
    let plan = plan_credentials(
        Some(ScramMechanism::Sha512),
        &[ScramMechanism::Sha256, ScramMechanism::Sha512],
    );
    assert_eq!(plan.set, Some(ScramMechanism::Sha512));
    assert_eq!(plan.delete, [ScramMechanism::Sha256]);
    let gone = plan_credentials(None, &[ScramMechanism::Sha512]);
    assert_eq!(
        (gone.set, gone.delete),
        (None, vec![ScramMechanism::Sha512])
    );
}
