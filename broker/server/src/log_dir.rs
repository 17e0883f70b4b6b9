//! Health of the broker's log directory (`log.dirs`): Kafka's log dir
//! failure handling, for a broker that has exactly one.
//!
//! Every storage error of a hosted partition passes through
//! [`LogDirHealth::observe`]. Two kinds are told apart (see
//! `StorageError::is_disk_full` and `is_log_dir_failure`):
//! - a full disk refuses that write with KAFKA_STORAGE_ERROR and nothing
//!   else changes: the failed write left nothing behind, and the next one
//!   succeeds once space is freed (no restart);
//! - a device error or a failed fsync takes the directory offline for good:
//!   from then on every partition refuses reads and writes with
//!   KAFKA_STORAGE_ERROR (checked before touching the disk), and
//!   [`LogDirHealth::failed`] resolves, which makes the composition root
//!   move this broker's leaderships away (a controlled shutdown) and stop
//!   the process without closing the logs, as Kafka stops a broker whose
//!   last log dir failed. The next start recovers the logs from disk.
//!
//! Once offline, the state never goes back: after a failed fsync the page
//! cache and the disk may disagree, and only reopening from disk (a
//! restart) is trustworthy.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicI64, Ordering},
};

use rivulet_storage::StorageError;
use tokio::sync::watch;

/// The state of one log directory; shared by its partitions.
pub struct LogDirHealth {
    dir: PathBuf,
    /// Read on every partition access: a relaxed load when healthy.
    offline: AtomicBool,
    /// Why it went offline, for whoever waits on [`Self::failed`].
    reason: watch::Sender<Option<String>>,
    /// `kafka_log_logmanager_offlinelogdirectorycount`.
    gauge: prometheus::IntGauge,
    /// When a full disk was last logged (ms since the epoch).
    full_logged_ms: AtomicI64,
}

/// How often a full disk is logged while it stays full: every 10 s.
const FULL_DISK_LOG_INTERVAL_MS: i64 = 10_000;

impl LogDirHealth {
    /// A healthy directory `dir`, reporting into `gauge`.
    pub fn new(dir: &Path, gauge: prometheus::IntGauge) -> Self {
        gauge.set(0);
        LogDirHealth {
            dir: dir.to_path_buf(),
            offline: AtomicBool::new(false),
            reason: watch::channel(None).0,
            gauge,
            full_logged_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether the directory has been taken offline.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Relaxed)
    }

    /// `Err(LogDirOffline)` once offline: partitions call it before
    /// touching the disk.
    pub fn check(&self) -> Result<(), StorageError> {
        if self.is_offline() {
            return Err(StorageError::LogDirOffline {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Passes `result` through, taking the directory offline if its error
    /// is a log dir failure.
    pub fn observe<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e) = &result {
            self.note(e);
        }
        result
    }

    /// Takes the directory offline if `error` is a log dir failure; a
    /// full disk is logged (it is the operator's to fix) and nothing more.
    pub fn note(&self, error: &StorageError) {
        if error.is_log_dir_failure() {
            self.fail(error);
        } else if error.is_disk_full() && self.first_in_a_while() {
            tracing::warn!(dir = %self.dir.display(), error = %error, "disk full: refusing writes until space is freed");
        }
    }

    /// True at most once per [`FULL_DISK_LOG_INTERVAL_MS`]: a busy producer
    /// on a full disk meets the same error thousands of times a second.
    fn first_in_a_while(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let last = self.full_logged_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= FULL_DISK_LOG_INTERVAL_MS
            && self
                .full_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn fail(&self, error: &StorageError) {
        if self.offline.swap(true, Ordering::AcqRel) {
            return;
        }
        self.gauge.set(1);
        let reason = format!("{error}: {}", source_chain(error));
        tracing::error!(dir = %self.dir.display(), error = %reason, "log directory failed; its partitions are offline");
        self.reason.send_replace(Some(reason));
    }

    /// Resolves (with the error that caused it) once the directory is offline.
    pub async fn failed(&self) -> String {
        let mut rx = self.reason.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let reason = rx
            .wait_for(Option::is_some)
            .await
            .map(|r| r.clone().unwrap_or_default());
        reason.unwrap_or_default()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The causes below `error`'s own message, for one log line.
fn source_chain(error: &StorageError) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn health() -> LogDirHealth {
        let gauge = prometheus::IntGauge::new("offline", "test").unwrap();
        LogDirHealth::new(Path::new("/data"), gauge)
    }

    fn error(errno: i32) -> StorageError {
        StorageError::WriteSegment {
            path: "/data/t-0/0.log".into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    #[tokio::test]
    async fn a_full_disk_keeps_the_directory_online_and_a_device_error_takes_it_offline() {
        let h = health();
        assert!(h.observe::<()>(Err(error(libc::ENOSPC))).is_err());
        assert!(!h.is_offline() && h.check().is_ok());
        assert_eq!(h.gauge.get(), 0);
        assert!(h.observe::<()>(Err(error(libc::EIO))).is_err());
        assert!(h.is_offline());
        assert!(matches!(h.check(), Err(StorageError::LogDirOffline { .. })));
        assert_eq!(h.gauge.get(), 1);
        let reason = tokio::time::timeout(std::time::Duration::from_secs(1), h.failed())
            .await
            .expect("failed() resolves once offline");
        assert!(reason.contains("Input/output error"), "{reason}");
        // Later errors change nothing; the first cause is kept.
        h.note(&error(libc::EROFS));
        assert_eq!(h.failed().await, reason);
    }
}
