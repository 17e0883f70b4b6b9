//! TLS for a listener, on rustls: the broker's certificate and key from PEM
//! (Kafka's `ssl.keystore.*` PEM settings), trusted client CAs
//! (`ssl.truststore.*`), `ssl.client.auth`, TLS 1.2 and 1.3 only.
//!
//! Certificates rotate without a restart: [`TlsContext::reload_if_changed`]
//! re-reads the files when their identity (inode, size, modification time)
//! changes, which covers Kubernetes updating a mounted Secret by swapping a
//! symlink. New connections get the new certificate; established ones keep
//! the session they negotiated. A half-written or broken update is refused
//! and the previous certificate stays in use.
//!
//! The same context also makes the broker's *client* side for traffic to
//! other brokers on this listener (replication, the controller quorum): the
//! listener's certificate becomes the client certificate, and the peer's
//! certificate is verified against the truststore and the host dialled.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use rustls::{
    server::WebPkiClientVerifier, ClientConfig, RootCertStore, ServerConfig,
    SupportedProtocolVersion,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use super::principal::MappingRules;

/// Where the broker's key and certificate chain come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `ssl.keystore.location`: one PEM file holding the private key and
    /// the certificate chain (leaf first).
    File(PathBuf),
    /// `ssl.keystore.certificate.chain` and `ssl.keystore.key` inline.
    Inline {
        /// PEM certificates, leaf first.
        chain: String,
        /// PEM private key.
        key: String,
    },
}

/// Where the CAs trusted for client certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustSource {
    /// `ssl.truststore.location`: a PEM file of CA certificates.
    File(PathBuf),
    /// `ssl.truststore.certificates`: PEM CA certificates inline.
    Inline(String),
}

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// Asked for; a client without one connects as `User:ANONYMOUS`.
    Requested,
    /// A client without a trusted certificate is refused.
    Required,
}

/// A TLS protocol version (`ssl.enabled.protocols`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLSv1.2
    Tls12,
    /// TLSv1.3
    Tls13,
}

/// The TLS settings of one listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The broker's key and certificate chain.
    pub keystore: KeySource,
    /// Trusted client CAs.
    pub truststore: Option<TrustSource>,
    /// Whether client certificates are asked for or required.
    pub client_auth: ClientAuth,
    /// Enabled protocol versions.
    pub versions: Vec<TlsVersion>,
    /// `ssl.principal.mapping.rules`: client certificate subject to user name.
    pub principal_rules: MappingRules,
}

/// Loading certificates or keys failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The PEM holds no usable certificate or key.
    #[error("{what}: {reason}")]
    Pem {
        /// Which setting.
        what: String,
        /// What is missing or wrong.
        reason: String,
    },
    /// rustls refused the key or the certificates.
    #[error("{what}: {source}")]
    Rustls {
        /// Which step.
        what: &'static str,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built.
    #[error("ssl.truststore: {0}")]
    Verifier(String),
}

/// What identifies a file's content without reading it.
type Stamp = Vec<(PathBuf, Option<(u64, u64, SystemTime)>)>;

/// A listener's live TLS configuration, reloadable.
pub struct TlsContext {
    settings: TlsSettings,
    /// ALPN protocols offered on both sides (`h2` for the quorum's gRPC;
    /// none for Kafka, which has no ALPN name).
    alpn: Vec<Vec<u8>>,
    current: RwLock<Configs>,
    stamp: Mutex<Stamp>,
}

/// What one load of the files produced.
#[derive(Clone)]
struct Configs {
    server: Arc<ServerConfig>,
    /// `None` without a truststore: a peer cannot be verified.
    client: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Loads the certificates now (so a broken setting fails the start).
    pub fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        Self::load_with_alpn(settings, Vec::new())
    }

    /// Like [`TlsContext::load`], offering `alpn` protocols on both sides.
    pub fn load_with_alpn(settings: TlsSettings, alpn: Vec<Vec<u8>>) -> Result<Self, TlsError> {
        let stamp = stamp(&settings);
        let configs = build_both(&settings, &alpn)?;
        Ok(TlsContext {
            settings,
            alpn,
            current: RwLock::new(configs),
            stamp: Mutex::new(stamp),
        })
    }

    fn current(&self) -> Configs {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration new connections use.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server_config())
    }

    /// The server configuration new connections use.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current().server
    }

    /// The configuration for connecting to another broker as this one:
    /// the listener's certificate as client certificate, the peer verified
    /// against the truststore. `None` without a truststore.
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.current().client
    }

    /// The settings this context was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Re-reads the files if any changed; `Ok(true)` when new certificates
    /// are now in use. On an error the old ones stay in use and the change
    /// is tried again on the next call.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.settings);
        {
            let old = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if *old == now {
                return Ok(false);
            }
        }
        let configs = build_both(&self.settings, &self.alpn)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = configs;
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = now;
        Ok(true)
    }
}

/// When the leaf certificate of `settings`' keystore expires, in seconds
/// since the Unix epoch, read from the files as they are now (the metric
/// follows a rotation without waiting for a reload). `None` when the
/// keystore cannot be read or parsed.
pub fn certificate_expiry(settings: &TlsSettings) -> Option<i64> {
    use x509_cert::der::Decode;
    let pem = match &settings.keystore {
        KeySource::File(path) => std::fs::read(path).ok()?,
        KeySource::Inline { chain, .. } => chain.clone().into_bytes(),
    };
    let leaf = certificates(&pem, "keystore").ok()?.into_iter().next()?;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).ok()?;
    let not_after = cert.tbs_certificate.validity.not_after.to_unix_duration();
    i64::try_from(not_after.as_secs()).ok()
}

fn files(settings: &TlsSettings) -> Vec<&Path> {
    let mut files = Vec::new();
    if let KeySource::File(p) = &settings.keystore {
        files.push(p.as_path());
    }
    if let Some(TrustSource::File(p)) = &settings.truststore {
        files.push(p.as_path());
    }
    files
}

fn stamp(settings: &TlsSettings) -> Stamp {
    files(settings)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.ino(), m.len(), m.modified().ok()?)));
            (p.to_path_buf(), meta)
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.to_string(),
            reason: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| TlsError::Pem {
        what: what.to_string(),
        reason: "no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1) found".into(),
    })
}

/// The CAs of the truststore.
pub fn trust_roots(source: &TrustSource) -> Result<RootCertStore, TlsError> {
    let (pem, what) = match source {
        TrustSource::File(p) => (read(p)?, format!("ssl.truststore.location {}", p.display())),
        TrustSource::Inline(pem) => (
            pem.as_bytes().to_vec(),
            "ssl.truststore.certificates".into(),
        ),
    };
    let mut roots = RootCertStore::empty();
    for cert in certificates(&pem, &what)? {
        roots.add(cert).map_err(|source| TlsError::Rustls {
            what: "ssl.truststore: a CA certificate",
            source,
        })?;
    }
    Ok(roots)
}

/// The broker's chain and key.
pub fn key_pair(
    source: &KeySource,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    match source {
        KeySource::File(p) => {
            let pem = read(p)?;
            let what = format!("ssl.keystore.location {}", p.display());
            Ok((certificates(&pem, &what)?, private_key(&pem, &what)?))
        }
        KeySource::Inline { chain, key } => Ok((
            certificates(chain.as_bytes(), "ssl.keystore.certificate.chain")?,
            private_key(key.as_bytes(), "ssl.keystore.key")?,
        )),
    }
}

/// The protocol versions rustls is given.
pub fn protocol_versions(versions: &[TlsVersion]) -> Vec<&'static SupportedProtocolVersion> {
    versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect()
}

/// The ring provider, the one rustls backend the workspace builds.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build_both(settings: &TlsSettings, alpn: &[Vec<u8>]) -> Result<Configs, TlsError> {
    let mut server = build(settings)?;
    server.alpn_protocols = alpn.to_vec();
    let client = match &settings.truststore {
        Some(trust) => {
            let mut client = build_client(settings, trust)?;
            client.alpn_protocols = alpn.to_vec();
            Some(Arc::new(client))
        }
        None => None,
    };
    Ok(Configs {
        server: Arc::new(server),
        client,
    })
}

/// The client side: the peer's chain must lead to the truststore and name
/// the host dialled (rustls's WebPKI verifier, Kafka's
/// `ssl.endpoint.identification.algorithm=https`).
fn build_client(settings: &TlsSettings, trust: &TrustSource) -> Result<ClientConfig, TlsError> {
    let (chain, key) = key_pair(&settings.keystore)?;
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&protocol_versions(&settings.versions))
        .map_err(|source| TlsError::Rustls {
            what: "ssl.enabled.protocols",
            source,
        })?
        .with_root_certificates(trust_roots(trust)?)
        .with_client_auth_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "ssl.keystore: the key does not fit the certificate",
            source,
        })
}

fn build(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&protocol_versions(&settings.versions))
        .map_err(|source| TlsError::Rustls {
            what: "ssl.enabled.protocols",
            source,
        })?;
    let builder = match (&settings.truststore, settings.client_auth) {
        (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
        (Some(trust), auth) => {
            let roots = Arc::new(trust_roots(trust)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?,
            )
        }
    };
    let (chain, key) = key_pair(&settings.keystore)?;
    builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "ssl.keystore: the key does not fit the certificate",
            source,
        })
}
