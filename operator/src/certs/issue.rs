//! Making certificates: a self-signed CA ([`new_ca`]) and leaves signed by
//! a CA held as PEM ([`issue`]).
//!
//! A CA is kept in a Secret as PEM only, so signing rebuilds the issuer
//! from its certificate: the subject name (attribute by attribute, with
//! each value's string type, so the leaf's issuer name is byte-for-byte
//! the CA's subject, as chain building compares them) and the subject key
//! identifier (so the leaf's authority key identifier matches, which
//! OpenSSL uses to find the issuer). That is also what lets a CA the user
//! brought (`generateCertificateAuthority: false`) sign, whatever tool
//! made it, as long as its key is PKCS#8 PEM.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_cert::der::{
    asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef},
    Decode, Tag, Tagged,
};

use super::{inspect::parse_first, CertError, Issued, DAY};

/// The organization every generated CA and leaf names.
pub const ORGANIZATION: &str = "rivulet.dev";

/// How far back a new certificate's validity starts: a pod whose clock is a
/// little behind the operator's still accepts it.
const BACKDATE: i64 = 5 * 60;

/// A leaf certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRequest {
    /// The subject's common name (a Kafka principal `User:<CN>` once
    /// mapped by `ssl.principal.mapping.rules`).
    pub common_name: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Usable as a TLS server certificate (extended key usage serverAuth).
    pub server: bool,
    /// Usable as a TLS client certificate (extended key usage clientAuth).
    pub client: bool,
    /// Days of validity, capped at the CA's own end of validity.
    pub validity_days: u32,
}

impl LeafRequest {
    /// A client-only certificate for `common_name` (a user, the operator):
    /// no names, extended key usage clientAuth.
    pub fn client(common_name: &str, validity_days: u32) -> LeafRequest {
        LeafRequest {
            common_name: common_name.to_string(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            server: false,
            client: true,
            validity_days,
        }
    }
}

fn time_of(unix: i64) -> Result<OffsetDateTime, CertError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|_| CertError::Time(unix))
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source");
    // Positive and without a leading zero byte: 127 random bits.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn sign_error(what: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Sign {
        what: what.to_string(),
        source,
    }
}

/// A new self-signed CA certificate and key: subject `O=rivulet.dev,
/// CN=<common_name>`, basic constraints CA with path length 0 (it signs
/// leaves only), key usage keyCertSign and cRLSign, valid from `now`
/// (less a few minutes of clock skew) for `validity_days`.
pub fn new_ca(common_name: &str, validity_days: u32, now_unix: i64) -> Result<Issued, CertError> {
    let key = KeyPair::generate().map_err(sign_error(common_name))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let not_before = now_unix - BACKDATE;
    let not_after = now_unix + i64::from(validity_days) * DAY;
    params.not_before = time_of(not_before)?;
    params.not_after = time_of(not_after)?;
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(sign_error(common_name))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_before,
        not_after,
    })
}

/// A leaf certificate for `req`, signed by `ca`, with a new key.
///
/// Key usage digitalSignature; extended key usage serverAuth and/or
/// clientAuth as asked; not a CA. Valid from `now` (less a few minutes of
/// clock skew) for `validity_days`, but never past the CA's own end of
/// validity: a leaf cannot outlive the certificate that vouches for it.
pub fn issue(ca: &Issued, req: &LeafRequest, now_unix: i64) -> Result<Issued, CertError> {
    let what = format!("CN={}", req.common_name);
    let (issuer, issuer_key) = signer(ca)?;
    let key = KeyPair::generate().map_err(sign_error(&what))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, req.common_name.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if req.server {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if req.client {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    for name in &req.dns_names {
        let name = name.clone().try_into().map_err(|_| CertError::Parse {
            what: what.clone(),
            message: format!("`{name}` is not a DNS name a certificate can hold"),
        })?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in &req.ip_addresses {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.use_authority_key_identifier_extension = true;
    let not_before = now_unix - BACKDATE;
    let not_after = (now_unix + i64::from(req.validity_days) * DAY).min(ca.not_after);
    params.not_before = time_of(not_before)?;
    params.not_after = time_of(not_after)?;
    params.serial_number = Some(random_serial());
    let cert = params
        .signed_by(&key, &issuer, &issuer_key)
        .map_err(sign_error(&what))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_before,
        not_after,
    })
}

/// The CA as rcgen needs it to sign: its subject name and key identifier
/// as its certificate has them, and its key.
fn signer(ca: &Issued) -> Result<(Certificate, KeyPair), CertError> {
    let parse = |message: String| CertError::Parse {
        what: "the CA certificate".into(),
        message,
    };
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| CertError::Parse {
        what: "the CA key (PKCS#8 PEM)".into(),
        message: e.to_string(),
    })?;
    let cert = parse_first(&ca.cert_pem).map_err(|e| parse(e.to_string()))?;
    let tbs = &cert.tbs_certificate;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&tbs.subject).map_err(parse)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ski = tbs.extensions.iter().flatten().find_map(|ext| {
        (ext.extn_id == x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER).then(|| {
            x509_cert::ext::pkix::SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes())
        })
    });
    if let Some(ski) = ski {
        let ski = ski.map_err(|e| parse(format!("subject key identifier: {e}")))?;
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski.0.as_bytes().to_vec());
    }
    // Only the name, key identifier and key of this stand-in reach a leaf.
    let issuer = params
        .self_signed(&key)
        .map_err(sign_error("the CA (as issuer)"))?;
    Ok((issuer, key))
}

/// The subject name as rcgen writes it: one attribute per RDN, each with
/// the string type it had.
fn distinguished_name(name: &x509_cert::name::Name) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for rdn in &name.0 {
        if rdn.0.len() != 1 {
            return Err("a multi-valued RDN in the subject is not supported".into());
        }
        for atv in rdn.0.iter() {
            let arcs: Vec<u64> = atv.oid.arcs().map(u64::from).collect();
            if seen.contains(&arcs) {
                return Err(format!(
                    "attribute {} appears twice in the subject",
                    atv.oid
                ));
            }
            seen.push(arcs.clone());
            let value = &atv.value;
            let bad = |e: x509_cert::der::Error| format!("attribute {}: {e}", atv.oid);
            let value = match value.tag() {
                Tag::Utf8String => DnValue::Utf8String(
                    Utf8StringRef::try_from(value).map_err(bad)?.as_str().into(),
                ),
                Tag::PrintableString => DnValue::PrintableString(
                    PrintableStringRef::try_from(value)
                        .map_err(bad)?
                        .as_str()
                        .try_into()
                        .map_err(|e: rcgen::Error| e.to_string())?,
                ),
                Tag::Ia5String => DnValue::Ia5String(
                    Ia5StringRef::try_from(value)
                        .map_err(bad)?
                        .as_str()
                        .try_into()
                        .map_err(|e: rcgen::Error| e.to_string())?,
                ),
                Tag::TeletexString => DnValue::TeletexString(
                    TeletexStringRef::try_from(value)
                        .map_err(bad)?
                        .as_str()
                        .try_into()
                        .map_err(|e: rcgen::Error| e.to_string())?,
                ),
                Tag::BmpString => DnValue::BmpString(
                    rcgen::BmpString::from_utf16be(value.value().to_vec())
                        .map_err(|e| e.to_string())?,
                ),
                other => return Err(format!("attribute {} has string type {other}", atv.oid)),
            };
            dn.push(DnType::CustomDnType(arcs), value);
        }
    }
    Ok(dn)
}
