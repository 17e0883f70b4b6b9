//! The broker as a client of other brokers: what it needs to connect to
//! the inter-broker listener (replication) and to the controller listener
//! (the quorum's gRPC), checked when the config is read so that a broker
//! that could never reach its peers fails at start with the setting to
//! fix, not with endless retries.
//!
//! - inter-broker listener: over TLS the peer's certificate is verified
//!   against the listener's truststore and the host the peer advertises;
//!   over SASL the broker logs in with the `username`/`password` of the
//!   JAAS config of `sasl.mechanism.inter.broker.protocol`.
//! - controller listener: PLAINTEXT or SSL only. Over SSL both sides
//!   present the listener's certificate and verify the other's against the
//!   truststore; client certificates are required unless the listener's
//!   own `ssl.client.auth` says otherwise (see docs/decisions.md).

use std::collections::BTreeMap;

use super::{
    config::{SaslMechanism, SecurityConfig, SecurityConfigError},
    tls::ClientAuth,
};

/// The SASL login this broker uses on another broker's listener.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerLogin {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for PeerLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn error(key: String, reason: impl Into<String>) -> SecurityConfigError {
    SecurityConfigError {
        key,
        reason: reason.into(),
    }
}

impl SecurityConfig {
    /// Checks that this broker can connect to `listener` as the
    /// inter-broker client, and returns its SASL login when the listener
    /// uses SASL.
    pub fn inter_broker_login(
        &self,
        listener: &str,
    ) -> Result<Option<PeerLogin>, SecurityConfigError> {
        let prefix = format!("listener.name.{}.", listener.to_ascii_lowercase());
        let security = self.listener(listener);
        if security
            .tls
            .as_ref()
            .is_some_and(|t| t.truststore.is_none())
        {
            return Err(error(
                format!("{prefix}ssl.truststore.location"),
                format!(
                    "{listener} is the inter-broker listener and uses TLS: brokers verify each \
                     other's certificates against a truststore (the CA that signed them)"
                ),
            ));
        }
        let Some(sasl) = &security.sasl else {
            return Ok(None);
        };
        let mechanism = match self.inter_broker_mechanism {
            Some(m) if !sasl.mechanisms.contains(&m) => {
                return Err(error(
                    "sasl.mechanism.inter.broker.protocol".into(),
                    format!(
                        "{} is not among the sasl.enabled.mechanisms of the inter-broker listener {listener}",
                        m.name()
                    ),
                ))
            }
            Some(m) => m,
            // Kafka's default (GSSAPI) is not served: take the first
            // enabled mechanism this broker has a login for.
            None => match sasl.mechanisms.iter().find(|m| sasl.login.contains_key(m)) {
                Some(m) => *m,
                None => {
                    return Err(error(
                        "sasl.mechanism.inter.broker.protocol".into(),
                        format!(
                            "the inter-broker listener {listener} uses SASL but no JAAS config of its \
                             mechanisms has username=\"..\" password=\"..\" for this broker to log in with"
                        ),
                    ))
                }
            },
        };
        let Some((username, password)) = sasl.login.get(&mechanism) else {
            return Err(error(
                format!(
                    "{prefix}{}.sasl.jaas.config",
                    mechanism.name().to_ascii_lowercase()
                ),
                format!(
                    "the inter-broker login needs username=\"..\" password=\"..\" in the {} JAAS config",
                    mechanism.name()
                ),
            ));
        };
        Ok(Some(PeerLogin {
            mechanism,
            username: username.clone(),
            password: password.clone(),
        }))
    }

    /// Applies the controller listener's rules to its parsed settings:
    /// SASL is refused, a truststore is required, and client certificates
    /// are required unless `listener.name.<controller>.ssl.client.auth`
    /// says otherwise (a general `ssl.client.auth` meant for clients does
    /// not weaken the quorum).
    pub fn secure_controller_listener(
        &mut self,
        raw: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<(), SecurityConfigError> {
        let prefix = format!("listener.name.{}.", name.to_ascii_lowercase());
        let Some(security) = self.listeners.get_mut(name) else {
            return Ok(());
        };
        if security.protocol.uses_sasl() {
            return Err(error(
                "listener.security.protocol.map".into(),
                format!(
                    "{name}:{}: the controller listener serves the quorum's gRPC, which \
                     authenticates peers with TLS client certificates, not SASL; map it to SSL",
                    security.protocol
                ),
            ));
        }
        let Some(tls) = &mut security.tls else {
            return Ok(());
        };
        if tls.truststore.is_none() {
            return Err(error(
                format!("{prefix}ssl.truststore.location"),
                format!(
                    "the controller listener {name} uses TLS: quorum peers verify each other's \
                     certificates against a truststore (the CA that signed them)"
                ),
            ));
        }
        if !raw.contains_key(&format!("{prefix}ssl.client.auth")) {
            tls.client_auth = ClientAuth::Required;
        }
        if tls.client_auth != ClientAuth::Required {
            tracing::warn!(
                listener = name,
                "the controller listener does not require client certificates: anyone who \
                 reaches it can take part in the controller quorum"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{config::parse, scram::ScramMechanism, SecurityProtocol};

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SCRAM_LOGIN: &str = "org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\"broker\" password=\"broker-secret\";";

    fn inter(pairs: &[(&str, &str)]) -> Result<Option<PeerLogin>, String> {
        let listeners = [("INTERNAL".to_string(), SecurityProtocol::SaslSsl)];
        let config = parse(&raw(pairs), &listeners).map_err(|e| e.to_string())?;
        config
            .inter_broker_login("INTERNAL")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_inter_broker_login_comes_from_the_mechanism_jaas_config() {
        let base = [
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.truststore.location", "/ca.pem"),
            ("sasl.enabled.mechanisms", "SCRAM-SHA-512"),
            (
                "listener.name.internal.scram-sha-512.sasl.jaas.config",
                SCRAM_LOGIN,
            ),
        ];
        let login = inter(&base).unwrap().unwrap();
        assert_eq!(
            login,
            PeerLogin {
                mechanism: SaslMechanism::Scram(ScramMechanism::Sha512),
                username: "broker".into(),
                password: "broker-secret".into(),
            }
        );
        assert!(!format!("{login:?}").contains("broker-secret"));
        let mut explicit = base.to_vec();
        explicit.push(("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"));
        assert_eq!(inter(&explicit).unwrap(), Some(login));
    }

    #[test]
    fn an_unusable_inter_broker_client_is_refused_with_the_setting() {
        let no_trust = inter(&[
            ("ssl.keystore.location", "/k.pem"),
            ("sasl.jaas.config", SCRAM_LOGIN),
        ])
        .unwrap_err();
        assert!(
            no_trust.contains("listener.name.internal.ssl.truststore.location"),
            "{no_trust}"
        );
        let tls = [
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.truststore.location", "/ca.pem"),
        ];
        let no_login = inter(&tls).unwrap_err();
        assert!(no_login.contains("username"), "{no_login}");
        let mut not_enabled = tls.to_vec();
        not_enabled.extend([
            ("sasl.mechanism.inter.broker.protocol", "PLAIN"),
            ("sasl.jaas.config", SCRAM_LOGIN),
        ]);
        let err = inter(&not_enabled).unwrap_err();
        assert!(
            err.contains("not among the sasl.enabled.mechanisms"),
            "{err}"
        );
    }

    fn controller(
        protocol: SecurityProtocol,
        pairs: &[(&str, &str)],
    ) -> Result<SecurityConfig, String> {
        let listeners = [
            ("PLAINTEXT".to_string(), SecurityProtocol::Plaintext),
            ("CONTROLLER".to_string(), protocol),
        ];
        let raw = raw(pairs);
        let mut config = parse(&raw, &listeners).map_err(|e| e.to_string())?;
        config
            .secure_controller_listener(&raw, "CONTROLLER")
            .map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_controller_listener_requires_client_certificates_by_default() {
        let tls = [
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.truststore.location", "/ca.pem"),
            ("ssl.client.auth", "none"),
        ];
        let config = controller(SecurityProtocol::Ssl, &tls).unwrap();
        let auth = |c: &SecurityConfig| c.listener("CONTROLLER").tls.unwrap().client_auth;
        assert_eq!(auth(&config), ClientAuth::Required);
        let mut relaxed = tls.to_vec();
        relaxed.push(("listener.name.controller.ssl.client.auth", "requested"));
        assert_eq!(
            auth(&controller(SecurityProtocol::Ssl, &relaxed).unwrap()),
            ClientAuth::Requested
        );
        let err = controller(SecurityProtocol::Ssl, &tls[..1]).unwrap_err();
        assert!(
            err.contains("listener.name.controller.ssl.truststore.location"),
            "{err}"
        );
        let err = controller(SecurityProtocol::SaslSsl, &tls).unwrap_err();
        assert!(err.contains("not SASL"), "{err}");
        assert!(controller(SecurityProtocol::Plaintext, &[]).is_ok());
    }
}
