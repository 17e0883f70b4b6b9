//! The life of one certificate authority, as a pure state machine over
//! what its two Secrets store: created, steady, and a key replacement in
//! three phases that never leave a party distrusting a certificate it is
//! shown:
//!
//! 1. **Trust both** (`TrustingNewCa`): a new key and certificate are
//!    stored beside the signing one (`next.crt`/`next.key`) and the trust
//!    bundle holds old and new. Leaves are still signed by the old key.
//!    The brokers' certificate Secret is re-issued with the new bundle, and
//!    the phase waits until every broker *presents* its newly issued leaf
//!    (the volume of that Secret is updated atomically, so a broker serving
//!    the new leaf has also loaded the bundle beside it) and every TLS
//!    user's Secret carries the new bundle for its application.
//! 2. **Switch** (`DroppingOldCa`): the new key becomes the signing key;
//!    the bundle still holds both, so leaves signed by either key are
//!    trusted while every broker, operator and user certificate is issued
//!    again by the new key.
//! 3. **Drop old** (`Ready`): once every leaf is signed by the new key and
//!    every broker presents its new leaf, the bundle keeps only the new
//!    certificate.
//!
//! No broker is restarted: brokers re-read their certificate files for new
//! connections. The phase is *derived* from the Secrets every time
//! (a `next` key means trust-both, extra bundle certificates mean the old
//! one is still being dropped), so an operator restarted at any point,
//! even between two writes of one step, picks up where the stored state
//! is; the decisions only ever need the stored state and what the
//! brokers present now.
//!
//! Triggers: the signing certificate within `renewalDays` of its end, or
//! the force-renew annotation on the CA Secret (removed in the same write
//! that stores the new key, so it fires once). A CA already expired is
//! replaced at once, without the trust-both phase: nothing it signed is
//! trusted any more, so waiting would only prolong the outage.

use super::{issue::new_ca, CertError, Issued, DAY};

/// What the two Secrets of one CA store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredCa {
    /// The signing certificate and key (`ca.crt`/`ca.key` of the CA
    /// Secret); `None` when the Secret or a key is missing.
    pub signing: Option<Issued>,
    /// The next key during trust-both (`next.crt`/`next.key`).
    pub next: Option<Issued>,
    /// The generation of the signing key (annotation), counting replacements.
    pub generation: u32,
    /// The force-renew annotation is on the CA Secret.
    pub force_renew: bool,
    /// The trust bundle (`ca.crt` of the cert Secret), one PEM per certificate.
    pub bundle: Vec<String>,
}

/// How a CA is managed (`spec.clusterCa` / `spec.clientsCa`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Days a new CA certificate is valid.
    pub validity_days: u32,
    /// Days before the end of validity a replacement starts.
    pub renewal_days: u32,
    /// The operator makes and replaces the CA; `false`: the user brings it.
    pub generate: bool,
}

/// What the operator sees of the CA's users now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every broker presents the leaf currently in its Secret, and that
    /// Secret was issued with the current trust bundles.
    pub brokers_loaded: bool,
    /// Every Secret the operator hands this CA's bundle to, besides the
    /// brokers', holds the current bundle: the TLS users' `ca.crt` for the
    /// cluster CA (their applications trust the brokers with it).
    pub bundle_distributed: bool,
    /// Every leaf this CA signs (brokers and operator for the cluster CA,
    /// TLS users for the clients CA) is signed by the signing key.
    pub leaves_resigned: bool,
}

/// The phase of a CA, as `status.certificates.*.phase` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaPhase {
    /// No usable CA: created next (or, for a CA the user brings, missing).
    Missing,
    /// One CA, trusted and signing.
    Ready,
    /// Trust-both: the bundle holds the old and the new CA.
    TrustingNewCa,
    /// The new key signs; the old CA leaves the bundle once nothing uses it.
    DroppingOldCa,
    /// The CA has expired (the user's own: it must be replaced by the user).
    Expired,
}

impl CaPhase {
    /// The name shown in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            CaPhase::Missing => "Missing",
            CaPhase::Ready => "Ready",
            CaPhase::TrustingNewCa => "TrustingNewCa",
            CaPhase::DroppingOldCa => "DroppingOldCa",
            CaPhase::Expired => "Expired",
        }
    }
}

/// One write to a Secret. The controller performs a step's writes in
/// order; any prefix of them is a state [`decide`] recovers from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// The CA Secret: signing and next key, generation; removes the
    /// force-renew annotation in the same write.
    CaSecret {
        /// The signing certificate and key.
        signing: Issued,
        /// The next key, during trust-both.
        next: Option<Issued>,
        /// The signing key's generation.
        generation: u32,
    },
    /// The cert Secret's trust bundle.
    Bundle(Vec<String>),
}

/// What [`decide`] concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The phase after the writes.
    pub phase: CaPhase,
    /// The writes to make, in order.
    pub writes: Vec<Write>,
    /// What is happening, for the status and Events; `None` when steady.
    pub message: Option<String>,
    /// The CA was replaced because it had expired: clients that kept a
    /// copy of the old one must fetch the new bundle.
    pub replaced_expired: bool,
}

impl Decision {
    fn wait(phase: CaPhase, message: impl Into<String>) -> Decision {
        Decision {
            phase,
            writes: Vec::new(),
            message: Some(message.into()),
            replaced_expired: false,
        }
    }
}

/// Applies `writes` to `stored`: what the Secrets hold afterwards.
pub fn apply_writes(stored: &StoredCa, writes: &[Write]) -> StoredCa {
    let mut after = stored.clone();
    for write in writes {
        match write {
            Write::CaSecret {
                signing,
                next,
                generation,
            } => {
                after.signing = Some(signing.clone());
                after.next = next.clone();
                after.generation = *generation;
                after.force_renew = false;
            }
            Write::Bundle(bundle) => after.bundle = bundle.clone(),
        }
    }
    after
}

/// The next step for one CA named `name` (its certificates' common name
/// is `<name> v<generation>`).
pub fn decide(
    name: &str,
    stored: &StoredCa,
    policy: &Policy,
    progress: &Progress,
    now: i64,
) -> Result<Decision, CertError> {
    let fresh =
        |generation: u32| new_ca(&format!("{name} v{generation}"), policy.validity_days, now);
    let Some(signing) = &stored.signing else {
        if !policy.generate {
            return Ok(Decision::wait(
                CaPhase::Missing,
                format!("the {name} Secrets are missing: create them (generateCertificateAuthority is false)"),
            ));
        }
        let ca = fresh(stored.generation)?;
        let message = format!("created the {name}");
        return Ok(sole_signing(ca, stored.generation, message, false));
    };
    if now >= signing.not_after {
        if !policy.generate {
            return Ok(Decision::wait(
                CaPhase::Expired,
                format!("the {name} has expired: replace the certificate and key in its Secrets"),
            ));
        }
        let generation = stored.generation + 1;
        let message = format!(
            "the {name} had expired and was replaced by a new one (generation {generation}): clients must trust the new CA certificate"
        );
        return Ok(sole_signing(fresh(generation)?, generation, message, true));
    }
    if let Some(next) = &stored.next {
        return Ok(trust_both(name, stored, signing, next, progress));
    }
    let extras = stored.bundle.iter().any(|c| *c != signing.cert_pem);
    if !stored.bundle.contains(&signing.cert_pem) {
        // A create or a switch whose bundle write was lost, or a user's
        // bundle without its signing certificate.
        let mut bundle = stored.bundle.clone();
        bundle.push(signing.cert_pem.clone());
        if !policy.generate {
            return Ok(Decision::wait(
                CaPhase::Missing,
                format!("the {name} certificate Secret does not hold the signing certificate: add it to its ca.crt"),
            ));
        }
        return Ok(Decision {
            phase: if extras {
                CaPhase::DroppingOldCa
            } else {
                CaPhase::Ready
            },
            writes: vec![Write::Bundle(bundle)],
            message: None,
            replaced_expired: false,
        });
    }
    if extras && policy.generate {
        if progress.leaves_resigned && progress.brokers_loaded {
            return Ok(Decision {
                phase: CaPhase::Ready,
                writes: vec![Write::Bundle(vec![signing.cert_pem.clone()])],
                message: Some(format!(
                    "every certificate is signed by the new {name} key: the old CA is no longer trusted"
                )),
                replaced_expired: false,
            });
        }
        return Ok(Decision::wait(
            CaPhase::DroppingOldCa,
            format!("certificates are being issued again by the new {name} key; the old CA stays trusted until every one is and the brokers use theirs"),
        ));
    }
    let due = signing.not_after - i64::from(policy.renewal_days) * DAY;
    if policy.generate && (stored.force_renew || now >= due) {
        let generation = stored.generation + 1;
        let next = fresh(generation)?;
        let why = if stored.force_renew {
            "the force-renew annotation asks for it".to_string()
        } else {
            format!("its certificate ends within {} days", policy.renewal_days)
        };
        return Ok(Decision {
            phase: CaPhase::TrustingNewCa,
            writes: vec![
                Write::CaSecret {
                    signing: signing.clone(),
                    next: Some(next.clone()),
                    generation: stored.generation,
                },
                Write::Bundle(vec![signing.cert_pem.clone(), next.cert_pem]),
            ],
            message: Some(format!(
                "replacing the {name} key because {why}: trusting the old and the new CA"
            )),
            replaced_expired: false,
        });
    }
    Ok(Decision {
        phase: CaPhase::Ready,
        writes: Vec::new(),
        message: None,
        replaced_expired: false,
    })
}

/// `ca` becomes the signing key and the only trusted certificate.
fn sole_signing(ca: Issued, generation: u32, message: String, replaced_expired: bool) -> Decision {
    Decision {
        phase: CaPhase::Ready,
        writes: vec![
            Write::CaSecret {
                signing: ca.clone(),
                next: None,
                generation,
            },
            Write::Bundle(vec![ca.cert_pem]),
        ],
        message: Some(message),
        replaced_expired,
    }
}

/// Trust-both: make sure the bundle holds both, then switch once every
/// broker has loaded it.
fn trust_both(
    name: &str,
    stored: &StoredCa,
    signing: &Issued,
    next: &Issued,
    progress: &Progress,
) -> Decision {
    let both = vec![signing.cert_pem.clone(), next.cert_pem.clone()];
    if stored.bundle != both {
        return Decision {
            phase: CaPhase::TrustingNewCa,
            writes: vec![Write::Bundle(both)],
            message: Some(format!("trusting the old and the new {name}")),
            replaced_expired: false,
        };
    }
    if !progress.brokers_loaded {
        return Decision::wait(
            CaPhase::TrustingNewCa,
            format!("waiting for every broker to load the trust bundle with the new {name}"),
        );
    }
    if !progress.bundle_distributed {
        return Decision::wait(
            CaPhase::TrustingNewCa,
            format!(
                "waiting for every TLS user's Secret to carry the trust bundle with the new {name}"
            ),
        );
    }
    Decision {
        phase: CaPhase::DroppingOldCa,
        writes: vec![Write::CaSecret {
            signing: next.clone(),
            next: None,
            generation: stored.generation + 1,
        }],
        message: Some(format!(
            "every broker trusts the new {name}: it signs from now on"
        )),
        replaced_expired: false,
    }
}

#[cfg(test)]
mod tests;
