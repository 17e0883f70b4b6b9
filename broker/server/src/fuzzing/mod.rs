//! Fuzz target bodies for the broker's own input handling, shared by the
//! cargo-fuzz targets in `/fuzz` (nightly, libFuzzer) and the stable replay
//! tests in `tests/fuzz_replay.rs` (`cargo test`):
//!
//! - [`handshake`]: arbitrary client bytes into the authentication path
//!   (SaslHandshake/SaslAuthenticate into [`crate::authenticate`], PLAIN,
//!   SCRAM and `sasl.jaas.config` parsing) and into the TLS server
//!   configuration the listeners use;
//! - [`batch_validator`]: arbitrary bytes as a Produce request's records
//!   into every check the produce handler runs before the log appends.
//!
//! The property of both: every input returns. A panic, an abort or an
//! unbounded allocation is a bug; errors are errors. Each body drives the
//! broker's real code, never a copy of it. The first input byte selects a
//! mode or a configuration, so one target reaches several parsers and the
//! fuzzer can tell the paths apart.
//!
//! Not part of the broker's interface (hidden from its docs): the module
//! only gives the fuzz crate, which lives outside the workspace, a way in.

mod batch;
mod handshake;

pub use batch::batch_validator;
pub use handshake::{handshake, HandshakeFixture};

/// Splits `data` into pieces, each announced by a 2-byte big-endian
/// length; a length past the end takes whatever is left. The fuzzer keeps
/// several messages apart this way, and a seed stays readable.
pub fn pieces(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = data.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (piece, tail) = rest.split_at(len);
        data = tail;
        Some(piece)
    })
}

/// The inverse of [`pieces`], for seed generators.
pub fn join_pieces<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let len = u16::try_from(part.len()).expect("a piece fits in 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_round_trip_and_tolerate_garbage() {
        let joined = join_pieces([&b"ab"[..], b"", b"xyz"]);
        let back: Vec<&[u8]> = pieces(&joined).collect();
        assert_eq!(back, vec![&b"ab"[..], b"", b"xyz"]);
        // A length past the end takes the rest; a lone byte is dropped.
        assert_eq!(pieces(&[0, 9, 1, 2]).collect::<Vec<_>>(), vec![&[1, 2][..]]);
        assert_eq!(pieces(&[7]).count(), 0);
    }
}
