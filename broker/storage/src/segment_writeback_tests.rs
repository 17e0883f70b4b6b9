//! Tests of write-behind through real logs: data stays byte-identical
//! across chunk boundaries, rolls, truncation and reopening; failing
//! advisory calls never fail an append; cold pages do leave the page cache.
//!
//! In unit tests segments use `Tuning::SMALL` (64 KiB chunks, 256 KiB lag),
//! so a few MiB of appends cross dozens of chunks.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{
    files::{segment_path, LOG_EXT},
    test_util::{batch, BatchSpec},
    writeback::SEGMENT_TUNING,
    Log, LogConfig,
};

const MIB: usize = 1 << 20;

/// Segments of 1 MiB: a few MiB of data make several rolls.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: MIB as u64,
        ..LogConfig::default()
    }
}

/// Appends batches of irregular sizes (a few hundred bytes to ~60 KiB, so
/// appends straddle chunk boundaries) until `bytes` more are stored;
/// returns the stored bytes of each.
fn append_bytes(log: &mut Log, bytes: usize, seed: u8) -> Vec<Vec<u8>> {
    let mut stored = Vec::new();
    let mut total = 0;
    let mut i = 0usize;
    while total < bytes {
        let body_len = 300 + (i * 7919 + seed as usize * 104_729) % 60_000;
        let mut buf = batch(&BatchSpec {
            records: 1 + (i % 5) as i32,
            body_len,
            fill: seed.wrapping_add(i as u8),
            ..BatchSpec::default()
        });
        log.append(&mut buf, 3, 0).unwrap();
        total += buf.len();
        stored.push(buf);
        i += 1;
    }
    stored
}

/// Everything from offset 0, one read per segment.
fn read_all(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, usize::MAX, i64::MAX, true).unwrap();
        let headers = crate::batch::validate_batches(&r.bytes).unwrap();
        offset = headers.last().unwrap().last_offset() + 1;
        out.extend_from_slice(&r.bytes);
    }
    out
}

/// The `.log` files of `dir` in offset order, concatenated.
fn files_on_disk(dir: &Path) -> Vec<u8> {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == LOG_EXT))
        .collect();
    logs.sort();
    logs.iter().flat_map(|p| fs::read(p).unwrap()).collect()
}

#[test]
fn data_is_identical_across_chunks_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let expected = append_bytes(&mut log, 5 * MIB, 1).concat();
    assert!(log.segment_count() >= 5, "{} segments", log.segment_count());
    assert_eq!(read_all(&log), expected);
    assert_eq!(files_on_disk(dir.path()), expected);

    log.close().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&log), expected);

    // The reopened active segment catches up on its first chunk; appends
    // go on as before.
    let more = append_bytes(&mut log, 2 * MIB, 2).concat();
    let expected = [expected, more].concat();
    assert_eq!(read_all(&log), expected);

    // A crash (no close): recovery scans the written-behind tail.
    drop(log);
    let log = Log::open(dir.path(), config()).unwrap();
    assert_eq!(read_all(&log), expected);
    assert_eq!(files_on_disk(dir.path()), expected);
}

#[test]
fn truncation_below_written_behind_data_then_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let first = append_bytes(&mut log, 3 * MIB / 2, 3);
    // Cut in the middle of the active segment, well below what was
    // written behind and dropped.
    let keep = first.len() / 3;
    let cut = crate::batch::validate_batches(&first[keep]).unwrap()[0].base_offset;
    log.truncate_to(cut).unwrap();
    assert_eq!(log.log_end_offset(), cut);
    let more = append_bytes(&mut log, 2 * MIB, 4);
    let expected = [first[..keep].concat(), more.concat()].concat();
    assert_eq!(read_all(&log), expected);
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(read_all(&log), expected);
}

#[test]
fn appends_succeed_when_the_advisory_calls_fail() {
    // Renaming the active segment away makes every wait-and-drop fail to
    // open it; appends, reads and the seal at close go on through the
    // segment's own handle.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let mut expected = append_bytes(&mut log, MIB / 2, 5).concat();
    let active = segment_path(dir.path(), 0, LOG_EXT);
    let aside = dir.path().join("aside");
    fs::rename(&active, &aside).unwrap();
    expected.extend(append_bytes(&mut log, 3 * MIB, 6).concat());
    assert_eq!(read_all(&log), expected);
    log.close().unwrap();
    fs::rename(&aside, &active).unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(read_all(&log), expected);
}

#[cfg(target_os = "linux")]
mod residency {
    use std::fs::File;

    use super::*;

    /// Whether each page of `path` is in the page cache.
    fn resident_pages(path: &Path) -> Vec<bool> {
        let file = File::open(path).unwrap();
        // SAFETY: a read-only map of a file only this test writes, used for
        // nothing but `mincore`; it is dropped before the test ends.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let mut vec = vec![0u8; map.len().div_ceil(page_size())];
        // SAFETY: `map` is a live mapping of `map.len()` bytes at a page
        // aligned address, and `vec` has one byte per page of it.
        let rc = unsafe { libc::mincore(map.as_ptr() as *mut _, map.len(), vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().map(|b| b & 1 == 1).collect()
    }

    /// Whether this filesystem drops clean pages on `POSIX_FADV_DONTNEED`
    /// (tmpfs, for one, keeps them: they are its only copy).
    fn can_drop_pages(dir: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let path = dir.join("probe");
        fs::write(&path, vec![7u8; 1 << 16]).unwrap();
        let file = File::open(&path).unwrap();
        file.sync_all().unwrap();
        // SAFETY: integer arguments on a descriptor `file` keeps open.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let dropped = rc == 0 && !resident_pages(&path).iter().any(|&r| r);
        fs::remove_file(&path).unwrap();
        dropped
    }

    fn page_size() -> usize {
        // SAFETY: sysconf has no memory effects.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
    }

    #[test]
    fn cold_pages_leave_the_cache_and_the_tail_stays() {
        let dir = tempfile::tempdir().unwrap();
        if !can_drop_pages(dir.path()) {
            let msg = "the temp dir's filesystem keeps pages on POSIX_FADV_DONTNEED";
            assert!(
                std::env::var_os("RIVULET_REQUIRE_PAGE_DROP").is_none(),
                "{msg}"
            );
            eprintln!("skipped: {msg}");
            return;
        }
        let mut log = Log::open(dir.path(), config()).unwrap();
        append_bytes(&mut log, 5 * MIB / 2, 7);
        let (lag, chunk) = (SEGMENT_TUNING.lag as usize, SEGMENT_TUNING.chunk as usize);
        let page = page_size();
        let mut logs: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == LOG_EXT))
            .collect();
        logs.sort();
        assert!(logs.len() >= 3, "{logs:?}");
        let active = logs.pop().unwrap();

        // Sealed segments: all but about the last `lag` bytes dropped.
        for sealed in &logs {
            let len = fs::metadata(sealed).unwrap().len() as usize;
            let cold = (len - lag - chunk) / page;
            let pages = resident_pages(sealed);
            assert!(
                pages[..cold].iter().all(|&r| !r),
                "{}: cold pages still cached",
                sealed.display()
            );
            assert!(
                pages[cold..].iter().any(|&r| r),
                "{}: tail dropped",
                sealed.display()
            );
        }

        // Active segment: what is more than the lag (plus the chunk not
        // yet written behind) behind the end is dropped, the tail is cached.
        let len = fs::metadata(&active).unwrap().len() as usize;
        assert!(len > lag + 2 * chunk, "active segment of {len} bytes");
        let pages = resident_pages(&active);
        let cold = (len - lag - 2 * chunk) / page;
        assert!(
            pages[..cold].iter().all(|&r| !r),
            "active segment: cold pages still cached"
        );
        let hot = (len - lag / 2) / page;
        assert!(
            pages[hot..].iter().all(|&r| r),
            "active segment: the tail was dropped"
        );
    }
}
