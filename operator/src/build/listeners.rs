//! The listener part of the broker config: Kafka's listener model with
//! Kafka's config names, from the validated security.
//!
//! Without security: `INTERNAL` (and `EXTERNAL`) and `CONTROLLER`, all
//! PLAINTEXT, `INTERNAL` the inter-broker listener, as before security
//! existed. With security ([`ClusterSecurity::enabled`]) the brokers also
//! serve `REPLICATION` (mutual TLS, the cluster CA): the inter-broker
//! listener and the one the operator administers through; the controller
//! quorum runs mutual TLS too. Client listeners get what their spec asks:
//!
//! | tls   | authentication | protocol       | per-listener settings |
//! |-------|----------------|----------------|-----------------------|
//! | false | none           | PLAINTEXT      | |
//! | true  | none           | SSL            | principal mapping |
//! | true  | tls            | SSL            | client certificates required, trusting the clients CA |
//! | any   | scram-sha-*    | SASL_[PLAINTEXT\|SSL] | `sasl.enabled.mechanisms` of the one mechanism |
//!
//! Every file path is in the `<cluster>-broker-certs` Secret mounted at
//! [`CERTS_MOUNT`]; each broker's own key and chain (`broker-<id>.pem`)
//! is named in its per-broker file, so the shared (hashed) part is the
//! same for every broker and scaling restarts nobody. For the same
//! reason the brokers' certificates (`CN=<cluster>-broker-<id>`) are
//! mapped to one principal, `User:<cluster>-broker`, on the two
//! broker-only listeners: `super.users` then need not grow with the
//! broker count.

use std::collections::BTreeMap;

use crate::{
    crd::ListenerAuthenticationType,
    validate::{
        ListenerSecurity, ValidatedCluster, CONTROLLER_PORT, OPERATOR_PRINCIPAL, REPLICATION_PORT,
    },
};

/// Name of the listener for clients inside the Kubernetes cluster.
pub const INTERNAL_LISTENER: &str = "INTERNAL";
/// Name of the listener behind the per-broker external Services.
pub const EXTERNAL_LISTENER: &str = "EXTERNAL";
/// Name of the controller quorum's listener.
pub const CONTROLLER_LISTENER: &str = "CONTROLLER";
/// Name of the mutual-TLS inter-broker and operator listener of a secured cluster.
pub const REPLICATION_LISTENER: &str = "REPLICATION";
/// Where the `<cluster>-broker-certs` Secret is mounted in broker pods.
pub const CERTS_MOUNT: &str = "/etc/rivulet/certs";
/// Kafka's StandardAuthorizer, which the brokers implement.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
/// A client certificate with CN `alice` is `User:alice` (Strimzi's convention).
pub const CN_MAPPING_RULE: &str = "RULE:^CN=([^,]*)(,.*)?$/$1/,DEFAULT";

/// The cluster CA bundle (broker-only listeners trust it).
fn cluster_ca() -> String {
    format!("{CERTS_MOUNT}/ca.crt")
}

/// The clients CA bundle (client listeners with `authentication: tls`).
fn clients_ca() -> String {
    format!("{CERTS_MOUNT}/clients-ca.crt")
}

/// Broker `id`'s PEM keystore: its key, then its certificate chain.
pub fn broker_keystore(id: i32) -> String {
    format!("{CERTS_MOUNT}/broker-{id}.pem")
}

/// The principal every broker's certificate maps to on the broker-only listeners.
pub fn brokers_principal(cluster: &ValidatedCluster) -> String {
    format!("User:{}-broker", cluster.name)
}

/// The client listeners with their security, in config order.
fn client_listeners(cluster: &ValidatedCluster) -> Vec<(&'static str, i32, ListenerSecurity)> {
    let mut listeners = vec![(
        INTERNAL_LISTENER,
        cluster.kafka_port(),
        cluster.security.internal,
    )];
    if let (Some(external), Some(security)) =
        (&cluster.spec.listeners.external, cluster.security.external)
    {
        listeners.push((EXTERNAL_LISTENER, external.port, security));
    }
    listeners
}

/// The shared listener and security settings, by key.
pub fn listener_entries(cluster: &ValidatedCluster) -> BTreeMap<String, String> {
    let secured = cluster.security.enabled();
    let mut entries = BTreeMap::new();
    let mut listeners = Vec::new();
    let mut protocols = Vec::new();
    for (name, port, security) in client_listeners(cluster) {
        listeners.push(format!("{name}://0.0.0.0:{port}"));
        protocols.push(format!("{name}:{}", security.protocol()));
        let prefix = format!("listener.name.{}.", name.to_ascii_lowercase());
        if security.tls {
            entries.insert(
                format!("{prefix}ssl.principal.mapping.rules"),
                CN_MAPPING_RULE.into(),
            );
        }
        match security.authentication {
            ListenerAuthenticationType::Tls => {
                entries.insert(format!("{prefix}ssl.client.auth"), "required".into());
                entries.insert(format!("{prefix}ssl.truststore.location"), clients_ca());
            }
            other => {
                if let Some(mechanism) = other.sasl_mechanism() {
                    entries.insert(format!("{prefix}sasl.enabled.mechanisms"), mechanism.into());
                }
            }
        }
    }
    let mut broker_only = vec![CONTROLLER_LISTENER];
    if secured {
        listeners.push(format!(
            "{REPLICATION_LISTENER}://0.0.0.0:{REPLICATION_PORT}"
        ));
        protocols.push(format!("{REPLICATION_LISTENER}:SSL"));
        broker_only.insert(0, REPLICATION_LISTENER);
    }
    // Every broker serves the quorum's listener: voters vote on it and the
    // active controller replicates the metadata log to the others.
    listeners.push(format!("{CONTROLLER_LISTENER}://0.0.0.0:{CONTROLLER_PORT}"));
    protocols.push(format!(
        "{CONTROLLER_LISTENER}:{}",
        if secured { "SSL" } else { "PLAINTEXT" }
    ));
    if secured {
        let brokers_rule = format!(
            "RULE:^CN={}-broker-[0-9]+(,.*)?$/{}-broker/",
            cluster.name.replace('.', "\\."),
            cluster.name
        );
        for name in broker_only {
            let prefix = format!("listener.name.{}.", name.to_ascii_lowercase());
            entries.insert(format!("{prefix}ssl.client.auth"), "required".into());
            entries.insert(format!("{prefix}ssl.truststore.location"), cluster_ca());
            entries.insert(
                format!("{prefix}ssl.principal.mapping.rules"),
                format!("{brokers_rule},{CN_MAPPING_RULE}"),
            );
        }
    }
    entries.insert("listeners".into(), listeners.join(","));
    entries.insert("listener.security.protocol.map".into(), protocols.join(","));
    entries.insert(
        "inter.broker.listener.name".into(),
        if secured {
            REPLICATION_LISTENER
        } else {
            INTERNAL_LISTENER
        }
        .into(),
    );
    entries.insert(
        "controller.listener.names".into(),
        CONTROLLER_LISTENER.into(),
    );
    if let Some(super_users) = &cluster.security.super_users {
        let mut all = vec![brokers_principal(cluster), OPERATOR_PRINCIPAL.to_string()];
        for user in super_users {
            if !all.contains(user) {
                all.push(user.clone());
            }
        }
        entries.insert("authorizer.class.name".into(), STANDARD_AUTHORIZER.into());
        entries.insert("super.users".into(), all.join(";"));
    }
    entries
}

/// Broker `id`'s own security settings: its keystore, for every TLS
/// listener (the unprefixed key applies to all of them).
pub fn broker_entries(cluster: &ValidatedCluster, id: i32) -> Vec<(String, String)> {
    if cluster.security.enabled() {
        vec![("ssl.keystore.location".into(), broker_keystore(id))]
    } else {
        Vec::new()
    }
}

/// The advertised listeners of broker `id`, `external` being its
/// external `host:port` when there is an external listener.
pub fn advertised_listeners(cluster: &ValidatedCluster, id: i32, external: Option<&str>) -> String {
    let host = cluster.broker_host(id);
    let mut advertised = vec![format!(
        "{INTERNAL_LISTENER}://{host}:{}",
        cluster.kafka_port()
    )];
    if let Some(external) = external {
        advertised.push(format!("{EXTERNAL_LISTENER}://{external}"));
    }
    if cluster.security.enabled() {
        advertised.push(format!(
            "{REPLICATION_LISTENER}://{host}:{REPLICATION_PORT}"
        ));
    }
    advertised.push(format!("{CONTROLLER_LISTENER}://{host}:{CONTROLLER_PORT}"));
    advertised.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build::shared_properties, fixtures::validated};

    /// The shared settings of `spec` that differ from a plain cluster's.
    fn entries(spec: &str) -> BTreeMap<String, String> {
        listener_entries(&validated(spec))
    }

    /// A per-listener setting: key without the prefix, value.
    type Setting = (&'static str, &'static str);

    const INTERNAL_ONLY: &str = "replicas: 3\nlisteners:\n  internal:\n";

    #[test]
    fn a_plain_cluster_keeps_its_plaintext_listeners() {
        let e = entries("replicas: 3");
        assert_eq!(
            e,
            BTreeMap::from([
                ("controller.listener.names".into(), "CONTROLLER".into()),
                ("inter.broker.listener.name".into(), "INTERNAL".into()),
                (
                    "listener.security.protocol.map".into(),
                    "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT".into()
                ),
                (
                    "listeners".into(),
                    "INTERNAL://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093".into()
                ),
            ])
        );
        assert_eq!(broker_entries(&validated("replicas: 3"), 0), []);
    }

    /// What every secured cluster has, whatever its client listeners.
    fn assert_broker_links(e: &BTreeMap<String, String>) {
        assert_eq!(e["inter.broker.listener.name"], "REPLICATION");
        for listener in ["replication", "controller"] {
            let key = |k: &str| e[&format!("listener.name.{listener}.{k}")].clone();
            assert_eq!(key("ssl.client.auth"), "required");
            assert_eq!(key("ssl.truststore.location"), "/etc/rivulet/certs/ca.crt");
            assert_eq!(
                key("ssl.principal.mapping.rules"),
                "RULE:^CN=demo-broker-[0-9]+(,.*)?$/demo-broker/,RULE:^CN=([^,]*)(,.*)?$/$1/,DEFAULT"
            );
        }
        assert!(e["listeners"].ends_with(",REPLICATION://0.0.0.0:9091,CONTROLLER://0.0.0.0:9093"));
        assert!(e["listener.security.protocol.map"].ends_with(",REPLICATION:SSL,CONTROLLER:SSL"));
    }

    #[test]
    fn each_listener_combination_gets_its_protocol_and_settings() {
        // (internal spec, protocol, per-listener settings of INTERNAL)
        let cases: [(&str, &str, &[Setting]); 5] = [
            (
                "    tls: true",
                "SSL",
                &[("ssl.principal.mapping.rules", CN_MAPPING_RULE)],
            ),
            (
                "    tls: true\n    authentication:\n      type: tls",
                "SSL",
                &[
                    ("ssl.client.auth", "required"),
                    ("ssl.principal.mapping.rules", CN_MAPPING_RULE),
                    (
                        "ssl.truststore.location",
                        "/etc/rivulet/certs/clients-ca.crt",
                    ),
                ],
            ),
            (
                "    tls: true\n    authentication:\n      type: scram-sha-512",
                "SASL_SSL",
                &[
                    ("sasl.enabled.mechanisms", "SCRAM-SHA-512"),
                    ("ssl.principal.mapping.rules", CN_MAPPING_RULE),
                ],
            ),
            (
                "    authentication:\n      type: scram-sha-256",
                "SASL_PLAINTEXT",
                &[("sasl.enabled.mechanisms", "SCRAM-SHA-256")],
            ),
            (
                "    authentication:\n      type: none\n    tls: false",
                "PLAINTEXT",
                &[],
            ),
        ];
        for (listener, protocol, settings) in cases {
            let spec = format!("{INTERNAL_ONLY}{listener}\nauthorization:\n  type: simple");
            let e = entries(&spec);
            assert_eq!(
                e["listener.security.protocol.map"],
                format!("INTERNAL:{protocol},REPLICATION:SSL,CONTROLLER:SSL"),
                "{spec}"
            );
            let internal: Vec<(&str, &str)> = e
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("listener.name.internal.")
                        .map(|k| (k, v.as_str()))
                })
                .collect();
            assert_eq!(internal, settings, "{spec}");
            assert_broker_links(&e);
        }
    }

    #[test]
    fn authorization_names_the_operator_the_brokers_and_the_spec_super_users() {
        let e = entries(
            "replicas: 3\nauthorization:\n  type: simple\n  superUsers: [admin, 'User:rivulet-operator']",
        );
        assert_eq!(e["authorizer.class.name"], STANDARD_AUTHORIZER);
        assert_eq!(
            e["super.users"],
            "User:demo-broker;User:rivulet-operator;User:admin"
        );
        assert_eq!(
            e["listener.security.protocol.map"],
            "INTERNAL:PLAINTEXT,REPLICATION:SSL,CONTROLLER:SSL"
        );
        // Without an authorizer, no super users either (the broker refuses them).
        let e = entries(&format!("{INTERNAL_ONLY}    tls: true"));
        assert!(!e.contains_key("authorizer.class.name") && !e.contains_key("super.users"));
    }

    #[test]
    fn an_external_listener_has_its_own_security() {
        let e = entries(
            "replicas: 2
listeners:
  internal:
    authentication:
      type: scram-sha-512
  external:
    type: LoadBalancer
    tls: true
    authentication:
      type: tls",
        );
        assert_eq!(
            e["listeners"],
            "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094,REPLICATION://0.0.0.0:9091,CONTROLLER://0.0.0.0:9093"
        );
        assert_eq!(
            e["listener.security.protocol.map"],
            "INTERNAL:SASL_PLAINTEXT,EXTERNAL:SSL,REPLICATION:SSL,CONTROLLER:SSL"
        );
        assert_eq!(e["listener.name.external.ssl.client.auth"], "required");
        assert_eq!(
            e["listener.name.internal.sasl.enabled.mechanisms"],
            "SCRAM-SHA-512"
        );
        assert!(!e.contains_key("listener.name.internal.ssl.client.auth"));
    }

    #[test]
    fn each_broker_names_its_own_keystore_outside_the_hashed_part() {
        let cluster = validated(&format!("{INTERNAL_ONLY}    tls: true"));
        assert_eq!(
            broker_entries(&cluster, 2),
            [(
                "ssl.keystore.location".to_string(),
                "/etc/rivulet/certs/broker-2.pem".to_string()
            )]
        );
        assert!(!shared_properties(&cluster).contains("broker-2.pem"));
        assert_eq!(
            advertised_listeners(&cluster, 1, None),
            "INTERNAL://demo-broker-1.demo-brokers.kafka.svc.cluster.local:9092,\
             REPLICATION://demo-broker-1.demo-brokers.kafka.svc.cluster.local:9091,\
             CONTROLLER://demo-broker-1.demo-brokers.kafka.svc.cluster.local:9093"
        );
    }
}
