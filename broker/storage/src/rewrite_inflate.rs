//! Decompressing a batch's records section into a buffer of bounded size.
//!
//! A compressed section is small on the wire but may claim any size: a
//! zstd frame of RLE blocks turns 4 bytes into 128 KiB, gzip reaches about
//! 1000:1. kafka-protocol's decompressors write into a buffer that grows
//! without limit, so a 1 MiB produce could make the broker commit
//! gigabytes. The same decoders run here, writing into a [`Bounded`]
//! buffer that refuses to grow past [`MAX_DECOMPRESSED_SECTION`], so the
//! accepted inputs are exactly kafka-protocol's up to that size.

use std::io::{self, Write};

use kafka_protocol::records::Compression;

/// Most bytes one batch's records section may decompress to (128 MiB,
/// 128 times the default `max.message.bytes`). A larger section is refused
/// as a decompression error (CORRUPT_MESSAGE to the producer).
pub const MAX_DECOMPRESSED_SECTION: usize = 128 << 20;

/// The decompressed `body`, or why not; `codec` is gzip, lz4 or zstd
/// (snappy declares its sizes up front and is checked before decoding).
pub(super) fn decompress(codec: Compression, body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Bounded::new(limit);
    let outcome = match codec {
        Compression::Gzip => {
            let mut decoder = flate2::write::GzDecoder::new(&mut out);
            decoder
                .write_all(body)
                .and_then(|()| decoder.finish().map(drop))
        }
        Compression::Lz4 => lz4::Decoder::new(body)
            .and_then(|mut decoder| io::copy(&mut decoder, &mut out).map(drop)),
        Compression::Zstd => zstd::stream::copy_decode(body, &mut out),
        Compression::None | Compression::Snappy => {
            return Err(format!("{codec:?} is not decoded here"))
        }
    };
    outcome.map_err(|e| format!("failed to decompress {codec:?}: {e}"))?;
    Ok(out.bytes)
}

/// A growable buffer that errors instead of growing past its limit, and
/// never reserves more than the limit either.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl Bounded {
    fn new(limit: usize) -> Self {
        Bounded {
            bytes: Vec::new(),
            limit,
        }
    }
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let len = self.bytes.len();
        if data.len() > self.limit - len {
            return Err(io::Error::other(format!(
                "the records section decompresses to more than {} bytes",
                self.limit
            )));
        }
        if self.bytes.capacity() - len < data.len() {
            // Geometric growth as Vec does, capped at the limit.
            let target = (len + data.len())
                .max(self.bytes.capacity() * 2)
                .min(self.limit);
            self.bytes.reserve_exact(target - len);
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Zstd};

    use super::*;

    fn compressed(codec: Compression, data: &[u8]) -> Vec<u8> {
        fn with<C: Compressor<BytesMut, BufMut = BytesMut>>(data: &[u8]) -> Vec<u8> {
            let mut out = BytesMut::new();
            C::compress(&mut out, |buf| {
                buf.extend_from_slice(data);
                Ok(())
            })
            .unwrap();
            out.to_vec()
        }
        match codec {
            Compression::Gzip => with::<Gzip>(data),
            Compression::Lz4 => with::<Lz4>(data),
            Compression::Zstd => with::<Zstd>(data),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_codec_round_trips_within_the_limit_and_stops_past_it() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let body = compressed(codec, &data);
            assert_eq!(
                decompress(codec, &body, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
            let err = decompress(codec, &body, data.len() - 1).unwrap_err();
            assert!(err.contains("more than"), "{codec:?}: {err}");
        }
    }

    #[test]
    fn the_buffer_never_reserves_past_its_limit() {
        let mut out = Bounded::new(1000);
        for _ in 0..9 {
            out.write_all(&[1; 100]).unwrap();
        }
        assert!(out.write_all(&[1; 101]).is_err());
        out.write_all(&[1; 100]).unwrap();
        assert_eq!(out.bytes.len(), 1000);
        assert!(out.bytes.capacity() <= 1000);
    }
}
