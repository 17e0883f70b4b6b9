//! TLS KafkaUsers: a client certificate signed by the clients CA of the
//! user's cluster, `CN=<user name>` (principal `User:<name>` under the
//! brokers' principal mapping rule), in the user's Secret with Strimzi's
//! keys: `user.crt`, `user.key` (PKCS#8 PEM), `user.p12` and
//! `user.password` (a PKCS#12 keystore for Java clients), and `ca.crt`
//! (the cluster CA bundle, so the client trusts the brokers).
//!
//! The certificate is issued again when it is missing, signed by another
//! clients CA key (a key replacement switched), near its end, or named
//! otherwise; `ca.crt` follows the cluster CA bundle as it changes.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta, jiff::Timestamp,
    ByteString,
};
use kube::{api::Api, Resource, ResourceExt};

use super::secret::{generate_password, user_labels};
use crate::{
    certs::{
        issue, p12,
        secrets::{reissue_reason, split_bundle, text, CaKind, CA_CRT, CA_KEY},
        CertError, Issued, LeafRequest,
    },
    controller::{apply, Context},
    crd::{KafkaCluster, KafkaUser},
    error::Error,
};

/// Key of the user's certificate (Strimzi's).
pub const USER_CRT: &str = "user.crt";
/// Key of the user's private key (Strimzi's).
pub const USER_KEY: &str = "user.key";
/// Key of the user's PKCS#12 keystore (Strimzi's).
pub const USER_P12: &str = "user.p12";
/// Key of the keystore's password (Strimzi's).
pub const USER_PASSWORD: &str = "user.password";

/// The user's TLS Secret, named like the KafkaUser and owned by it:
/// `leaf` signed by `clients_ca_pem`, trusting `cluster_bundle`.
pub fn build_tls_secret(
    user: &KafkaUser,
    leaf: &Issued,
    clients_ca_pem: &str,
    cluster_bundle: &str,
    password: &str,
) -> Result<Secret, CertError> {
    let chain = format!("{}{clients_ca_pem}", leaf.cert_pem);
    let keystore = p12::keystore(&user.name_any(), &leaf.key_pem, &chain, password)?;
    let data = BTreeMap::from([
        (
            USER_CRT.to_string(),
            ByteString(leaf.cert_pem.clone().into_bytes()),
        ),
        (
            USER_KEY.to_string(),
            ByteString(leaf.key_pem.clone().into_bytes()),
        ),
        (USER_P12.to_string(), ByteString(keystore)),
        (
            USER_PASSWORD.to_string(),
            ByteString(password.as_bytes().to_vec()),
        ),
        (
            CA_CRT.to_string(),
            ByteString(cluster_bundle.as_bytes().to_vec()),
        ),
    ]);
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(user.name_any()),
            namespace: user.namespace(),
            labels: Some(user_labels(user)),
            owner_references: user.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    })
}

/// The request of a user's certificate: client usage only.
pub fn user_request(name: &str, validity_days: u32) -> LeafRequest {
    LeafRequest::client(name, validity_days)
}

/// What to do with a TLS user's Secret, decided from what is stored.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsPlan {
    /// Nothing: the certificate is good and `ca.crt` current.
    Keep,
    /// Rewrite the Secret with the kept certificate and the new `ca.crt`.
    Trust,
    /// Issue a new certificate, for the reason given.
    Issue(&'static str),
}

/// Decides a TLS user's Secret from what it holds.
pub fn plan_tls(
    existing: Option<&Secret>,
    clients_ca_pem: &str,
    cluster_bundle: &str,
    renewal_days: u32,
    now: i64,
) -> TlsPlan {
    let cert = existing.and_then(|s| text(s, USER_CRT));
    let complete = existing.is_some_and(|s| {
        [USER_KEY, USER_P12, USER_PASSWORD]
            .iter()
            .all(|k| s.data.as_ref().is_some_and(|d| d.contains_key(*k)))
    });
    match reissue_reason(cert.as_deref(), clients_ca_pem, &[], &[], renewal_days, now) {
        Some(reason) => TlsPlan::Issue(reason),
        None if !complete => TlsPlan::Issue("a key of its Secret is missing"),
        None if existing.and_then(|s| text(s, CA_CRT)).as_deref() != Some(cluster_bundle) => {
            TlsPlan::Trust
        }
        None => TlsPlan::Keep,
    }
}

/// Keeps the TLS user's Secret. `Ok(Err(message))` is the Ready message
/// when the cluster has no clients CA (yet).
pub async fn ensure_tls_secret(
    user: &KafkaUser,
    ctx: &Context,
) -> Result<Result<(), String>, Error> {
    let namespace = user.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let get = |name: String| {
        let secrets = secrets.clone();
        let namespace = namespace.clone();
        async move {
            secrets.get_opt(&name).await.map_err(|source| Error::Read {
                what: format!("Secret {namespace}/{name}"),
                source,
            })
        }
    };
    let cluster_name = &user.spec.cluster;
    let clients_ca = get(CaKind::Clients.key_secret(cluster_name)).await?;
    let cluster_ca_cert = get(CaKind::Cluster.cert_secret(cluster_name)).await?;
    let signing = clients_ca
        .as_ref()
        .and_then(|s| Some((text(s, CA_CRT)?, text(s, CA_KEY)?)));
    let bundle = cluster_ca_cert.as_ref().and_then(|s| text(s, CA_CRT));
    let (Some((ca_pem, ca_key)), Some(bundle)) = (signing, bundle) else {
        return Ok(Err(format!(
            "KafkaCluster {cluster_name} has no clients CA yet: it is made once a listener of the cluster uses TLS"
        )));
    };
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let spec = clusters
        .get_opt(cluster_name)
        .await
        .map_err(|source| Error::Read {
            what: format!("KafkaCluster {namespace}/{cluster_name}"),
            source,
        })?
        .map(|c| c.spec.clients_ca)
        .unwrap_or_default();
    let now = Timestamp::now().as_second();
    let renewal = spec.renewal_days.min(spec.validity_days.saturating_sub(1));
    let existing = get(user.name_any()).await?;
    let cert_error = |source| Error::Certificate {
        what: format!("KafkaUser {namespace}/{}", user.name_any()),
        source,
    };
    let password = existing
        .as_ref()
        .and_then(|s| text(s, USER_PASSWORD))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(generate_password);
    let leaf = match plan_tls(existing.as_ref(), &ca_pem, &bundle, renewal, now) {
        TlsPlan::Keep => return Ok(Ok(())),
        TlsPlan::Trust => {
            let secret = existing.as_ref().expect("a kept certificate has a Secret");
            let cert_pem = text(secret, USER_CRT).unwrap_or_default();
            let info = crate::certs::inspect::inspect(&cert_pem).map_err(cert_error)?;
            Issued {
                cert_pem: split_bundle(&cert_pem)
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
                key_pem: text(secret, USER_KEY).unwrap_or_default(),
                not_before: info.not_before,
                not_after: info.not_after,
            }
        }
        TlsPlan::Issue(reason) => {
            tracing::info!(user = %user.name_any(), reason, "issuing the user's certificate");
            let ca = Issued {
                cert_pem: ca_pem.clone(),
                key_pem: ca_key,
                not_before: 0,
                not_after: crate::certs::inspect::inspect(&ca_pem)
                    .map_err(cert_error)?
                    .not_after,
            };
            issue(
                &ca,
                &user_request(&user.name_any(), spec.validity_days),
                now,
            )
            .map_err(cert_error)?
        }
    };
    let secret = build_tls_secret(user, &leaf, &ca_pem, &bundle, &password).map_err(cert_error)?;
    apply(&ctx.client, &secret).await?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests;
