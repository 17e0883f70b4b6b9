//! PKCS#12 stores for Java clients, as Strimzi's Secrets carry them:
//! `user.p12` (the user's key and certificate chain) and `ca.p12` (a
//! truststore of the CA certificates, each marked trusted the way Java's
//! keytool reads it). Encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256)
//! and an HMAC-SHA256 MAC, which Java 11+ and OpenSSL 1.1+ read.

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKeyChain};
use rustls_pki_types::{pem::PemObject, PrivateKeyDer};

use super::{inspect::pem_certificates, CertError};

fn p12_error(e: impl std::fmt::Display) -> CertError {
    CertError::Pkcs12(e.to_string())
}

fn certificates(pem: &str) -> Result<Vec<Certificate>, CertError> {
    pem_certificates(pem)?
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).map_err(p12_error))
        .collect()
}

/// A keystore holding `key_pem` (PKCS#8) with its chain `chain_pem`
/// (leaf first, then its CA), under the alias `alias`.
pub fn keystore(
    alias: &str,
    key_pem: &str,
    chain_pem: &str,
    password: &str,
) -> Result<Vec<u8>, CertError> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| CertError::Parse {
        what: "a private key".into(),
        message: e.to_string(),
    })?;
    let chain = certificates(chain_pem)?;
    // The local key id ties the key to its certificate: the leaf's digest.
    let digest = super::inspect::fingerprint(chain[0].as_der());
    let key_id = &digest.as_bytes()[..20];
    let mut store = KeyStore::new();
    store.add_entry(
        alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key.secret_der(), key_id, chain)),
    );
    store.writer(password).write().map_err(p12_error)
}

/// A truststore of every certificate in `bundle_pem`, aliases `ca-0`,
/// `ca-1`, ... in bundle order.
pub fn truststore(bundle_pem: &str, password: &str) -> Result<Vec<u8>, CertError> {
    let mut store = KeyStore::new();
    for (i, cert) in certificates(bundle_pem)?.into_iter().enumerate() {
        store.add_entry(&format!("ca-{i}"), KeyStoreEntry::Certificate(cert));
    }
    store.writer(password).write().map_err(p12_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{issue, new_ca, LeafRequest};

    #[test]
    fn keystore_and_truststore_read_back_with_their_password() {
        let ca = new_ca("clients-ca", 30, 1_800_000_000).unwrap();
        let leaf = issue(&ca, &LeafRequest::client("alice", 10), 1_800_000_000).unwrap();
        let chain = format!("{}{}", leaf.cert_pem, ca.cert_pem);
        let bytes = keystore("alice", &leaf.key_pem, &chain, "s3cret").unwrap();
        assert!(KeyStore::from_pkcs12(&bytes, "wrong").is_err());
        let store = KeyStore::from_pkcs12(&bytes, "s3cret").unwrap();
        let (alias, read) = store.private_key_chain().unwrap();
        assert_eq!(alias, "alice");
        assert_eq!(read.chain().len(), 2);
        assert!(read.chain()[0].subject().contains("alice"));
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        assert_eq!(read.key(), key.secret_der());

        let other = new_ca("other", 30, 1_800_000_000).unwrap();
        let bundle = format!("{}{}", ca.cert_pem, other.cert_pem);
        let trust = KeyStore::from_pkcs12(&truststore(&bundle, "pw").unwrap(), "pw").unwrap();
        assert_eq!(trust.entries_count(), 2);
        assert!(matches!(
            trust.entry("ca-1"),
            Some(KeyStoreEntry::Certificate(c)) if c.subject().contains("other")
        ));
    }
}
