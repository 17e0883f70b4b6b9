//! On-disk primitives shared by the log and snapshot stores: CRC-framed
//! records behind a magic/version header, torn-tail detection, and atomic
//! whole-file replacement.
//!
//! Frame layout: `len: u32 LE | crc32c(payload): u32 LE | payload`. A frame
//! that is cut short or fails its CRC ends the readable prefix: it can only
//! be a write that a crash interrupted, since records are fsync'ed before
//! they are acknowledged.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    path::Path,
};

/// Size of a frame header (length and CRC).
const FRAME_HEADER: usize = 8;

/// Largest frame accepted when reading: guards against allocating for a
/// garbage length in a torn or corrupt tail.
pub(crate) const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Encodes one frame around `payload`.
pub(crate) fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("frames are far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Splits `buf` into frames. Returns the payloads with their start
/// positions, and the length of the valid prefix (where a torn tail starts).
pub(crate) fn decode_frames(buf: &[u8]) -> (Vec<(usize, &[u8])>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= FRAME_HEADER {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let start = pos + FRAME_HEADER;
        if len > MAX_FRAME || buf.len() - start < len {
            break;
        }
        let payload = &buf[start..start + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        frames.push((pos, payload));
        pos = start + len;
    }
    (frames, pos)
}

/// Reads a whole file that starts with `magic`; `None` if it does not exist.
pub(crate) fn read_with_magic(path: &Path, magic: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut buf)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !buf.starts_with(magic) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} does not start with the expected magic/version",
                path.display()
            ),
        ));
    }
    buf.drain(..magic.len());
    Ok(Some(buf))
}

/// Replaces `path` with `contents` so that a crash leaves the old or the
/// new file, never a mix: write a temporary, fsync it, rename, fsync the
/// directory (which makes the rename durable).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path`, so that creating or renaming the
/// file survives a crash.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_frame(p, &mut out);
        }
        out
    }

    #[test]
    fn round_trip() {
        let buf = frames(&[b"one", b"", b"three"]);
        let (decoded, valid) = decode_frames(&buf);
        assert_eq!(valid, buf.len());
        let payloads: Vec<&[u8]> = decoded.iter().map(|(_, p)| *p).collect();
        assert_eq!(payloads, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(decoded[1].0, 11, "positions are frame starts");
    }

    #[test]
    fn torn_tail_is_cut_at_every_length() {
        let buf = frames(&[b"first", b"second"]);
        let first_len = FRAME_HEADER + 5;
        for cut in first_len..buf.len() {
            let (decoded, valid) = decode_frames(&buf[..cut]);
            assert_eq!((decoded.len(), valid), (1, first_len), "cut at {cut}");
        }
    }

    #[test]
    fn corrupt_payload_and_absurd_length_end_the_prefix() {
        let mut buf = frames(&[b"first", b"second"]);
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert_eq!(decode_frames(&buf).0.len(), 1);
        let mut garbage = frames(&[b"ok"]);
        garbage.extend_from_slice(&u32::MAX.to_le_bytes());
        garbage.extend_from_slice(&[0; 12]);
        assert_eq!(decode_frames(&garbage).1, FRAME_HEADER + 2);
    }

    #[test]
    fn atomic_write_and_magic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert_eq!(read_with_magic(&path, b"MAGIC").unwrap(), None);
        write_atomic(&path, b"MAGICbody").unwrap();
        write_atomic(&path, b"MAGICnew").unwrap();
        assert_eq!(read_with_magic(&path, b"MAGIC").unwrap().unwrap(), b"new");
        assert!(read_with_magic(&path, b"OTHER").is_err());
        assert!(!path.with_extension("tmp").exists());
    }
}
