//! Which authorizer a broker runs, from Kafka's settings:
//! `authorizer.class.name` turns ACL checks on, `super.users` and
//! `allow.everyone.if.no.acl.found` tune them. The decision itself is
//! Kafka's StandardAuthorizer in `rivulet_quorum::metadata::acl`, over the
//! ACLs of the metadata image.

use std::collections::BTreeMap;

pub use rivulet_quorum::metadata::acl::AuthorizerConfig;

use super::config::SecurityConfigError;

/// The class names users configure for Kafka's ACL authorizer: KRaft's
/// StandardAuthorizer, and the ZooKeeper-era AclAuthorizer that older
/// manifests still carry. Both mean the same ACL semantics here.
pub const AUTHORIZER_CLASSES: [&str; 2] = [
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// The keys read here.
pub const KEYS: [&str; 3] = [
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
];

fn error(key: &str, reason: impl Into<String>) -> SecurityConfigError {
    SecurityConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The authorizer's settings, or `None` when `authorizer.class.name` is
/// unset or empty (Kafka's default: no authorization, every request
/// allowed). `super.users` without an authorizer is refused: it suggests
/// the user believes ACLs are on.
pub fn parse(
    raw: &BTreeMap<String, String>,
) -> Result<Option<AuthorizerConfig>, SecurityConfigError> {
    let class = raw
        .get("authorizer.class.name")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty());
    let Some(class) = class else {
        for key in &KEYS[1..] {
            if raw.contains_key(*key) {
                return Err(error(
                    key,
                    "has no effect without authorizer.class.name; set it to \
                     org.apache.kafka.metadata.authorizer.StandardAuthorizer to enable ACLs",
                ));
            }
        }
        return Ok(None);
    };
    if !AUTHORIZER_CLASSES.contains(&class) {
        return Err(error(
            "authorizer.class.name",
            format!(
                "unknown authorizer `{class}`; Rivulet provides {} (ACLs in the metadata log)",
                AUTHORIZER_CLASSES[0]
            ),
        ));
    }
    let mut config = AuthorizerConfig::default();
    if let Some(users) = raw.get("super.users") {
        for user in users.split(';').map(str::trim).filter(|u| !u.is_empty()) {
            match user.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                    config.super_users.insert(user.to_string());
                }
                _ => {
                    return Err(error(
                        "super.users",
                        format!(
                            "`{user}` is not a principal like User:admin (separate them with ;)"
                        ),
                    ))
                }
            }
        }
    }
    if let Some(v) = raw.get("allow.everyone.if.no.acl.found") {
        config.allow_everyone_if_no_acl_found = match v.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(error(
                    "allow.everyone.if.no.acl.found",
                    "must be true or false",
                ))
            }
        };
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_class_means_no_authorizer() {
        assert_eq!(parse(&raw(&[])).unwrap(), None);
        assert_eq!(
            parse(&raw(&[("authorizer.class.name", " ")])).unwrap(),
            None
        );
    }

    #[test]
    fn standard_authorizer_with_super_users() {
        let config = parse(&raw(&[
            ("authorizer.class.name", AUTHORIZER_CLASSES[0]),
            ("super.users", "User:admin; User:CN=broker,O=acme"),
            ("allow.everyone.if.no.acl.found", "TRUE"),
        ]))
        .unwrap()
        .unwrap();
        assert!(config.super_users.contains("User:admin"));
        assert!(config.super_users.contains("User:CN=broker,O=acme"));
        assert!(config.allow_everyone_if_no_acl_found);
        let zk = parse(&raw(&[("authorizer.class.name", AUTHORIZER_CLASSES[1])])).unwrap();
        assert_eq!(zk, Some(AuthorizerConfig::default()));
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            vec![("authorizer.class.name", "com.example.Custom")],
            vec![("super.users", "User:admin")],
            vec![
                ("authorizer.class.name", AUTHORIZER_CLASSES[0]),
                ("super.users", "admin"),
            ],
            vec![
                ("authorizer.class.name", AUTHORIZER_CLASSES[0]),
                ("allow.everyone.if.no.acl.found", "yes"),
            ],
        ];
        for case in cases {
            let e = parse(&raw(&case)).unwrap_err();
            assert!(case.iter().any(|(k, _)| *k == e.key), "{case:?}: {e}");
        }
    }
}
