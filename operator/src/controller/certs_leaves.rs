//! The leaves of the certificates step: the brokers' Secret (a
//! certificate per broker with every name clients dial it by) and the
//! operator's, issued again when missing, signed by another key, near
//! their end, named differently, or issued with other trust bundles; and
//! whether every broker presents the certificate its Secret holds now.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::{apply, certs::leaf_signed_by, Context};
use crate::{
    certs::{
        inspect::{fingerprint, pem_certificates},
        issue,
        names::{broker_dns_names_in, external_ips},
        renewal::StoredCa,
        secrets::{
            broker_certs, broker_certs_secret, broker_common_name, operator_certs,
            operator_certs_secret, reissue_reason, split_bundle, text, trust_digest, trust_of,
            CaKind, Owner, OPERATOR_COMMON_NAME,
        },
        Issued, LeafRequest,
    },
    error::Error,
    validate::ValidatedCluster,
};

/// The Secrets of leaves as they are before this reconcile.
pub struct Leaves {
    /// `<cluster>-broker-certs`.
    pub brokers: Option<Secret>,
    /// `<cluster>-operator-certs`.
    pub operator: Option<Secret>,
    /// The TLS users' Secrets of the cluster.
    pub users: Vec<Secret>,
    /// Brokers the cluster runs.
    pub replicas: i32,
}

impl Leaves {
    /// Whether every leaf `kind` signs is signed by `ca_pem`: for the
    /// cluster CA every broker's and the operator's, for the clients CA
    /// every TLS user's.
    pub fn all_signed_by(&self, kind: CaKind, ca_pem: &str) -> bool {
        match kind {
            CaKind::Cluster => {
                let brokers = (0..self.replicas).all(|id| {
                    let pem = self
                        .brokers
                        .as_ref()
                        .and_then(|s| text(s, &format!("broker-{id}.crt")));
                    leaf_signed_by(pem.as_deref(), ca_pem)
                });
                let operator = self.operator.as_ref().and_then(|s| text(s, "tls.crt"));
                brokers && leaf_signed_by(operator.as_deref(), ca_pem)
            }
            CaKind::Clients => self
                .users
                .iter()
                .all(|s| leaf_signed_by(text(s, "user.crt").as_deref(), ca_pem)),
        }
    }
}

impl Leaves {
    /// Whether every TLS user's Secret carries `cluster_bundle` as its
    /// `ca.crt` (the user controller copies it there).
    pub fn users_trust(&self, cluster_bundle: &str) -> bool {
        self.users
            .iter()
            .all(|s| text(s, "ca.crt").as_deref() == Some(cluster_bundle))
    }
}

/// Reads the leaves' Secrets.
pub async fn read(
    ctx: &Context,
    cluster: &ValidatedCluster,
    secrets: &Api<Secret>,
) -> Result<Leaves, Error> {
    let get = |name: String| async move {
        secrets.get_opt(&name).await.map_err(|source| Error::Read {
            what: format!("Secret {}/{name}", cluster.namespace),
            source,
        })
    };
    Ok(Leaves {
        brokers: get(broker_certs_secret(&cluster.name)).await?,
        operator: get(operator_certs_secret(&cluster.name)).await?,
        users: super::certs::user_tls_secrets(ctx, cluster).await?,
        replicas: cluster.replicas,
    })
}

/// Whether every broker presents the leaf its Secret holds, and that
/// Secret was issued with the trust bundles `cluster_ca` and `clients_ca`
/// store now: then every broker has loaded those bundles.
pub async fn brokers_loaded(
    ctx: &Context,
    cluster: &ValidatedCluster,
    leaves: &Leaves,
    cluster_ca: &StoredCa,
    clients_ca: &StoredCa,
) -> bool {
    let Some(secret) = &leaves.brokers else {
        return false;
    };
    let digest = trust_digest(&cluster_ca.bundle.concat(), &clients_ca.bundle.concat());
    if trust_of(secret).as_deref() != Some(digest.as_str()) {
        return false;
    }
    for id in 0..cluster.replicas {
        let Some(stored) = text(secret, &format!("broker-{id}.crt"))
            .and_then(|pem| pem_certificates(&pem).ok())
            .map(|certs| fingerprint(certs[0].as_ref()))
        else {
            return false;
        };
        let host = cluster.broker_host(id);
        let address = format!("{host}:{}", super::certs_probe::PROBE_PORT);
        let presented = ctx.probe.presented(&address, &host).await;
        if presented.as_deref().map(fingerprint) != Some(stored) {
            tracing::debug!(cluster = %cluster.name, broker = id, "the broker does not present its stored certificate yet");
            return false;
        }
    }
    true
}

/// When the leaves end (Unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The earliest broker certificate's end.
    pub brokers: i64,
    /// The operator certificate's end.
    pub operator: i64,
}

/// A leaf kept in a Secret: the first certificate of `crt` and the key.
fn stored_leaf(secret: Option<&Secret>, crt: &str, key: &str) -> Option<Issued> {
    let secret = secret?;
    let cert_pem = split_bundle(&text(secret, crt)?).into_iter().next()?;
    let info = crate::certs::inspect::inspect(&cert_pem).ok()?;
    Some(Issued {
        cert_pem,
        key_pem: text(secret, key)?,
        not_before: info.not_before,
        not_after: info.not_after,
    })
}

/// The hosts among `host:port` external addresses.
fn host_of(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Issues what must be issued again and writes the two Secrets when
/// anything changed.
#[allow(clippy::too_many_arguments)] // the step's inputs, each used once
pub async fn issue_leaves(
    ctx: &Context,
    owner: &Owner,
    cluster: &ValidatedCluster,
    leaves: &Leaves,
    cluster_ca: &StoredCa,
    clients_ca: &StoredCa,
    external_addresses: &BTreeMap<i32, String>,
    now: i64,
) -> Result<Expiry, Error> {
    let cert_error = |source| Error::Certificate {
        what: format!("KafkaCluster {}/{}", cluster.namespace, cluster.name),
        source,
    };
    let signing = cluster_ca.signing.as_ref().expect("the caller checked");
    let spec = &cluster.spec.cluster_ca;
    let renewal = spec.renewal_days.min(spec.validity_days.saturating_sub(1));
    let cluster_bundle = cluster_ca.bundle.concat();
    let clients_bundle = clients_ca.bundle.concat();
    let digest = trust_digest(&cluster_bundle, &clients_bundle);
    let existing = leaves.brokers.as_ref();
    let same_trust = existing.and_then(trust_of).as_deref() == Some(digest.as_str());
    let mut changed = !same_trust;
    let mut issued = BTreeMap::new();
    for id in 0..cluster.replicas {
        let hosts: Vec<String> = external_addresses
            .get(&id)
            .map(|a| host_of(a))
            .into_iter()
            .collect();
        let request = LeafRequest {
            common_name: broker_common_name(&cluster.name, id),
            dns_names: broker_dns_names_in(
                &cluster.name,
                &cluster.namespace,
                &cluster.cluster_domain,
                id,
                &hosts,
            ),
            ip_addresses: external_ips(&hosts),
            server: true,
            client: true,
            validity_days: spec.validity_days,
        };
        let current = stored_leaf(
            existing,
            &format!("broker-{id}.crt"),
            &format!("broker-{id}.key"),
        );
        let reason = if same_trust {
            reissue_reason(
                current.as_ref().map(|c| c.cert_pem.as_str()),
                &signing.cert_pem,
                &request.dns_names,
                &request.ip_addresses,
                renewal,
                now,
            )
        } else {
            Some("the trust bundles changed")
        };
        let leaf = match (reason, current) {
            (None, Some(current)) => current,
            (reason, _) => {
                tracing::info!(cluster = %cluster.name, broker = id, reason = reason.unwrap_or("missing"), "issuing the broker's certificate");
                changed = true;
                issue(signing, &request, now).map_err(cert_error)?
            }
        };
        issued.insert(id, leaf);
    }
    // Keys of brokers the cluster no longer runs make the Secret stale.
    let stale = existing.and_then(|s| s.data.as_ref()).is_some_and(|d| {
        d.keys()
            .filter_map(|k| {
                k.strip_prefix("broker-")?
                    .split('.')
                    .next()?
                    .parse::<i32>()
                    .ok()
            })
            .any(|id| id >= cluster.replicas)
    });
    if changed || stale {
        let secret = broker_certs(
            owner,
            &issued,
            &signing.cert_pem,
            &cluster_bundle,
            &clients_bundle,
        );
        apply(&ctx.client, &secret).await?;
    }
    let operator = operator_leaf(
        ctx,
        owner,
        cluster,
        leaves,
        signing,
        &cluster_bundle,
        renewal,
        now,
    )
    .await?;
    Ok(Expiry {
        brokers: issued
            .values()
            .map(|l| l.not_after)
            .min()
            .unwrap_or(signing.not_after),
        operator,
    })
}

#[allow(clippy::too_many_arguments)] // the leaf's inputs, each used once
async fn operator_leaf(
    ctx: &Context,
    owner: &Owner,
    cluster: &ValidatedCluster,
    leaves: &Leaves,
    signing: &Issued,
    cluster_bundle: &str,
    renewal: u32,
    now: i64,
) -> Result<i64, Error> {
    let existing = leaves.operator.as_ref();
    let digest = trust_digest(cluster_bundle, "");
    let current = stored_leaf(existing, "tls.crt", "tls.key");
    let same_trust = existing.and_then(trust_of).as_deref() == Some(digest.as_str());
    let reason = if same_trust {
        reissue_reason(
            current.as_ref().map(|c| c.cert_pem.as_str()),
            &signing.cert_pem,
            &[],
            &[],
            renewal,
            now,
        )
    } else {
        Some("the trust bundle changed")
    };
    let leaf = match (reason, current) {
        (None, Some(current)) => current,
        _ => {
            let request =
                LeafRequest::client(OPERATOR_COMMON_NAME, cluster.spec.cluster_ca.validity_days);
            let leaf = issue(signing, &request, now).map_err(|source| Error::Certificate {
                what: format!("KafkaCluster {}/{}", cluster.namespace, cluster.name),
                source,
            })?;
            let secret = operator_certs(owner, &leaf, &signing.cert_pem, cluster_bundle);
            apply(&ctx.client, &secret).await?;
            leaf
        }
    };
    Ok(leaf.not_after)
}
