//! The certificate parts of a `KafkaCluster`: how its two certificate
//! authorities are managed (`spec.clusterCa`, `spec.clientsCa`) and what
//! the operator reports about them (`status.certificates`).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A certificate authority of the cluster, as Strimzi's `clusterCa` and
/// `clientsCa` describe it. Used only when some listener or link of the
/// cluster needs TLS.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.renewalDays < self.validityDays").message("renewalDays must be below validityDays: a certificate would be due for renewal as soon as it is made"))]
#[serde(rename_all = "camelCase")]
pub struct CertificateAuthoritySpec {
    /// Days a CA certificate the operator makes is valid. Default 365.
    /// Certificates it signs (brokers, the operator, users) are valid as
    /// long, but never past the CA's own end.
    #[serde(default = "default_validity_days")]
    #[schemars(range(min = 1))]
    pub validity_days: u32,

    /// Days before the end of validity the operator renews: a signed
    /// certificate is issued again, and a CA the operator made gets a new
    /// key (trust both, switch, drop the old; no broker restart). Default
    /// 30. Must be below `validityDays`.
    #[serde(default = "default_renewal_days")]
    pub renewal_days: u32,

    /// `true` (default): the operator makes the CA and replaces its key
    /// before it expires. `false`: you bring the CA: create the Secret
    /// `<cluster>-cluster-ca` (or `-clients-ca`) with `ca.key` (PKCS#8
    /// PEM) and `ca.crt`, and `<cluster>-cluster-ca-cert` (or
    /// `-clients-ca-cert`) with `ca.crt` (every CA certificate to trust),
    /// before the cluster; the operator signs with it, never changes it,
    /// and reports its expiry. Renewing it is then yours.
    #[serde(default = "default_true")]
    pub generate_certificate_authority: bool,
}

impl Default for CertificateAuthoritySpec {
    fn default() -> Self {
        CertificateAuthoritySpec {
            validity_days: default_validity_days(),
            renewal_days: default_renewal_days(),
            generate_certificate_authority: true,
        }
    }
}

fn default_validity_days() -> u32 {
    365
}

fn default_renewal_days() -> u32 {
    30
}

fn default_true() -> bool {
    true
}

/// What the operator reports about the cluster's certificates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesStatus {
    /// The cluster CA (signs the brokers' and the operator's certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ca: Option<CaStatus>,
    /// The clients CA (signs TLS users' certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients_ca: Option<CaStatus>,
    /// The brokers' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<BrokerCertsStatus>,
}

/// One certificate authority.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaStatus {
    /// End of validity of the signing CA certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `Ready`; `TrustingNewCa` (a new key is trusted beside the old one,
    /// until every broker has loaded it); `DroppingOldCa` (the new key
    /// signs; the old CA is trusted until every certificate is issued
    /// again); `Missing` or `Expired` (a CA you bring needs you).
    pub phase: String,
    /// The signing key's generation: how many times its key was replaced.
    #[serde(default)]
    pub generation: u32,
    /// What is happening, when not `Ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the operator last replaced this CA because it had already
    /// expired (RFC 3339): clients that kept a copy of the old CA
    /// certificate had to fetch the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_replaced_at: Option<String>,
}

/// The brokers' certificates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerCertsStatus {
    /// The earliest end of validity among the brokers' certificates (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_not_after: Option<String>,
}
