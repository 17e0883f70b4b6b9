//! A KafkaUser against a real broker, driven by the operator's own code:
//! a SCRAM super user `rivulet-operator` is bootstrapped on the broker
//! (`--add-scram`; in Kubernetes the operator logs in with its client
//! certificate instead, which `operator_tls.rs` drives, and any admin
//! target works here), the operator's pure pipeline turns a KafkaUser
//! into a Secret and an ACL/quota plan, and its admin client applies them
//! over SCRAM. confluent-kafka then logs in with the Secret as-is and may
//! do what the ACLs allow and nothing else; drift is put back; removing
//! the user (the finalizer's work) revokes the login.
//!
//! Only the Kubernetes API is left out (the mock-API reconcile tests in
//! the operator cover it): the Secret is the object the controller would
//! apply, read back here instead of through the API server.

use std::{collections::BTreeMap, time::Duration};

use rivulet_operator::{
    controller::{
        kafka::WireAdmin,
        user::{
            admin::{AdminTarget, UserAdmin},
            plan::{validate_user, AclBinding},
            remove_with,
            secret::{
                build_user_secret, generate_password, jaas_config, secret_value, JAAS_KEY,
                PASSWORD_KEY,
            },
            sync_with,
        },
    },
    crd::KafkaUser,
};
use rivulet_tests::{last_json, require_py, run_py, unique_topic, BrokerProcess};
use rivulet_wire::client::{Client, ClientSecurity};
use serde_json::json;

const STANDARD: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

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
                 "operations": ["Read"]}]},
            "quotas": {"producerByteRate": 10_485_760}
        }
    }))
    .expect("a KafkaUser")
}

#[test]
fn kafka_user_secret_works_for_confluent_kafka_and_delete_revokes_it() {
    require_py!("confluent_kafka");
    // The administrator's credential, and the broker bootstrapped with it.
    let admin_password = generate_password();
    let add_scram = format!("SCRAM-SHA-512=[name=rivulet-operator,password={admin_password}]");
    let broker = BrokerProcess::builder()
        .listener("SASL", "SASL_PLAINTEXT")
        .config("sasl.enabled.mechanisms", "SCRAM-SHA-512")
        .config("authorizer.class.name", STANDARD)
        .config("super.users", "User:rivulet-operator")
        .config("group.initial.rebalance.delay.ms", "0")
        .arg("--add-scram")
        .arg(&add_scram)
        .start();
    let login = BTreeMap::from([
        (
            "security.protocol".to_string(),
            "SASL_PLAINTEXT".to_string(),
        ),
        ("sasl.mechanism".to_string(), "SCRAM-SHA-512".to_string()),
        (
            "sasl.jaas.config".to_string(),
            jaas_config("rivulet-operator", &admin_password),
        ),
    ]);
    let target = AdminTarget {
        bootstrap: broker.listener_bootstrap("SASL"),
        security: ClientSecurity::from_properties(&login).unwrap(),
    };
    let prefix = format!("{}-", unique_topic("ku"));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // The operator's admin login works once `--add-scram` is stored.
    let mut admin = rt.block_on(async {
        for _ in 0..60 {
            if let Ok(client) =
                Client::connect_secure(&target.bootstrap, "test", target.security.clone()).await
            {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the operator's admin credential never worked");
    });
    for topic in ["orders", "payments"] {
        rt.block_on(admin.create_topics(&format!("{prefix}{topic}"), 1, 1, BTreeMap::new()))
            .expect("create topic as the operator");
    }

    // What a reconcile does: validate, write the Secret, sync Kafka.
    let user = kafka_user(&prefix);
    let valid = validate_user(&user).expect("valid spec");
    let password = generate_password();
    let secret = build_user_secret(&user, &valid.username, &password);
    let changes = rt
        .block_on(sync_with(&WireAdmin, &target, &valid, Some(&password)))
        .expect("sync the user");
    assert_eq!(changes, ["created 4 ACLs", "set quotas"], "{changes:?}");
    let again = rt
        .block_on(sync_with(&WireAdmin, &target, &valid, Some(&password)))
        .expect("sync again");
    assert!(again.is_empty(), "a second sync changes nothing: {again:?}");

    let options = json!({
        "bootstrap": target.bootstrap,
        "prefix": prefix,
        "username": valid.username,
        "secret": {
            "password": secret_value(&secret, PASSWORD_KEY).unwrap(),
            "sasl.jaas.config": secret_value(&secret, JAAS_KEY).unwrap(),
        },
    })
    .to_string();
    let out = last_json(&run_py("kafka_user_clients.py", &["allowed", &options]));
    eprintln!("the application: {out}");
    assert_eq!(out["other_group"], "GROUP_AUTHORIZATION_FAILED", "{out}");

    // Drift: an extra ACL for the principal, a lost one, a quota raised.
    let extra = AclBinding {
        resource_type: 2,
        resource_name: "*".into(),
        pattern_type: 3,
        principal: "User:app".into(),
        host: "*".into(),
        operation: 2,
        permission: 3,
    };
    let lost = valid.acls.iter().next().unwrap().clone();
    rt.block_on(async {
        WireAdmin
            .create_acls(&target, vec![extra.clone()])
            .await
            .unwrap();
        WireAdmin.delete_acls(&target, vec![lost]).await.unwrap();
        let raised = BTreeMap::from([("producer_byte_rate".to_string(), 1e12)]);
        WireAdmin
            .alter_user_quotas(&target, "app", raised, vec![])
            .await
            .unwrap();
    });
    let changes = rt
        .block_on(sync_with(&WireAdmin, &target, &valid, Some(&password)))
        .expect("sync puts drift back");
    assert_eq!(
        changes,
        ["deleted 1 ACLs", "created 1 ACLs", "set quotas"],
        "{changes:?}"
    );
    let (acls, quotas) = rt.block_on(async {
        (
            WireAdmin.acls_of(&target, "User:app").await.unwrap(),
            WireAdmin.user_quotas(&target, "app").await.unwrap(),
        )
    });
    assert_eq!(acls, valid.acls);
    assert_eq!(quotas, valid.quotas);

    // The KafkaUser is deleted: the finalizer's removal revokes the login.
    rt.block_on(remove_with(&WireAdmin, &target, "app"))
        .expect("remove the user");
    let (acls, mechanisms, quotas) = rt.block_on(async {
        (
            WireAdmin.acls_of(&target, "User:app").await.unwrap(),
            WireAdmin.scram_mechanisms(&target, "app").await.unwrap(),
            WireAdmin.user_quotas(&target, "app").await.unwrap(),
        )
    });
    assert!(acls.is_empty() && mechanisms.is_empty() && quotas.is_empty());
    run_py("kafka_user_clients.py", &["revoked", &options]);
}
