//! TLS for the quorum's gRPC, on the workspace's rustls: the listener
//! accepts TLS connections (handshakes run beside the accept loop, so a
//! slow or hostile peer cannot hold up others), and clients dial peers
//! through a TLS connector that verifies the peer's certificate against
//! the host of its address.
//!
//! The configurations come from [`QuorumTls`], which the broker implements
//! over its certificate files: each new connection asks for the current
//! ones, so rotated certificates apply to new connections without a
//! restart. With client certificates required by the server config, only
//! holders of a certificate from the trusted CA can take part in the quorum.

use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tonic::{
    codegen::{http::Uri, tokio_stream::wrappers::ReceiverStream, Service},
    transport::server::{Connected, TcpConnectInfo},
};

/// The ALPN protocol both sides offer: gRPC runs on HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// Bound on a TLS handshake, either side.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the quorum's TLS configurations come from. Both must offer
/// [`ALPN_H2`].
pub trait QuorumTls: Send + Sync + 'static {
    /// The configuration for the next accepted connection.
    fn server_config(&self) -> Arc<rustls::ServerConfig>;
    /// The configuration for the next connection to a peer.
    fn client_config(&self) -> Arc<rustls::ClientConfig>;
    /// Called when a peer's handshake fails (for a metric); `peer` is its
    /// address.
    fn handshake_failed(&self, peer: SocketAddr, error: &io::Error) {
        tracing::warn!(%peer, %error, "quorum TLS handshake failed");
    }
}

/// A shared [`QuorumTls`], as the quorum's config holds it.
#[derive(Clone)]
pub struct SharedTls(pub Arc<dyn QuorumTls>);

impl fmt::Debug for SharedTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QuorumTls")
    }
}

/// An accepted TLS connection, as tonic's server takes it.
pub(crate) struct TlsIo {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: TcpConnectInfo,
}

impl Connected for TlsIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts on `listener` and yields the connections whose handshake
/// succeeded. The accept task ends when the stream is dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: SharedTls,
) -> ReceiverStream<Result<TlsIo, io::Error>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: pause, go on.
                        tracing::warn!(error = %e, "quorum listener accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            tcp.set_nodelay(true).ok();
            let info = TcpConnectInfo {
                local_addr: tcp.local_addr().ok(),
                remote_addr: Some(peer),
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.0.server_config());
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
                match handshake {
                    Ok(stream) => {
                        let _ = tx.send(Ok(TlsIo { stream, info })).await;
                    }
                    Err(e) => tls.0.handshake_failed(peer, &e),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// tonic's connector for TLS channels: TCP to the URI's authority, then a
/// handshake that verifies the peer's certificate names the URI's host.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: SharedTls,
}

impl Connector {
    pub(crate) fn new(tls: SharedTls) -> Self {
        Self { tls }
    }
}

type Connecting = Pin<
    Box<
        dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
    >,
>;

impl Service<Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.tls.0.client_config();
        Box::pin(async move {
            let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
            let host = uri
                .host()
                .ok_or_else(|| invalid("no host in the peer address"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid("no port in the peer address"))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| invalid(&format!("server name {host}: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true).ok();
            let stream = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            Ok(TokioIo::new(stream))
        })
    }
}
