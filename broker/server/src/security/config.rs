//! The security settings of each listener, read from Kafka's config names.
//!
//! A setting is looked up with the listener prefix first
//! (`listener.name.<listener>.ssl.keystore.location`), then without it
//! (`ssl.keystore.location`), as Kafka does, so one broker can serve an
//! internal SASL_SSL listener and an external SSL one with different
//! certificates. SASL JAAS configs follow Kafka's
//! `listener.name.<listener>.<mechanism>.sasl.jaas.config`, then
//! `sasl.jaas.config`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::Duration,
};

use super::{
    jaas,
    principal::{self, MappingRules},
    scram::{ScramCredential, ScramMechanism},
    tls::{ClientAuth, KeySource, TlsSettings, TlsVersion, TrustSource},
    SecurityProtocol,
};

/// A SASL mechanism the broker can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// RFC 4616 user name and password, checked against the JAAS config.
    Plain,
    /// RFC 5802 with credentials from the metadata image.
    Scram(ScramMechanism),
}

impl PartialOrd for SaslMechanism {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SaslMechanism {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl SaslMechanism {
    /// Kafka's name of the mechanism.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    /// Parses Kafka's name (exact, as clients send it).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            other => ScramMechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }

    /// Every mechanism Rivulet serves.
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::Scram(ScramMechanism::Sha256),
        SaslMechanism::Scram(ScramMechanism::Sha512),
    ];
}

/// SASL settings of one listener.
#[derive(Debug, Clone, Default)]
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`, in the order given.
    pub mechanisms: Vec<SaslMechanism>,
    /// PLAIN's users: the `user_NAME="PASSWORD"` options of the JAAS config.
    pub plain_users: BTreeMap<String, String>,
    /// `username`/`password` of each mechanism's JAAS config: what this
    /// broker logs in with when it is the client (inter-broker traffic).
    pub login: BTreeMap<SaslMechanism, (String, String)>,
}

/// The security of one listener.
#[derive(Debug, Clone)]
pub struct ListenerSecurity {
    /// The listener's protocol from `listener.security.protocol.map`.
    pub protocol: SecurityProtocol,
    /// Certificates and client authentication, for SSL and SASL_SSL.
    pub tls: Option<TlsSettings>,
    /// Mechanisms and PLAIN users, for SASL_PLAINTEXT and SASL_SSL.
    pub sasl: Option<SaslSettings>,
    /// `connections.max.reauth.ms` (KIP-368): a SASL session lasts at most
    /// this long, then the client must re-authenticate; `None` is forever.
    pub reauth: Option<Duration>,
}

/// Security of every listener.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// By listener name.
    pub listeners: BTreeMap<String, ListenerSecurity>,
    /// `sasl.mechanism.inter.broker.protocol`; without it, the first
    /// mechanism of the inter-broker listener this broker has a login for
    /// (Kafka's default, GSSAPI, is not served).
    pub inter_broker_mechanism: Option<SaslMechanism>,
    /// The ACL authorizer's settings; `None` when `authorizer.class.name`
    /// is unset and every request is allowed.
    pub authorizer: Option<std::sync::Arc<super::authz::AuthorizerConfig>>,
}

impl SecurityConfig {
    /// The settings of `listener`; a listener the config does not know is
    /// PLAINTEXT.
    pub fn listener(&self, name: &str) -> ListenerSecurity {
        self.listeners
            .get(name)
            .cloned()
            .unwrap_or_else(|| ListenerSecurity {
                protocol: SecurityProtocol::Plaintext,
                tls: None,
                sasl: None,
                reauth: None,
            })
    }
}

/// A security setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SecurityConfigError {
    /// The config key (with its listener prefix when it had one).
    pub key: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

fn error(key: impl Into<String>, reason: impl Into<String>) -> SecurityConfigError {
    SecurityConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Keys the security config reads (config.rs accepts them without a look).
pub fn is_security_key(key: &str) -> bool {
    key.starts_with("ssl.")
        || key.starts_with("sasl.")
        || key.starts_with("listener.name.")
        || matches!(
            key,
            "security.inter.broker.protocol" | "connections.max.reauth.ms"
        )
        || super::authz::KEYS.contains(&key)
}

/// Features of Kafka's security that Rivulet refuses rather than ignores:
/// silently running without them would be less secure than the user asked.
const REFUSED: &[(&str, &str)] = &[
    (
        "ssl.engine.factory.class",
        "custom SSL engines are not supported",
    ),
    (
        "sasl.server.callback.handler.class",
        "custom SASL callback handlers are not supported",
    ),
    (
        "sasl.kerberos.service.name",
        "Kerberos (GSSAPI) is not supported",
    ),
];

/// Looks keys up with the listener prefix first.
struct Lookup<'a> {
    raw: &'a BTreeMap<String, String>,
    prefix: String,
}

impl Lookup<'_> {
    fn get(&self, key: &str) -> Option<(String, &str)> {
        let prefixed = format!("{}{key}", self.prefix);
        if let Some(v) = self.raw.get(&prefixed) {
            return Some((prefixed, v.as_str()));
        }
        self.raw.get(key).map(|v| (key.to_string(), v.as_str()))
    }
}

/// Reads the security of every listener from the broker's raw configs.
/// `listeners` are (name, protocol) in configuration order.
pub fn parse(
    raw: &BTreeMap<String, String>,
    listeners: &[(String, SecurityProtocol)],
) -> Result<SecurityConfig, SecurityConfigError> {
    for (key, reason) in REFUSED {
        if raw.contains_key(*key) || raw.keys().any(|k| k.ends_with(&format!(".{key}"))) {
            return Err(error(*key, *reason));
        }
    }
    let names: BTreeSet<String> = listeners
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    for key in raw.keys().filter(|k| k.starts_with("listener.name.")) {
        let rest = &key["listener.name.".len()..];
        let listener = rest.split('.').next().unwrap_or_default();
        if !names.contains(&listener.to_ascii_lowercase()) {
            return Err(error(key, format!("there is no listener named {listener}")));
        }
    }
    let mut config = SecurityConfig {
        authorizer: super::authz::parse(raw)?.map(std::sync::Arc::new),
        ..SecurityConfig::default()
    };
    if let Some(v) = raw.get("sasl.mechanism.inter.broker.protocol") {
        config.inter_broker_mechanism =
            Some(SaslMechanism::parse(v.trim()).ok_or_else(|| {
                error("sasl.mechanism.inter.broker.protocol", unknown_mechanism(v))
            })?);
    }
    for (name, protocol) in listeners {
        let lookup = Lookup {
            raw,
            prefix: format!("listener.name.{}.", name.to_ascii_lowercase()),
        };
        let tls = if protocol.uses_tls() {
            Some(tls_settings(&lookup, name)?)
        } else {
            None
        };
        let sasl = if protocol.uses_sasl() {
            Some(sasl_settings(&lookup, name)?)
        } else {
            None
        };
        let reauth = match lookup.get("connections.max.reauth.ms") {
            Some((key, v)) => {
                let ms: u64 = v
                    .trim()
                    .parse()
                    .map_err(|_| error(&key, "not a non-negative integer"))?;
                (ms > 0).then(|| Duration::from_millis(ms))
            }
            None => None,
        };
        config.listeners.insert(
            name.clone(),
            ListenerSecurity {
                protocol: *protocol,
                tls,
                sasl,
                reauth,
            },
        );
    }
    Ok(config)
}

fn unknown_mechanism(name: &str) -> String {
    format!(
        "unknown SASL mechanism `{name}`; Rivulet serves PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (not GSSAPI or OAUTHBEARER)"
    )
}

fn tls_settings(lookup: &Lookup<'_>, listener: &str) -> Result<TlsSettings, SecurityConfigError> {
    for store in ["ssl.keystore.type", "ssl.truststore.type"] {
        if let Some((key, v)) = lookup.get(store) {
            if !v.trim().eq_ignore_ascii_case("PEM") {
                return Err(error(
                    key,
                    format!("`{v}` stores are not supported, only PEM (convert a JKS or PKCS12 store with keytool and openssl)"),
                ));
            }
        }
    }
    if let Some((key, _)) = lookup.get("ssl.key.password") {
        return Err(error(
            key,
            "encrypted private keys are not supported; give an unencrypted PEM key (Kubernetes Secrets hold them so)",
        ));
    }
    let keystore = match (
        lookup.get("ssl.keystore.location"),
        lookup.get("ssl.keystore.certificate.chain"),
        lookup.get("ssl.keystore.key"),
    ) {
        (Some((_, path)), None, None) => KeySource::File(PathBuf::from(path.trim())),
        (None, Some((_, chain)), Some((_, key))) => KeySource::Inline {
            chain: chain.to_string(),
            key: key.to_string(),
        },
        (Some((key, _)), _, _) => {
            return Err(error(
                key,
                "give either ssl.keystore.location or ssl.keystore.certificate.chain with ssl.keystore.key, not both",
            ))
        }
        _ => {
            return Err(error(
                format!("listener.name.{}.ssl.keystore.location", listener.to_ascii_lowercase()),
                format!("listener {listener} uses TLS but has no certificate: set ssl.keystore.location (a PEM file with the key and the certificate chain) or ssl.keystore.certificate.chain and ssl.keystore.key"),
            ))
        }
    };
    let truststore = match (
        lookup.get("ssl.truststore.location"),
        lookup.get("ssl.truststore.certificates"),
    ) {
        (Some((_, path)), None) => Some(TrustSource::File(PathBuf::from(path.trim()))),
        (None, Some((_, pem))) => Some(TrustSource::Inline(pem.to_string())),
        (Some((key, _)), Some(_)) => {
            return Err(error(
                key,
                "give ssl.truststore.location or ssl.truststore.certificates, not both",
            ))
        }
        (None, None) => None,
    };
    let client_auth = match lookup.get("ssl.client.auth") {
        None => ClientAuth::None,
        Some((key, v)) => match v.trim().to_ascii_lowercase().as_str() {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            _ => return Err(error(key, "must be none, requested or required")),
        },
    };
    if client_auth != ClientAuth::None && truststore.is_none() {
        return Err(error(
            format!("listener.name.{}.ssl.client.auth", listener.to_ascii_lowercase()),
            "client certificates need a truststore: set ssl.truststore.location or ssl.truststore.certificates",
        ));
    }
    let versions = match lookup.get("ssl.enabled.protocols") {
        None => vec![TlsVersion::Tls12, TlsVersion::Tls13],
        Some((key, v)) => {
            let mut versions = Vec::new();
            for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                versions.push(match p {
                    "TLSv1.2" => TlsVersion::Tls12,
                    "TLSv1.3" => TlsVersion::Tls13,
                    other => {
                        return Err(error(
                            &key,
                            format!("`{other}` is not supported; TLSv1.2 and TLSv1.3 are"),
                        ))
                    }
                });
            }
            if versions.is_empty() {
                return Err(error(key, "enables no protocol"));
            }
            versions
        }
    };
    let (key, rules) = lookup
        .get("ssl.principal.mapping.rules")
        .unwrap_or_else(|| ("ssl.principal.mapping.rules".into(), "DEFAULT"));
    let principal_rules: MappingRules =
        principal::parse(rules).map_err(|e| error(key, e.to_string()))?;
    Ok(TlsSettings {
        keystore,
        truststore,
        client_auth,
        versions,
        principal_rules,
    })
}

fn sasl_settings(lookup: &Lookup<'_>, listener: &str) -> Result<SaslSettings, SecurityConfigError> {
    let mechanisms = match lookup.get("sasl.enabled.mechanisms") {
        // Kafka's default is GSSAPI, which Rivulet does not serve; SCRAM
        // needs no further config, so it is the default here.
        None => vec![
            SaslMechanism::Scram(ScramMechanism::Sha256),
            SaslMechanism::Scram(ScramMechanism::Sha512),
        ],
        Some((key, v)) => {
            let mut list = Vec::new();
            for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let m = SaslMechanism::parse(m).ok_or_else(|| error(&key, unknown_mechanism(m)))?;
                if !list.contains(&m) {
                    list.push(m);
                }
            }
            if list.is_empty() {
                return Err(error(key, "enables no mechanism"));
            }
            list
        }
    };
    let mut settings = SaslSettings {
        mechanisms,
        ..SaslSettings::default()
    };
    for mechanism in settings.mechanisms.clone() {
        let specific = format!("{}.sasl.jaas.config", mechanism.name().to_ascii_lowercase());
        let found = lookup
            .raw
            .get(&format!("{}{specific}", lookup.prefix))
            .map(|v| (format!("{}{specific}", lookup.prefix), v.as_str()))
            .or_else(|| lookup.get("sasl.jaas.config"));
        let Some((key, text)) = found else {
            if mechanism == SaslMechanism::Plain {
                return Err(error(
                    format!("listener.name.{}.plain.sasl.jaas.config", listener.to_ascii_lowercase()),
                    "PLAIN needs its users: a PlainLoginModule config with user_NAME=\"PASSWORD\" entries",
                ));
            }
            continue;
        };
        let parsed = jaas::parse(text).map_err(|e| error(&key, e.to_string()))?;
        if mechanism == SaslMechanism::Plain {
            settings.plain_users = parsed.plain_users();
            if settings.plain_users.is_empty() {
                return Err(error(
                    key,
                    "PLAIN needs at least one user_NAME=\"PASSWORD\" entry",
                ));
            }
        }
        if let (Some(user), Some(password)) = (
            parsed.options.get("username"),
            parsed.options.get("password"),
        ) {
            settings
                .login
                .insert(mechanism, (user.clone(), password.clone()));
        }
    }
    Ok(settings)
}

/// Parses one `--add-scram` value, Kafka's `kafka-storage format` syntax:
/// `SCRAM-SHA-512=[name=admin,password=admin-secret]`, optionally with
/// `iterations=8192`. The password is hashed here and never stored.
pub fn parse_add_scram(text: &str) -> Result<(String, ScramMechanism, ScramCredential), String> {
    let (mechanism, rest) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not MECHANISM=[name=...,password=...]"))?;
    let mechanism = ScramMechanism::from_name(mechanism.trim())
        .ok_or_else(|| format!("`{mechanism}` is not SCRAM-SHA-256 or SCRAM-SHA-512"))?;
    let inner = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| format!("`{rest}` is not [name=...,password=...]"))?;
    let mut fields = BTreeMap::new();
    for part in inner.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not key=value"))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        fields.insert(k.trim().to_ascii_lowercase(), v.to_string());
    }
    let name = fields
        .remove("name")
        .filter(|n| !n.is_empty())
        .ok_or("a name= is required")?;
    let password = fields
        .remove("password")
        .filter(|p| !p.is_empty())
        .ok_or("a password= is required (salt/saltedpassword are not supported)")?;
    let iterations = match fields.remove("iterations") {
        Some(i) => i
            .parse::<u32>()
            .map_err(|_| format!("iterations `{i}` is not a number"))?,
        None => super::scram::MIN_ITERATIONS,
    };
    super::scram::check_iterations(iterations).map_err(|e| e.to_string())?;
    if let Some(other) = fields.keys().next() {
        return Err(format!("unknown field `{other}`"));
    }
    let credential = ScramCredential::new(mechanism, &password, iterations);
    Ok((name, mechanism, credential))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn listener_prefixed_settings_win_over_plain_ones() {
        let config = parse(
            &raw(&[
                ("ssl.keystore.location", "/certs/default.pem"),
                ("listener.name.internal.ssl.keystore.location", "/certs/internal.pem"),
                ("listener.name.internal.ssl.client.auth", "required"),
                ("ssl.truststore.location", "/certs/ca.pem"),
                (
                    "listener.name.internal.plain.sasl.jaas.config",
                    "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"a\" user_admin=\"a\" user_alice=\"b\";",
                ),
                ("listener.name.internal.sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-512"),
                ("connections.max.reauth.ms", "60000"),
            ]),
            &[
                ("INTERNAL".into(), SecurityProtocol::SaslSsl),
                ("EXTERNAL".into(), SecurityProtocol::Ssl),
                ("PLAINTEXT".into(), SecurityProtocol::Plaintext),
            ],
        )
        .unwrap();
        let internal = config.listener("INTERNAL");
        let tls = internal.tls.unwrap();
        assert_eq!(tls.keystore, KeySource::File("/certs/internal.pem".into()));
        assert_eq!(tls.client_auth, ClientAuth::Required);
        let sasl = internal.sasl.unwrap();
        assert_eq!(
            sasl.mechanisms,
            [
                SaslMechanism::Plain,
                SaslMechanism::Scram(ScramMechanism::Sha512)
            ]
        );
        assert_eq!(sasl.plain_users.len(), 2);
        assert_eq!(
            sasl.login[&SaslMechanism::Plain],
            ("admin".into(), "a".into())
        );
        assert_eq!(internal.reauth, Some(Duration::from_secs(60)));
        let external = config.listener("EXTERNAL");
        assert_eq!(
            external.tls.unwrap().keystore,
            KeySource::File("/certs/default.pem".into())
        );
        assert!(config.listener("PLAINTEXT").tls.is_none());
    }

    #[test]
    fn unusable_settings_are_refused_with_the_key_and_a_reason() {
        let ssl = [("SSL".to_string(), SecurityProtocol::Ssl)];
        let sasl = [("SASL".to_string(), SecurityProtocol::SaslPlaintext)];
        let err = |pairs: &[(&str, &str)], l: &[(String, SecurityProtocol)]| {
            parse(&raw(pairs), l).unwrap_err().to_string()
        };
        assert!(err(&[], &ssl).contains("has no certificate"));
        assert!(err(
            &[
                ("ssl.keystore.location", "/k"),
                ("ssl.keystore.type", "JKS")
            ],
            &ssl
        )
        .contains("only PEM"));
        assert!(err(
            &[
                ("ssl.keystore.location", "/k"),
                ("ssl.client.auth", "required")
            ],
            &ssl
        )
        .contains("truststore"));
        assert!(err(
            &[
                ("ssl.keystore.location", "/k"),
                ("ssl.enabled.protocols", "TLSv1.1")
            ],
            &ssl
        )
        .contains("TLSv1.1"));
        assert!(err(
            &[("ssl.keystore.location", "/k"), ("ssl.key.password", "x")],
            &ssl
        )
        .contains("encrypted"));
        assert!(err(&[("sasl.enabled.mechanisms", "GSSAPI")], &sasl).contains("GSSAPI"));
        assert!(err(&[("sasl.enabled.mechanisms", "PLAIN")], &sasl).contains("PLAIN needs"));
        assert!(err(
            &[("listener.name.other.ssl.keystore.location", "/k")],
            &sasl
        )
        .contains("no listener named other"));
        assert!(err(&[("sasl.kerberos.service.name", "kafka")], &sasl).contains("Kerberos"));
    }

    #[test]
    fn sasl_defaults_to_scram_without_further_config() {
        let config = parse(&raw(&[]), &[("S".into(), SecurityProtocol::SaslPlaintext)]).unwrap();
        let sasl = config.listener("S").sasl.unwrap();
        assert_eq!(sasl.mechanisms.len(), 2);
        assert!(sasl.plain_users.is_empty());
    }

    #[test]
    fn add_scram_takes_kafka_storage_syntax() {
        let (name, mechanism, c) =
            parse_add_scram("SCRAM-SHA-512=[name=admin,password=admin-secret]").unwrap();
        assert_eq!(
            (name.as_str(), mechanism),
            ("admin", ScramMechanism::Sha512)
        );
        assert_eq!(c.iterations, 4096);
        let (_, m, c) =
            parse_add_scram("SCRAM-SHA-256=[name=\"bob\",password=\"pw\",iterations=8192]")
                .unwrap();
        assert_eq!((m, c.iterations), (ScramMechanism::Sha256, 8192));
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-512=name=a",
            "SCRAM-SHA-512=[name=a]",
            "SCRAM-SHA-512=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-512=[name=a,password=b,colour=red]",
        ] {
            assert!(parse_add_scram(bad).is_err(), "{bad}");
        }
    }
}
