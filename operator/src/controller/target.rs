//! How the operator reaches a cluster as its administrator, for every
//! controller (cluster, Topic, KafkaUser): one [`AdminTarget`].
//!
//! A cluster without security is administered as before, over its
//! plaintext internal listener. A secured cluster is administered over
//! its `REPLICATION` listener with mutual TLS, as `User:rivulet-operator`
//! (the client certificate of the `<cluster>-operator-certs` Secret,
//! signed by the cluster CA), which `super.users` always names: the
//! operator keeps working whatever the client listeners ask and whatever
//! the ACLs say. The same Secret's `ca.crt` verifies the brokers.

use std::{collections::BTreeMap, fmt};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use rivulet_wire::client::ClientSecurity;

use super::Context;
use crate::{error::Error, validate::ValidatedCluster};

/// Key of the operator's client certificate in `<cluster>-operator-certs`.
pub const OPERATOR_CERT_KEY: &str = "tls.crt";
/// Key of the operator's private key in `<cluster>-operator-certs`.
pub const OPERATOR_KEY_KEY: &str = "tls.key";
/// Key of the cluster CA bundle in `<cluster>-operator-certs`.
pub const CA_KEY: &str = "ca.crt";

/// A cluster and how to reach it as its administrator.
#[derive(Clone)]
pub struct AdminTarget {
    /// `host:port,...` of the listener the operator uses.
    pub bootstrap: String,
    /// TLS and SASL of that listener, with the operator's credential.
    pub security: ClientSecurity,
}

impl fmt::Debug for AdminTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTarget")
            .field("bootstrap", &self.bootstrap)
            .field("security", &self.security)
            .finish()
    }
}

impl AdminTarget {
    /// A plaintext target (a cluster without security, or a test's).
    pub fn plaintext(bootstrap: impl Into<String>) -> AdminTarget {
        AdminTarget {
            bootstrap: bootstrap.into(),
            security: ClientSecurity::default(),
        }
    }

    /// The same credentials at one broker's `address` (a question only
    /// that broker can answer).
    pub fn at(&self, address: impl Into<String>) -> AdminTarget {
        AdminTarget {
            bootstrap: address.into(),
            security: self.security.clone(),
        }
    }

    /// Whether the connection is TLS with a client certificate.
    pub fn mutual_tls(&self) -> bool {
        self.security
            .tls
            .as_ref()
            .is_some_and(|c| c.client_auth_cert_resolver.has_certs())
    }
}

/// Why a cluster cannot be administered yet (the operator's certificate
/// is not issued, or unusable): the text of a status condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetUnavailable(pub String);

/// The admin target of `cluster`, given the `<cluster>-operator-certs`
/// Secret when it is secured (pure: the reconcile reads the Secret).
pub fn admin_target_with(
    cluster: &ValidatedCluster,
    operator_certs: Option<&Secret>,
) -> Result<AdminTarget, TargetUnavailable> {
    if !cluster.security.enabled() {
        return Ok(AdminTarget::plaintext(cluster.admin_bootstrap()));
    }
    let name = cluster.operator_certs_secret_name();
    let Some(secret) = operator_certs else {
        return Err(TargetUnavailable(format!(
            "waiting for the operator's certificate (Secret {name})"
        )));
    };
    let value = |key: &str| {
        secret_bytes(secret, key)
            .ok_or_else(|| TargetUnavailable(format!("Secret {name} has no key {key}")))
    };
    let security = ClientSecurity::mutual_tls_pem(
        &value(CA_KEY)?,
        &value(OPERATOR_CERT_KEY)?,
        &value(OPERATOR_KEY_KEY)?,
    )
    .map_err(|e| TargetUnavailable(format!("Secret {name}: {e}")))?;
    Ok(AdminTarget {
        bootstrap: cluster.admin_bootstrap(),
        security,
    })
}

/// The decoded value of `key` in `secret` (`data`, else `stringData`).
fn secret_bytes(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d: &BTreeMap<String, String>| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .filter(|v| !v.is_empty())
}

/// Reads what [`admin_target_with`] needs and resolves the target.
pub async fn admin_target(
    ctx: &Context,
    cluster: &ValidatedCluster,
) -> Result<Result<AdminTarget, TargetUnavailable>, Error> {
    if !cluster.security.enabled() {
        return Ok(admin_target_with(cluster, None));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let name = cluster.operator_certs_secret_name();
    let secret = secrets.get_opt(&name).await.map_err(|source| Error::Read {
        what: format!("Secret {}/{name}", cluster.namespace),
        source,
    })?;
    Ok(admin_target_with(cluster, secret.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{operator_certs_secret, validated};

    #[test]
    fn a_plain_cluster_is_administered_in_plaintext() {
        let target = admin_target_with(&validated("replicas: 3"), None).unwrap();
        assert_eq!(
            target.bootstrap,
            "demo-bootstrap.kafka.svc.cluster.local:9092"
        );
        assert!(target.security.tls.is_none() && target.security.sasl.is_none());
    }

    #[test]
    fn a_secured_cluster_is_administered_with_the_operator_certificate() {
        let cluster = validated(
            "replicas: 3\nlisteners:\n  internal:\n    authentication:\n      type: scram-sha-512",
        );
        let err = admin_target_with(&cluster, None).unwrap_err();
        assert!(err.0.contains("demo-operator-certs"), "{err}");
        let target = admin_target_with(&cluster, Some(&operator_certs_secret("demo"))).unwrap();
        assert_eq!(
            target.bootstrap,
            "demo-bootstrap.kafka.svc.cluster.local:9091"
        );
        assert!(target.mutual_tls());
        assert!(target.security.sasl.is_none());
        assert_eq!(
            target
                .at("demo-broker-1.demo-brokers.kafka.svc.cluster.local:9091")
                .bootstrap,
            "demo-broker-1.demo-brokers.kafka.svc.cluster.local:9091"
        );
        let mut broken = operator_certs_secret("demo");
        broken.data.as_mut().unwrap().remove(OPERATOR_KEY_KEY);
        let err = admin_target_with(&cluster, Some(&broken)).unwrap_err();
        assert_eq!(err.0, "Secret demo-operator-certs has no key tls.key");
    }
}
