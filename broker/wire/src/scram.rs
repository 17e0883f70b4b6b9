//! SASL SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka
//! speaks them: the server side of one exchange, the stored credential, and
//! a small client for the project's own command line.
//!
//! Kafka's dialect, which this follows:
//! - no channel binding: the gs2 header is `n,,` or `y,,` (an authzid equal
//!   to the user name is tolerated, any other is refused); `p=` is refused;
//! - passwords are used as their UTF-8 bytes, without SASLprep;
//! - extensions in client-first (Kafka's `tokenauth=true`) are accepted and
//!   ignored: delegation tokens are not supported, so such a client can only
//!   succeed with the user's real password;
//! - iteration counts are bounded by [`MIN_ITERATIONS`] and [`MAX_ITERATIONS`].
//!
//! Invariant: an unknown user is indistinguishable from a wrong password.
//! The server answers an unknown user with a decoy credential (a salt that
//! is stable per user name within this process, the [`MIN_ITERATIONS`]
//! count) and fails only at the proof check, with the same
//! [`ScramError::AuthenticationFailed`] and the same key work as a real
//! user. Operators who want that to hold against timing of the client's own
//! PBKDF2 should create credentials with 4096 iterations (Kafka's default).

use std::sync::OnceLock;

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{digest::KeyInit, Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};

/// Smallest iteration count Kafka accepts for a SCRAM credential.
pub const MIN_ITERATIONS: u32 = 4096;
/// Largest iteration count Kafka accepts for a SCRAM credential.
pub const MAX_ITERATIONS: u32 = 16384;

/// Random bytes in the server's and client's nonce part; RFC 5802 asks for
/// enough to make the nonce unpredictable, 24 bytes are 192 bits.
const NONCE_BYTES: usize = 24;
/// Salt length of credentials made here, and of the decoy credential, so the
/// two look alike on the wire.
const SALT_BYTES: usize = 32;

/// A SCRAM hash function, as named in SASL and in Kafka's admin APIs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramMechanism {
    /// The SASL mechanism name, as sent in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism with this SASL name (exact, as Kafka compares it).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Self::Sha256),
            "SCRAM-SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Kafka's numeric ScramMechanism in DescribeUserScramCredentials and
    /// AlterUserScramCredentials: 1 is SHA-256, 2 is SHA-512.
    pub fn kafka_type(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The mechanism for Kafka's numeric type; `None` for 0 (UNKNOWN) and
    /// anything else.
    pub fn from_kafka_type(t: i8) -> Option<Self> {
        match t {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// RFC 5802's `Hi(password, salt, iterations)`: PBKDF2 with HMAC of this
    /// hash, one output block long.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        match self {
            Self::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Self::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }

    /// Bytes in one hash output: the length of keys, proofs and signatures.
    fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => hmac_with::<Hmac<Sha256>>(key, data),
            Self::Sha512 => hmac_with::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's (ClientKey, StoredKey, ServerKey) for a salted password.
    fn keys(self, salted_password: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let client_key = self.hmac(salted_password, b"Client Key");
        let stored_key = self.hash(&client_key);
        (
            client_key,
            stored_key,
            self.hmac(salted_password, b"Server Key"),
        )
    }
}

fn hmac_with<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC is defined for keys of any length (long ones are hashed first), so
    // this error cannot happen whatever the key.
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Refuses an iteration count outside Kafka's bounds, as Kafka does when a
/// credential is created and as a client should when a server asks for one.
pub fn check_iterations(i: u32) -> Result<(), ScramError> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&i) {
        Ok(())
    } else {
        Err(ScramError::InvalidIterations(i))
    }
}

/// What the server stores for one user and mechanism: enough to verify a
/// proof and sign the answer, not enough to log in as the user.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ScramCredential {
    /// Salt fed to `Hi()`; sent to the client in server-first.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`: verifies the client's proof.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server-final message.
    pub server_key: Vec<u8>,
    /// Iteration count fed to `Hi()`; sent to the client in server-first.
    pub iterations: u32,
}

impl ScramCredential {
    /// The credential for an already salted password (what
    /// AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mech: ScramMechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> Self {
        let (_, stored_key, server_key) = mech.keys(salted_password);
        let salt = salt.to_vec();
        Self {
            salt,
            stored_key,
            server_key,
            iterations,
        }
    }

    /// The credential for a clear-text password, with a fresh random salt.
    ///
    /// # Panics
    ///
    /// If the operating system has no randomness to give, which leaves no
    /// safe salt to use.
    pub fn new(mech: ScramMechanism, password: &str, iterations: u32) -> Self {
        let salt = random_bytes::<SALT_BYTES>().expect("system randomness for a SCRAM salt");
        let salted = mech.salted_password(password.as_bytes(), &salt, iterations);
        Self::from_salted_password(mech, &salt, &salted, iterations)
    }
}

/// Why a SCRAM exchange stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow RFC 5802's grammar.
    #[error("malformed SCRAM {what}: {reason}")]
    Malformed {
        /// Which message: "client-first message", "server-final message"...
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The client asked for channel binding (`p=`), which Kafka does not do.
    #[error("SCRAM channel binding `{0}` is not supported")]
    ChannelBindingUnsupported(String),
    /// client-final's `c=` is not the gs2 header client-first began with.
    #[error("SCRAM channel binding data does not repeat the client-first gs2 header")]
    ChannelBindingMismatch,
    /// The client asked to act as another user than the one it authenticates.
    #[error("SCRAM authorization id `{0}` differs from the user name")]
    AuthorizationIdMismatch(String),
    /// A nonce does not continue the one this exchange started with.
    #[error("SCRAM nonce does not match the exchange's nonce")]
    NonceMismatch,
    /// Unknown user or wrong password; deliberately not saying which.
    #[error("authentication failed: invalid username or password")]
    AuthenticationFailed,
    /// A step was called before the one it follows, or after the end.
    #[error("SCRAM step out of order: {0}")]
    OutOfOrder(&'static str),
    /// An iteration count outside [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    #[error("SCRAM iteration count {0} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    InvalidIterations(u32),
    /// Client side: the server's signature is wrong, so it does not hold
    /// this user's credential.
    #[error("SCRAM server signature does not verify")]
    ServerSignatureMismatch,
    /// Client side: the server ended the exchange with `e=`.
    #[error("SCRAM server refused authentication: {0}")]
    ServerRefused(String),
    /// The operating system gave no random bytes for a nonce or secret.
    #[error("no system randomness for SCRAM: {0}")]
    Randomness(getrandom::Error),
}

fn malformed(what: &'static str, reason: impl Into<String>) -> ScramError {
    let reason = reason.into();
    ScramError::Malformed { what, reason }
}

const CLIENT_FIRST: &str = "client-first message";
const CLIENT_FINAL: &str = "client-final message";
const SERVER_FIRST: &str = "server-first message";
const SERVER_FINAL: &str = "server-final message";

/// The server side of one SCRAM exchange: client-first, then client-final.
/// Any error ends the exchange; a new one needs a new `ScramServer`.
pub struct ScramServer {
    mech: ScramMechanism,
    state: ServerState,
}

enum ServerState {
    AwaitingClientFirst,
    AwaitingClientFinal(Box<Pending>),
    Finished,
}

/// What client-first fixed and client-final is checked against.
struct Pending {
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// The client's part of `nonce`: librdkafka before 2.6.1 sends it
    /// twice in client-final (see `nonce_matches`).
    client_nonce: String,
    credential: ScramCredential,
    /// False when `credential` is the decoy: the proof check then fails
    /// even if someone found a proof for the decoy's keys.
    known: bool,
}

impl ScramServer {
    /// A new exchange for `mech`, waiting for client-first.
    pub fn new(mech: ScramMechanism) -> Self {
        let state = ServerState::AwaitingClientFirst;
        Self { mech, state }
    }

    /// Takes client-first; `lookup` returns the user's credential for this
    /// mechanism. Returns server-first.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ServerState::AwaitingClientFirst) {
            self.state = ServerState::Finished;
            return Err(ScramError::OutOfOrder("client-first came twice"));
        }
        self.state = ServerState::Finished;
        let server_nonce = BASE64.encode(random_bytes::<NONCE_BYTES>()?);
        self.start(message, lookup, &server_nonce)
    }

    /// client-first with a given server nonce part; the tests feed RFC 7677's.
    fn start(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<Vec<u8>, ScramError> {
        self.state = ServerState::Finished;
        let first = ClientFirst::parse(message)?;
        // The decoy is built for every user, known or not, so both cost the
        // same before the lookup decides which credential is used.
        let decoy = decoy_credential(self.mech, decoy_secret()?, &first.username);
        let (credential, known) = match lookup(&first.username) {
            Some(credential) => (credential, true),
            None => (decoy, false),
        };
        let nonce = format!("{}{server_nonce}", first.nonce);
        let salt = BASE64.encode(&credential.salt);
        let server_first = format!("r={nonce},s={salt},i={}", credential.iterations);
        let reply = server_first.clone().into_bytes();
        self.state = ServerState::AwaitingClientFinal(Box::new(Pending {
            username: first.username,
            gs2_header: first.gs2_header,
            client_first_bare: first.bare,
            server_first,
            nonce,
            client_nonce: first.nonce.clone(),
            credential,
            known,
        }));
        Ok(reply)
    }

    /// Takes client-final; on success returns (server-final, authenticated
    /// user name).
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let pending = match std::mem::replace(&mut self.state, ServerState::Finished) {
            ServerState::AwaitingClientFinal(pending) => pending,
            ServerState::AwaitingClientFirst => {
                return Err(ScramError::OutOfOrder("client-final before client-first"))
            }
            ServerState::Finished => return Err(ScramError::OutOfOrder("exchange already ended")),
        };
        let last = ClientFinal::parse(message)?;
        if last.channel_binding != pending.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if !nonce_matches(last.nonce, &pending.nonce, &pending.client_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        if last.proof.len() != self.mech.output_len() {
            return Err(malformed(CLIENT_FINAL, "proof has the wrong length"));
        }
        let auth_message = format!(
            "{},{},{}",
            pending.client_first_bare, pending.server_first, last.without_proof
        );
        let credential = &pending.credential;
        let auth_message = auth_message.as_bytes();
        let client_signature = self.mech.hmac(&credential.stored_key, auth_message);
        let client_key = xor(&last.proof, &client_signature);
        let verified = self.mech.hash(&client_key).ct_eq(&credential.stored_key)
            & Choice::from(u8::from(pending.known));
        // Signed before the verdict so success and failure do the same work.
        let server_signature = self.mech.hmac(&credential.server_key, auth_message);
        if !bool::from(verified) {
            return Err(ScramError::AuthenticationFailed);
        }
        let server_final = format!("v={}", BASE64.encode(server_signature));
        Ok((server_final.into_bytes(), pending.username))
    }
}

/// A parsed client-first message.
struct ClientFirst {
    /// Everything up to the bare message, e.g. `n,,`: client-final's `c=`
    /// must repeat it.
    gs2_header: String,
    username: String,
    nonce: String,
    bare: String,
}

impl ClientFirst {
    fn parse(message: &[u8]) -> Result<Self, ScramError> {
        let text = utf8(message, CLIENT_FIRST)?;
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().unwrap_or_default();
        let (Some(authzid), Some(bare)) = (parts.next(), parts.next()) else {
            return Err(malformed(CLIENT_FIRST, "no gs2 header (expected `n,,`)"));
        };
        match cbind {
            "n" | "y" => {}
            _ if cbind.starts_with("p=") => {
                return Err(ScramError::ChannelBindingUnsupported(cbind.to_string()))
            }
            _ => return Err(malformed(CLIENT_FIRST, "gs2 header is not `n` or `y`")),
        }
        let authzid = match authzid {
            "" => None,
            _ => Some(saslname(Some(authzid), "a=", CLIENT_FIRST)?),
        };
        let mut attrs = bare.split(',');
        let username = saslname(
            first_attribute(attrs.next(), CLIENT_FIRST)?,
            "n=",
            CLIENT_FIRST,
        )?;
        let nonce = required(attrs.next(), "r=", CLIENT_FIRST)?;
        check_nonce(nonce, CLIENT_FIRST)?;
        attrs.try_for_each(|ext| check_extension(ext, CLIENT_FIRST))?;
        if let Some(authzid) = authzid {
            if authzid != username {
                return Err(ScramError::AuthorizationIdMismatch(authzid));
            }
        }
        Ok(Self {
            gs2_header: text[..text.len() - bare.len()].to_string(),
            username,
            nonce: nonce.to_string(),
            bare: bare.to_string(),
        })
    }
}

/// A parsed client-final message.
struct ClientFinal<'a> {
    without_proof: &'a str,
    channel_binding: Vec<u8>,
    nonce: &'a str,
    proof: Vec<u8>,
}

impl<'a> ClientFinal<'a> {
    fn parse(message: &'a [u8]) -> Result<Self, ScramError> {
        let text = utf8(message, CLIENT_FINAL)?;
        // The proof is the last attribute and the only one not signed.
        let (without_proof, proof) = text.rsplit_once(',').unwrap_or((text, ""));
        let proof = required_base64(Some(proof), "p=", CLIENT_FINAL)?;
        let mut attrs = without_proof.split(',');
        let channel_binding = required_base64(attrs.next(), "c=", CLIENT_FINAL)?;
        let nonce = required(attrs.next(), "r=", CLIENT_FINAL)?;
        attrs.try_for_each(|ext| check_extension(ext, CLIENT_FINAL))?;
        Ok(Self {
            without_proof,
            channel_binding,
            nonce,
            proof,
        })
    }
}

/// The client side of one exchange, for the project's own tools.
pub struct ScramClient {
    mech: ScramMechanism,
    password: String,
    nonce: String,
    client_first_bare: String,
    /// Set by `client_final`: the signature the server must answer with.
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A client that will log in as `user` with `password`.
    ///
    /// # Panics
    ///
    /// If the operating system has no randomness for the nonce.
    pub fn new(mech: ScramMechanism, user: &str, password: &str) -> Self {
        let random = random_bytes::<NONCE_BYTES>().expect("system randomness for a SCRAM nonce");
        Self::with_nonce(mech, user, password, &BASE64.encode(random))
    }

    fn with_nonce(mech: ScramMechanism, user: &str, password: &str, nonce: &str) -> Self {
        Self {
            mech,
            password: password.to_string(),
            nonce: nonce.to_string(),
            client_first_bare: format!("n={},r={nonce}", encode_saslname(user)),
            expected_server_signature: None,
        }
    }

    /// The client-first message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Takes server-first; returns client-final with the proof.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = utf8(server_first, SERVER_FIRST)?;
        let mut attrs = text.split(',');
        let nonce = required(
            first_attribute(attrs.next(), SERVER_FIRST)?,
            "r=",
            SERVER_FIRST,
        )?;
        check_nonce(nonce, SERVER_FIRST)?;
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let salt = required_base64(attrs.next(), "s=", SERVER_FIRST)?;
        let iterations = required(attrs.next(), "i=", SERVER_FIRST)?
            .parse::<u32>()
            .map_err(|_| malformed(SERVER_FIRST, "iteration count is not a number"))?;
        // A server may not make the client spin for ever, nor ask for a weak key.
        check_iterations(iterations)?;
        attrs.try_for_each(|ext| check_extension(ext, SERVER_FIRST))?;

        let salted = self
            .mech
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let (client_key, stored_key, server_key) = self.mech.keys(&salted);
        let without_proof = format!("c={},r={nonce}", BASE64.encode("n,,"));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let auth_message = auth_message.as_bytes();
        let proof = xor(&client_key, &self.mech.hmac(&stored_key, auth_message));
        self.expected_server_signature = Some(self.mech.hmac(&server_key, auth_message));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the server proves it holds the credential.
    pub fn verify_server_final(&self, message: &[u8]) -> Result<(), ScramError> {
        let Some(expected) = &self.expected_server_signature else {
            return Err(ScramError::OutOfOrder("server-final before client-final"));
        };
        let text = utf8(message, SERVER_FINAL)?;
        let text = text.split(',').next().unwrap_or_default();
        if let Some(error) = text.strip_prefix("e=") {
            return Err(ScramError::ServerRefused(error.to_string()));
        }
        let signature = required_base64(Some(text), "v=", SERVER_FINAL)?;
        if bool::from(signature.ct_eq(expected)) {
            Ok(())
        } else {
            Err(ScramError::ServerSignatureMismatch)
        }
    }
}

fn utf8<'a>(message: &'a [u8], what: &'static str) -> Result<&'a str, ScramError> {
    std::str::from_utf8(message).map_err(|_| malformed(what, "not UTF-8"))
}

/// The value of the attribute that must come next, `key` being e.g. `"r="`.
fn required<'a>(
    attr: Option<&'a str>,
    key: &'static str,
    what: &'static str,
) -> Result<&'a str, ScramError> {
    attr.and_then(|a| a.strip_prefix(key))
        .ok_or_else(|| malformed(what, format!("expected attribute `{key}`")))
}

fn required_base64(
    attr: Option<&str>,
    key: &'static str,
    what: &'static str,
) -> Result<Vec<u8>, ScramError> {
    let value = required(attr, key, what)?;
    BASE64
        .decode(value)
        .map_err(|_| malformed(what, format!("`{key}` is not base64")))
}

/// The first attribute, which RFC 5802 reserves for the mandatory
/// extension `m=` that no one defines: refused, as the RFC asks.
fn first_attribute<'a>(
    attr: Option<&'a str>,
    what: &'static str,
) -> Result<Option<&'a str>, ScramError> {
    match attr {
        Some(attr) if attr.starts_with("m=") => Err(malformed(what, "extension `m=` is unknown")),
        _ => Ok(attr),
    }
}

/// Whether client-final's nonce is the exchange's. RFC 5802 wants it equal.
/// librdkafka before 2.6.1 (Debian 12's kcat, Ubuntu's packages) sends the
/// client part once more in front of it; Kafka 3.8.1 to 3.9 accepted that
/// and Kafka 4 refuses it, breaking those clients. Rivulet accepts exactly
/// that one extra form: the whole fresh server nonce is still required, so
/// a replayed exchange still fails.
fn nonce_matches(got: &str, exchange: &str, client: &str) -> bool {
    got == exchange
        || (got.len() == client.len() + exchange.len()
            && got.starts_with(client)
            && got.ends_with(exchange))
}

/// RFC 5802's printable nonce: ASCII 0x21-0x7E except `,`.
fn check_nonce(nonce: &str, what: &'static str) -> Result<(), ScramError> {
    let printable = |b: u8| b != b',' && (0x21..=0x7e).contains(&b);
    if nonce.is_empty() || !nonce.bytes().all(printable) {
        return Err(malformed(what, "nonce is empty or not printable ASCII"));
    }
    Ok(())
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// An extension is `name=value`; Kafka's names (`tokenauth`) are longer
/// than RFC 5802's single letter, so any alphabetic name is accepted.
fn check_extension(ext: &str, what: &'static str) -> Result<(), ScramError> {
    match ext.split_once('=') {
        Some((name, _)) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(())
        }
        _ => Err(malformed(what, format!("`{ext}` is not an attribute"))),
    }
}

/// Decodes the saslname in attribute `key`: `=2C` is `,`, `=3D` is `=`,
/// and any other `=` is an error, as is an empty name or a NUL.
fn saslname(
    attr: Option<&str>,
    key: &'static str,
    what: &'static str,
) -> Result<String, ScramError> {
    let name = required(attr, key, what)?;
    if name.is_empty() {
        return Err(malformed(what, "empty user name"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find(['=', '\0']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return Err(malformed(what, "user name has a NUL or a bad `=` escape"));
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn random_bytes<const N: usize>() -> Result<[u8; N], ScramError> {
    let mut bytes = [0; N];
    getrandom::getrandom(&mut bytes).map_err(ScramError::Randomness)?;
    Ok(bytes)
}

/// Per-process key for decoy credentials: without it an attacker could
/// compute a decoy salt offline and tell unknown users from real ones.
static DECOY_SECRET: OnceLock<[u8; 32]> = OnceLock::new();

fn decoy_secret() -> Result<&'static [u8; 32], ScramError> {
    if let Some(secret) = DECOY_SECRET.get() {
        return Ok(secret);
    }
    let fresh = random_bytes::<32>()?;
    Ok(DECOY_SECRET.get_or_init(|| fresh))
}

/// The credential an unknown user is answered with: same salt for the same
/// name on every attempt (a changing salt would give the user away), keys no
/// password leads to.
fn decoy_credential(mech: ScramMechanism, secret: &[u8; 32], username: &str) -> ScramCredential {
    let derive = |label: &str, m: ScramMechanism| {
        let input = format!("{label}\0{}\0{username}", mech.name());
        m.hmac(secret, input.as_bytes())
    };
    ScramCredential {
        salt: derive("salt", ScramMechanism::Sha256),
        stored_key: derive("stored key", mech),
        server_key: derive("server key", mech),
        iterations: MIN_ITERATIONS,
    }
}

#[cfg(test)]
mod tests;
