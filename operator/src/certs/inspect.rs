//! Reading certificates back from PEM: what the operator needs to decide
//! whether one must be issued again (its end of validity, its names, who
//! signed it) and to report it.

use std::net::IpAddr;

use rustls_pki_types::{pem::PemObject, CertificateDer};
use sha2::{Digest, Sha256};
use x509_cert::{
    der::{oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME, Decode, Encode},
    ext::pkix::{name::GeneralName, SubjectAltName},
    Certificate,
};

use super::CertError;

/// What one certificate says, as far as the operator cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// DNS subject alternative names, in certificate order.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// The subject, RFC 4514 text (`CN=alice,O=rivulet.dev`).
    pub subject: String,
    /// The issuer, RFC 4514 text.
    pub issuer: String,
    /// SHA-256 of the DER encoding, lower-case hex: names one certificate.
    pub fingerprint: String,
}

/// Every certificate of a PEM text, as DER, in order.
pub fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Parse {
            what: "a PEM certificate".into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Parse {
            what: "a PEM certificate".into(),
            message: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The first certificate of a PEM text, decoded.
pub fn parse_first(pem: &str) -> Result<Certificate, CertError> {
    let der = pem_certificates(pem)?.remove(0);
    Certificate::from_der(der.as_ref()).map_err(|e| CertError::Parse {
        what: "an X.509 certificate".into(),
        message: e.to_string(),
    })
}

/// SHA-256 of `der`, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the first certificate of `pem` says.
pub fn inspect(pem: &str) -> Result<CertInfo, CertError> {
    let cert = parse_first(pem)?;
    let tbs = &cert.tbs_certificate;
    let seconds = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id != ID_CE_SUBJECT_ALT_NAME {
            continue;
        }
        let names =
            SubjectAltName::from_der(ext.extn_value.as_bytes()).map_err(|e| CertError::Parse {
                what: "subject alternative names".into(),
                message: e.to_string(),
            })?;
        for name in names.0 {
            match name {
                GeneralName::DnsName(dns) => dns_names.push(dns.as_str().to_string()),
                GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
                    4 => ip_addresses.push(IpAddr::from(
                        <[u8; 4]>::try_from(ip.as_bytes()).expect("4 bytes"),
                    )),
                    16 => ip_addresses.push(IpAddr::from(
                        <[u8; 16]>::try_from(ip.as_bytes()).expect("16 bytes"),
                    )),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let der = cert.to_der().map_err(|e| CertError::Parse {
        what: "an X.509 certificate".into(),
        message: e.to_string(),
    })?;
    Ok(CertInfo {
        not_before: seconds(tbs.validity.not_before),
        not_after: seconds(tbs.validity.not_after),
        dns_names,
        ip_addresses,
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        fingerprint: fingerprint(&der),
    })
}

/// The fingerprints of every certificate in a PEM bundle, in order.
pub fn bundle_fingerprints(pem: &str) -> Result<Vec<String>, CertError> {
    Ok(pem_certificates(pem)?
        .iter()
        .map(|d| fingerprint(d.as_ref()))
        .collect())
}

/// Whether the leaf `leaf_pem` was signed by the CA `ca_pem`: the
/// signature checked with the CA's public key (names alone could match a
/// replaced key of the same name).
pub fn signed_by(leaf_pem: &str, ca_pem: &str) -> bool {
    let (Ok(leaf), Ok(ca)) = (pem_certificates(leaf_pem), pem_certificates(ca_pem)) else {
        return false;
    };
    let (Ok(leaf), Ok(ca)) = (
        Certificate::from_der(leaf[0].as_ref()),
        Certificate::from_der(ca[0].as_ref()),
    ) else {
        return false;
    };
    let Ok(tbs) = leaf.tbs_certificate.to_der() else {
        return false;
    };
    let Some(signature) = leaf.signature.as_bytes() else {
        return false;
    };
    let spki = &ca.tbs_certificate.subject_public_key_info;
    let Some(public) = spki.subject_public_key.as_bytes() else {
        return false;
    };
    let algorithm: &dyn ring::signature::VerificationAlgorithm =
        match leaf.signature_algorithm.oid.to_string().as_str() {
            "1.2.840.10045.4.3.2" => &ring::signature::ECDSA_P256_SHA256_ASN1,
            "1.2.840.10045.4.3.3" => &ring::signature::ECDSA_P384_SHA384_ASN1,
            "1.2.840.113549.1.1.11" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            "1.2.840.113549.1.1.12" => &ring::signature::RSA_PKCS1_2048_8192_SHA384,
            "1.2.840.113549.1.1.13" => &ring::signature::RSA_PKCS1_2048_8192_SHA512,
            "1.3.101.112" => &ring::signature::ED25519,
            _ => return false,
        };
    ring::signature::UnparsedPublicKey::new(algorithm, public)
        .verify(&tbs, signature)
        .is_ok()
}
