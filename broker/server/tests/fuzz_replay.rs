//! The `handshake` and `batch_validator` fuzz targets on the stable
//! toolchain, and the generator of their committed seeds.
//!
//! Each replay test runs every committed seed and corpus file
//! (`fuzz/seeds/<target>`, `fuzz/corpus/<target>`) through the target's
//! body, then a few seconds of seeded mutations of them; CI runs them with
//! `cargo test`. `RIVULET_FUZZ_SEED` replays a mutation run whose seed a
//! failure printed; `RIVULET_FUZZ_SECONDS` runs the mutations longer.
//! Regenerate the seeds (valid inputs that reach deep) with:
//!
//! ```text
//! RIVULET_FUZZ_SEEDS=fuzz/seeds cargo test -p rivulet-server \
//!     --test fuzz_replay -- --ignored write_fuzz_seeds
//! ```

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use rivulet_server::fuzzing::{batch_validator, handshake, join_pieces, HandshakeFixture};
use rivulet_wire::{
    alloc::LazyLargeAlloc,
    batch::validate_batches,
    client::{encode_batch, encode_request, OwnedRecord},
    fuzzing,
    kafka_protocol::{
        messages::{
            ApiVersionsRequest, MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
        },
        protocol::{Request, StrBytes},
        records::Compression,
    },
};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    ClientConfig, ClientConnection, RootCertStore, ServerConnection,
};

/// As in the broker: hostile array lengths in request frames cost address
/// space, not an abort.
#[global_allocator]
static GLOBAL: LazyLargeAlloc = LazyLargeAlloc;

/// How long each target's mutation loop runs on every `cargo test`.
const MUTATION_BUDGET: Duration = Duration::from_secs(3);

struct Fixture {
    handshake: HandshakeFixture,
    cert: rcgen::CertifiedKey,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let handshake =
            HandshakeFixture::new(&cert.cert.pem(), &cert.key_pair.serialize_pem()).unwrap();
        Fixture { handshake, cert }
    })
}

fn corpus(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let dirs = fuzzing::corpus_dirs(env!("CARGO_MANIFEST_DIR"), target);
    let corpus = fuzzing::read_corpus(&dirs);
    assert!(
        corpus.len() >= 10,
        "expected the committed seeds in {}",
        dirs[0].display()
    );
    corpus
}

#[test]
fn handshake_survives_its_corpus_and_mutations() {
    let corpus = corpus("handshake");
    let fixture = &fixture().handshake;
    let done = fuzzing::exercise(
        "handshake",
        &corpus,
        fuzzing::seed_from_env(),
        fuzzing::budget_from_env(MUTATION_BUDGET),
        4096,
        |data| handshake(fixture, data),
    );
    assert!(done.mutated > 0, "no mutation ran");
}

#[test]
fn batch_validator_survives_its_corpus_and_mutations() {
    let corpus = corpus("batch_validator");
    let done = fuzzing::exercise(
        "batch_validator",
        &corpus,
        fuzzing::seed_from_env(),
        fuzzing::budget_from_env(MUTATION_BUDGET),
        65536,
        batch_validator,
    );
    assert!(done.mutated > 0, "no mutation ran");
}

/// The committed seeds are the generator's: the same names, and the same
/// bytes where the generator is deterministic (TLS handshakes and fresh
/// certificates are not).
#[test]
fn committed_seeds_match_the_generator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for (target, seeds) in [
        ("handshake", handshake_seeds()),
        ("batch_validator", batch_seeds()),
    ] {
        let dir = root.join(target);
        let committed: BTreeMap<String, Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap())
            .map(|e| {
                let name = e.file_name().into_string().unwrap();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&committed), names(&seeds), "{target}: regenerate");
        for (name, bytes) in &seeds {
            if !name.starts_with("tls") && name != "parse_subject" {
                assert_eq!(&committed[name], bytes, "{target}/{name}: regenerate");
            }
        }
    }
}

/// Batch seeds are valid batches (but the ones meant to be refused by
/// a later check), so mutations start deep in the validator.
#[test]
fn batch_seeds_hold_valid_batches() {
    for (name, seed) in batch_seeds() {
        validate_batches(&seed[1..]).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
#[ignore = "writes the committed fuzz seeds; run on purpose"]
fn write_fuzz_seeds() {
    let root = std::env::var("RIVULET_FUZZ_SEEDS").expect("set RIVULET_FUZZ_SEEDS to fuzz/seeds");
    for (target, seeds) in [
        ("handshake", handshake_seeds()),
        ("batch_validator", batch_seeds()),
    ] {
        let dir = Path::new(&root).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

// ---- handshake seeds -------------------------------------------------------

/// The first byte of a `handshake` input: which path it takes.
const TLS: u8 = 0;
const FRAMES: u8 = 1;
const TOKENS: u8 = 2;
const PARSERS: u8 = 3;

const CLIENT_NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";

fn handshake_seeds() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut add = |name: &str, mode: u8, rest: Vec<u8>| {
        out.insert(name.to_string(), [vec![mode], rest].concat());
    };
    for (name, bytes) in tls_streams() {
        add(&name, TLS, bytes);
    }
    for (name, listener, frames) in frame_seeds() {
        let frames: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        add(name, FRAMES, [vec![listener], join_pieces(frames)].concat());
    }
    for (name, mechanism, versions, tokens) in token_seeds() {
        let tokens: Vec<&[u8]> = tokens.iter().map(|t| &t[..]).collect();
        add(
            name,
            TOKENS,
            [vec![mechanism, versions], join_pieces(tokens)].concat(),
        );
    }
    let first = format!("n,,n=alice,r={CLIENT_NONCE}");
    for (which, name, proof) in [(1, "parse_scram256", 32), (2, "parse_scram512", 64)] {
        let last = client_final("%r", proof);
        let pieces = join_pieces([first.as_bytes(), last.as_bytes()]);
        add(name, PARSERS, [vec![which], pieces].concat());
    }
    add(
        "parse_plain",
        PARSERS,
        b"\x00\x00alice\x00alice-secret".to_vec(),
    );
    let jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required \
                username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
                user_alice=\"alice\\\"secret\";";
    add("parse_jaas", PARSERS, [b"\x03", jaas.as_bytes()].concat());
    let subject = subject_certificate();
    add("parse_subject", PARSERS, [&[4u8][..], &subject].concat());
    let rules = join_pieces([
        &b"RULE:^CN=(.*?),OU=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-z]+).*$/$1/U,DEFAULT"[..],
        b"CN=Alice,OU=Eng",
        b"O=Rivulet,cn=bob",
    ]);
    add("parse_rules", PARSERS, [&[5u8][..], &rules].concat());
    out
}

/// A client-final message with an all-zero proof of `len` bytes.
fn client_final(nonce: &str, len: usize) -> String {
    let zeros = match len {
        32 => format!("{}=", "A".repeat(43)),
        _ => format!("{}==", "A".repeat(86)),
    };
    format!("c=biws,r={nonce},p={zeros}")
}

fn frame<R: Request>(version: i16, request: &R) -> Vec<u8> {
    encode_request(1, Some("seed"), version, request).unwrap()[4..].to_vec()
}

fn sasl_handshake(version: i16, mechanism: &'static str) -> Vec<u8> {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    frame(version, &request)
}

fn sasl_authenticate(version: i16, token: &[u8]) -> Vec<u8> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
    frame(version, &request)
}

type FrameSeed = (&'static str, u8, Vec<Vec<u8>>);

fn frame_seeds() -> Vec<FrameSeed> {
    let plain = b"\0alice\0alice-secret";
    let first = format!("n,,n=alice,r={CLIENT_NONCE}");
    let last = client_final(&format!("{CLIENT_NONCE}abc"), 32);
    vec![
        (
            "frames_plain_then_reauth",
            0,
            vec![
                sasl_handshake(1, "PLAIN"),
                sasl_authenticate(2, plain),
                frame(9, &MetadataRequest::default()),
                sasl_handshake(1, "PLAIN"),
                sasl_authenticate(2, plain),
            ],
        ),
        (
            "frames_scram256_v0_raw",
            0,
            vec![
                sasl_handshake(0, "SCRAM-SHA-256"),
                first.clone().into_bytes(),
                last.clone().into_bytes(),
            ],
        ),
        (
            "frames_scram512_v1",
            0,
            vec![
                sasl_handshake(1, "SCRAM-SHA-512"),
                sasl_authenticate(1, first.as_bytes()),
                sasl_authenticate(1, last.as_bytes()),
            ],
        ),
        (
            "frames_request_before_auth",
            0,
            vec![
                frame(3, &ApiVersionsRequest::default()),
                frame(9, &MetadataRequest::default()),
            ],
        ),
        (
            "frames_plaintext_listener",
            1,
            vec![sasl_handshake(1, "PLAIN"), sasl_authenticate(0, plain)],
        ),
    ]
}

type TokenSeed = (&'static str, u8, u8, Vec<Vec<u8>>);

fn token_seeds() -> Vec<TokenSeed> {
    let plain = b"\0alice\0alice-secret".to_vec();
    let first = format!("n,,n=alice,r={CLIENT_NONCE}").into_bytes();
    // Versions byte: bit 0 is SaslHandshake v1 (else v0, raw tokens),
    // bits 1-2 the SaslAuthenticate version.
    let mut seeds: Vec<TokenSeed> = vec![
        ("tokens_plain_raw", 0, 0, vec![plain.clone()]),
        ("tokens_plain_v0", 0, 1, vec![plain.clone()]),
        ("tokens_plain_v1", 0, 3, vec![plain.clone()]),
        ("tokens_plain_v2", 0, 5, vec![plain.clone()]),
        (
            "tokens_plain_reauth",
            0,
            5,
            vec![plain.clone(), vec![0xfe, 0], plain.clone()],
        ),
        (
            "tokens_plain_wrong_password",
            0,
            3,
            vec![b"alice\0alice\0secret".to_vec()],
        ),
        ("tokens_gssapi", 3, 3, vec![b"\x60\x82".to_vec()]),
        (
            "tokens_scram256_authzid",
            1,
            3,
            vec![b"n,a=alice,n=alice,r=abc".to_vec()],
        ),
        (
            "tokens_scram256_librdkafka_nonce",
            1,
            3,
            vec![
                first.clone(),
                client_final(&format!("{CLIENT_NONCE}%r"), 32).into_bytes(),
            ],
        ),
    ];
    for (name, mechanism, proof) in [("tokens_scram256", 1, 32), ("tokens_scram512", 2, 64)] {
        let last = client_final("%r", proof).into_bytes();
        seeds.push((name, mechanism, 5, vec![first.clone(), last.clone()]));
    }
    seeds.push((
        "tokens_scram512_raw",
        2,
        0,
        vec![first, client_final("%r", 64).into_bytes()],
    ));
    seeds
}

/// A certificate whose subject has several attributes, as DER.
fn subject_certificate() -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CountryName, "NO");
    dn.push(rcgen::DnType::OrganizationName, "Rivulet, Inc.");
    dn.push(rcgen::DnType::CommonName, "alice");
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

/// What TLS clients send: a ClientHello of each version, and every byte a
/// client sends in whole handshakes (with a client certificate) against the
/// fixture's server configuration.
fn tls_streams() -> Vec<(String, Vec<u8>)> {
    let f = fixture();
    let mut roots = RootCertStore::empty();
    roots.add(f.cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut out = Vec::new();
    for (label, version) in [
        ("tls12", &rustls::version::TLS12),
        ("tls13", &rustls::version::TLS13),
    ] {
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone());
        let anonymous = Arc::new(builder.clone().with_no_client_auth());
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(f.cert.key_pair.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![f.cert.cert.der().clone()];
        let with_cert = Arc::new(builder.with_client_auth_cert(chain, key).unwrap());
        out.push((
            format!("{label}_client_hello"),
            client_bytes(anonymous, false),
        ));
        out.push((
            format!("{label}_client_auth_handshake"),
            client_bytes(with_cert, true),
        ));
    }
    out
}

/// The client's side of a handshake with the fixture's server: only the
/// first flight, or everything the client sent until both sides finished.
fn client_bytes(config: Arc<ClientConfig>, whole: bool) -> Vec<u8> {
    let name = "localhost".try_into().unwrap();
    let mut client = ClientConnection::new(config, name).unwrap();
    let mut server = ServerConnection::new(fixture().handshake.tls_config()).unwrap();
    let mut sent = Vec::new();
    for _ in 0..10 {
        let mut flight = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut flight).unwrap();
        }
        sent.extend_from_slice(&flight);
        if !whole || !(client.is_handshaking() || server.is_handshaking()) {
            break;
        }
        server.read_tls(&mut &flight[..]).unwrap();
        server.process_new_packets().unwrap();
        let mut reply = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut reply).unwrap();
        }
        client.read_tls(&mut &reply[..]).unwrap();
        client.process_new_packets().unwrap();
    }
    assert!(
        !whole || !server.is_handshaking(),
        "the seed handshake completes"
    );
    sent
}

// ---- batch_validator seeds -------------------------------------------------

/// Flag bits of a `batch_validator` input's first byte; the low three
/// bits index `CompressionType::ALL` (producer, uncompressed, gzip,
/// snappy, lz4, zstd).
const COMPACT: u8 = 0x08;
const FIX_CRC: u8 = 0x10;
const SMALL_MAX: u8 = 0x20;

fn records(keys: &[Option<&str>], value_len: usize) -> Vec<OwnedRecord> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| OwnedRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::from(vec![b'v'; value_len])),
            headers: vec![("trace".into(), Some(Bytes::from_static(b"abc")))],
            ..Default::default()
        })
        .collect()
}

fn batch_seeds() -> BTreeMap<String, Vec<u8>> {
    let codecs = [
        ("none", Compression::None, 1u8),
        ("gzip", Compression::Gzip, 2),
        ("snappy", Compression::Snappy, 3),
        ("lz4", Compression::Lz4, 4),
        ("zstd", Compression::Zstd, 5),
    ];
    let keyed = records(&[Some("a"), Some("b"), Some("a")], 40);
    let mut out = BTreeMap::new();
    for (i, (name, codec, own)) in codecs.iter().enumerate() {
        let batch = encode_batch(&keyed, *codec).unwrap();
        // Kept as it is, checked for keys, and rewritten to the next codec.
        let (_, _, next) = codecs[(i + 1) % codecs.len()];
        out.insert(format!("{name}_producer"), [&[0][..], &batch].concat());
        out.insert(
            format!("{name}_compact_same"),
            [&[own | COMPACT][..], &batch].concat(),
        );
        out.insert(
            format!("{name}_to_next_fixed"),
            [&[next | FIX_CRC][..], &batch].concat(),
        );
    }
    let keyless = encode_batch(&records(&[Some("a"), None], 10), Compression::Lz4).unwrap();
    out.insert(
        "lz4_keyless_compact_refused".into(),
        [&[COMPACT][..], &keyless].concat(),
    );
    let big = encode_batch(&records(&[Some("k")], 5000), Compression::None).unwrap();
    out.insert(
        "none_too_large_refused".into(),
        [&[SMALL_MAX][..], &big].concat(),
    );
    let two = [
        encode_batch(&keyed, Compression::None).unwrap(),
        encode_batch(&keyed, Compression::Gzip).unwrap(),
    ]
    .concat();
    out.insert(
        "two_batches_to_zstd".into(),
        [&[5 | COMPACT][..], &two].concat(),
    );
    out
}
