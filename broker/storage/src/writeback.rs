//! Write-behind for the active segment: start the kernel writing appended
//! data as it arrives, and drop pages well behind the log end from the page
//! cache.
//!
//! Why: appends are buffered `pwrite`s. Left alone, (1) dirty pages pile
//! up until the kernel's background threshold (10% of memory: gigabytes),
//! so the fsync that seals a rolled segment writes up to a whole segment
//! while the append that rolled it waits under the log lock; and (2) every
//! byte ever written stays cached, so the page cache grows through free
//! memory and then lives on reclaim. Both made sustained produce unsteady.
//! Growing through free memory is the expensive part on virtual machines
//! that hand free memory back to the host (virtio-balloon free page
//! reporting): each such page costs a host fault when `pwrite` first
//! copies into it, which measured at 2-2.7 broker CPU-s/GB against 0.5 for
//! recycled pages, so a run's cost depended on how much memory happened to
//! be free. Here, every [`CHUNK_BYTES`] of appended data has its writeback
//! started at once (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so dirty
//! data per active segment stays around a chunk, and data more than
//! [`DROP_LAG_BYTES`] behind the end is waited for (long since written) and
//! dropped (`posix_fadvise(POSIX_FADV_DONTNEED)`): the broker keeps
//! recycling a small set of pages, the cache holds the tail that consumers
//! and followers read, and reclaim has nothing to do.
//!
//! Invariants:
//! - purely advisory: nothing here changes file contents, sizes or what is
//!   durable (that is fsync's job: `Segment::flush`, `SyncHandle::sync`).
//!   Errors are logged at debug and dropped; [`WriteBehind::appended`]
//!   returns `()`, so it cannot fail an append;
//! - waiting for writeback goes through a file description of its own:
//!   `sync_file_range` with `WAIT_AFTER` reports a writeback error *and
//!   marks it seen* on the description it was called on, which the
//!   segment's handle shares (via `dup`) with the group-commit fsync. On
//!   the segment's own handle it could swallow an EIO that fsync must
//!   report. A range whose wait reports an error is not dropped;
//! - the hot path is one comparison: below a chunk since the last call,
//!   no syscall;
//! - only Linux has these calls; elsewhere they are no-ops.

use std::{fs::File, ops::Range, path::Path};

use tracing::debug;

/// Appended bytes between two write-behind calls on a segment: 4 MiB.
///
/// Large enough that the syscalls are rare (about 250 per GB, against
/// thousands of appends) and that each call hands the block layer at least
/// one maximum-size request (`max_sectors_kb` is 128 KiB to 4 MiB on common
/// devices) over contiguous extents; small enough that a partition holds little dirty data (a chunk
/// not yet started plus what the disk has in flight), that sealing a segment
/// has almost nothing left to fsync, and that the disk starts working
/// milliseconds after the data arrives.
pub(crate) const CHUNK_BYTES: u64 = 4 << 20;

/// How far behind the end of the active segment pages are dropped: 64 MiB.
///
/// Consumers and followers that keep up read within a few fetches of the
/// end (`max.partition.fetch.bytes` and `replica.fetch.max.bytes` default
/// to 1 MiB per partition), so they still read from memory; one that is
/// further behind reads sequentially from disk with readahead, as it would
/// once reclaim had evicted those pages anyway. Sixteen chunks of lag also
/// means the writeback a drop waits for was started fifteen chunks earlier,
/// so the wait only blocks when the disk is slower than the producers, which
/// is back-pressure the kernel would apply anyway (per segment here, instead
/// of at the machine-wide dirty limit). The cache this keeps is bounded: at
/// most 64 MiB plus a chunk per partition being written.
pub(crate) const DROP_LAG_BYTES: u64 = 64 << 20;

/// Ranges are cut at multiples of this so a call never covers the partly
/// written last page (writing it back now would only see it dirtied again
/// by the next append); a multiple of every common page size (4, 16, 64 KiB).
const ALIGN: u64 = 64 << 10;

/// Sizes of one [`WriteBehind`]; the production ones are the constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tuning {
    /// See [`CHUNK_BYTES`]; a multiple of `ALIGN`.
    pub chunk: u64,
    /// See [`DROP_LAG_BYTES`]; at least two chunks.
    pub lag: u64,
}

impl Tuning {
    /// [`CHUNK_BYTES`] and [`DROP_LAG_BYTES`].
    pub(crate) const PRODUCTION: Tuning = Tuning {
        chunk: CHUNK_BYTES,
        lag: DROP_LAG_BYTES,
    };

    /// Small enough that unit tests cross many chunks with little data.
    #[cfg(test)]
    pub(crate) const SMALL: Tuning = Tuning {
        chunk: ALIGN,
        lag: 4 * ALIGN,
    };
}

/// What segments use: the production sizes, except in this crate's unit
/// tests, where every log test then runs with write-behind crossing chunks.
#[cfg(not(test))]
pub(crate) const SEGMENT_TUNING: Tuning = Tuning::PRODUCTION;
#[cfg(test)]
pub(crate) const SEGMENT_TUNING: Tuning = Tuning::SMALL;

/// The calls one append (or a seal) should make; see [`WriteBehind::plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Start writeback of this range.
    write: Option<Range<u64>>,
    /// Wait for this range's writeback, then drop its pages.
    drop: Option<Range<u64>>,
}

/// Write-behind state of one segment's `.log` file.
#[derive(Debug)]
pub(crate) struct WriteBehind {
    tuning: Tuning,
    /// Writeback has been started for every byte below this.
    started: u64,
    /// Every byte below this has been dropped from the page cache.
    dropped: u64,
}

impl WriteBehind {
    /// State for a file whose bytes were never written behind nor dropped
    /// (a reopened segment catches up on its first chunk: cheap, since its
    /// pages are clean).
    pub(crate) fn new(tuning: Tuning) -> WriteBehind {
        debug_assert!(tuning.chunk >= ALIGN && tuning.chunk.is_multiple_of(ALIGN));
        debug_assert!(tuning.lag >= 2 * tuning.chunk);
        WriteBehind {
            tuning,
            started: 0,
            dropped: 0,
        }
    }

    /// What to do now that the file is `end` bytes long. Pure: the caller
    /// performs the plan and then calls [`WriteBehind::done`].
    fn plan(&self, end: u64) -> Plan {
        let write_to = align_down(end);
        let drop_to = align_down(end.saturating_sub(self.tuning.lag)).min(self.started);
        Plan {
            write: (write_to >= self.started + self.tuning.chunk).then_some(self.started..write_to),
            drop: (drop_to >= self.dropped + self.tuning.chunk).then_some(self.dropped..drop_to),
        }
    }

    /// Records that `plan` was carried out (whether or not the advisory
    /// calls succeeded: a failed range is not retried).
    fn done(&mut self, plan: &Plan) {
        if let Some(write) = &plan.write {
            self.started = write.end;
        }
        if let Some(drop) = &plan.drop {
            self.dropped = drop.end;
        }
    }

    /// Called after every append with the new file length. Below a chunk
    /// since the last call this is one comparison. `file` is the segment's
    /// handle, `path` its file (opened separately for waits, see the module
    /// doc).
    pub(crate) fn appended(&mut self, file: &File, path: &Path, end: u64) {
        if end < self.started + self.tuning.chunk {
            return;
        }
        let plan = self.plan(end);
        if let Some(range) = &plan.write {
            if let Err(e) = sys::start_writeback(file, range) {
                debug!(path = %path.display(), ?range, error = %e, "starting writeback failed");
            }
        }
        if let Some(range) = &plan.drop {
            drop_range(path, range);
        }
        self.done(&plan);
    }

    /// Whether [`WriteBehind::appended`] with this end would make calls
    /// (which may wait for the disk) rather than return at once.
    pub(crate) fn due(&self, end: u64) -> bool {
        end >= self.started + self.tuning.chunk
    }

    /// Called when the segment is sealed (fsynced, no more appends): drops
    /// what is more than the lag behind its end. The last `lag` bytes stay
    /// cached for readers at the tail; reclaim evicts them later.
    pub(crate) fn sealed(&mut self, path: &Path, end: u64) {
        let drop_to = align_down(end.saturating_sub(self.tuning.lag));
        if drop_to > self.dropped {
            let range = self.dropped..drop_to;
            drop_range(path, &range);
            self.dropped = drop_to;
        }
        self.started = self.started.max(align_down(end));
    }

    /// Called when the file was cut to `len` bytes: what lies past it will
    /// be new data.
    pub(crate) fn truncated(&mut self, len: u64) {
        self.started = self.started.min(align_down(len));
        self.dropped = self.dropped.min(align_down(len));
    }

    /// Writeback has been started for every byte below this.
    #[cfg(test)]
    pub(crate) fn started(&self) -> u64 {
        self.started
    }

    /// Every byte below this has been dropped from the page cache.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

fn align_down(n: u64) -> u64 {
    n - n % ALIGN
}

/// Waits for `range`'s writeback and drops its pages; errors are logged.
fn drop_range(path: &Path, range: &Range<u64>) {
    if let Err(e) = sys::wait_and_drop(path, range) {
        debug!(path = %path.display(), ?range, error = %e, "dropping written pages failed");
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use std::{fs::File, io, ops::Range, os::fd::AsRawFd, path::Path};

    /// `(offset, len)` in the integer type a call takes (`off_t`, or
    /// `off64_t` for `sync_file_range`; they differ on 32-bit targets).
    fn offsets<T: TryFrom<u64>>(range: &Range<u64>) -> io::Result<(T, T)> {
        let convert =
            |n: u64| T::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
        Ok((convert(range.start)?, convert(range.end - range.start)?))
    }

    fn sync_file_range(file: &File, range: &Range<u64>, flags: libc::c_uint) -> io::Result<()> {
        let (offset, len) = offsets(range)?;
        // SAFETY: plain integer arguments; the descriptor is open for as
        // long as `file` is borrowed. The call touches no memory of ours.
        let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Starts writeback of the dirty pages in `range` without waiting for it.
    pub(super) fn start_writeback(file: &File, range: &Range<u64>) -> io::Result<()> {
        sync_file_range(file, range, libc::SYNC_FILE_RANGE_WRITE)
    }

    /// Makes sure `range` is written back, through a new file description
    /// (see the module doc: errors seen here stay visible to fsync on the
    /// segment's own), then drops its pages from the page cache.
    pub(super) fn wait_and_drop(path: &Path, range: &Range<u64>) -> io::Result<()> {
        let file = File::open(path)?;
        sync_file_range(
            &file,
            range,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )?;
        let (offset, len) = offsets(range)?;
        // SAFETY: plain integer arguments; the descriptor is open for as
        // long as `file` lives. The call touches no memory of ours.
        let rc = unsafe {
            libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED)
        };
        // posix_fadvise returns the error number instead of setting errno.
        match rc {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::{fs::File, io, ops::Range, path::Path};

    pub(super) fn start_writeback(_: &File, _: &Range<u64>) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn wait_and_drop(_: &Path, _: &Range<u64>) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tuning = Tuning::SMALL;

    fn run(wb: &mut WriteBehind, end: u64) -> Plan {
        let plan = wb.plan(end);
        wb.done(&plan);
        plan
    }

    #[test]
    fn production_sizes_are_consistent() {
        let p = Tuning::PRODUCTION;
        assert!(p.chunk.is_multiple_of(ALIGN));
        assert!(p.lag >= 2 * p.chunk);
        assert!((1 << 20..=8 << 20).contains(&p.chunk));
    }

    #[test]
    fn nothing_below_a_chunk() {
        let wb = WriteBehind::new(T);
        assert_eq!(wb.plan(0), Plan::default());
        assert_eq!(wb.plan(T.chunk - 1), Plan::default());
    }

    #[test]
    fn writes_whole_aligned_chunks_and_leaves_the_partial_page() {
        let mut wb = WriteBehind::new(T);
        let end = T.chunk + ALIGN + 100;
        assert_eq!(
            run(&mut wb, end),
            Plan {
                write: Some(0..T.chunk + ALIGN),
                drop: None
            }
        );
        assert_eq!(wb.started(), T.chunk + ALIGN);
        // Not a chunk more yet.
        assert_eq!(run(&mut wb, end + T.chunk - ALIGN), Plan::default());
        assert_eq!(
            run(&mut wb, 2 * T.chunk + ALIGN).write,
            Some(T.chunk + ALIGN..2 * T.chunk + ALIGN)
        );
    }

    #[test]
    fn drops_only_what_is_a_lag_behind_and_already_started() {
        let mut wb = WriteBehind::new(T);
        let mut end = 0;
        while end + 1000 < T.lag + T.chunk {
            end += 1000;
            let plan = run(&mut wb, end);
            assert!(plan.drop.is_none(), "dropped at {end}: {plan:?}");
        }
        // Now a chunk is a lag behind; it is dropped once.
        end += T.chunk;
        let plan = run(&mut wb, end);
        let drop = plan.drop.expect("a chunk is a lag behind");
        assert_eq!(drop.start, 0);
        assert!(drop.end + T.lag <= end && drop.end <= wb.started());
        assert_eq!(wb.dropped(), drop.end);
        assert!(run(&mut wb, end).drop.is_none());
    }

    #[test]
    fn ranges_tile_the_file_without_gaps_or_overlaps() {
        let mut wb = WriteBehind::new(T);
        let (mut written, mut dropped) = (0, 0);
        let mut end = 0;
        for step in [1, 4095, 70_000, 3, 200_000, 65_536, 1 << 20, 17] {
            for _ in 0..50 {
                end += step;
                let plan = run(&mut wb, end);
                if let Some(w) = plan.write {
                    assert_eq!(w.start, written);
                    assert!(w.end <= end && w.end.is_multiple_of(ALIGN));
                    written = w.end;
                }
                if let Some(d) = plan.drop {
                    assert_eq!(d.start, dropped);
                    assert!(d.end <= written && d.end + T.lag <= end);
                    dropped = d.end;
                }
            }
        }
        assert!(dropped > 0 && written > dropped);
    }

    #[test]
    fn seal_drops_all_but_the_tail() {
        let mut wb = WriteBehind::new(T);
        run(&mut wb, 3 * T.chunk);
        let end = T.lag + 5 * T.chunk + 123;
        wb.sealed(Path::new("/nonexistent/rivulet-segment.log"), end);
        assert_eq!(wb.dropped(), align_down(end - T.lag));
        // Nothing left to drop: a second seal (close after roll) is harmless.
        wb.sealed(Path::new("/nonexistent/rivulet-segment.log"), end);
        assert_eq!(wb.dropped(), align_down(end - T.lag));
    }

    #[test]
    fn truncation_rewinds_both_marks() {
        let mut wb = WriteBehind::new(T);
        let mut end = 0;
        while wb.dropped() == 0 {
            end += T.chunk;
            run(&mut wb, end);
        }
        wb.truncated(ALIGN + 10);
        assert_eq!((wb.started(), wb.dropped()), (ALIGN, ALIGN));
        assert_eq!(
            run(&mut wb, ALIGN + T.chunk + 10).write,
            Some(ALIGN..ALIGN + T.chunk)
        );
    }

    #[test]
    fn failing_calls_are_absorbed() {
        // A path that does not exist and a handle on another file: both
        // calls fail or do nothing, and `appended` has nothing to return.
        let dir = tempfile::tempdir().unwrap();
        let other = File::create(dir.path().join("other")).unwrap();
        let mut wb = WriteBehind::new(T);
        let missing = dir.path().join("missing.log");
        let mut end = 0;
        for _ in 0..20 {
            end += T.chunk;
            wb.appended(&other, &missing, end);
        }
        assert!(wb.started() > 0 && wb.dropped() > 0);
    }
}
