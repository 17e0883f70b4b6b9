//! The Secrets that hold the CAs and the certificates they sign: names,
//! keys (Strimzi's where Strimzi has them) and annotations, and reading a
//! CA's stored state back. Pure: the controller applies what these build.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
    ByteString,
};
use sha2::{Digest, Sha256};

use super::{inspect::pem_certificates, p12, renewal::StoredCa, CertError, Issued};

/// Annotation on a CA Secret: the generation of its signing key.
pub const KEY_GENERATION_ANNOTATION: &str = "rivulet.dev/ca-key-generation";
/// Annotation a user puts on a CA Secret (`kubectl annotate secret
/// <cluster>-cluster-ca rivulet.dev/force-renew=true`) to replace its key
/// now, like Strimzi's `strimzi.io/force-replace`.
pub const FORCE_RENEW_ANNOTATION: &str = "rivulet.dev/force-renew";
/// Annotation on a Secret of leaves: a digest of the trust bundles they
/// were issued with, so a changed bundle re-issues them (and a broker
/// presenting a leaf of this issue has loaded this bundle).
pub const TRUST_ANNOTATION: &str = "rivulet.dev/trust-digest";
/// Annotation on a TLS user's Secret: the clients CA it belongs to.
pub const CLUSTER_LABEL: &str = "rivulet.dev/cluster";

/// Key of the CA key in a CA Secret (Strimzi's).
pub const CA_KEY: &str = "ca.key";
/// Key of a CA certificate or trust bundle (Strimzi's).
pub const CA_CRT: &str = "ca.crt";
/// Key of the next CA key during a key replacement.
pub const NEXT_KEY: &str = "next.key";
/// Key of the next CA certificate during a key replacement.
pub const NEXT_CRT: &str = "next.crt";
/// Key of the PKCS#12 truststore (Strimzi's).
pub const CA_P12: &str = "ca.p12";
/// Key of the truststore's password (Strimzi's).
pub const CA_PASSWORD: &str = "ca.password";
/// Key of the clients CA bundle in the brokers' Secret.
pub const CLIENTS_CA_CRT: &str = "clients-ca.crt";

/// The two CAs of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CaKind {
    /// Signs the brokers' and the operator's certificates.
    Cluster,
    /// Signs TLS users' certificates.
    Clients,
}

impl CaKind {
    /// `cluster-ca` or `clients-ca`: the Secrets' stem and the metric label.
    pub fn stem(self) -> &'static str {
        match self {
            CaKind::Cluster => "cluster-ca",
            CaKind::Clients => "clients-ca",
        }
    }

    /// Human name, for messages.
    pub fn title(self) -> &'static str {
        match self {
            CaKind::Cluster => "cluster CA",
            CaKind::Clients => "clients CA",
        }
    }

    /// `<cluster>-cluster-ca` / `<cluster>-clients-ca`: the key and signing
    /// certificate.
    pub fn key_secret(self, cluster: &str) -> String {
        format!("{cluster}-{}", self.stem())
    }

    /// `<cluster>-cluster-ca-cert` / `<cluster>-clients-ca-cert`: the trust
    /// bundle, for anyone to mount.
    pub fn cert_secret(self, cluster: &str) -> String {
        format!("{cluster}-{}-cert", self.stem())
    }
}

/// `<cluster>-broker-certs`: every broker's certificate and the bundles.
pub fn broker_certs_secret(cluster: &str) -> String {
    format!("{cluster}-broker-certs")
}

/// `<cluster>-operator-certs`: the operator's client certificate.
pub fn operator_certs_secret(cluster: &str) -> String {
    format!("{cluster}-operator-certs")
}

/// The common name of broker `id`'s certificate (its principal's name).
pub fn broker_common_name(cluster: &str, id: i32) -> String {
    format!("{cluster}-broker-{id}")
}

/// The common name of the operator's client certificate.
pub const OPERATOR_COMMON_NAME: &str = "rivulet-operator";

/// A UTF-8 value of a Secret.
pub fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn annotation(secret: &Secret, key: &str) -> Option<String> {
    secret.metadata.annotations.as_ref()?.get(key).cloned()
}

fn issued(secret: &Secret, cert: &str, key: &str) -> Option<Issued> {
    let cert_pem = text(secret, cert)?;
    let key_pem = text(secret, key)?;
    let info = super::inspect::inspect(&cert_pem).ok()?;
    Some(Issued {
        cert_pem,
        key_pem,
        not_before: info.not_before,
        not_after: info.not_after,
    })
}

/// Each certificate of a PEM bundle as its own PEM text, in order.
pub fn split_bundle(pem: &str) -> Vec<String> {
    pem_certificates(pem)
        .map(|certs| {
            certs
                .iter()
                .map(|der| {
                    let body = base64_lines(der.as_ref());
                    format!("-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
                })
                .collect()
        })
        .unwrap_or_default()
}

fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::new();
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

/// What a CA's two Secrets store (either may be missing).
pub fn read_stored(key_secret: Option<&Secret>, cert_secret: Option<&Secret>) -> StoredCa {
    StoredCa {
        signing: key_secret.and_then(|s| issued(s, CA_CRT, CA_KEY)),
        next: key_secret.and_then(|s| issued(s, NEXT_CRT, NEXT_KEY)),
        generation: key_secret
            .and_then(|s| annotation(s, KEY_GENERATION_ANNOTATION))
            .and_then(|g| g.parse().ok())
            .unwrap_or(0),
        force_renew: key_secret
            .and_then(|s| annotation(s, FORCE_RENEW_ANNOTATION))
            .is_some_and(|v| v != "false"),
        bundle: cert_secret
            .and_then(|s| text(s, CA_CRT))
            .map(|pem| split_bundle(&pem))
            .unwrap_or_default(),
    }
}

/// Where the operator's Secrets of one cluster live and who owns them.
#[derive(Clone, Debug)]
pub struct Owner {
    /// The cluster's name.
    pub cluster: String,
    /// Its namespace.
    pub namespace: String,
    /// The KafkaCluster's owner reference.
    pub reference: OwnerReference,
}

impl Owner {
    fn meta(&self, name: String, annotations: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".into(),
                    "rivulet-operator".into(),
                ),
                ("app.kubernetes.io/instance".into(), self.cluster.clone()),
                (CLUSTER_LABEL.into(), self.cluster.clone()),
            ])),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

fn secret(meta: ObjectMeta, data: BTreeMap<String, ByteString>) -> Secret {
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

fn bytes(value: impl Into<Vec<u8>>) -> ByteString {
    ByteString(value.into())
}

/// The CA Secret: signing key and certificate, and the next ones during
/// a key replacement.
pub fn ca_key_secret(
    owner: &Owner,
    kind: CaKind,
    signing: &Issued,
    next: Option<&Issued>,
    generation: u32,
) -> Secret {
    let mut data = BTreeMap::from([
        (CA_KEY.to_string(), bytes(signing.key_pem.clone())),
        (CA_CRT.to_string(), bytes(signing.cert_pem.clone())),
    ]);
    if let Some(next) = next {
        data.insert(NEXT_KEY.into(), bytes(next.key_pem.clone()));
        data.insert(NEXT_CRT.into(), bytes(next.cert_pem.clone()));
    }
    let annotations = BTreeMap::from([(
        KEY_GENERATION_ANNOTATION.to_string(),
        generation.to_string(),
    )]);
    secret(
        owner.meta(kind.key_secret(&owner.cluster), annotations),
        data,
    )
}

/// The CA's public Secret: the trust bundle as PEM and as a PKCS#12
/// truststore with its password.
pub fn ca_cert_secret(
    owner: &Owner,
    kind: CaKind,
    bundle: &[String],
    password: &str,
) -> Result<Secret, CertError> {
    let pem = bundle.concat();
    let data = BTreeMap::from([
        (CA_CRT.to_string(), bytes(pem.clone())),
        (CA_P12.to_string(), bytes(p12::truststore(&pem, password)?)),
        (CA_PASSWORD.to_string(), bytes(password)),
    ]);
    Ok(secret(
        owner.meta(kind.cert_secret(&owner.cluster), BTreeMap::new()),
        data,
    ))
}

/// A digest of the two trust bundles, recorded on leaf Secrets.
pub fn trust_digest(cluster_bundle: &str, clients_bundle: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(cluster_bundle.as_bytes());
    hash.update([0]);
    hash.update(clients_bundle.as_bytes());
    hash.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The brokers' Secret: for each broker `broker-<id>.crt` (leaf then CA),
/// `broker-<id>.key` (PKCS#8) and `broker-<id>.pem` (key then chain, the
/// broker's PEM keystore file), and the two trust bundles.
pub fn broker_certs(
    owner: &Owner,
    leaves: &BTreeMap<i32, Issued>,
    signing_ca_pem: &str,
    cluster_bundle: &str,
    clients_bundle: &str,
) -> Secret {
    let mut data = BTreeMap::from([
        (CA_CRT.to_string(), bytes(cluster_bundle)),
        (CLIENTS_CA_CRT.to_string(), bytes(clients_bundle)),
    ]);
    for (id, leaf) in leaves {
        let chain = format!("{}{signing_ca_pem}", leaf.cert_pem);
        data.insert(
            format!("broker-{id}.pem"),
            bytes(format!("{}{chain}", leaf.key_pem)),
        );
        data.insert(format!("broker-{id}.crt"), bytes(chain));
        data.insert(format!("broker-{id}.key"), bytes(leaf.key_pem.clone()));
    }
    let annotations = BTreeMap::from([(
        TRUST_ANNOTATION.to_string(),
        trust_digest(cluster_bundle, clients_bundle),
    )]);
    secret(
        owner.meta(broker_certs_secret(&owner.cluster), annotations),
        data,
    )
}

/// The operator's Secret: `tls.crt` (leaf then CA), `tls.key` and the
/// cluster CA bundle `ca.crt`.
pub fn operator_certs(
    owner: &Owner,
    leaf: &Issued,
    signing_ca_pem: &str,
    cluster_bundle: &str,
) -> Secret {
    let data = BTreeMap::from([
        (
            "tls.crt".to_string(),
            bytes(format!("{}{signing_ca_pem}", leaf.cert_pem)),
        ),
        ("tls.key".to_string(), bytes(leaf.key_pem.clone())),
        (CA_CRT.to_string(), bytes(cluster_bundle)),
    ]);
    let annotations = BTreeMap::from([(
        TRUST_ANNOTATION.to_string(),
        trust_digest(cluster_bundle, ""),
    )]);
    secret(
        owner.meta(operator_certs_secret(&owner.cluster), annotations),
        data,
    )
}

/// The trust digest a Secret of leaves was issued with.
pub fn trust_of(secret: &Secret) -> Option<String> {
    annotation(secret, TRUST_ANNOTATION)
}

/// Why a leaf must be issued again, or `None` when it is good: missing
/// or unreadable, not signed by the signing CA, within `renewal_days` of
/// its end (unless it ends with the CA already), or its names differ from
/// `dns_names`/`ips`.
pub fn reissue_reason(
    leaf_pem: Option<&str>,
    signing_ca_pem: &str,
    dns_names: &[String],
    ips: &[std::net::IpAddr],
    renewal_days: u32,
    now: i64,
) -> Option<&'static str> {
    let Some(leaf_pem) = leaf_pem else {
        return Some("missing");
    };
    let Ok(info) = super::inspect::inspect(leaf_pem) else {
        return Some("unreadable");
    };
    if !super::inspect::signed_by(leaf_pem, signing_ca_pem) {
        return Some("signed by another CA key");
    }
    // Near its end, unless it already ends with its CA: a new one could
    // not end later (the CA's own renewal takes care of both).
    let ca_end = super::inspect::inspect(signing_ca_pem).map_or(i64::MAX, |ca| ca.not_after);
    if now >= info.not_after - i64::from(renewal_days) * super::DAY && info.not_after < ca_end {
        return Some("near its end of validity");
    }
    let mut have = info.dns_names.clone();
    have.sort();
    let mut want = dns_names.to_vec();
    want.sort();
    let mut have_ips = info.ip_addresses.clone();
    have_ips.sort();
    let mut want_ips = ips.to_vec();
    want_ips.sort();
    if have != want || have_ips != want_ips {
        return Some("its names changed");
    }
    None
}

#[cfg(test)]
mod tests;
