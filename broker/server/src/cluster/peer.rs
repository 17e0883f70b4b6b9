//! This broker as a client of the other brokers: the security of
//! replication connections (the inter-broker listener's TLS and SASL
//! login) and the quorum's TLS (the controller listener's certificates).
//!
//! Both read the certificate files themselves and check them for changes
//! whenever a new connection is made (a stat of two files), so rotated
//! certificates apply to new connections without a restart, as on the
//! listeners.

use std::{net::SocketAddr, sync::Arc};

use rivulet_quorum::network::{QuorumTls, SharedTls, ALPN_H2};
use rivulet_wire::client::{ClientSecurity, SaslLogin};

use crate::{
    config::BrokerConfig,
    security::tls::{TlsContext, TlsError},
};

/// Loading this broker's client certificates failed.
#[derive(Debug, thiserror::Error)]
#[error("listener {listener} (as a client of other brokers): {source}")]
pub struct PeerTlsError {
    /// The listener whose settings were used.
    pub listener: String,
    /// The cause.
    #[source]
    pub source: TlsError,
}

/// How replication connects to leaders.
#[derive(Debug, Default)]
pub struct PeerSecurity {
    tls: Option<TlsContext>,
    login: Option<SaslLogin>,
}

impl PeerSecurity {
    /// The inter-broker listener's security, as its client. The config was
    /// checked when read (`SecurityConfig::inter_broker_login`).
    pub fn inter_broker(config: &BrokerConfig) -> Result<Self, PeerTlsError> {
        let listener = &config.cluster.inter_broker_listener;
        let security = config.security.listener(listener);
        let tls = match security.tls {
            Some(settings) => Some(TlsContext::load(settings).map_err(|source| PeerTlsError {
                listener: listener.clone(),
                source,
            })?),
            None => None,
        };
        let login = match config.security.inter_broker_login(listener) {
            Ok(login) => login.map(|l| SaslLogin {
                mechanism: l.mechanism.name().to_string(),
                username: l.username,
                password: l.password,
            }),
            Err(e) => {
                // Only a single broker gets here (a cluster checks it at
                // start): it has no leader to fetch from.
                tracing::debug!(error = %e, "no inter-broker login");
                None
            }
        };
        Ok(PeerSecurity { tls, login })
    }

    /// What the next connection uses, with certificates re-read if their
    /// files changed.
    pub fn client_security(&self) -> ClientSecurity {
        let tls = self.tls.as_ref().and_then(|tls| {
            if let Err(e) = tls.reload_if_changed() {
                tracing::warn!(error = %e, "inter-broker certificates changed but cannot be used; keeping the previous ones");
            }
            tls.client_config()
        });
        ClientSecurity {
            tls,
            sasl: self.login.clone(),
        }
    }
}

/// The controller listener's certificates, for the quorum's gRPC.
struct ControllerTls {
    context: TlsContext,
    listener: String,
    /// Kafka's failed-authentication counter, by listener and mechanism.
    failed: prometheus::IntCounterVec,
}

impl ControllerTls {
    fn current(&self) -> &TlsContext {
        if let Err(e) = self.context.reload_if_changed() {
            tracing::warn!(listener = %self.listener, error = %e, "controller certificates changed but cannot be used; keeping the previous ones");
        }
        &self.context
    }
}

impl QuorumTls for ControllerTls {
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.current().server_config()
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.current()
            .client_config()
            .expect("the controller listener's truststore is checked when the config is read")
    }

    fn handshake_failed(&self, peer: SocketAddr, error: &std::io::Error) {
        tracing::warn!(listener = %self.listener, %peer, %error, "quorum peer failed the TLS handshake");
        self.failed
            .with_label_values(&[&self.listener, "SSL"])
            .inc();
    }
}

/// The quorum's TLS when the controller listener is SSL.
pub fn quorum_tls(
    config: &BrokerConfig,
    failed: prometheus::IntCounterVec,
) -> Result<Option<SharedTls>, PeerTlsError> {
    let Some((listener, _)) = &config.cluster.controller_listener else {
        return Ok(None);
    };
    let Some(settings) = config.security.listener(listener).tls else {
        return Ok(None);
    };
    let context =
        TlsContext::load_with_alpn(settings, vec![ALPN_H2.to_vec()]).map_err(|source| {
            PeerTlsError {
                listener: listener.clone(),
                source,
            }
        })?;
    Ok(Some(SharedTls(Arc::new(ControllerTls {
        context,
        listener: listener.clone(),
        failed,
    }))))
}

impl super::Cluster {
    /// Connects to broker `id`'s inter-broker listener with this broker's
    /// security there (TLS verified against the advertised host, SASL
    /// login): replication and the transaction coordinator's markers.
    pub async fn connect_peer(
        &self,
        id: i32,
        client_id: &str,
    ) -> Result<rivulet_wire::client::Connection, rivulet_wire::ClientError> {
        let image = self.image();
        let endpoint = image.brokers.get(&id).and_then(|registration| {
            registration
                .endpoints
                .get(&self.config.inter_broker_listener)
                .or_else(|| registration.endpoints.values().next())
                .cloned()
        });
        let Some(endpoint) = endpoint else {
            return Err(rivulet_wire::ClientError::Connect {
                addr: format!("broker {id}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the broker is not registered",
                ),
            });
        };
        let addr = format!("{}:{}", endpoint.host, endpoint.port);
        let security = self.peer.client_security();
        rivulet_wire::client::Connection::connect_secure(&addr, client_id, &security).await
    }
}
