//! The Secrets of users, built pure: the application's Secret of a
//! KafkaUser (Strimzi's keys, so a deployment moves over by changing only
//! the Secret's name). The operator's own login is its client certificate
//! (`controller::target`), not a Secret of this kind.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta, ByteString,
};
use kube::{Resource, ResourceExt};

use crate::crd::KafkaUser;

/// Key of the password in a user's Secret (Strimzi's).
pub const PASSWORD_KEY: &str = "password";
/// Key of the JAAS login line in a user's Secret (Strimzi's).
pub const JAAS_KEY: &str = "sasl.jaas.config";
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
}
