//! The Secrets of users, built pure: the application's Secret of a
//! KafkaUser (Strimzi's keys, so a deployment moves over by changing only
//! the Secret's name), and the operator's own admin credential for a
//! cluster (see docs/decisions.md, "Operator: KafkaUser").

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
    ByteString,
};
use kube::{Resource, ResourceExt};
use rivulet_wire::{
    client::{ClientSecurity, SecurityPropertyError},
    scram::ScramMechanism,
};

use crate::crd::KafkaUser;

/// Key of the password in a user's Secret (Strimzi's).
pub const PASSWORD_KEY: &str = "password";
/// Key of the JAAS login line in a user's Secret (Strimzi's).
pub const JAAS_KEY: &str = "sasl.jaas.config";
/// Key of the SASL mechanism in the admin Secret.
pub const MECHANISM_KEY: &str = "sasl.mechanism";
/// Key of the admin user's name in the admin Secret.
pub const USERNAME_KEY: &str = "username";
/// Key of the admin credential in `--add-scram` syntax, for the brokers.
pub const ADD_SCRAM_KEY: &str = "add-scram";
/// The Kafka user the operator administers a cluster as.
pub const ADMIN_USER: &str = "rivulet-operator";
/// Length of generated passwords.
pub const PASSWORD_LENGTH: usize = 32;

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// 32 random letters and digits from the operating system's generator
/// (rejection sampling, so every character is equally likely).
pub fn generate_password() -> String {
    let mut out = String::with_capacity(PASSWORD_LENGTH);
    let mut buf = [0u8; 64];
    while out.len() < PASSWORD_LENGTH {
        getrandom::getrandom(&mut buf).expect("the operating system has a random source");
        // 62 * 4 = 248: bytes from 248 up would favour the first characters.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == PASSWORD_LENGTH {
                break;
            }
            out.push(char::from(
                ALPHANUMERIC[usize::from(*b) % ALPHANUMERIC.len()],
            ));
        }
    }
    out
}

/// Kafka's SCRAM JAAS line, as Java clients take it in `sasl.jaas.config`.
pub fn jaas_config(username: &str, password: &str) -> String {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{}\" password=\"{}\";",
        quote(username),
        quote(password)
    )
}

/// A UTF-8 key of a Secret, if present.
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn data(entries: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// The labels of a KafkaUser's Secret: Strimzi's `kind` and `cluster`
/// labels under the `rivulet.dev/` prefix.
pub fn user_labels(user: &KafkaUser) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".into(),
            "rivulet-operator".into(),
        ),
        (
            "app.kubernetes.io/instance".into(),
            user.spec.cluster.clone(),
        ),
        ("rivulet.dev/kind".into(), "KafkaUser".into()),
        ("rivulet.dev/cluster".into(), user.spec.cluster.clone()),
    ])
}

/// The application's Secret of a SCRAM user, named like the KafkaUser
/// and owned by it (deleted with it).
pub fn build_user_secret(user: &KafkaUser, username: &str, password: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(user.name_any()),
            namespace: user.namespace(),
            labels: Some(user_labels(user)),
            owner_references: user.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data(&[
            (PASSWORD_KEY, password),
            (JAAS_KEY, &jaas_config(username, password)),
        ])),
        ..Secret::default()
    }
}

/// Name of a cluster's admin Secret.
pub fn admin_secret_name(cluster: &str) -> String {
    format!("{cluster}-operator-admin")
}

/// The operator's SCRAM-SHA-512 admin credential for `cluster`, owned by
/// the KafkaCluster: the name, password, mechanism and JAAS line the
/// operator logs in with, and the `--add-scram` value that creates it on
/// a new cluster's brokers (`super.users` must name `User:rivulet-operator`).
pub fn build_admin_secret(
    cluster: &str,
    namespace: &str,
    owner: Option<OwnerReference>,
    password: &str,
) -> Secret {
    let add_scram = format!("SCRAM-SHA-512=[name={ADMIN_USER},password={password}]");
    Secret {
        metadata: ObjectMeta {
            name: Some(admin_secret_name(cluster)),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".into(),
                    "rivulet-operator".into(),
                ),
                ("app.kubernetes.io/instance".into(), cluster.into()),
            ])),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data(&[
            (USERNAME_KEY, ADMIN_USER),
            (PASSWORD_KEY, password),
            (MECHANISM_KEY, ScramMechanism::Sha512.name()),
            (JAAS_KEY, &jaas_config(ADMIN_USER, password)),
            (ADD_SCRAM_KEY, &add_scram),
        ])),
        ..Secret::default()
    }
}

/// How the operator's admin connection is secured: on a SASL listener,
/// SCRAM with the admin Secret's credential; on any other, as the
/// listener's protocol says (the Secret is not needed).
pub fn admin_security(
    protocol: &str,
    admin_secret: Option<&Secret>,
) -> Result<ClientSecurity, SecurityPropertyError> {
    let mut props = BTreeMap::from([("security.protocol".to_string(), protocol.to_string())]);
    if protocol.to_ascii_uppercase().starts_with("SASL_") {
        for key in [MECHANISM_KEY, JAAS_KEY] {
            if let Some(value) = admin_secret.and_then(|s| secret_value(s, key)) {
                props.insert(key.to_string(), value);
            }
        }
    }
    ClientSecurity::from_properties(&props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_32_random_alphanumerics() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), PASSWORD_LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn jaas_line_is_kafkas_and_escapes_quotes() {
        assert_eq!(
            jaas_config("alice", "p\"w"),
            "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"p\\\"w\";"
        );
    }

    #[test]
    fn admin_secret_logs_in_with_scram_only_on_sasl_listeners() {
        let secret = build_admin_secret("demo", "kafka", None, "s3cret");
        assert_eq!(
            secret_value(&secret, ADD_SCRAM_KEY).unwrap(),
            "SCRAM-SHA-512=[name=rivulet-operator,password=s3cret]"
        );
        let sasl = admin_security("SASL_PLAINTEXT", Some(&secret)).unwrap();
        let login = sasl.sasl.unwrap();
        assert_eq!(
            (
                login.mechanism.as_str(),
                login.username.as_str(),
                login.password.as_str()
            ),
            ("SCRAM-SHA-512", ADMIN_USER, "s3cret")
        );
        let plain = admin_security("PLAINTEXT", Some(&secret)).unwrap();
        assert!(plain.sasl.is_none() && plain.tls.is_none());
        assert!(
            admin_security("SASL_PLAINTEXT", None).is_err(),
            "no credential"
        );
    }
}
