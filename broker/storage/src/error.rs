//! Errors of the storage crate.
//!
//! Each I/O variant is named for the step that failed and carries the file it
//! failed on, so an operator reading a log line knows which partition and
//! which file to look at. Producer-state and range errors are values the
//! server maps to Kafka error codes at its handler boundary.

use std::{
    io,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::batch::BatchError;

/// Everything that can go wrong in a partition log.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A [`crate::LogConfig`] field is below its minimum.
    #[error("invalid log config {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What the field must satisfy.
        reason: &'static str,
    },
    /// Creating the partition directory failed.
    #[error("creating log directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Listing the partition directory failed.
    #[error("listing log directory {}", path.display())]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Opening or creating a segment or index file failed.
    #[error("opening {}", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading a segment file failed.
    #[error("reading {}", path.display())]
    ReadSegment {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing batches to a segment file failed.
    #[error("appending to {}", path.display())]
    WriteSegment {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Memory-mapping, resizing or trimming an index file failed.
    #[error("mapping index {}", path.display())]
    MapIndex {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// fsync of a segment, index or directory failed.
    #[error("flushing {}", path.display())]
    Flush {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Truncating a segment file (recovery or `truncate_to`) failed.
    #[error("truncating {}", path.display())]
    Truncate {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Renaming or deleting a file or the partition directory failed.
    #[error("deleting {}", path.display())]
    Delete {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing a small metadata file (log start offset,
    /// clean-shutdown marker) failed.
    #[error("persisting {}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The log directory was taken offline after an I/O error: nothing in
    /// it is read or written until the broker restarts (the server's log
    /// dir failure handling; the storage layer never returns it itself).
    #[error("log directory {} is offline after an I/O error", path.display())]
    LogDirOffline {
        /// The directory.
        path: PathBuf,
    },
    /// The log start offset file does not hold a number.
    #[error("{} does not hold an offset: {content:?}", path.display())]
    CorruptCheckpoint {
        /// The file.
        path: PathBuf,
        /// What it held instead.
        content: String,
    },
    /// A batch header inside a closed segment is invalid: the segment is
    /// damaged somewhere recovery does not look.
    #[error("corrupt batch in {} at position {position}: {source}", path.display())]
    CorruptSegment {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the bad batch.
        position: u64,
        /// What is wrong with it.
        #[source]
        source: BatchError,
    },
    /// The bytes handed to `append` are not whole v2 batches.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The requested offset is not in the log.
    #[error("offset {offset} is outside the log [{start}, {end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The log start offset.
        start: i64,
        /// The log end offset.
        end: i64,
    },
    /// A batch fetched from the leader does not start after the log end
    /// offset or after the batch before it: the follower's fetch position
    /// and its log disagree, so nothing was appended.
    #[error("replicated batch starts at offset {found}, expected at least {expected_at_least}")]
    NonMonotonicOffset {
        /// The lowest base offset the batch could have had.
        expected_at_least: i64,
        /// The batch's base offset.
        found: i64,
    },
    /// An idempotent producer's sequence does not follow its last one.
    #[error("producer {producer_id}: expected sequence {expected}, got {found}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The sequence the log expected next.
        expected: i32,
        /// The batch's base sequence.
        found: i32,
    },
    /// An idempotent producer wrote with an epoch older than one already seen.
    #[error("producer {producer_id}: epoch {found} is older than {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// The newest epoch the log has seen.
        current: i16,
        /// The batch's epoch.
        found: i16,
    },
    /// A non-transactional batch from a producer with an open transaction.
    #[error("producer {producer_id} has an open transaction: its writes must be transactional")]
    InvalidTxnState {
        /// The producer id.
        producer_id: i64,
    },
    /// A transaction marker from an older coordinator than the producer's
    /// last marker came from.
    #[error("producer {producer_id}: coordinator epoch {found} is older than {current}")]
    CoordinatorFenced {
        /// The producer id.
        producer_id: i64,
        /// The coordinator epoch of the producer's last marker.
        current: i32,
        /// The marker's coordinator epoch.
        found: i32,
    },
}

impl StorageError {
    /// The I/O error underneath, when the failure was the operating
    /// system's (not a bad batch, a producer check or a range).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            StorageError::CreateDir { source, .. }
            | StorageError::ListDir { source, .. }
            | StorageError::OpenFile { source, .. }
            | StorageError::ReadSegment { source, .. }
            | StorageError::WriteSegment { source, .. }
            | StorageError::MapIndex { source, .. }
            | StorageError::Flush { source, .. }
            | StorageError::Truncate { source, .. }
            | StorageError::Delete { source, .. }
            | StorageError::Checkpoint { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the file system is full (`ENOSPC`, or a quota: `EDQUOT`)
    /// on a write, an allocation or a file creation. Nothing half done is
    /// left visible by such a failure (a short write is cut back), so
    /// writes succeed again once space is freed. A failed fsync is never
    /// this, whatever its errno: see [`StorageError::is_log_dir_failure`].
    pub fn is_disk_full(&self) -> bool {
        !matches!(self, StorageError::Flush { .. })
            && self
                .io_error()
                .and_then(io::Error::raw_os_error)
                .is_some_and(|e| e == libc::ENOSPC || e == libc::EDQUOT)
    }

    /// Whether the log directory can no longer be trusted, Kafka's "log
    /// dir failure": the device reported an error (`EIO` and its kin, or
    /// the file system went read-only after one), or an fsync failed, after
    /// which what is on disk is unknown (the kernel may have dropped the
    /// dirty pages it could not write). Full disks, missing files (a
    /// partition deleted under a request) and resource limits are not.
    pub fn is_log_dir_failure(&self) -> bool {
        let Some(source) = self.io_error() else {
            return false;
        };
        if matches!(self, StorageError::Flush { .. }) {
            return true;
        }
        source.raw_os_error().is_some_and(|e| {
            matches!(
                e,
                libc::EIO | libc::EROFS | libc::ENXIO | libc::ENODEV | libc::EREMOTEIO
            ) || is_euclean(e)
        })
    }
}

/// `EUCLEAN` ("structure needs cleaning": file system corruption) exists
/// on Linux only.
#[cfg(target_os = "linux")]
fn is_euclean(errno: i32) -> bool {
    errno == libc::EUCLEAN
}

#[cfg(not(target_os = "linux"))]
fn is_euclean(_: i32) -> bool {
    false
}

/// Builds `map_err` closures that attach a path to an I/O error, so call
/// sites read `.map_err(StorageError::read_segment(&path))?`.
macro_rules! io_constructors {
    ($($fn_name:ident => $variant:ident),* $(,)?) => {
        impl StorageError {
            $(
                pub(crate) fn $fn_name(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
                    move |source| StorageError::$variant { path: path.to_path_buf(), source }
                }
            )*
        }
    };
}

io_constructors! {
    create_dir => CreateDir,
    list_dir => ListDir,
    open_file => OpenFile,
    read_segment => ReadSegment,
    write_segment => WriteSegment,
    map_index => MapIndex,
    flush => Flush,
    truncate => Truncate,
    delete => Delete,
    checkpoint => Checkpoint,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn a_full_disk_is_transient_and_a_device_error_fails_the_log_dir() {
        let p = Path::new("/d/x.log");
        let full = StorageError::write_segment(p)(os(libc::ENOSPC));
        assert!(full.is_disk_full() && !full.is_log_dir_failure());
        let quota = StorageError::open_file(p)(os(libc::EDQUOT));
        assert!(quota.is_disk_full() && !quota.is_log_dir_failure());
        let eio = StorageError::write_segment(p)(os(libc::EIO));
        assert!(!eio.is_disk_full() && eio.is_log_dir_failure());
        let read_only = StorageError::checkpoint(p)(os(libc::EROFS));
        assert!(read_only.is_log_dir_failure());
        // After a failed fsync nothing on disk can be trusted, whatever
        // the errno said.
        let fsync = StorageError::flush(p)(os(libc::ENOSPC));
        assert!(!fsync.is_disk_full() && fsync.is_log_dir_failure());
        let gone = StorageError::open_file(p)(os(libc::ENOENT));
        assert!(!gone.is_disk_full() && !gone.is_log_dir_failure());
        let files = StorageError::open_file(p)(os(libc::EMFILE));
        assert!(!files.is_log_dir_failure());
        let sequence = StorageError::OutOfOrderSequence {
            producer_id: 1,
            expected: 2,
            found: 3,
        };
        assert!(!sequence.is_disk_full() && !sequence.is_log_dir_failure());
    }
}
