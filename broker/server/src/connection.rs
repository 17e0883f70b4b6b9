//! One client connection: read a frame, decode it, run its handler, write the
//! response, in order (Kafka clients rely on responses arriving in request
//! order on a connection).
//!
//! Anything the broker cannot answer safely (oversized or truncated frames,
//! unknown API keys, unsupported versions of APIs other than ApiVersions,
//! bodies that do not decode) closes this connection and nothing else.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kafka_protocol::messages::{ApiKey, ResponseKind};
use rivulet_wire::{
    frame::read_frame,
    request::{decode_request, encode_response, peek_header},
    FrameError,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter},
    net::TcpStream,
};

use crate::{
    authenticate::{frame_api, Authenticator, Step},
    handlers::{self, Node},
    quota,
    security::{principal, tls::TlsContext, ListenerSecurity, Principal},
};

/// Why a connection was closed by the broker.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The frame could not be read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The request could not be decoded or is not supported.
    #[error("{0}")]
    Request(String),
    /// Writing the response failed.
    #[error("write response: {0}")]
    Write(#[source] std::io::Error),
    /// The client did not authenticate (or re-authenticate) as required.
    #[error("authentication: {0}")]
    Authentication(String),
}

impl ConnectionError {
    fn label(&self) -> &'static str {
        match self {
            ConnectionError::Frame(FrameError::TooLarge { .. }) => "frame_too_large",
            ConnectionError::Frame(_) => "frame",
            ConnectionError::Request(_) => "invalid_request",
            ConnectionError::Write(_) => "write",
            ConnectionError::Authentication(_) => "authentication",
        }
    }
}

/// A listener as connections see it: its name, security settings and live
/// TLS configuration.
pub struct ListenerRuntime {
    /// The listener name.
    pub name: Arc<str>,
    /// Its protocol, TLS and SASL settings.
    pub security: Arc<ListenerSecurity>,
    /// Its certificates, for SSL and SASL_SSL listeners.
    pub tls: Option<Arc<TlsContext>>,
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection until the peer closes it, it misbehaves, or
/// `shutdown` fires (then the request in progress is finished first). On a
/// TLS listener the handshake comes first; a client that fails it is
/// closed and counted, nothing else is affected.
pub async fn serve(
    broker: Arc<Node>,
    stream: TcpStream,
    listener: Arc<ListenerRuntime>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let Some(tls) = listener.tls.clone() else {
        let auth = Authenticator::new(listener.security.clone(), Principal::anonymous());
        return serve_stream(broker, stream, peer, listener, auth, shutdown).await;
    };
    let accepted = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await;
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            // A TLS error (certificate, protocol): an authentication failure.
            failed_authentication(&broker, &listener.name, "SSL");
            tracing::info!(peer = ?peer, listener = %listener.name, error = %e, "TLS handshake failed");
            return;
        }
        Ok(Err(e)) => {
            // The client hung up (or the network did): nothing failed to
            // authenticate, as Kafka counts it.
            tracing::debug!(peer = ?peer, listener = %listener.name, error = %e, "connection closed during the TLS handshake");
            return;
        }
        Err(_) => {
            tracing::info!(peer = ?peer, listener = %listener.name, "TLS handshake timed out");
            return;
        }
    };
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| match principal::subject_name(leaf) {
            Ok(dn) => Principal::user(tls.settings().principal_rules.map(&dn)),
            Err(e) => {
                tracing::warn!(peer = ?peer, error = %e, "client certificate subject unreadable");
                Principal::anonymous()
            }
        })
        .unwrap_or_else(Principal::anonymous);
    let auth = Authenticator::new(listener.security.clone(), principal);
    serve_stream(broker, stream, peer, listener, auth, shutdown).await
}

fn failed_authentication(broker: &Node, listener: &str, mechanism: &str) {
    broker
        .metrics
        .failed_authentications
        .with_label_values(&[listener, mechanism])
        .inc();
}

/// The request loop over a (plain or TLS) stream.
async fn serve_stream<S>(
    broker: Arc<Node>,
    stream: S,
    peer: Option<std::net::SocketAddr>,
    listener: Arc<ListenerRuntime>,
    mut auth: Authenticator,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let pipeline = handlers::produce_pipeline::Pipeline::default();
    let configured_max = broker.config.socket_request_max_bytes;
    let lookup = |user: &str, mechanism| broker.cluster.scram_credential(user, mechanism);
    loop {
        let max = auth.max_frame(configured_max);
        let frame = tokio::select! {
            frame = read_frame(&mut reader, max) => frame,
            _ = shutdown.changed() => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame.freeze(),
            Ok(None) => break,
            Err(e) => {
                close(&broker, peer, ConnectionError::Frame(e));
                break;
            }
        };
        let api = frame_api(&frame);
        let step = auth.inspect(&frame, api, &lookup);
        if let (Some((key, _, _)), false) = (api, matches!(step, Step::Serve)) {
            // Answered by the authenticator: counted like any other request.
            if let Some(api) = broker.metrics.api(key as i16) {
                api.requests.inc();
            }
        }
        if let Some(mechanism) = auth.take_failure() {
            failed_authentication(&broker, &listener.name, mechanism.name());
        }
        let mut throttle = quota::Throttle::default();
        let outcome = match step {
            Step::Serve => {
                let ctx = handlers::RequestContext {
                    listener: &listener.name,
                    peer: peer.map(|p| p.ip()),
                    principal: auth.principal(),
                    pipeline: &pipeline,
                };
                handle_frame(&broker, frame, &ctx)
                    .await
                    .map(|(bytes, verdict)| {
                        throttle = verdict;
                        bytes
                    })
            }
            Step::Respond(bytes) => Ok(Some(bytes)),
            Step::RespondAndClose(bytes, reason) => {
                let _ = writer.write_all(&bytes).await;
                let _ = writer.flush().await;
                close(&broker, peer, ConnectionError::Authentication(reason));
                break;
            }
            Step::Close(reason) => {
                close(&broker, peer, ConnectionError::Authentication(reason));
                break;
            }
        };
        // KIP-219: a throttled client's connection reads nothing more for
        // the throttle time, after the answer (or before it, for clients
        // too old to throttle themselves).
        let (delay, mute) = if throttle.delay_response {
            (throttle.time, Duration::ZERO)
        } else {
            (Duration::ZERO, throttle.time)
        };
        if !delay.is_zero() && !pause(delay, &mut shutdown).await {
            break;
        }
        match outcome {
            Ok(Some(bytes)) => {
                let sending = Instant::now();
                if let Err(e) = writer.write_all(&bytes).await {
                    close(&broker, peer, ConnectionError::Write(e));
                    break;
                }
                if let Err(e) = writer.flush().await {
                    close(&broker, peer, ConnectionError::Write(e));
                    break;
                }
                if let Some(m) = api.and_then(|(key, _, _)| broker.metrics.api(key as i16)) {
                    m.send_time.observe(sending.elapsed().as_secs_f64());
                }
            }
            Ok(None) => {}
            Err(e) => {
                close(&broker, peer, e);
                break;
            }
        }
        if !mute.is_zero() && !pause(mute, &mut shutdown).await {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

/// Waits `time`; false if shutdown came first.
async fn pause(time: Duration, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(time) => true,
        _ = shutdown.changed() => false,
    }
}

fn close(broker: &Node, peer: Option<std::net::SocketAddr>, e: ConnectionError) {
    broker
        .metrics
        .request_errors
        .with_label_values(&[e.label()])
        .inc();
    tracing::info!(peer = ?peer, error = %e, "closing connection");
}

/// Decodes, handles and encodes one request; `None` when Kafka sends no
/// response (acks=0). Comes with the client quotas' verdict.
async fn handle_frame(
    broker: &Node,
    frame: bytes::Bytes,
    ctx: &handlers::RequestContext<'_>,
) -> Result<(Option<bytes::Bytes>, quota::Throttle), ConnectionError> {
    let started = Instant::now();
    let info = peek_header(&frame)
        .ok_or_else(|| ConnectionError::Request("frame too short for a request header".into()))?;
    let api_key = ApiKey::try_from(info.api_key)
        .map_err(|_| ConnectionError::Request(format!("unknown api key {}", info.api_key)))?;
    let supported = handlers::supported_versions(api_key, broker.config.transactions.version);
    let in_range =
        supported.is_some_and(|r| info.api_version >= r.min && info.api_version <= r.max);
    if !in_range {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer a too-new ApiVersions in v0 so the client can retry.
            let body = ResponseKind::ApiVersions(handlers::unsupported_version_response(broker));
            return encode_response(info.correlation_id, api_key, 0, &body)
                .map(|bytes| (Some(bytes), quota::Throttle::default()))
                .map_err(|e| ConnectionError::Request(e.to_string()));
        }
        return Err(ConnectionError::Request(format!(
            "{api_key:?} v{} is not supported (supported: {})",
            info.api_version,
            supported
                .map(|r| r.to_string())
                .unwrap_or_else(|| "none".into())
        )));
    }
    let request_bytes = frame.len();
    let mut request = decode_request(frame).map_err(|e| ConnectionError::Request(e.to_string()))?;
    // Handles resolved once per API when the broker started.
    let api = broker.metrics.api(info.api_key);
    if let Some(api) = api {
        api.requests.inc();
    }
    let facts = quota::RequestFacts::new(
        api_key,
        info.api_version,
        request.header.client_id.as_deref(),
        &request.body,
        request_bytes,
    );
    let image = broker.cluster.image();
    let user = &ctx.principal.name;
    broker
        .quotas
        .prepare(&image, &facts, user, &mut request.body);
    let handling = Instant::now();
    if let Some(api) = api {
        api.queue_time.observe((handling - started).as_secs_f64());
    }
    let (mut response, remote) = crate::metrics::measure_remote_wait(handlers::dispatch(
        broker,
        &request.header,
        request.body,
        ctx,
    ))
    .await;
    if let Some(api) = api {
        let handled = handling.elapsed();
        api.remote_time.observe(remote.as_secs_f64());
        api.local_time
            .observe(handled.saturating_sub(remote).as_secs_f64());
    }
    let throttle = broker
        .quotas
        .judge(&image, &facts, user, started.elapsed(), response.as_mut());
    let encoded = match response {
        Some(body) => Some(
            encode_response(info.correlation_id, api_key, info.api_version, &body).map_err(
                |e| ConnectionError::Request(format!("encode {api_key:?} response: {e}")),
            )?,
        ),
        None => None,
    };
    if let Some(api) = api {
        api.time.observe(started.elapsed().as_secs_f64());
    }
    Ok((encoded, throttle))
}
