//! Authentication for Kafka listeners: each listener's security protocol
//! (Kafka's PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), TLS with server and
//! client certificates, SASL (PLAIN and SCRAM), and the principal a
//! connection acts as.
//!
//! Everything here is pure or file-reading; the connection layer drives the
//! TLS handshake and the SASL exchange, and the composition root owns the
//! task that reloads certificates.

pub mod authz;
pub mod config;
pub mod inter_broker;
pub mod jaas;
pub mod plain;
pub mod principal;
pub mod tls;

use std::fmt;

pub use config::{ListenerSecurity, SaslMechanism, SecurityConfig, SecurityConfigError};
/// SCRAM lives in rivulet-wire: clients and the broker share it.
pub use rivulet_wire::scram;

/// Kafka's security protocols, one per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecurityProtocol {
    /// Clear text, no authentication: every client is `User:ANONYMOUS`.
    Plaintext,
    /// TLS; with client certificates the principal is the certificate's subject.
    Ssl,
    /// SASL over clear text.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name of the protocol.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses Kafka's name (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    /// Whether connections are wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before anything else.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who a connection acts as: Kafka's `KafkaPrincipal`, always of type
/// `User` here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// The user name (`ANONYMOUS` before or without authentication).
    pub name: String,
}

impl Principal {
    /// Kafka's principal of unauthenticated connections.
    pub fn anonymous() -> Self {
        Principal {
            name: "ANONYMOUS".into(),
        }
    }

    /// A named user.
    pub fn user(name: impl Into<String>) -> Self {
        Principal { name: name.into() }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User:{}", self.name)
    }
}
