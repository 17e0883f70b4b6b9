//! How the operator knows a broker has loaded the files of its
//! certificate Secret: it opens a TLS handshake to the broker and reads the
//! certificate the broker presents. Brokers re-read their certificate
//! files for new connections, and the kubelet swaps a Secret volume's
//! files all at once, so a broker presenting the leaf that is in the
//! Secret now has also loaded the trust bundles issued beside it.
//!
//! The probe only looks: it trusts nothing it is shown (the certificate
//! is compared by digest with the stored one), sends no Kafka request,
//! and gives up on any error.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{ring::default_provider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use tokio::net::TcpStream;

/// The port probed: the brokers' internal `REPLICATION` listener, which
/// serves the broker certificates whenever the cluster has TLS.
pub const PROBE_PORT: i32 = 9091;
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the certificate a TLS server presents.
pub trait CertProbe: Send + Sync {
    /// The DER of the leaf certificate the server at `address`
    /// (`host:port`) presents when dialled as `server_name`; `None` when
    /// it cannot be reached or speaks no TLS.
    fn presented<'a>(
        &'a self,
        address: &'a str,
        server_name: &'a str,
    ) -> BoxFuture<'a, Option<Vec<u8>>>;
}

/// The real probe: a rustls handshake over TCP.
pub struct TlsProbe;

impl CertProbe for TlsProbe {
    fn presented<'a>(
        &'a self,
        address: &'a str,
        server_name: &'a str,
    ) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            tokio::time::timeout(PROBE_TIMEOUT, handshake(address, server_name))
                .await
                .ok()
                .flatten()
        })
    }
}

async fn handshake(address: &str, server_name: &str) -> Option<Vec<u8>> {
    let recorder = Arc::new(Recorder::default());
    let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(server_name.to_string()).ok()?;
    let tcp = TcpStream::connect(address).await.ok()?;
    // A broker that requires client certificates ends the handshake after
    // it has shown its own: the recorder has it either way.
    let _ = connector.connect(name, tcp).await;
    let seen = recorder.seen.lock().ok()?.clone();
    seen
}

/// A verifier that records the leaf and accepts it: the probe's answer is
/// compared with the stored certificate, never trusted for anything.
#[derive(Debug, Default)]
struct Recorder {
    seen: std::sync::Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.as_ref().to_vec());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
