//! The listener security of a `KafkaCluster`, resolved and checked: each
//! client listener's TLS and authentication, the authorizer and its super
//! users, and whether the cluster is secured at all.
//!
//! A secured cluster (any listener with TLS or authentication, or an
//! authorizer) gets a third Kafka listener, `REPLICATION` on
//! [`REPLICATION_PORT`]: mutual TLS with the cluster CA, the brokers'
//! inter-broker listener and the operator's admin connection, so brokers
//! and operator authenticate with their certificates whatever the client
//! listeners use. The controller listener then runs mutual TLS too. A
//! cluster with no security keeps today's plaintext listeners unchanged.

use crate::crd::{
    AuthorizationType, KafkaClusterSpec, ListenerAuthentication, ListenerAuthenticationType,
};

/// Port of the `REPLICATION` listener of a secured cluster.
pub const REPLICATION_PORT: i32 = 9091;
/// The principal of the operator's client certificate (`CN=rivulet-operator`).
pub const OPERATOR_PRINCIPAL: &str = "User:rivulet-operator";

/// Broker config keys the operator sets on a secured cluster; `spec.config`
/// may not name them then (any `listener.name.` key included).
pub const SECURITY_OWNED_KEYS: &[&str] = &[
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "security.inter.broker.protocol",
    "authorizer.class.name",
    "super.users",
    "sasl.enabled.mechanisms",
    "sasl.mechanism.inter.broker.protocol",
    "ssl.keystore.location",
    "ssl.truststore.location",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
];

/// One client listener's security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSecurity {
    /// The listener is TLS-encrypted.
    pub tls: bool,
    /// How its clients authenticate.
    pub authentication: ListenerAuthenticationType,
}

impl ListenerSecurity {
    fn of(tls: bool, authentication: Option<&ListenerAuthentication>) -> ListenerSecurity {
        ListenerSecurity {
            tls,
            authentication: authentication.map(|a| a.kind).unwrap_or_default(),
        }
    }

    /// Kafka's security protocol of the listener.
    pub fn protocol(self) -> &'static str {
        let sasl = self.authentication.sasl_mechanism().is_some();
        match (self.tls, sasl) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }

    /// Whether the listener has any security.
    pub fn secured(self) -> bool {
        self.tls || self.authentication != ListenerAuthenticationType::None
    }
}

/// The cluster's security, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSecurity {
    /// The internal listener.
    pub internal: ListenerSecurity,
    /// The external listener, when there is one.
    pub external: Option<ListenerSecurity>,
    /// With an authorizer: the spec's super users as `User:NAME` (the
    /// operator and brokers are added when the config is written).
    pub super_users: Option<Vec<String>>,
}

impl ClusterSecurity {
    /// Whether the cluster runs the mutual-TLS `REPLICATION` listener,
    /// the TLS controller quorum and the operator's certificate login.
    pub fn enabled(&self) -> bool {
        self.internal.secured()
            || self.external.is_some_and(ListenerSecurity::secured)
            || self.super_users.is_some()
    }

    /// Whether ACLs are enforced.
    pub fn authorization(&self) -> bool {
        self.super_users.is_some()
    }
}

/// A security setting that can never work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// `authentication: tls` on a listener without TLS.
    #[error("listeners.{0}: authentication type tls needs tls: true (client certificates are part of the TLS handshake)")]
    TlsAuthWithoutTls(&'static str),
    /// A super user that cannot be written into `super.users`.
    #[error("authorization.superUsers: `{0}` is not a principal (User:NAME or NAME, without `;`)")]
    BadSuperUser(String),
    /// `config` names a key the secured listeners set.
    #[error("config may not set `{0}` when listeners have tls or authentication, or authorization is on: the operator sets it")]
    OwnedSecurityKey(String),
}

/// Resolves and checks the security of `spec`.
pub fn validate_security(spec: &KafkaClusterSpec) -> Result<ClusterSecurity, SecurityError> {
    let internal_spec = &spec.listeners.internal;
    let internal = ListenerSecurity::of(internal_spec.tls, internal_spec.authentication.as_ref());
    let external = spec
        .listeners
        .external
        .as_ref()
        .map(|e| ListenerSecurity::of(e.tls, e.authentication.as_ref()));
    for (name, listener) in [("internal", Some(internal)), ("external", external)] {
        if listener.is_some_and(|l| l.authentication == ListenerAuthenticationType::Tls && !l.tls) {
            return Err(SecurityError::TlsAuthWithoutTls(name));
        }
    }
    let super_users = match &spec.authorization {
        None => None,
        Some(authorization) => {
            // `simple` is the only authorizer there is.
            let AuthorizationType::Simple = authorization.kind;
            let users = authorization
                .super_users
                .iter()
                .map(|u| principal(u).ok_or_else(|| SecurityError::BadSuperUser(u.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            Some(users)
        }
    };
    let security = ClusterSecurity {
        internal,
        external,
        super_users,
    };
    if security.enabled() {
        if let Some(key) = spec
            .config
            .keys()
            .find(|k| SECURITY_OWNED_KEYS.contains(&k.as_str()) || k.starts_with("listener.name."))
        {
            return Err(SecurityError::OwnedSecurityKey(key.clone()));
        }
    }
    Ok(security)
}

/// `User:NAME` from `User:NAME` or `NAME`; `None` for what `super.users`
/// (`;`-separated) cannot carry.
fn principal(user: &str) -> Option<String> {
    let user = user.trim();
    let name = user.strip_prefix("User:").unwrap_or(user);
    (!name.is_empty() && !user.contains(';')).then(|| format!("User:{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::cluster_from_yaml;

    fn check(spec: &str) -> Result<ClusterSecurity, SecurityError> {
        validate_security(&cluster_from_yaml(spec).spec)
    }

    #[test]
    fn protocols_follow_tls_and_authentication() {
        let l = |tls, authentication| ListenerSecurity {
            tls,
            authentication,
        };
        assert_eq!(
            l(false, ListenerAuthenticationType::None).protocol(),
            "PLAINTEXT"
        );
        assert_eq!(l(true, ListenerAuthenticationType::None).protocol(), "SSL");
        assert_eq!(l(true, ListenerAuthenticationType::Tls).protocol(), "SSL");
        assert_eq!(
            l(false, ListenerAuthenticationType::ScramSha256).protocol(),
            "SASL_PLAINTEXT"
        );
        assert_eq!(
            l(true, ListenerAuthenticationType::ScramSha512).protocol(),
            "SASL_SSL"
        );
    }

    #[test]
    fn a_plain_cluster_is_not_secured() {
        let s = check("replicas: 3").unwrap();
        assert!(!s.enabled() && !s.authorization());
        let s = check("replicas: 3\nlisteners:\n  external:\n    type: LoadBalancer").unwrap();
        assert!(!s.enabled());
        // Without security the old free-form keys stay allowed.
        assert!(check("replicas: 1\nconfig:\n  listener.name.internal.x: y").is_ok());
    }

    #[test]
    fn any_listener_security_or_an_authorizer_secures_the_cluster() {
        for spec in [
            "replicas: 3\nlisteners:\n  internal:\n    tls: true",
            "replicas: 3\nlisteners:\n  internal:\n    authentication:\n      type: scram-sha-512",
            "replicas: 3\nlisteners:\n  external:\n    type: LoadBalancer\n    tls: true",
            "replicas: 3\nauthorization:\n  type: simple",
        ] {
            assert!(check(spec).unwrap().enabled(), "{spec}");
        }
    }

    #[test]
    fn nonsense_is_refused_with_the_field() {
        let err =
            check("replicas: 1\nlisteners:\n  internal:\n    authentication:\n      type: tls")
                .unwrap_err();
        assert_eq!(err, SecurityError::TlsAuthWithoutTls("internal"));
        assert!(err.to_string().contains("tls: true"), "{err}");
        let err = check(
            "replicas: 1\nlisteners:\n  external:\n    type: LoadBalancer\n    authentication:\n      type: tls",
        )
        .unwrap_err();
        assert_eq!(err, SecurityError::TlsAuthWithoutTls("external"));
        assert_eq!(
            check("replicas: 1\nauthorization:\n  type: simple\n  superUsers: ['a;b']"),
            Err(SecurityError::BadSuperUser("a;b".into()))
        );
        assert_eq!(
            check("replicas: 1\nauthorization:\n  type: simple\n  superUsers: ['User:']"),
            Err(SecurityError::BadSuperUser("User:".into()))
        );
        assert_eq!(
            check("replicas: 1\nlisteners:\n  internal:\n    tls: true\nconfig:\n  super.users: User:x"),
            Err(SecurityError::OwnedSecurityKey("super.users".into()))
        );
        assert_eq!(
            check("replicas: 1\nauthorization:\n  type: simple\nconfig:\n  listener.name.internal.ssl.client.auth: none"),
            Err(SecurityError::OwnedSecurityKey(
                "listener.name.internal.ssl.client.auth".into()
            ))
        );
    }

    #[test]
    fn super_users_are_principals() {
        let s =
            check("replicas: 1\nauthorization:\n  type: simple\n  superUsers: [admin, 'User:ops']")
                .unwrap();
        assert_eq!(
            s.super_users,
            Some(vec!["User:admin".to_string(), "User:ops".to_string()])
        );
    }
}
