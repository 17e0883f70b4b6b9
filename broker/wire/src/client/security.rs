//! How a client connects to a secured listener: TLS (trusting given CAs,
//! optionally with a client certificate) and SASL (PLAIN or SCRAM), from
//! the Kafka client properties users already have (`security.protocol`,
//! `ssl.truststore.location` or librdkafka's `ssl.ca.location`,
//! `sasl.mechanism` with `sasl.jaas.config`, or librdkafka's
//! `sasl.mechanisms`, `sasl.username`, `sasl.password`).

use std::{collections::BTreeMap, fmt, path::Path, sync::Arc};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use crate::scram::ScramMechanism;

/// A SASL login.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslLogin {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How to connect: plain TCP by default.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// TLS, when the protocol is SSL or SASL_SSL. The broker's certificate
    /// must name the host dialled (Kafka's default
    /// `ssl.endpoint.identification.algorithm=https`).
    pub tls: Option<Arc<ClientConfig>>,
    /// SASL, when the protocol is SASL_PLAINTEXT or SASL_SSL.
    pub sasl: Option<SaslLogin>,
}

impl fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

/// Client properties that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SecurityPropertyError {
    /// The property.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn error(key: &str, reason: impl Into<String>) -> SecurityPropertyError {
    SecurityPropertyError {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// `key="value"` from a JAAS config (`username`, `password`).
fn jaas_option(jaas: &str, key: &str) -> Option<String> {
    let start = jaas.find(&format!("{key}=\""))? + key.len() + 2;
    let mut value = String::new();
    let mut chars = jaas[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?),
            '"' => return Some(value),
            c => value.push(c),
        }
    }
    None
}

fn read(key: &str, path: &str) -> Result<Vec<u8>, SecurityPropertyError> {
    std::fs::read(Path::new(path)).map_err(|e| error(key, format!("read {path}: {e}")))
}

impl ClientSecurity {
    /// Builds the security from Kafka client properties (Java's or
    /// librdkafka's names). No `security.protocol` means PLAINTEXT.
    pub fn from_properties(
        props: &BTreeMap<String, String>,
    ) -> Result<ClientSecurity, SecurityPropertyError> {
        let get = |k: &str| props.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let protocol = get("security.protocol")
            .unwrap_or("PLAINTEXT")
            .to_ascii_uppercase();
        let (tls, sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(error(
                    "security.protocol",
                    format!("`{other}` is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
                ))
            }
        };
        if props
            .get("ssl.endpoint.identification.algorithm")
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("https"))
        {
            return Err(error(
                "ssl.endpoint.identification.algorithm",
                "only https (the broker's certificate names the host) is supported",
            ));
        }
        let mut security = ClientSecurity::default();
        if tls {
            security.tls = Some(Arc::new(tls_config(&get)?));
        }
        if sasl {
            let mechanism = get("sasl.mechanism")
                .or_else(|| get("sasl.mechanisms"))
                .unwrap_or("GSSAPI")
                .to_string();
            if mechanism != "PLAIN" && ScramMechanism::from_name(&mechanism).is_none() {
                return Err(error(
                    "sasl.mechanism",
                    format!("`{mechanism}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
                ));
            }
            let jaas = get("sasl.jaas.config");
            let username = get("sasl.username")
                .map(str::to_string)
                .or_else(|| jaas.and_then(|j| jaas_option(j, "username")));
            let password = get("sasl.password")
                .map(str::to_string)
                .or_else(|| jaas.and_then(|j| jaas_option(j, "password")));
            let (Some(username), Some(password)) = (username, password) else {
                return Err(error(
                    "sasl.jaas.config",
                    "SASL needs a user name and password: sasl.jaas.config with username=\"..\" password=\"..\", or sasl.username and sasl.password",
                ));
            };
            security.sasl = Some(SaslLogin {
                mechanism,
                username,
                password,
            });
        }
        Ok(security)
    }
}

fn tls_config<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<ClientConfig, SecurityPropertyError> {
    let ca_key = ["ssl.truststore.location", "ssl.ca.location"]
        .into_iter()
        .find(|k| get(k).is_some());
    let roots = match ca_key {
        Some(key) => roots_from_pem(key, &read(key, get(key).unwrap_or_default())?)?,
        None => {
            return Err(error(
                "ssl.truststore.location",
                "TLS needs the CA that signed the broker's certificate (ssl.truststore.location or ssl.ca.location, PEM)",
            ))
        }
    };
    // A client certificate: one PEM file with key and chain (Java's PEM
    // keystore), or librdkafka's separate certificate and key files.
    let pair = match (
        get("ssl.keystore.location"),
        get("ssl.certificate.location"),
        get("ssl.key.location"),
    ) {
        (Some(path), _, _) => {
            let pem = read("ssl.keystore.location", path)?;
            Some((pem.clone(), pem, "ssl.keystore.location"))
        }
        (None, Some(cert), Some(key)) => Some((
            read("ssl.certificate.location", cert)?,
            read("ssl.key.location", key)?,
            "ssl.certificate.location",
        )),
        _ => None,
    };
    with_client_cert(roots, pair)
}

/// A client config trusting `roots`, presenting `pair` (certificate chain
/// PEM, key PEM, and the property named in errors) when given.
fn with_client_cert(
    roots: RootCertStore,
    pair: Option<(Vec<u8>, Vec<u8>, &str)>,
) -> Result<ClientConfig, SecurityPropertyError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error("security.protocol", e.to_string()))?
        .with_root_certificates(roots);
    match pair {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key, what)) => {
            let chain = CertificateDer::pem_slice_iter(&chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(what, e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|_| error(what, "no unencrypted PEM private key found"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| error(what, e.to_string()))
        }
    }
}

fn roots_from_pem(key: &str, pem: &[u8]) -> Result<RootCertStore, SecurityPropertyError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| error(key, e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| error(key, format!("a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(error(key, "no PEM certificate found"));
    }
    Ok(roots)
}

impl ClientSecurity {
    /// TLS (protocol SSL) from PEM text held in memory (a Kubernetes
    /// Secret's, say): trusting the CAs in `ca_pem`, presenting the
    /// certificate chain `cert_pem` with its unencrypted key `key_pem`.
    /// Errors name the librdkafka properties of the same values
    /// (`ssl.ca.pem`, `ssl.certificate.pem`).
    pub fn mutual_tls_pem(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<ClientSecurity, SecurityPropertyError> {
        let roots = roots_from_pem("ssl.ca.pem", ca_pem)?;
        let config = with_client_cert(
            roots,
            Some((cert_pem.to_vec(), key_pem.to_vec(), "ssl.certificate.pem")),
        )?;
        Ok(ClientSecurity {
            tls: Some(Arc::new(config)),
            sasl: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn java_and_librdkafka_sasl_properties() {
        let java = ClientSecurity::from_properties(&props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"a\\\"b\";",
            ),
        ]))
        .unwrap();
        let login = java.sasl.unwrap();
        assert_eq!(
            (
                login.mechanism.as_str(),
                login.username.as_str(),
                login.password.as_str()
            ),
            ("SCRAM-SHA-512", "admin", "a\"b")
        );
        assert!(java.tls.is_none());
        let rdkafka = ClientSecurity::from_properties(&props(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "alice"),
            ("sasl.password", "pw"),
        ]))
        .unwrap();
        assert_eq!(rdkafka.sasl.unwrap().username, "alice");
        assert!(ClientSecurity::from_properties(&props(&[]))
            .unwrap()
            .sasl
            .is_none());
    }

    #[test]
    fn unusable_properties_say_why() {
        let err = |pairs: &[(&str, &str)]| {
            ClientSecurity::from_properties(&props(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("security.protocol", "TLS")]).contains("not PLAINTEXT"));
        assert!(err(&[("security.protocol", "SSL")]).contains("CA"));
        assert!(err(&[("security.protocol", "SASL_PLAINTEXT")]).contains("GSSAPI"));
        assert!(err(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN")
        ])
        .contains("user name"));
        assert!(err(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/nonexistent/ca.pem")
        ])
        .contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn in_memory_pem_errors_name_the_value() {
        let err = ClientSecurity::mutual_tls_pem(b"not pem", b"", b"").unwrap_err();
        assert_eq!(err.key, "ssl.ca.pem");
        assert!(err.reason.contains("no PEM certificate"), "{err}");
    }
}
