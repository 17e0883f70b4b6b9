//! Size-prefixed framing of the Kafka protocol over a byte stream.
//!
//! Every Kafka request and response is a 4-byte big-endian length followed by
//! that many bytes. The length is attacker-controlled, so it is checked against
//! a maximum before any buffer is sized by it: a hostile prefix must cost the
//! broker nothing but the four bytes it read.

use bytes::{BufMut, Bytes, BytesMut};
#[cfg(feature = "client")]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[cfg(feature = "client")]
use crate::error::FrameError;

/// Kafka's default `socket.request.max.bytes` (100 MiB): the largest request
/// frame a broker accepts unless configured otherwise.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 104_857_600;

/// Length of the size prefix in front of every frame.
pub const SIZE_PREFIX_LEN: usize = 4;

/// Bytes read from the socket at a time while filling a body. Bodies grow in
/// steps of at most this much so a peer that announces a large frame and then
/// stalls holds only what it has actually sent.
#[cfg(feature = "client")]
const READ_CHUNK: usize = 64 * 1024;

#[cfg(feature = "client")]
/// Reads one frame body (without its size prefix).
///
/// Returns `Ok(None)` when the stream ends cleanly before the first byte of a
/// prefix, which is how a peer closes an idle connection. A negative prefix is
/// [`FrameError::Invalid`]; one above `max_size` is [`FrameError::TooLarge`],
/// reported without reading or allocating the body. A stream that ends inside
/// a prefix or body is [`FrameError::Truncated`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max_size: usize,
) -> Result<Option<BytesMut>, FrameError> {
    let mut prefix = [0u8; SIZE_PREFIX_LEN];
    let mut got = 0;
    while got < SIZE_PREFIX_LEN {
        let n = r.read(&mut prefix[got..]).await.map_err(FrameError::Io)?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                read: got,
                expected: SIZE_PREFIX_LEN,
            });
        }
        got += n;
    }
    let size = i32::from_be_bytes(prefix);
    if size < 0 {
        return Err(FrameError::Invalid(size));
    }
    let size = size as usize;
    if size > max_size {
        return Err(FrameError::TooLarge {
            size,
            max: max_size,
        });
    }

    // Grow the buffer with the data instead of reserving `size` up front:
    // even a within-limit prefix should not let a slow peer pin 100 MiB.
    let mut body = BytesMut::with_capacity(size.min(READ_CHUNK));
    while body.len() < size {
        let want = (size - body.len()).min(READ_CHUNK);
        body.reserve(want);
        let n = (&mut *r)
            .take(want as u64)
            .read_buf(&mut body)
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return Err(FrameError::Truncated {
                read: body.len(),
                expected: size,
            });
        }
    }
    Ok(Some(body))
}

#[cfg(feature = "client")]
/// Writes a complete frame (prefix included, as produced by
/// [`encode_response`](crate::request::encode_response) or the client's
/// request encoder) and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

/// Fills in the size prefix of a frame built as `[0; 4] ++ payload`.
///
/// Encoders reserve the prefix first and patch it at the end, which saves a
/// second buffer and a copy of the payload.
pub(crate) fn finish_frame(mut buf: BytesMut) -> Result<Bytes, usize> {
    let payload = buf.len() - SIZE_PREFIX_LEN;
    let size = i32::try_from(payload).map_err(|_| payload)?;
    buf[..SIZE_PREFIX_LEN].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Starts a frame buffer with room for the size prefix.
pub(crate) fn start_frame(capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(capacity + SIZE_PREFIX_LEN);
    buf.put_i32(0);
    buf
}

#[cfg(all(test, feature = "client"))]
mod tests {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use tokio::io::ReadBuf;

    use super::*;

    /// A reader that serves its bytes in tiny pieces, to exercise the
    /// partial-read paths, then reports EOF.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let end = (self.pos + self.step)
                .min(self.data.len())
                .min(self.pos + buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.data[pos..end]);
            self.pos = end;
            Poll::Ready(Ok(()))
        }
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[tokio::test]
    async fn reads_consecutive_frames_then_clean_eof() {
        let mut data = framed(b"hello");
        data.extend(framed(b""));
        data.extend(framed(&[7u8; 200_000]));
        let mut r = Trickle {
            data,
            pos: 0,
            step: 3,
        };
        assert_eq!(
            &read_frame(&mut r, 1 << 20).await.unwrap().unwrap()[..],
            b"hello"
        );
        assert!(read_frame(&mut r, 1 << 20)
            .await
            .unwrap()
            .unwrap()
            .is_empty());
        let big = read_frame(&mut r, 1 << 20).await.unwrap().unwrap();
        assert_eq!(big.len(), 200_000);
        assert!(big.iter().all(|b| *b == 7));
        assert!(read_frame(&mut r, 1 << 20).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversize_rejected_without_reading_body() {
        // The prefix announces 2 GiB - 1 but no body follows: if the reader
        // tried to allocate or read it, this would fail differently or hang.
        let mut r: &[u8] = &i32::MAX.to_be_bytes();
        match read_frame(&mut r, DEFAULT_MAX_FRAME_SIZE).await {
            Err(FrameError::TooLarge { size, max }) => {
                assert_eq!(size, i32::MAX as usize);
                assert_eq!(max, DEFAULT_MAX_FRAME_SIZE);
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut r: &[u8] = &[0, 0, 0, 11, 1, 2];
        assert!(matches!(
            read_frame(&mut r, 10).await,
            Err(FrameError::TooLarge { size: 11, max: 10 })
        ));
    }

    #[tokio::test]
    async fn negative_size_is_invalid() {
        let mut r: &[u8] = &(-1i32).to_be_bytes();
        assert!(matches!(
            read_frame(&mut r, DEFAULT_MAX_FRAME_SIZE).await,
            Err(FrameError::Invalid(-1))
        ));
    }

    #[tokio::test]
    async fn within_limit_but_truncated_body_does_not_preallocate() {
        // 100 MiB announced, 3 bytes sent: the error must report what arrived.
        let mut data = (DEFAULT_MAX_FRAME_SIZE as i32).to_be_bytes().to_vec();
        data.extend_from_slice(&[1, 2, 3]);
        let mut r = Trickle {
            data,
            pos: 0,
            step: 2,
        };
        match read_frame(&mut r, DEFAULT_MAX_FRAME_SIZE).await {
            Err(FrameError::Truncated { read, expected }) => {
                assert_eq!(read, 3);
                assert_eq!(expected, DEFAULT_MAX_FRAME_SIZE);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn truncated_prefix() {
        let mut r: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut r, 100).await,
            Err(FrameError::Truncated {
                read: 2,
                expected: 4
            })
        ));
    }

    #[tokio::test]
    async fn write_then_read_round_trip() {
        let mut buf = start_frame(3);
        buf.extend_from_slice(b"abc");
        let frame = finish_frame(buf).unwrap();
        let mut out = Vec::new();
        write_frame(&mut out, &frame).await.unwrap();
        let mut r: &[u8] = &out;
        assert_eq!(&read_frame(&mut r, 10).await.unwrap().unwrap()[..], b"abc");
    }
}
