//! The certificates step of the KafkaCluster reconcile: keeps the cluster
//! CA and the clients CA ([`crate::certs::renewal`] decides, this file
//! reads and writes their Secrets), then the brokers' and the operator's
//! certificates ([`super::certs_leaves`]), then reports expiries in the
//! status and the metrics.
//!
//! It runs before the broker config and StatefulSet are applied, so a
//! broker never starts without its certificate. Nothing is kept in memory
//! between reconciles: the CA phases are read back from the Secrets, and
//! what the brokers have loaded is asked of them (the certificate probe).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    api::{Api, ListParams, PostParams},
    runtime::events::EventType,
    ResourceExt,
};

use super::{
    apply, certs_leaves,
    status::stamp,
    user::secret::{generate_password, secret_value},
    Context,
};
use crate::{
    build::shared_properties,
    certs::{
        inspect::signed_by,
        renewal::{decide, CaPhase, Decision, Policy, Progress, StoredCa, Write},
        secrets::{
            ca_cert_secret, ca_key_secret, read_stored, CaKind, Owner, CA_PASSWORD,
            FORCE_RENEW_ANNOTATION, KEY_GENERATION_ANNOTATION,
        },
        CertError,
    },
    crd::{
        CaStatus, CertificateAuthoritySpec, CertificatesStatus, KafkaCluster, KafkaClusterStatus,
    },
    error::Error,
    validate::ValidatedCluster,
};

/// The condition type the certificates step reports under.
pub const CERTIFICATES_CONDITION: &str = "CertificateAuthoritiesReady";
/// How long the condition says an expired CA was replaced.
const EXPIRED_NOTICE: i64 = 86_400;

/// What the certificates step reports.
#[derive(Clone, Debug, PartialEq)]
pub struct CertsOutcome {
    /// `status.certificates`.
    pub status: CertificatesStatus,
    /// The `CertificateAuthoritiesReady` condition (unstamped).
    pub condition: Condition,
}

/// Whether the cluster needs certificates: the broker config the operator
/// builds puts TLS (`SSL` or `SASL_SSL`) on some listener.
pub fn certificates_wanted(cluster: &ValidatedCluster) -> bool {
    shared_properties(cluster)
        .lines()
        .filter_map(|l| l.strip_prefix("listener.security.protocol.map="))
        .any(|map| map.split(',').any(|e| e.trim().ends_with("SSL")))
}

fn policy(spec: &CertificateAuthoritySpec) -> Policy {
    Policy {
        validity_days: spec.validity_days,
        // A renewal window as long as the validity would renew forever.
        renewal_days: spec.renewal_days.min(spec.validity_days.saturating_sub(1)),
        generate: spec.generate_certificate_authority,
    }
}

fn read_error(namespace: &str, name: &str) -> impl FnOnce(kube::Error) -> Error {
    let what = format!("Secret {namespace}/{name}");
    move |source| Error::Read { what, source }
}

fn cert_error(cluster: &ValidatedCluster) -> impl Fn(CertError) -> Error + '_ {
    move |source| Error::Certificate {
        what: format!("KafkaCluster {}/{}", cluster.namespace, cluster.name),
        source,
    }
}

/// RFC 3339 text of Unix seconds.
pub fn rfc3339(unix: i64) -> Option<String> {
    Timestamp::from_second(unix).ok().map(|t| t.to_string())
}

/// One CA after this reconcile's decision.
struct CaOutcome {
    stored: StoredCa,
    decision: Decision,
}

/// Keeps the CAs and the certificates they sign for `cluster`.
#[tracing::instrument(skip_all, fields(cluster = %cluster.name, namespace = %cluster.namespace))]
pub async fn reconcile_certificates(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    external_addresses: &BTreeMap<i32, String>,
) -> Result<CertsOutcome, Error> {
    let now = Timestamp::now().as_second();
    let owner = Owner {
        cluster: cluster.name.clone(),
        namespace: cluster.namespace.clone(),
        reference: cluster.owner.clone(),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let leaves = certs_leaves::read(ctx, cluster, &secrets).await?;
    let mut read = BTreeMap::new();
    for kind in [CaKind::Cluster, CaKind::Clients] {
        let key_name = kind.key_secret(&cluster.name);
        let cert_name = kind.cert_secret(&cluster.name);
        let key_secret = secrets
            .get_opt(&key_name)
            .await
            .map_err(read_error(&cluster.namespace, &key_name))?;
        let cert_secret = secrets
            .get_opt(&cert_name)
            .await
            .map_err(read_error(&cluster.namespace, &cert_name))?;
        read.insert(kind, (key_secret, cert_secret));
    }
    let stored_of = |kind: CaKind| {
        let (key, cert) = &read[&kind];
        read_stored(key.as_ref(), cert.as_ref())
    };
    let (cluster_stored, clients_stored) = (stored_of(CaKind::Cluster), stored_of(CaKind::Clients));
    // Only a replacement under way asks the brokers (a handshake each).
    let replacing = [&cluster_stored, &clients_stored]
        .iter()
        .any(|s| s.next.is_some() || s.bundle.len() > 1);
    let brokers_loaded = replacing
        && certs_leaves::brokers_loaded(ctx, cluster, &leaves, &cluster_stored, &clients_stored)
            .await;
    let mut outcomes = BTreeMap::new();
    for (kind, spec, stored) in [
        (CaKind::Cluster, &cluster.spec.cluster_ca, cluster_stored),
        (CaKind::Clients, &cluster.spec.clients_ca, clients_stored),
    ] {
        let progress = Progress {
            brokers_loaded,
            bundle_distributed: kind == CaKind::Clients
                || leaves.users_trust(&stored.bundle.concat()),
            leaves_resigned: stored
                .signing
                .as_ref()
                .is_some_and(|ca| leaves.all_signed_by(kind, &ca.cert_pem)),
        };
        let title = format!("{} {}", cluster.name, kind.title());
        let decision =
            decide(&title, &stored, &policy(spec), &progress, now).map_err(cert_error(cluster))?;
        let (key_secret, cert_secret) = read.remove(&kind).expect("read above");
        write_ca(ctx, &owner, kind, &decision.writes, key_secret, cert_secret).await?;
        report(ctx, object, &decision).await;
        let stored = crate::certs::renewal::apply_writes(&stored, &decision.writes);
        outcomes.insert(kind, CaOutcome { stored, decision });
    }
    let cluster_ca = &outcomes[&CaKind::Cluster].stored;
    let clients_ca = &outcomes[&CaKind::Clients].stored;
    // Nothing is signed with a CA that is missing, expired or untrusted.
    let usable = outcomes.values().all(|o| {
        o.stored.signing.is_some()
            && !matches!(o.decision.phase, CaPhase::Missing | CaPhase::Expired)
    });
    let brokers = match (&cluster_ca.signing, &clients_ca.signing) {
        (Some(_), Some(_)) if usable => Some(
            certs_leaves::issue_leaves(
                ctx,
                &owner,
                cluster,
                &leaves,
                cluster_ca,
                clients_ca,
                external_addresses,
                now,
            )
            .await?,
        ),
        _ => None,
    };
    let status = certificates_status(&outcomes, brokers, object, now);
    for (label, ca) in [("cluster-ca", cluster_ca), ("clients-ca", clients_ca)] {
        if let Some(signing) = &ca.signing {
            ctx.metrics.set_certificate_expiry(
                &cluster.namespace,
                &cluster.name,
                label,
                signing.not_after,
            );
        }
    }
    if let Some(expiry) = brokers {
        let (namespace, name) = (&cluster.namespace, &cluster.name);
        ctx.metrics
            .set_certificate_expiry(namespace, name, "broker", expiry.brokers);
        ctx.metrics
            .set_certificate_expiry(namespace, name, "operator", expiry.operator);
    }
    let condition = condition(&status, object, now);
    Ok(CertsOutcome { status, condition })
}

/// Performs a CA's writes in order. The CA Secret is created by
/// server-side apply, and changed afterwards by a replace that also drops
/// the force-renew annotation (another manager's field, which an apply
/// could not remove): one write, so the annotation fires exactly once.
async fn write_ca(
    ctx: &Context,
    owner: &Owner,
    kind: CaKind,
    writes: &[Write],
    key_secret: Option<Secret>,
    cert_secret: Option<Secret>,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    for write in writes {
        match write {
            Write::CaSecret {
                signing,
                next,
                generation,
            } => {
                let built = ca_key_secret(owner, kind, signing, next.as_ref(), *generation);
                match &key_secret {
                    None => {
                        apply(&ctx.client, &built).await?;
                    }
                    Some(existing) => {
                        let mut replaced = existing.clone();
                        replaced.data = built.data;
                        let annotations = replaced.metadata.annotations.get_or_insert_default();
                        annotations.remove(FORCE_RENEW_ANNOTATION);
                        annotations
                            .insert(KEY_GENERATION_ANNOTATION.into(), generation.to_string());
                        let name = existing.name_any();
                        secrets
                            .replace(&name, &PostParams::default(), &replaced)
                            .await
                            .map_err(|source| Error::Apply {
                                what: format!("Secret {}/{name}", owner.namespace),
                                source,
                            })?;
                    }
                }
            }
            Write::Bundle(bundle) => {
                let password = cert_secret
                    .as_ref()
                    .and_then(|s| secret_value(s, CA_PASSWORD))
                    .unwrap_or_else(generate_password);
                let secret = ca_cert_secret(owner, kind, bundle, &password).map_err(|source| {
                    Error::Certificate {
                        what: format!("KafkaCluster {}/{}", owner.namespace, owner.cluster),
                        source,
                    }
                })?;
                apply(&ctx.client, &secret).await?;
            }
        }
    }
    Ok(())
}

/// Events for what a decision did.
async fn report(ctx: &Context, object: &KafkaCluster, decision: &Decision) {
    let Some(message) = &decision.message else {
        return;
    };
    if decision.replaced_expired {
        ctx.event(
            object,
            EventType::Warning,
            "CertificateAuthorityExpired",
            message.clone(),
        )
        .await;
    } else if !decision.writes.is_empty() {
        ctx.event(
            object,
            EventType::Normal,
            "CertificateAuthority",
            message.clone(),
        )
        .await;
    }
}

fn certificates_status(
    outcomes: &BTreeMap<CaKind, CaOutcome>,
    brokers: Option<certs_leaves::Expiry>,
    object: &KafkaCluster,
    now: i64,
) -> CertificatesStatus {
    let previous = object
        .status
        .as_ref()
        .and_then(|s| s.certificates.clone())
        .unwrap_or_default();
    let ca = |kind: CaKind, before: Option<&CaStatus>| {
        let outcome = &outcomes[&kind];
        let replaced_at = if outcome.decision.replaced_expired {
            rfc3339(now)
        } else {
            before.and_then(|b| b.expired_replaced_at.clone())
        };
        Some(CaStatus {
            not_after: outcome
                .stored
                .signing
                .as_ref()
                .and_then(|s| rfc3339(s.not_after)),
            phase: outcome.decision.phase.as_str().into(),
            generation: outcome.stored.generation,
            message: (outcome.decision.phase != CaPhase::Ready)
                .then(|| outcome.decision.message.clone())
                .flatten(),
            expired_replaced_at: replaced_at,
        })
    };
    CertificatesStatus {
        cluster_ca: ca(CaKind::Cluster, previous.cluster_ca.as_ref()),
        clients_ca: ca(CaKind::Clients, previous.clients_ca.as_ref()),
        brokers: brokers
            .map(|b| crate::crd::BrokerCertsStatus {
                earliest_not_after: rfc3339(b.brokers),
            })
            .or(previous.brokers),
    }
}

/// `CertificateAuthoritiesReady`: True when both CAs are `Ready`;
/// reason `ExpiredCaReplaced` for a day after an expired CA was replaced
/// (clients holding the old CA certificate must fetch the new one).
fn condition(status: &CertificatesStatus, object: &KafkaCluster, now: i64) -> Condition {
    let cas = [
        status.cluster_ca.as_ref().map(|c| ("cluster CA", c)),
        status.clients_ca.as_ref().map(|c| ("clients CA", c)),
    ];
    let not_ready: Vec<String> = cas
        .iter()
        .flatten()
        .filter(|(_, c)| c.phase != CaPhase::Ready.as_str())
        .map(|(name, c)| {
            format!(
                "{name}: {}",
                c.message.clone().unwrap_or_else(|| c.phase.clone())
            )
        })
        .collect();
    let expired: Vec<&str> = cas
        .iter()
        .flatten()
        .filter(|(_, c)| {
            c.expired_replaced_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| now - t.as_second() < EXPIRED_NOTICE)
        })
        .map(|(name, _)| *name)
        .collect();
    let (status_value, reason, message) = if !not_ready.is_empty() {
        let reason = if cas
            .iter()
            .flatten()
            .any(|(_, c)| c.phase == "Missing" || c.phase == "Expired")
        {
            "CaUnusable"
        } else {
            "Renewing"
        };
        ("False", reason, not_ready.join("; "))
    } else if !expired.is_empty() {
        (
            "True",
            "ExpiredCaReplaced",
            format!(
                "the {} had expired and was replaced: clients must trust the new CA certificate (Secret {}-cluster-ca-cert)",
                expired.join(" and "),
                object.name_any()
            ),
        )
    } else {
        (
            "True",
            "Ready",
            "both certificate authorities are valid".into(),
        )
    };
    Condition {
        type_: CERTIFICATES_CONDITION.into(),
        status: status_value.into(),
        reason: reason.into(),
        message,
        observed_generation: None,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// Puts the certificates step's outcome into `status`: the
/// `certificates` field and the `CertificateAuthoritiesReady` condition
/// (its transition time kept from `previous`, the conditions the cluster
/// had before this reconcile). Without an
/// outcome (no TLS), both stay as they were.
pub fn record(
    status: &mut KafkaClusterStatus,
    outcome: Option<CertsOutcome>,
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) {
    let Some(outcome) = outcome else {
        return;
    };
    status
        .conditions
        .retain(|c| c.type_ != CERTIFICATES_CONDITION);
    status
        .conditions
        .extend(stamp(vec![outcome.condition], generation, previous, now));
    status.certificates = Some(outcome.status);
}

/// Every TLS user's Secret of `cluster` (label `rivulet.dev/cluster`, a
/// `user.crt` key).
pub async fn user_tls_secrets(
    ctx: &Context,
    cluster: &ValidatedCluster,
) -> Result<Vec<Secret>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let selector = format!(
        "rivulet.dev/kind=KafkaUser,rivulet.dev/cluster={}",
        cluster.name
    );
    Ok(secrets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Read {
            what: format!("the KafkaUser Secrets of {}", cluster.name),
            source,
        })?
        .items
        .into_iter()
        .filter(|s| secret_value(s, "user.crt").is_some())
        .collect())
}

/// Whether `pem` is signed by `ca_pem` (absent counts as not).
pub fn leaf_signed_by(pem: Option<&str>, ca_pem: &str) -> bool {
    pem.is_some_and(|p| signed_by(p, ca_pem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::validated;

    #[test]
    fn a_plaintext_cluster_needs_no_certificates() {
        assert!(!certificates_wanted(&validated("replicas: 3")));
    }

    #[test]
    fn the_condition_keeps_its_transition_time_and_replaces_its_predecessor() {
        let outcome = CertsOutcome {
            status: CertificatesStatus::default(),
            condition: Condition {
                type_: CERTIFICATES_CONDITION.into(),
                status: "True".into(),
                reason: "Ready".into(),
                message: "both certificate authorities are valid".into(),
                observed_generation: None,
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            },
        };
        let then: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let mut status = KafkaClusterStatus::default();
        record(&mut status, Some(outcome.clone()), &[], Some(1), then);
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].last_transition_time.0, then);
        let previous = status.conditions.clone();
        let later = "2030-01-02T00:00:00Z".parse().unwrap();
        record(&mut status, Some(outcome), &previous, Some(2), later);
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].last_transition_time.0, then);
        assert_eq!(status.conditions[0].observed_generation, Some(2));
        assert!(status.certificates.is_some());
        let before = status.clone();
        record(&mut status, None, &previous, Some(3), later);
        assert_eq!(status, before, "without TLS nothing changes");
    }
}
