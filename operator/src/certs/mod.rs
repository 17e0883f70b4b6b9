//! The operator's certificate authorities and the certificates they sign,
//! as pure functions: no Kubernetes, no clock (callers pass `now` in Unix
//! seconds), so every rule is tested without I/O.
//!
//! Two CAs per cluster, as Strimzi has them: the *cluster CA* signs the
//! brokers' certificates (server and client in one, for clients and for
//! each other) and the operator's client certificate; the *clients CA*
//! signs TLS KafkaUsers' certificates. Keys are ECDSA P-256, certificates
//! X.509 v3 signed with SHA-256.
//!
//! - [`issue`]: a new CA ([`new_ca`]) and leaves signed by it ([`issue()`]).
//! - [`inspect`]: what a PEM certificate says (validity, names, issuer),
//!   read back from Secrets to decide what to re-issue.
//! - [`names`]: every DNS name a client may dial a broker by.
//! - [`p12`]: PKCS#12 stores for Java clients.
//! - [`renewal`]: the CA key replacement state machine.
//! - [`secrets`]: the Secrets that hold all of it, built from values.

pub mod inspect;
pub mod issue;
pub mod names;
pub mod p12;
pub mod renewal;
pub mod secrets;

pub use self::{
    issue::{issue, new_ca, LeafRequest},
    names::{broker_dns_names, broker_dns_names_in},
};

/// Seconds in a day, for `validityDays` and `renewalDays`.
pub const DAY: i64 = 86_400;

/// A certificate and its private key, as PEM text.
///
/// `cert_pem` holds the one certificate issued (a leaf is *not* followed by
/// its CA here: the Secret builders add the chain where a key needs it).
/// `key_pem` is the private key as unencrypted PKCS#8 PEM. The validity
/// bounds are Unix seconds (UTC), as written in the certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for Issued {
    // The key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("signing a certificate for {what} failed")]
    Sign {
        /// The certificate being made.
        what: String,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM certificate or key could not be read.
    #[error("reading {what}: {message}")]
    Parse {
        /// What was being read (a Secret key, a certificate).
        what: String,
        /// What was wrong with it.
        message: String,
    },
    /// A validity or time value is out of range.
    #[error("the time {0} (Unix seconds) is out of range for a certificate")]
    Time(i64),
    /// Building a PKCS#12 store failed.
    #[error("building a PKCS#12 store failed: {0}")]
    Pkcs12(String),
}
