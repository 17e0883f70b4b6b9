//! Certificates as the operator builds them, checked the way TLS peers
//! check them: chains verified with webpki (rustls' verifier) for the
//! names and usages brokers, the operator and users need, and the
//! extensions read back with x509-cert.

use std::{net::IpAddr, time::Duration};

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_cert::{
    der::{
        oid::db::rfc5280::{ID_CE_BASIC_CONSTRAINTS, ID_CE_EXT_KEY_USAGE, ID_CE_KEY_USAGE},
        Decode,
    },
    ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages},
};

use super::*;
use crate::certs::{
    broker_dns_names,
    inspect::{inspect, parse_first, pem_certificates},
    issue, new_ca,
    renewal::StoredCa,
    LeafRequest, DAY,
};

const NOW: i64 = 1_800_000_000;

fn der(pem: &str) -> CertificateDer<'static> {
    pem_certificates(pem).unwrap().remove(0)
}

/// Verifies `leaf` against `ca` for a usage at `at`, as rustls does.
fn verify(leaf: &str, ca: &str, usage: webpki::KeyUsage, at: i64) -> Result<(), webpki::Error> {
    let ca_der = der(ca);
    let anchor = webpki::anchor_from_trusted_cert(&ca_der).unwrap();
    let leaf_der = der(leaf);
    let ee = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        UnixTime::since_unix_epoch(Duration::from_secs(at as u64)),
        usage,
        None,
        None,
    )
    .map(drop)
}

/// Whether [`verify`] refuses.
fn refused(leaf: &str, ca: &str, usage: webpki::KeyUsage, at: i64) -> bool {
    verify(leaf, ca, usage, at).is_err()
}

fn extension(cert: &x509_cert::Certificate, oid: x509_cert::der::oid::ObjectIdentifier) -> &[u8] {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
        .unwrap_or_else(|| panic!("extension {oid} present"))
}

fn broker_request(id: i32) -> LeafRequest {
    LeafRequest {
        common_name: broker_common_name("demo", id),
        dns_names: broker_dns_names("demo", "kafka", id, &["kafka.example.com".into()]),
        ip_addresses: vec!["203.0.113.9".parse().unwrap()],
        server: true,
        client: true,
        validity_days: 30,
    }
}

#[test]
fn a_ca_is_a_constrained_signing_only_authority() {
    let ca = new_ca("demo cluster CA v0", 365, NOW).unwrap();
    assert_eq!(ca.not_after, NOW + 365 * DAY);
    assert!(ca.not_before <= NOW && ca.not_before > NOW - 3600);
    assert!(ca.key_pem.contains("BEGIN PRIVATE KEY"), "PKCS#8");
    let cert = parse_first(&ca.cert_pem).unwrap();
    let bc = BasicConstraints::from_der(extension(&cert, ID_CE_BASIC_CONSTRAINTS)).unwrap();
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = KeyUsage::from_der(extension(&cert, ID_CE_KEY_USAGE)).unwrap();
    assert!(ku.0.contains(KeyUsages::KeyCertSign) && ku.0.contains(KeyUsages::CRLSign));
    let info = inspect(&ca.cert_pem).unwrap();
    assert_eq!(info.subject, info.issuer, "self-signed");
    assert!(info.subject.contains("CN=demo cluster CA v0"));
}

#[test]
fn a_broker_certificate_verifies_for_every_name_as_server_and_client() {
    let ca = new_ca("demo cluster CA v0", 365, NOW).unwrap();
    let leaf = issue(&ca, &broker_request(1), NOW).unwrap();
    verify(
        &leaf.cert_pem,
        &ca.cert_pem,
        webpki::KeyUsage::server_auth(),
        NOW,
    )
    .unwrap();
    verify(
        &leaf.cert_pem,
        &ca.cert_pem,
        webpki::KeyUsage::client_auth(),
        NOW,
    )
    .unwrap();
    let leaf_der = der(&leaf.cert_pem);
    let ee = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
    for name in broker_dns_names("demo", "kafka", 1, &["kafka.example.com".into()]) {
        let name = ServerName::try_from(name.as_str()).unwrap();
        ee.verify_is_valid_for_subject_name(&name).unwrap();
    }
    let ip = ServerName::try_from("203.0.113.9").unwrap();
    ee.verify_is_valid_for_subject_name(&ip).unwrap();
    for wrong in ["demo-broker-0.demo-brokers.kafka.svc", "localhost"] {
        let name = ServerName::try_from(wrong).unwrap();
        assert!(
            ee.verify_is_valid_for_subject_name(&name).is_err(),
            "{wrong}"
        );
    }
    let cert = parse_first(&leaf.cert_pem).unwrap();
    let bc = BasicConstraints::from_der(extension(&cert, ID_CE_BASIC_CONSTRAINTS)).unwrap();
    assert!(!bc.ca);
    let eku = ExtendedKeyUsage::from_der(extension(&cert, ID_CE_EXT_KEY_USAGE)).unwrap();
    assert_eq!(eku.0.len(), 2);
    let info = inspect(&leaf.cert_pem).unwrap();
    assert!(info.subject.contains("CN=demo-broker-1"));
    assert_eq!(info.not_after, NOW + 30 * DAY);
    // A certificate of another CA is refused; so is one past its end.
    let other = new_ca("other", 365, NOW).unwrap();
    assert!(refused(
        &leaf.cert_pem,
        &other.cert_pem,
        webpki::KeyUsage::server_auth(),
        NOW
    ));
    let late = NOW + 31 * DAY;
    assert!(refused(
        &leaf.cert_pem,
        &ca.cert_pem,
        webpki::KeyUsage::server_auth(),
        late
    ));
}

#[test]
fn a_client_only_certificate_is_refused_as_a_server() {
    let ca = new_ca("clients CA", 365, NOW).unwrap();
    let user = LeafRequest::client("alice", 30);
    let leaf = issue(&ca, &user, NOW).unwrap();
    verify(
        &leaf.cert_pem,
        &ca.cert_pem,
        webpki::KeyUsage::client_auth(),
        NOW,
    )
    .unwrap();
    assert!(refused(
        &leaf.cert_pem,
        &ca.cert_pem,
        webpki::KeyUsage::server_auth(),
        NOW
    ));
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let ca = new_ca("short", 10, NOW).unwrap();
    let leaf = issue(&ca, &broker_request(0), NOW).unwrap();
    assert_eq!(leaf.not_after, ca.not_after);
    assert_eq!(inspect(&leaf.cert_pem).unwrap().not_after, ca.not_after);
}

#[test]
fn a_ca_made_elsewhere_signs_leaves_its_chain_accepts() {
    // Printable and UTF-8 strings, three attributes and a SHA-512 key id:
    // what another tool might have made.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CountryName,
        rcgen::DnValue::PrintableString("DE".try_into().unwrap()),
    );
    dn.push(rcgen::DnType::OrganizationName, "Ütility GmbH");
    dn.push(rcgen::DnType::CommonName, "corp root");
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    params.key_identifier_method = rcgen::KeyIdMethod::Sha512;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let ca = Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_before: 0,
        not_after: inspect(&cert.pem()).unwrap().not_after,
    };
    let leaf = issue(&ca, &broker_request(0), NOW).unwrap();
    verify(
        &leaf.cert_pem,
        &ca.cert_pem,
        webpki::KeyUsage::server_auth(),
        NOW,
    )
    .unwrap();
    assert_eq!(
        inspect(&leaf.cert_pem).unwrap().issuer,
        inspect(&ca.cert_pem).unwrap().subject
    );
    assert!(crate::certs::inspect::signed_by(
        &leaf.cert_pem,
        &ca.cert_pem
    ));
}

fn owner() -> Owner {
    Owner {
        cluster: "demo".into(),
        namespace: "kafka".into(),
        reference: OwnerReference {
            api_version: "rivulet.dev/v1alpha1".into(),
            kind: "KafkaCluster".into(),
            name: "demo".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    }
}

#[test]
fn ca_secrets_store_what_the_state_machine_reads_back() {
    let signing = new_ca("demo cluster CA v3", 365, NOW).unwrap();
    let next = new_ca("demo cluster CA v4", 365, NOW).unwrap();
    let key = ca_key_secret(&owner(), CaKind::Cluster, &signing, Some(&next), 3);
    assert_eq!(key.metadata.name.as_deref(), Some("demo-cluster-ca"));
    let bundle = vec![signing.cert_pem.clone(), next.cert_pem.clone()];
    let cert = ca_cert_secret(&owner(), CaKind::Cluster, &bundle, "pw").unwrap();
    assert_eq!(cert.metadata.name.as_deref(), Some("demo-cluster-ca-cert"));
    let keys: Vec<&String> = cert.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["ca.crt", "ca.p12", "ca.password"]);
    let stored = read_stored(Some(&key), Some(&cert));
    assert_eq!(
        stored,
        StoredCa {
            signing: Some(signing.clone()),
            next: Some(next),
            generation: 3,
            force_renew: false,
            bundle,
        }
    );
    let mut forced = key.clone();
    forced
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(FORCE_RENEW_ANNOTATION.into(), "true".into());
    assert!(read_stored(Some(&forced), None).force_renew);
    assert_eq!(read_stored(None, None), StoredCa::default());
    assert_eq!(CaKind::Clients.key_secret("demo"), "demo-clients-ca");
    assert_eq!(CaKind::Clients.cert_secret("demo"), "demo-clients-ca-cert");
}

#[test]
fn broker_and_operator_secrets_have_the_contract_keys() {
    let ca = new_ca("demo cluster CA v0", 365, NOW).unwrap();
    let leaves = BTreeMap::from([
        (0, issue(&ca, &broker_request(0), NOW).unwrap()),
        (1, issue(&ca, &broker_request(1), NOW).unwrap()),
    ]);
    let brokers = broker_certs(&owner(), &leaves, &ca.cert_pem, &ca.cert_pem, "CLIENTS");
    assert_eq!(brokers.metadata.name.as_deref(), Some("demo-broker-certs"));
    let data = brokers.data.as_ref().unwrap();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "broker-0.crt",
            "broker-0.key",
            "broker-0.pem",
            "broker-1.crt",
            "broker-1.key",
            "broker-1.pem",
            "ca.crt",
            "clients-ca.crt"
        ]
    );
    let chain = text(&brokers, "broker-1.crt").unwrap();
    assert_eq!(pem_certificates(&chain).unwrap().len(), 2, "leaf then CA");
    let keystore = text(&brokers, "broker-1.pem").unwrap();
    assert!(keystore.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(
        trust_of(&brokers),
        Some(trust_digest(&ca.cert_pem, "CLIENTS"))
    );
    assert_ne!(
        trust_digest(&ca.cert_pem, "CLIENTS"),
        trust_digest(&ca.cert_pem, "OTHER")
    );

    let op = issue(&ca, &LeafRequest::client(OPERATOR_COMMON_NAME, 30), NOW).unwrap();
    let secret = operator_certs(&owner(), &op, &ca.cert_pem, &ca.cert_pem);
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    assert!(inspect(&text(&secret, "tls.crt").unwrap())
        .unwrap()
        .subject
        .contains("CN=rivulet-operator"));
}

#[test]
fn a_leaf_is_issued_again_for_each_reason_and_only_then() {
    let ca = new_ca("demo cluster CA v0", 365, NOW).unwrap();
    let req = broker_request(0);
    let leaf = issue(&ca, &req, NOW).unwrap();
    let ips: Vec<IpAddr> = req.ip_addresses.clone();
    let check = |pem: Option<&str>, ca: &str, names: &[String], now: i64| {
        reissue_reason(pem, ca, names, &ips, 7, now)
    };
    assert_eq!(
        check(Some(&leaf.cert_pem), &ca.cert_pem, &req.dns_names, NOW),
        None
    );
    assert_eq!(
        check(None, &ca.cert_pem, &req.dns_names, NOW),
        Some("missing")
    );
    assert_eq!(
        check(Some("junk"), &ca.cert_pem, &req.dns_names, NOW),
        Some("unreadable")
    );
    let new = new_ca("demo cluster CA v1", 365, NOW).unwrap();
    assert_eq!(
        check(Some(&leaf.cert_pem), &new.cert_pem, &req.dns_names, NOW),
        Some("signed by another CA key")
    );
    assert_eq!(
        check(
            Some(&leaf.cert_pem),
            &ca.cert_pem,
            &req.dns_names,
            NOW + 24 * DAY
        ),
        Some("near its end of validity")
    );
    // A leaf that already ends with its CA is not issued again for that.
    let short = new_ca("short", 20, NOW).unwrap();
    let capped = issue(&short, &req, NOW).unwrap();
    assert_eq!(capped.not_after, short.not_after);
    assert_eq!(
        check(
            Some(&capped.cert_pem),
            &short.cert_pem,
            &req.dns_names,
            NOW + 15 * DAY
        ),
        None
    );
    let mut more = req.dns_names.clone();
    more.push("new.example.com".into());
    assert_eq!(
        check(Some(&leaf.cert_pem), &ca.cert_pem, &more, NOW),
        Some("its names changed")
    );
}

#[test]
fn a_bundle_splits_into_its_certificates() {
    let a = new_ca("a", 1, NOW).unwrap();
    let b = new_ca("b", 1, NOW).unwrap();
    let split = split_bundle(&format!("{}{}", a.cert_pem, b.cert_pem));
    assert_eq!(split.len(), 2);
    assert_eq!(der(&split[0]), der(&a.cert_pem));
    assert_eq!(split[1].trim(), b.cert_pem.trim());
}
