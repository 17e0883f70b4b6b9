//! The `handshake` target: what an unauthenticated client can send before
//! the broker knows who it is.
//!
//! The first byte picks the path (mod 4):
//! - 0, TLS: the rest is the client's byte stream into a rustls server
//!   connection built by the listeners' own [`TlsContext`] (TLS 1.2 and
//!   1.3, client certificates requested), driven in memory.
//! - 1, SASL frames: the next byte picks a SASL or a PLAINTEXT listener;
//!   the rest is request frame bodies (see [`super::pieces`]), each given
//!   to the connection's [`Authenticator`] exactly as the connection loop
//!   does, until it closes the connection.
//! - 2, SASL tokens: the next two bytes pick a mechanism name and the
//!   SaslHandshake/SaslAuthenticate versions; the harness frames a
//!   SaslHandshake, then each piece as a SaslAuthenticate token (or a raw
//!   v0 token). `%r` in a token is replaced by the nonce of the server's
//!   last SCRAM message, so client-final reaches the proof check; a piece
//!   `0xfe m` sends a new SaslHandshake for mechanism `m` (re-authentication).
//! - 3, parsers: the next byte picks PLAIN, SCRAM-SHA-256/512 server
//!   exchanges, `sasl.jaas.config`, a client certificate's subject or
//!   `ssl.principal.mapping.rules`, fed the rest directly.

use std::{collections::BTreeMap, io::Read, sync::Arc};

use bytes::Bytes;
use kafka_protocol::{
    messages::{SaslAuthenticateRequest, SaslHandshakeRequest},
    protocol::StrBytes,
};
use rivulet_wire::client::encode_request;
use rustls::{ServerConfig, ServerConnection};

use super::pieces;
use crate::{
    authenticate::{frame_api, Authenticator, Step},
    security::{
        jaas, plain, principal,
        scram::{ScramCredential, ScramMechanism, ScramServer},
        tls::{ClientAuth, KeySource, TlsContext, TlsError, TlsSettings, TlsVersion, TrustSource},
        ListenerSecurity, Principal, SaslMechanism, SecurityProtocol,
    },
};

/// The user the fixture knows, for PLAIN and both SCRAM mechanisms.
pub const USER: &str = "alice";
/// That user's password.
pub const PASSWORD: &str = "alice-secret";

/// Mechanism names a client may offer: the three served and one that is not.
const MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI"];

/// What every input of the target shares: built once (certificate
/// loading and PBKDF2 are far slower than one input).
pub struct HandshakeFixture {
    tls: Arc<ServerConfig>,
    sasl: Arc<ListenerSecurity>,
    plaintext: Arc<ListenerSecurity>,
    scram: Vec<(ScramMechanism, ScramCredential)>,
    rules: principal::MappingRules,
}

impl HandshakeFixture {
    /// A fixture whose TLS listener serves `chain_pem` with `key_pem` and
    /// trusts the chain's certificates as client CAs.
    pub fn new(chain_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let settings = TlsSettings {
            keystore: KeySource::Inline {
                chain: chain_pem.to_string(),
                key: key_pem.to_string(),
            },
            truststore: Some(TrustSource::Inline(chain_pem.to_string())),
            client_auth: ClientAuth::Requested,
            versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            principal_rules: principal::MappingRules::default(),
        };
        let tls = TlsContext::load(settings)?.server_config();
        let plain_users = BTreeMap::from([(USER.to_string(), PASSWORD.to_string())]);
        let sasl = ListenerSecurity {
            protocol: SecurityProtocol::SaslPlaintext,
            tls: None,
            sasl: Some(crate::security::config::SaslSettings {
                mechanisms: SaslMechanism::ALL.to_vec(),
                plain_users,
                login: BTreeMap::new(),
            }),
            // Re-authentication is reachable only with a session lifetime.
            reauth: Some(std::time::Duration::from_secs(3600)),
        };
        let plaintext = ListenerSecurity {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
            reauth: None,
        };
        let scram = [ScramMechanism::Sha256, ScramMechanism::Sha512]
            .into_iter()
            .map(|m| (m, ScramCredential::new(m, PASSWORD, 4096)))
            .collect();
        let rules = principal::parse("RULE:^CN=([^,]*).*$/$1/L,DEFAULT")
            .expect("the fixture's mapping rules parse");
        Ok(HandshakeFixture {
            tls,
            sasl: Arc::new(sasl),
            plaintext: Arc::new(plaintext),
            scram,
            rules,
        })
    }

    /// The TLS server configuration inputs of mode 0 are fed to (seed
    /// generators complete real handshakes against it).
    pub fn tls_config(&self) -> Arc<ServerConfig> {
        self.tls.clone()
    }

    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        let (_, credential) = self.scram.iter().find(|(m, _)| *m == mechanism)?;
        (user == USER).then(|| credential.clone())
    }
}

/// The `handshake` target body.
pub fn handshake(fixture: &HandshakeFixture, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => tls(fixture, rest),
        1 => sasl_frames(fixture, rest),
        2 => drop(sasl_tokens(fixture, rest)),
        _ => parsers(fixture, rest),
    }
}

/// Feeds the client's bytes to a server connection as the socket would,
/// answering (into a sink) and reading any plaintext, until rustls
/// refuses the stream or the bytes run out.
fn tls(fixture: &HandshakeFixture, mut input: &[u8]) {
    let Ok(mut conn) = ServerConnection::new(fixture.tls.clone()) else {
        return;
    };
    let mut sink = Vec::new();
    while !input.is_empty() {
        match conn.read_tls(&mut input) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let processed = conn.process_new_packets();
        // The answer (alerts included) is written as the listener would.
        while conn.wants_write() {
            sink.clear();
            if conn.write_tls(&mut sink).is_err() {
                break;
            }
        }
        if processed.is_err() {
            return;
        }
        sink.clear();
        // No more plaintext is a WouldBlock error: nothing to learn from it.
        let _ = conn.reader().read_to_end(&mut sink);
    }
    if let Some(certs) = conn.peer_certificates() {
        for cert in certs {
            let _ = principal::subject_name(cert);
        }
    }
}

fn authenticator(fixture: &HandshakeFixture, sasl: bool) -> Authenticator {
    let security = if sasl {
        fixture.sasl.clone()
    } else {
        fixture.plaintext.clone()
    };
    Authenticator::new(security, Principal::anonymous())
}

/// Raw request frames through the authenticator, as the connection loop
/// hands them over; a frame it would serve is skipped.
fn sasl_frames(fixture: &HandshakeFixture, data: &[u8]) {
    let Some((&listener, rest)) = data.split_first() else {
        return;
    };
    let mut auth = authenticator(fixture, listener % 2 == 0);
    let lookup = |user: &str, m| fixture.credential(user, m);
    for frame in pieces(rest) {
        let frame = Bytes::copy_from_slice(frame);
        let api = frame_api(&frame);
        match auth.inspect(&frame, api, &lookup) {
            Step::Serve | Step::Respond(_) => {}
            Step::RespondAndClose(..) | Step::Close(_) => return,
        }
        let _ = auth.take_failure();
    }
}

/// Tokens, framed by the harness, through a SASL exchange. Returns why
/// the connection closed, if it did, and whether it ended authenticated
/// (the unit tests check the harness reaches that far).
fn sasl_tokens(fixture: &HandshakeFixture, data: &[u8]) -> (Option<String>, bool) {
    let [mechanism, versions, rest @ ..] = data else {
        return (None, false);
    };
    let handshake_version = i16::from(versions & 1);
    let authenticate_version = i16::from((versions >> 1) % 3);
    let mut auth = authenticator(fixture, true);
    let lookup = |user: &str, m| fixture.credential(user, m);
    let mut correlation_id = 0;
    let handshake = |auth: &mut Authenticator, mechanism: u8, id: i32| {
        let name = MECHANISMS[usize::from(mechanism) % MECHANISMS.len()];
        let request =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(name));
        let frame = body(encode_request(
            id,
            Some("fuzz"),
            handshake_version,
            &request,
        ));
        auth.inspect(&frame, frame_api(&frame), &lookup)
    };
    match handshake(&mut auth, *mechanism, 0) {
        Step::Respond(_) => {}
        Step::RespondAndClose(_, reason) | Step::Close(reason) => return (Some(reason), false),
        Step::Serve => return (None, false),
    }
    let raw = handshake_version == 0;
    let mut nonce: Option<Vec<u8>> = None;
    for token in pieces(rest) {
        correlation_id += 1;
        let step = if let [0xfe, m] = token {
            handshake(&mut auth, *m, correlation_id)
        } else {
            let token = substitute_nonce(token, nonce.as_deref());
            let frame = if raw && !auth.authenticated() {
                Bytes::from(token)
            } else {
                let request = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
                body(encode_request(
                    correlation_id,
                    Some("fuzz"),
                    authenticate_version,
                    &request,
                ))
            };
            auth.inspect(&frame, frame_api(&frame), &lookup)
        };
        let _ = auth.take_failure();
        match step {
            Step::Respond(answer) => nonce = server_nonce(&answer).or(nonce),
            Step::Serve => {}
            Step::RespondAndClose(_, reason) | Step::Close(reason) => {
                return (Some(reason), auth.authenticated())
            }
        }
    }
    (None, auth.authenticated())
}

/// The frame body of an encoded request (without its size prefix); an
/// encoding failure leaves an empty frame, which the authenticator refuses.
fn body(encoded: Result<Bytes, rivulet_wire::EncodeError>) -> Bytes {
    encoded.map(|b| b.slice(4..)).unwrap_or_default()
}

/// `token` with every `%r` replaced by `nonce` (when one is known).
fn substitute_nonce(token: &[u8], nonce: Option<&[u8]>) -> Vec<u8> {
    let Some(nonce) = nonce else {
        return token.to_vec();
    };
    let mut out = Vec::with_capacity(token.len() + nonce.len());
    let mut rest = token;
    while let Some(at) = rest.windows(2).position(|w| w == b"%r") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(nonce);
        rest = &rest[at + 2..];
    }
    out.extend_from_slice(rest);
    out
}

/// The `r=` value of a SCRAM server-first message somewhere in `answer`.
fn server_nonce(answer: &[u8]) -> Option<Vec<u8>> {
    let at = answer.windows(2).position(|w| w == b"r=")? + 2;
    let value = &answer[at..];
    let end = value.iter().position(|&b| b == b',').unwrap_or(value.len());
    Some(value[..end].to_vec())
}

/// The parsers behind the authenticator, fed directly.
fn parsers(fixture: &HandshakeFixture, data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            let users = BTreeMap::from([(USER.to_string(), PASSWORD.to_string())]);
            let _ = plain::authenticate(rest, &users);
        }
        m @ (1 | 2) => {
            let mechanism = if m == 1 {
                ScramMechanism::Sha256
            } else {
                ScramMechanism::Sha512
            };
            let mut server = ScramServer::new(mechanism);
            let mut messages = pieces(rest);
            let first = messages.next().unwrap_or_default();
            let Ok(server_first) = server.client_first(first, |u| fixture.credential(u, mechanism))
            else {
                return;
            };
            let nonce = server_nonce(&server_first);
            for message in messages {
                let _ = server.client_final(&substitute_nonce(message, nonce.as_deref()));
            }
        }
        3 => {
            if let Ok(config) = jaas::parse(&String::from_utf8_lossy(rest)) {
                let _ = config.plain_users();
            }
        }
        4 => {
            if let Ok(dn) = principal::subject_name(rest) {
                let _ = fixture.rules.map(&dn);
            }
        }
        _ => {
            let mut texts = pieces(rest);
            let rules = String::from_utf8_lossy(texts.next().unwrap_or_default()).into_owned();
            if let Ok(rules) = principal::parse(&rules) {
                for dn in texts {
                    let _ = rules.map(&String::from_utf8_lossy(dn));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> HandshakeFixture {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        HandshakeFixture::new(&cert.cert.pem(), &cert.key_pair.serialize_pem()).unwrap()
    }

    fn tokens(mechanism: u8, versions: u8, tokens: &[&[u8]]) -> Vec<u8> {
        [
            vec![mechanism, versions],
            super::super::join_pieces(tokens.iter().copied()),
        ]
        .concat()
    }

    #[test]
    fn framed_tokens_reach_every_outcome_of_the_exchange() {
        let f = fixture();
        let plain = b"\0alice\0alice-secret";
        for versions in [0, 1, 3, 5] {
            let data = tokens(0, versions, &[plain]);
            assert_eq!(sasl_tokens(&f, &data), (None, true), "versions {versions}");
        }
        // Re-authentication through a second handshake, then a wrong password.
        let data = tokens(0, 5, &[plain, &[0xfe, 0], b"\0alice\0nope"]);
        let (reason, _) = sasl_tokens(&f, &data);
        assert!(reason.unwrap().contains("invalid username or password"));
        // The nonce placeholder gets client-final to the proof check, for
        // both SCRAM mechanisms; without it the nonce check refuses.
        let first = b"n,,n=alice,r=abc";
        for (mechanism, proof) in [(1, "A".repeat(43) + "="), (2, "A".repeat(86) + "==")] {
            let last = format!("c=biws,r=%r,p={proof}");
            let data = tokens(mechanism, 5, &[first, last.as_bytes()]);
            let (reason, authenticated) = sasl_tokens(&f, &data);
            assert!(!authenticated);
            assert!(reason.unwrap().contains("invalid username or password"));
            let stale = last.replace("%r", "abcdef");
            let (reason, _) = sasl_tokens(&f, &tokens(mechanism, 5, &[first, stale.as_bytes()]));
            assert!(reason.unwrap().contains("nonce"));
        }
        let (reason, _) = sasl_tokens(&f, &tokens(3, 3, &[b"x"]));
        assert!(reason.unwrap().contains("GSSAPI"));
    }

    #[test]
    fn nonce_is_found_and_substituted() {
        let answer = b"\0\0\0\x10r=abcDEF,s=c2FsdA==,i=4096";
        let nonce = server_nonce(answer).unwrap();
        assert_eq!(nonce, b"abcDEF");
        assert_eq!(
            substitute_nonce(b"c=biws,r=%r,p=x%r", Some(&nonce)),
            b"c=biws,r=abcDEF,p=xabcDEF"
        );
        assert_eq!(substitute_nonce(b"r=%r", None), b"r=%r");
    }
}
