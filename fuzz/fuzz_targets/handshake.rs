//! Fuzzes the broker's authentication path: SaslHandshake and
//! SaslAuthenticate into the connection's authenticator (PLAIN, SCRAM-SHA-256
//! and SCRAM-SHA-512), the SASL and certificate parsers behind it, and a TLS
//! client's byte stream into the listeners' rustls server configuration.
//!
//! The property: every input returns; no panic, no abort, no unbounded
//! allocation. The body (and the meaning of the first input byte) is
//! `rivulet_server::fuzzing::handshake`, shared with the stable replay test
//! (`broker/server/tests/fuzz_replay.rs`).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rivulet_server::fuzzing::{handshake, HandshakeFixture};
use rivulet_wire::alloc::LazyLargeAlloc;

#[global_allocator]
static GLOBAL: LazyLargeAlloc = LazyLargeAlloc;

/// Built once: a throwaway self-signed certificate and the SCRAM
/// credentials cost far more than one input.
fn fixture() -> &'static HandshakeFixture {
    static FIXTURE: OnceLock<HandshakeFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .expect("a self-signed certificate");
        HandshakeFixture::new(&cert.cert.pem(), &cert.key_pair.serialize_pem())
            .expect("the broker loads its own test certificate")
    })
}

fuzz_target!(|data: &[u8]| handshake(fixture(), data));
