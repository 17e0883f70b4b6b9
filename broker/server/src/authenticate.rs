//! The SASL side of one connection: SaslHandshake and SaslAuthenticate (v0
//! raw-token framing and v1+ framing), PLAIN and SCRAM exchanges, and
//! KIP-368 re-authentication.
//!
//! On a SASL listener nothing but ApiVersions, SaslHandshake and
//! SaslAuthenticate is served until the client has authenticated; anything
//! else closes the connection, as in Kafka. A failed authentication answers
//! SASL_AUTHENTICATION_FAILED and closes the connection. Unknown users and
//! wrong passwords get the same answer after the same work.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use crate::security::{
    plain,
    scram::{ScramCredential, ScramMechanism, ScramServer},
    ListenerSecurity, Principal, SaslMechanism,
};

/// Looks up a user's SCRAM credential (from the metadata image).
pub type CredentialLookup<'a> =
    &'a (dyn Fn(&str, ScramMechanism) -> Option<ScramCredential> + Sync);

/// What the connection does with a frame after the authenticator saw it.
pub enum Step {
    /// Not an authentication frame: serve it as a request as `principal`.
    Serve,
    /// Write this response (an encoded Kafka response, or a raw v0 token
    /// already size-prefixed) and go on.
    Respond(Bytes),
    /// Write this response, then close the connection.
    RespondAndClose(Bytes, String),
    /// Close the connection without answering.
    Close(String),
}

enum Exchange {
    Plain,
    Scram {
        mechanism: ScramMechanism,
        server: Box<ScramServer>,
        /// Whether client-first has been answered.
        started: bool,
    },
}

enum State {
    /// Waiting for SaslHandshake (a new connection on a SASL listener).
    Handshake,
    /// Handshake done; tokens come in SaslAuthenticate requests (`raw`
    /// false) or as bare size-prefixed frames (SaslHandshake v0, `raw`).
    Authenticating {
        mechanism: SaslMechanism,
        exchange: Exchange,
        raw: bool,
    },
    /// Authenticated (or a listener without SASL).
    Done,
}

/// Authentication state of one connection.
pub struct Authenticator {
    security: Arc<ListenerSecurity>,
    state: State,
    principal: Principal,
    /// The mechanism of the current session, which a re-authentication must keep.
    session_mechanism: Option<SaslMechanism>,
    expires: Option<Instant>,
    /// Set when the last step failed authentication (for metrics).
    failed: Option<SaslMechanism>,
}

/// Kafka's `sasl.server.max.receive.size`: frames before authentication
/// are at most this large, so an unauthenticated peer cannot make the
/// broker buffer a 100 MiB request.
pub const MAX_UNAUTHENTICATED_FRAME: usize = 524_288;

impl Authenticator {
    /// A connection on a listener with `security`, whose TLS layer (if
    /// any) established `principal`.
    pub fn new(security: Arc<ListenerSecurity>, principal: Principal) -> Self {
        let state = if security.protocol.uses_sasl() {
            State::Handshake
        } else {
            State::Done
        };
        Authenticator {
            security,
            state,
            principal,
            session_mechanism: None,
            expires: None,
            failed: None,
        }
    }

    /// Who the connection acts as.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Whether requests other than authentication may be served now.
    pub fn authenticated(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The largest frame to accept now.
    pub fn max_frame(&self, configured: usize) -> usize {
        if self.authenticated() {
            configured
        } else {
            configured.min(MAX_UNAUTHENTICATED_FRAME)
        }
    }

    /// The mechanism of an authentication that just failed, once.
    pub fn take_failure(&mut self) -> Option<SaslMechanism> {
        self.failed.take()
    }

    /// Looks at a frame before it is served. `api` is its API key and
    /// version (from the header), `None` when it has no valid header.
    pub fn inspect(
        &mut self,
        frame: &Bytes,
        api: Option<(ApiKey, i16, i32)>,
        lookup: CredentialLookup<'_>,
    ) -> Step {
        if let State::Authenticating { raw: true, .. } = self.state {
            return self.raw_token(frame, lookup);
        }
        let Some((key, version, correlation_id)) = api else {
            return Step::Serve;
        };
        match key {
            ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
                if !self.security.protocol.uses_sasl() =>
            {
                Step::Respond(illegal_state(key, version, correlation_id))
            }
            ApiKey::SaslHandshake => self.handshake(frame, version, correlation_id),
            ApiKey::SaslAuthenticate => self.authenticate(frame, version, correlation_id, lookup),
            ApiKey::ApiVersions => Step::Serve,
            _ if !self.authenticated() => {
                Step::Close(format!("{key:?} before SASL authentication completed"))
            }
            _ if self.expires.is_some_and(|at| Instant::now() >= at) => Step::Close(
                "SASL session expired without re-authentication (connections.max.reauth.ms)".into(),
            ),
            _ => Step::Serve,
        }
    }

    fn handshake(&mut self, frame: &Bytes, version: i16, correlation_id: i32) -> Step {
        let Some(RequestKind::SaslHandshake(request)) = decode(frame) else {
            return Step::Close("malformed SaslHandshake".into());
        };
        let reauthenticating =
            matches!(self.state, State::Done) && self.session_mechanism.is_some();
        if matches!(self.state, State::Authenticating { .. }) || (reauthenticating && version == 0)
        {
            return Step::RespondAndClose(
                encode(
                    ApiKey::SaslHandshake,
                    version,
                    correlation_id,
                    handshake_response(self, ResponseError::IllegalSaslState),
                ),
                "SaslHandshake out of order".into(),
            );
        }
        let offered = request.mechanism.as_str();
        let mechanism = SaslMechanism::parse(offered).filter(|m| self.enabled().contains(m));
        let Some(mechanism) =
            mechanism.filter(|m| !reauthenticating || Some(*m) == self.session_mechanism)
        else {
            return Step::RespondAndClose(
                encode(
                    ApiKey::SaslHandshake,
                    version,
                    correlation_id,
                    handshake_response(self, ResponseError::UnsupportedSaslMechanism),
                ),
                format!("SASL mechanism {offered} is not enabled on this listener"),
            );
        };
        let exchange = match mechanism {
            SaslMechanism::Plain => Exchange::Plain,
            SaslMechanism::Scram(m) => Exchange::Scram {
                mechanism: m,
                server: Box::new(ScramServer::new(m)),
                started: false,
            },
        };
        self.state = State::Authenticating {
            mechanism,
            exchange,
            raw: version == 0,
        };
        let mut response = SaslHandshakeResponse::default();
        response.mechanisms = self.mechanism_names();
        Step::Respond(encode(
            ApiKey::SaslHandshake,
            version,
            correlation_id,
            ResponseKind::SaslHandshake(response),
        ))
    }

    fn authenticate(
        &mut self,
        frame: &Bytes,
        version: i16,
        correlation_id: i32,
        lookup: CredentialLookup<'_>,
    ) -> Step {
        let Some(RequestKind::SaslAuthenticate(request)) = decode(frame) else {
            return Step::Close("malformed SaslAuthenticate".into());
        };
        let respond = |error: Option<(ResponseError, &str)>, bytes: Vec<u8>, lifetime: i64| {
            let mut response = SaslAuthenticateResponse::default();
            if let Some((code, message)) = error {
                response.error_code = code.code();
                response.error_message = Some(StrBytes::from_string(message.to_string()));
            }
            response.auth_bytes = Bytes::from(bytes);
            response.session_lifetime_ms = lifetime;
            encode(
                ApiKey::SaslAuthenticate,
                version,
                correlation_id,
                ResponseKind::SaslAuthenticate(response),
            )
        };
        if !matches!(self.state, State::Authenticating { raw: false, .. }) {
            return Step::RespondAndClose(
                respond(
                    Some((
                        ResponseError::IllegalSaslState,
                        "SaslAuthenticate before SaslHandshake",
                    )),
                    Vec::new(),
                    0,
                ),
                "SaslAuthenticate out of order".into(),
            );
        }
        match self.exchange_step(&request.auth_bytes, lookup) {
            Ok((token, done)) => {
                let lifetime = if done {
                    self.expires
                        .map(|at| at.saturating_duration_since(Instant::now()).as_millis() as i64)
                        .unwrap_or(0)
                } else {
                    0
                };
                Step::Respond(respond(None, token, lifetime))
            }
            Err(reason) => Step::RespondAndClose(
                respond(
                    Some((
                        ResponseError::SaslAuthenticationFailed,
                        "Authentication failed: Invalid username or password",
                    )),
                    Vec::new(),
                    0,
                ),
                reason,
            ),
        }
    }

    /// A v0 token: a bare size-prefixed frame, answered the same way.
    fn raw_token(&mut self, frame: &Bytes, lookup: CredentialLookup<'_>) -> Step {
        match self.exchange_step(frame, lookup) {
            Ok((token, _)) => {
                let mut out = Vec::with_capacity(4 + token.len());
                out.extend_from_slice(&(token.len() as u32).to_be_bytes());
                out.extend_from_slice(&token);
                Step::Respond(Bytes::from(out))
            }
            // Kafka closes a v0 exchange without an answer.
            Err(reason) => Step::Close(reason),
        }
    }

    /// Feeds one client token; `Ok((server token, finished))`.
    fn exchange_step(
        &mut self,
        token: &[u8],
        lookup: CredentialLookup<'_>,
    ) -> Result<(Vec<u8>, bool), String> {
        let State::Authenticating {
            mechanism,
            exchange,
            raw,
        } = &mut self.state
        else {
            return Err("no SASL exchange in progress".into());
        };
        let mechanism = *mechanism;
        let raw = *raw;
        let outcome = match exchange {
            Exchange::Plain => {
                let users = self.security.sasl.as_ref().map(|s| &s.plain_users);
                let empty = Default::default();
                plain::authenticate(token, users.unwrap_or(&empty))
                    .map(|user| (Vec::new(), Some(user)))
                    .map_err(|e| e.to_string())
            }
            Exchange::Scram {
                mechanism: scram,
                server,
                started,
            } => {
                if !*started {
                    *started = true;
                    let scram = *scram;
                    server
                        .client_first(token, |user| lookup(user, scram))
                        .map(|t| (t, None))
                        .map_err(|e| e.to_string())
                } else {
                    server
                        .client_final(token)
                        .map(|(t, user)| (t, Some(user)))
                        .map_err(|e| e.to_string())
                }
            }
        };
        match outcome {
            Ok((token, None)) => Ok((token, false)),
            Ok((token, Some(user))) => {
                if self.session_mechanism.is_some() && self.principal.name != user {
                    self.failed = Some(mechanism);
                    return Err(format!(
                        "re-authenticated as {user}, not {}",
                        self.principal.name
                    ));
                }
                self.principal = Principal::user(user);
                self.session_mechanism = Some(mechanism);
                self.expires = self
                    .security
                    .reauth
                    .filter(|_| !raw)
                    .map(|d: Duration| Instant::now() + d);
                self.state = State::Done;
                Ok((token, true))
            }
            Err(reason) => {
                self.failed = Some(mechanism);
                Err(reason)
            }
        }
    }

    fn enabled(&self) -> Vec<SaslMechanism> {
        self.security
            .sasl
            .as_ref()
            .map(|s| s.mechanisms.clone())
            .unwrap_or_default()
    }

    fn mechanism_names(&self) -> Vec<StrBytes> {
        self.enabled()
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect()
    }
}

fn handshake_response(auth: &Authenticator, error: ResponseError) -> ResponseKind {
    let mut response = SaslHandshakeResponse::default();
    response.error_code = error.code();
    response.mechanisms = auth.mechanism_names();
    ResponseKind::SaslHandshake(response)
}

fn illegal_state(key: ApiKey, version: i16, correlation_id: i32) -> Bytes {
    let body = match key {
        ApiKey::SaslHandshake => {
            let mut r = SaslHandshakeResponse::default();
            r.error_code = ResponseError::IllegalSaslState.code();
            ResponseKind::SaslHandshake(r)
        }
        _ => {
            let mut r = SaslAuthenticateResponse::default();
            r.error_code = ResponseError::IllegalSaslState.code();
            r.error_message = Some(StrBytes::from_static_str("this listener does not use SASL"));
            ResponseKind::SaslAuthenticate(r)
        }
    };
    encode(key, version, correlation_id, body)
}

/// The API key, version and correlation id of a frame, as
/// [`Authenticator::inspect`] wants them: `None` when the frame has no
/// valid request header or names an unknown API.
pub fn frame_api(frame: &[u8]) -> Option<(ApiKey, i16, i32)> {
    let header = rivulet_wire::request::peek_header(frame)?;
    let key = ApiKey::try_from(header.api_key).ok()?;
    Some((key, header.api_version, header.correlation_id))
}

/// The request body, or `None` when it does not decode.
fn decode(frame: &Bytes) -> Option<RequestKind> {
    rivulet_wire::request::decode_request(frame.clone())
        .ok()
        .map(|r| r.body)
}

fn encode(key: ApiKey, version: i16, correlation_id: i32, body: ResponseKind) -> Bytes {
    rivulet_wire::request::encode_response(correlation_id, key, version, &body).unwrap_or_default()
}
