//! One TCP connection to one broker, with version negotiation.
//!
//! A [`Connection`] opens with ApiVersions, remembers what the broker speaks,
//! and from then on sends each request at the highest version both sides
//! support. Requests are strictly one at a time (no pipelining): the callers
//! are admin tools, tests and benchmarks that value simplicity over depth.

use std::{collections::BTreeMap, panic::AssertUnwindSafe, time::Duration};

use bytes::Bytes;
use kafka_protocol::{
    messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable, Request, StrBytes, VersionRange},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use super::security::ClientSecurity;
use crate::{
    error::{ClientError, EncodeError},
    frame::{finish_frame, read_frame, start_frame},
    request::response_header_version,
};

/// Largest response frame the client accepts. Fetch responses are bounded by
/// the `max_bytes` the client asks for; this only stops a confused peer.
pub const MAX_RESPONSE_SIZE: usize = 512 * 1024 * 1024;

/// How long one request may take unless the caller says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The ApiVersions version tried first (the newest Kafka clients send).
const API_VERSIONS_FIRST: i16 = 3;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// The `client.id` sent when the caller does not choose one.
pub const DEFAULT_CLIENT_ID: &str = "rivulet-wire";

/// The api key of a kafka-protocol request type.
fn api_key_of<R: Request>() -> ApiKey {
    // Every `Request` impl in kafka-protocol is generated from the same
    // schema list as `ApiKey`, so this conversion cannot fail.
    ApiKey::try_from(R::KEY).expect("kafka-protocol request with a key ApiKey does not know")
}

/// Encodes a complete request frame (size prefix, header, body).
pub fn encode_request<R: Request>(
    correlation_id: i32,
    client_id: Option<&str>,
    version: i16,
    body: &R,
) -> Result<Bytes, EncodeError> {
    let api_key = api_key_of::<R>();
    let fail = |message: String| EncodeError::Message {
        api_key,
        version,
        message,
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|c| StrBytes::from_string(c.to_owned())));
    let mut buf = start_frame(128);
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .map_err(|e| fail(format!("request header: {e:#}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| fail(format!("{e:#}")))?;
    finish_frame(buf).map_err(EncodeError::TooLarge)
}

/// Decodes a response frame body (without size prefix) for `api_key` at
/// `version`, returning the correlation id from its header and the body.
pub fn decode_response<T: Decodable>(
    api_key: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<(i32, T), ClientError> {
    let fail = |message: String| ClientError::Decode {
        api_key,
        version,
        message,
    };
    // A broker is a peer too: a panic in the decoder on its bytes becomes an
    // error for this call rather than a crash of the tool using the client.
    std::panic::catch_unwind(AssertUnwindSafe(move || {
        let mut buf = frame;
        let header = ResponseHeader::decode(&mut buf, response_header_version(api_key, version))
            .map_err(|e| format!("response header: {e:#}"))?;
        let body = T::decode(&mut buf, version).map_err(|e| format!("{e:#}"))?;
        Ok((header.correlation_id, body))
    }))
    .map_err(|_| fail("decoder panicked".to_owned()))?
    .map_err(fail)
}

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// The stream, boxed so plain and TLS connections are one type.
struct BoxedStream(Box<dyn Stream>);

impl std::fmt::Debug for BoxedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedStream")
    }
}

/// One connection to one broker.
#[derive(Debug)]
pub struct Connection {
    stream: BoxedStream,
    addr: String,
    client_id: String,
    next_correlation_id: i32,
    /// The broker's supported range per api key, from ApiVersions.
    versions: BTreeMap<i16, VersionRange>,
    request_timeout: Duration,
    /// Set after a failed or timed-out exchange: the stream may hold a late
    /// response, so it must not carry another request.
    broken: bool,
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates versions with
    /// ApiVersions v3, falling back to what the broker offers (down to v0)
    /// if it answers UNSUPPORTED_VERSION.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        Self::connect_with_client_id(addr, DEFAULT_CLIENT_ID).await
    }

    /// Like [`Connection::connect`], with a chosen `client.id`.
    pub async fn connect_with_client_id(addr: &str, client_id: &str) -> Result<Self, ClientError> {
        Self::connect_secure(addr, client_id, &ClientSecurity::default()).await
    }

    /// Connects with TLS and/or SASL as `security` says: the TLS handshake
    /// first, then ApiVersions, then the SASL login.
    pub async fn connect_secure(
        addr: &str,
        client_id: &str,
        security: &ClientSecurity,
    ) -> Result<Self, ClientError> {
        let tcp = tokio::time::timeout(DEFAULT_REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        // Requests are small and answered one at a time: Nagle would only add latency.
        tcp.set_nodelay(true).ok();
        let stream = match &security.tls {
            None => BoxedStream(Box::new(tcp)),
            Some(config) => {
                let auth_failed = |reason: String| ClientError::Authentication {
                    addr: addr.to_owned(),
                    reason,
                };
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let name = rustls_pki_types::ServerName::try_from(host)
                    .map_err(|e| auth_failed(format!("server name: {e}")))?;
                let tls = tokio::time::timeout(
                    DEFAULT_REQUEST_TIMEOUT,
                    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp),
                )
                .await
                .map_err(|_| ClientError::Timeout)?
                .map_err(|e| auth_failed(format!("TLS handshake: {e}")))?;
                BoxedStream(Box::new(tls))
            }
        };
        let mut conn = Connection {
            stream,
            addr: addr.to_owned(),
            client_id: client_id.to_owned(),
            next_correlation_id: 1,
            versions: BTreeMap::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            broken: false,
        };
        conn.negotiate_versions().await?;
        if let Some(login) = &security.sasl {
            super::sasl::login(&mut conn, login).await?;
        }
        Ok(conn)
    }

    async fn negotiate_versions(&mut self) -> Result<(), ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("rivulet-wire"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = API_VERSIONS_FIRST;
        let response = loop {
            let frame = self.exchange_raw(&request, version, None).await?;
            // A broker that does not know this version answers with a v0
            // body carrying UNSUPPORTED_VERSION and its own ApiVersions
            // range; the error code is the first field in every version.
            let code = frame.get(4..6).map(|b| i16::from_be_bytes([b[0], b[1]]));
            if code == Some(UNSUPPORTED_VERSION) && version > 0 {
                let (_, v0): (i32, ApiVersionsResponse) =
                    decode_response(ApiKey::ApiVersions, 0, frame)?;
                let offered = v0
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map_or(0, |k| k.max_version);
                let next = offered.clamp(0, version - 1);
                tracing::debug!(addr = %self.addr, from = version, to = next, "ApiVersions fallback");
                version = next;
                continue;
            }
            let (_, response): (i32, ApiVersionsResponse) =
                decode_response(ApiKey::ApiVersions, version, frame)?;
            break response;
        };
        ClientError::check(response.error_code, None)?;
        self.versions = response
            .api_keys
            .iter()
            .map(|k| {
                (
                    k.api_key,
                    VersionRange {
                        min: k.min_version,
                        max: k.max_version,
                    },
                )
            })
            .collect();
        Ok(())
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's supported version range per api key, as advertised.
    pub fn broker_versions(&self) -> &BTreeMap<i16, VersionRange> {
        &self.versions
    }

    /// Whether a previous exchange failed, leaving the stream unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sets how long each request may take before [`ClientError::Timeout`].
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// The highest version of `api_key` in both `client` and the broker's range.
    pub fn negotiate(&self, api_key: ApiKey, client: VersionRange) -> Result<i16, ClientError> {
        let unsupported = |broker: String| ClientError::UnsupportedVersion {
            api_key,
            client: client.to_string(),
            broker,
        };
        let broker = self
            .versions
            .get(&(api_key as i16))
            .ok_or_else(|| unsupported("none".to_owned()))?;
        let common = client.intersect(broker);
        if common.is_empty() {
            return Err(unsupported(broker.to_string()));
        }
        Ok(common.max)
    }

    /// The version [`Connection::send`] would use for `R`.
    pub fn version_for<R: Request>(&self) -> Result<i16, ClientError> {
        self.negotiate(api_key_of::<R>(), R::VERSIONS)
    }

    /// Sends `req` at the highest version both sides support and waits for
    /// the response.
    pub async fn send<R: Request>(&mut self, req: R) -> Result<R::Response, ClientError> {
        let version = self.version_for::<R>()?;
        self.send_with_version(req, version).await
    }

    /// Sends `req` at exactly `version` (not checked against the broker's
    /// ranges, so tests can provoke UNSUPPORTED_VERSION on purpose).
    pub async fn send_with_version<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.send_with_timeout(req, version, None).await
    }

    /// Like [`Connection::send_with_version`], allowing `extra` time on top
    /// of the request timeout (a fetch may legitimately wait `max_wait_ms`).
    pub async fn send_with_timeout<R: Request>(
        &mut self,
        req: R,
        version: i16,
        extra: Option<Duration>,
    ) -> Result<R::Response, ClientError> {
        let frame = self.exchange_raw(&req, version, extra).await?;
        let (_, body) = decode_response(api_key_of::<R>(), version, frame)?;
        Ok(body)
    }

    /// Sends `req` at `version` without reading a response: for requests
    /// the broker does not answer (Produce with `acks = 0`).
    pub async fn send_without_response<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Closed);
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(correlation_id, Some(&self.client_id), version, &req)?;
        self.broken = true;
        tokio::time::timeout(self.request_timeout, self.stream.0.write_all(&frame))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(ClientError::Send)?;
        self.broken = false;
        Ok(())
    }

    /// Writes one request and reads its response frame, checking the
    /// correlation id. Returns the response frame body.
    async fn exchange_raw<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        extra: Option<Duration>,
    ) -> Result<Bytes, ClientError> {
        if self.broken {
            return Err(ClientError::Closed);
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(correlation_id, Some(&self.client_id), version, req)?;
        let limit = self.request_timeout + extra.unwrap_or_default();
        // Assume the worst until the exchange completes: a timeout or error
        // half-way leaves the stream out of step with our correlation ids.
        self.broken = true;
        let response = tokio::time::timeout(limit, async {
            self.stream
                .0
                .write_all(&frame)
                .await
                .map_err(ClientError::Send)?;
            read_frame(&mut self.stream.0, MAX_RESPONSE_SIZE)
                .await
                .map_err(ClientError::Receive)?
                .ok_or(ClientError::Closed)
        })
        .await
        .map_err(|_| ClientError::Timeout)??
        .freeze();
        let received = response
            .get(..4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| ClientError::Protocol("response shorter than its header".into()))?;
        if received != correlation_id {
            return Err(ClientError::CorrelationMismatch {
                sent: correlation_id,
                received,
            });
        }
        self.broken = false;
        Ok(response)
    }
}
