//! A throwaway PKI for TLS tests, made with rcgen: a CA, the broker's
//! certificate (for 127.0.0.1 and localhost), brokers' peer certificates
//! (server and client in one), client certificates, and the
//! bad cases (a client of another CA, an expired client).
//!
//! Files are PEM, as Kafka's PEM settings take them: the broker's keystore
//! is one file with its key and certificate chain.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

/// A CA and what it signed, written under one directory.
pub struct TestPki {
    dir: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, as files.
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// Key then certificate chain in one file (Kafka's PEM keystore).
    pub keystore: PathBuf,
}

fn ca(name: &str) -> (Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Rivulet tests");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert, key)
}

impl TestPki {
    /// A new CA whose certificate is `dir/ca.pem`.
    pub fn new(dir: &Path, name: &str) -> TestPki {
        std::fs::create_dir_all(dir).expect("create the PKI directory");
        let (ca, ca_key) = ca(name);
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
        TestPki {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
        }
    }

    /// The CA certificate file (a truststore).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for 127.0.0.1 and localhost, as `name.*`.
    pub fn server(&self, name: &str) -> CertFiles {
        self.host_cert(name, vec![ExtendedKeyUsagePurpose::ServerAuth])
    }

    /// A broker's certificate for 127.0.0.1 and localhost, for servers and
    /// clients both: what a broker presents on its listeners and, as a
    /// client, to other brokers (replication, the controller quorum).
    pub fn peer(&self, name: &str) -> CertFiles {
        self.host_cert(
            name,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    fn host_cert(&self, name: &str, usages: Vec<ExtendedKeyUsagePurpose>) -> CertFiles {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.extended_key_usages = usages;
        self.issue(name, params)
    }

    /// A certificate whose subject is `CN=<cn>` alone, as the operator's
    /// CAs issue them: for `dns_names` and 127.0.0.1 with server and
    /// client usage when `server` (a broker's), client usage only
    /// otherwise (a user's, the operator's); files `name.*`.
    pub fn issued(&self, name: &str, cn: &str, dns_names: &[String], server: bool) -> CertFiles {
        let mut params = CertificateParams::new(dns_names.to_vec()).expect("leaf params");
        let mut usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if server {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages = usages;
        self.issue(name, params)
    }

    /// A client certificate whose subject is `CN=<cn>,OU=<ou>,O=Rivulet`.
    pub fn client(&self, name: &str, cn: &str, ou: &str) -> CertFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Rivulet");
        dn.push(DnType::OrganizationalUnitName, ou);
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(name, params)
    }

    /// A client certificate that expired a year ago.
    pub fn expired_client(&self, name: &str, cn: &str) -> CertFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.issue(name, params)
    }

    fn issue(&self, name: &str, params: CertificateParams) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("sign");
        let files = CertFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
            keystore: self.dir.join(format!("{name}.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        std::fs::write(
            &files.keystore,
            format!("{}{}{}", key.serialize_pem(), cert.pem(), self.ca.pem()),
        )
        .expect("write keystore");
        files
    }
}
