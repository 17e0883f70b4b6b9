//! File names and small metadata files of a partition directory.
//!
//! Segment files are named by their 20-digit zero-padded base offset, as in
//! Kafka, so tools that list a Kafka log directory make sense of ours;
//! producer state snapshots are named the same way by the offset they were
//! taken at (`snapshot.rs`). The log start offset and the clean-shutdown
//! marker are tiny files written with temp-file + rename so a crash leaves
//! either the old or the new one.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use crate::{
    error::StorageError,
    faults::{self, Site},
};

/// Extension of segment data files.
pub const LOG_EXT: &str = "log";
/// Extension of offset index files.
pub const INDEX_EXT: &str = "index";
/// Extension of time index files.
pub const TIME_INDEX_EXT: &str = "timeindex";
/// Extension of aborted-transaction indexes (`index/txn.rs`).
pub const TXN_INDEX_EXT: &str = "txnindex";
/// Extension of producer state snapshots (`<offset>.snapshot`, as in Kafka).
pub const SNAPSHOT_EXT: &str = "snapshot";
/// Suffix of files being deleted; leftovers are removed on open.
pub const DELETED_SUFFIX: &str = ".deleted";
/// Suffix of a segment the compactor is still writing; leftovers are
/// removed on open (the originals are still complete).
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a fully written, fsynced cleaned segment about to replace its
/// originals; a leftover completes the replacement on open.
pub const SWAP_SUFFIX: &str = ".swap";
/// Name of the file persisting the compactor's progress: the first offset
/// not yet compacted and the earliest delete horizon among kept tombstones.
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Version tag of [`CLEANER_CHECKPOINT_FILE`]'s format.
const CLEANER_CHECKPOINT_VERSION: &str = "v1";
/// Suffix of half-written checkpoint files.
const TMP_SUFFIX: &str = ".tmp";
/// Name of the file persisting the log start offset.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// Name of the marker written by a clean close.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// `dir/<base offset, 20 digits>.<ext>`.
pub fn segment_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Splits a segment file name into base offset and extension, or `None` when
/// the name is not `<20 digits>.<ext>`.
pub fn parse_segment_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// True for leftovers of interrupted deletes, compactions or checkpoints.
pub(crate) fn is_leftover(name: &str) -> bool {
    name.ends_with(DELETED_SUFFIX) || name.ends_with(CLEANED_SUFFIX) || name.ends_with(TMP_SUFFIX)
}

/// fsyncs a directory so that creates, renames and deletes in it survive a
/// crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    faults::check(Site::Fsync, dir)
        .and_then(|()| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(StorageError::flush(dir))
}

/// Atomically replaces `dir/name` with `content`.
pub(crate) fn write_atomically(dir: &Path, name: &str, content: &[u8]) -> Result<(), StorageError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let write = || -> std::io::Result<()> {
        faults::check(Site::Checkpoint, &path)?;
        let mut f = File::create(&tmp)?;
        f.write_all(content)?;
        faults::check(Site::Fsync, &path)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        // A half-written temp file only takes space (open removes it too).
        let _ = fs::remove_file(&tmp);
        return Err(StorageError::checkpoint(&path)(e));
    }
    sync_dir(dir)
}

/// Reads the persisted log start offset, if any.
pub(crate) fn read_log_start_offset(dir: &Path) -> Result<Option<i64>, StorageError> {
    let path = dir.join(LOG_START_OFFSET_FILE);
    let content = match fs::read_to_string(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::checkpoint(&path)(e)),
    };
    match content.trim().parse::<i64>() {
        Ok(offset) if offset >= 0 => Ok(Some(offset)),
        _ => Err(StorageError::CorruptCheckpoint { path, content }),
    }
}

/// Persists the log start offset.
pub(crate) fn write_log_start_offset(dir: &Path, offset: i64) -> Result<(), StorageError> {
    write_atomically(dir, LOG_START_OFFSET_FILE, format!("{offset}\n").as_bytes())
}

/// What the compactor persists between runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CleanerCheckpoint {
    /// Offsets below this have been compacted (Kafka's cleaner checkpoint).
    pub first_dirty_offset: i64,
    /// Earliest delete horizon of a batch whose tombstones were kept, so
    /// the broker knows when a run would remove them.
    pub next_delete_horizon: Option<i64>,
}

/// Reads the cleaner checkpoint, if any.
pub(crate) fn read_cleaner_checkpoint(
    dir: &Path,
) -> Result<Option<CleanerCheckpoint>, StorageError> {
    let path = dir.join(CLEANER_CHECKPOINT_FILE);
    let content = match fs::read_to_string(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::checkpoint(&path)(e)),
    };
    let mut fields = content.split_whitespace();
    let parsed = match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(CLEANER_CHECKPOINT_VERSION), Some(dirty), Some(horizon), None) => {
            dirty.parse::<i64>().ok().zip(horizon.parse::<i64>().ok())
        }
        _ => None,
    };
    match parsed {
        Some((first_dirty_offset, horizon)) if first_dirty_offset >= 0 => {
            Ok(Some(CleanerCheckpoint {
                first_dirty_offset,
                next_delete_horizon: (horizon >= 0).then_some(horizon),
            }))
        }
        _ => Err(StorageError::CorruptCheckpoint { path, content }),
    }
}

/// Persists the cleaner checkpoint.
pub(crate) fn write_cleaner_checkpoint(
    dir: &Path,
    checkpoint: CleanerCheckpoint,
) -> Result<(), StorageError> {
    let horizon = checkpoint.next_delete_horizon.unwrap_or(-1);
    let content = format!(
        "{CLEANER_CHECKPOINT_VERSION} {} {horizon}\n",
        checkpoint.first_dirty_offset
    );
    write_atomically(dir, CLEANER_CHECKPOINT_FILE, content.as_bytes())
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_file(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::delete(path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let dir = Path::new("/d");
        let p = segment_path(dir, 42, LOG_EXT);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_file_name(name), Some((42, "log")));
        assert_eq!(
            parse_segment_file_name("00000000000000000042.log.deleted"),
            Some((42, "log.deleted"))
        );
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("log-start-offset"), None);
    }

    #[test]
    fn log_start_offset_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_log_start_offset(dir.path()).unwrap(), None);
        write_log_start_offset(dir.path(), 77).unwrap();
        assert_eq!(read_log_start_offset(dir.path()).unwrap(), Some(77));
        fs::write(dir.path().join(LOG_START_OFFSET_FILE), "x").unwrap();
        assert!(matches!(
            read_log_start_offset(dir.path()),
            Err(StorageError::CorruptCheckpoint { .. })
        ));
    }

    #[test]
    fn cleaner_checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_cleaner_checkpoint(dir.path()).unwrap(), None);
        for horizon in [None, Some(1_234)] {
            let checkpoint = CleanerCheckpoint {
                first_dirty_offset: 42,
                next_delete_horizon: horizon,
            };
            write_cleaner_checkpoint(dir.path(), checkpoint).unwrap();
            assert_eq!(
                read_cleaner_checkpoint(dir.path()).unwrap(),
                Some(checkpoint)
            );
        }
        fs::write(dir.path().join(CLEANER_CHECKPOINT_FILE), "42").unwrap();
        assert!(matches!(
            read_cleaner_checkpoint(dir.path()),
            Err(StorageError::CorruptCheckpoint { .. })
        ));
    }
}
