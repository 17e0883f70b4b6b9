//! The durable Raft log (openraft's `RaftLogStorage`).
//!
//! Layout of the log directory:
//! - `entries.log`: a magic/version header, then one CRC frame per entry
//!   (JSON). Appends are fsync'ed before openraft is told they are flushed;
//!   truncation cuts the file; recovery drops a torn tail.
//! - `meta`: the vote and the last purged log id, replaced atomically and
//!   fsync'ed: losing a vote could let this node vote twice in a term.
//! - `committed`: the commit point, written without fsync. It only lets a
//!   restarted node re-apply committed entries before hearing from the
//!   leader, so losing it costs nothing but that head start.
//!
//! The metadata log is small and purged behind snapshots, so entries are
//! also kept in memory; the file is rewritten (atomically) on purge. File
//! I/O is synchronous inside the async trait methods: openraft awaits each
//! append before acknowledging it anyway, and the writes are small.
//!
//! Nothing locks the directory against a second process; the broker must
//! not run two nodes on one data dir.
//!
//! A full disk is waited out, not fatal: openraft stops a node for good
//! on any storage error, and a node whose metadata log could not take a
//! heartbeat while the disk was full would then never follow the cluster
//! again until restarted. So an append or a vote that fails with `ENOSPC`
//! or `EDQUOT` is cut back to the last whole frame and retried every
//! [`FULL_DISK_RETRY`] until it is written or the node stops (see
//! [`LogStore::stop_waiting_on`]); meanwhile this node's Raft waits, as
//! it would on a very slow disk: proposals time out with an error, other
//! voters elect a leader without it, and it catches up once space is freed.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    fs::{File, OpenOptions},
    io::{self, Write},
    ops::RangeBounds,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use openraft::{
    storage::{LogFlushed, LogState, RaftLogStorage},
    OptionalSend, RaftLogId, RaftLogReader, StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    fsio,
    raft_types::{Entry, LogId, StorageError, TypeConfig, Vote},
};

const LOG_MAGIC: &[u8] = b"RVQLOG01";
const META_MAGIC: &[u8] = b"RVQMETA1";
const COMMITTED_MAGIC: &[u8] = b"RVQCOMM1";

/// Durable state other than the entries.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Meta {
    vote: Option<Vote>,
    last_purged: Option<LogId>,
}

struct Inner {
    dir: PathBuf,
    /// Opened for append, so writes after a truncation land at the new end.
    file: File,
    /// Current length of `entries.log`; the next frame starts here.
    len: u64,
    /// Entries by index with the file position of their frame.
    entries: BTreeMap<u64, (u64, Entry)>,
    meta: Meta,
    committed: Option<LogId>,
}

/// The log store; clones share it (openraft reads through a clone while
/// the core appends).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    /// The commit index as openraft last reported it, for metrics.
    commit_index: Arc<AtomicU64>,
    /// Becomes true when the node stops: a write waiting for disk space
    /// gives up then, so shutdown never waits on a full disk.
    stopped: Arc<Mutex<Option<watch::Receiver<bool>>>>,
}

/// How often a write that found the disk full is tried again.
pub const FULL_DISK_RETRY: Duration = Duration::from_millis(500);

/// Whether `e` says the file system is full (so space may come back).
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

fn io_err(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering from a torn tail.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let meta: Meta = match fsio::read_with_magic(&dir.join("meta"), META_MAGIC)? {
            Some(buf) => serde_json::from_slice(&buf).map_err(io_err)?,
            None => Meta::default(),
        };
        // Unsynced by design (see the module docs): unreadable means unknown.
        let committed = fsio::read_with_magic(&dir.join("committed"), COMMITTED_MAGIC)
            .ok()
            .flatten()
            .and_then(|buf| serde_json::from_slice(&buf).ok());
        let path = dir.join("entries.log");
        let body = match fsio::read_with_magic(&path, LOG_MAGIC)? {
            Some(body) => body,
            None => {
                write_log_file(&path, &[])?;
                Vec::new()
            }
        };
        let (frames, valid) = fsio::decode_frames(&body);
        let mut entries = BTreeMap::new();
        let mut end = valid;
        for (pos, payload) in frames {
            let entry: Entry = match serde_json::from_slice(payload) {
                Ok(e) => e,
                Err(_) => {
                    end = pos;
                    break;
                }
            };
            let index = entry.get_log_id().index;
            let contiguous = entries
                .last_key_value()
                .is_none_or(|(&last, _)| index == last + 1);
            if !contiguous {
                // Cannot happen with this writer; treat it like a torn tail.
                end = pos;
                break;
            }
            entries.insert(index, ((LOG_MAGIC.len() + pos) as u64, entry));
        }
        let len = (LOG_MAGIC.len() + end) as u64;
        let file = OpenOptions::new().append(true).open(&path)?;
        if len < file.metadata()?.len() {
            tracing::warn!(path = %path.display(), len, "truncating a torn tail of the metadata log");
            file.set_len(len)?;
            file.sync_all()?;
        }
        let purged = meta.last_purged.map(|id| id.index);
        entries.retain(|&index, _| purged.is_none_or(|p| index > p));
        let commit_index = Arc::new(AtomicU64::new(committed.map_or(0, |c: LogId| c.index)));
        let inner = Inner {
            dir: dir.to_owned(),
            file,
            len,
            entries,
            meta,
            committed,
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            commit_index,
            stopped: Arc::new(Mutex::new(None)),
        })
    }

    /// Writes waiting for disk space give up (failing as before) once
    /// `stopped` is true: the node is shutting down.
    pub fn stop_waiting_on(&self, stopped: watch::Receiver<bool>) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(stopped);
    }

    /// Runs `write` on the log until it succeeds, fails other than with a
    /// full disk, or the node stops (see the module docs).
    async fn until_written<T>(
        &self,
        what: &str,
        mut write: impl FnMut(&mut Inner) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut stopped = self
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut waited = false;
        loop {
            let result = write(&mut self.lock());
            match result {
                Err(e) if is_disk_full(&e) && !stopped.as_ref().is_some_and(|s| *s.borrow()) => {
                    if !waited {
                        tracing::warn!(error = %e, what, "metadata log: disk full; waiting for space");
                        waited = true;
                    }
                    match &mut stopped {
                        Some(s) => {
                            let _ = tokio::time::timeout(FULL_DISK_RETRY, s.changed()).await;
                        }
                        None => tokio::time::sleep(FULL_DISK_RETRY).await,
                    }
                }
                result => {
                    if waited && result.is_ok() {
                        tracing::info!(
                            what,
                            "metadata log: written after the disk had space again"
                        );
                    }
                    return result;
                }
            }
        }
    }

    /// A shared view of the commit index (0 before anything is committed).
    pub fn commit_index(&self) -> Arc<AtomicU64> {
        self.commit_index.clone()
    }

    /// The id of the last entry in the log (or the last purged one when
    /// the log is empty): what PreVote compares, as a vote does.
    pub fn last_log_id(&self) -> Option<LogId> {
        let inner = self.lock();
        inner
            .entries
            .values()
            .next_back()
            .map(|(_, e)| *e.get_log_id())
            .or(inner.meta.last_purged)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is a single step after the I/O), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Replaces `dir/meta` with `meta`, atomically and durably.
fn save_meta(dir: &Path, meta: &Meta) -> io::Result<()> {
    let mut buf = META_MAGIC.to_vec();
    serde_json::to_writer(&mut buf, meta).map_err(io_err)?;
    fsio::write_atomic(&dir.join("meta"), &buf)
}

/// Writes a complete log file with `frames` (already encoded), atomically.
fn write_log_file(path: &Path, frames: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(LOG_MAGIC.len() + frames.len());
    buf.extend_from_slice(LOG_MAGIC);
    buf.extend_from_slice(frames);
    fsio::write_atomic(path, &buf)
}

impl Inner {
    fn save_meta(&self) -> io::Result<()> {
        save_meta(&self.dir, &self.meta)
    }

    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for entry in &entries {
            positions.push(self.len + buf.len() as u64);
            let payload = serde_json::to_vec(entry).map_err(io_err)?;
            fsio::encode_frame(&payload, &mut buf);
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // A short write (a full disk) left part of a frame: cut it, so
            // the file ends on a whole frame again and a retry appends
            // right after the last one.
            if let Err(cut) = self.file.set_len(self.len) {
                tracing::warn!(error = %cut, "cannot cut a failed metadata log write back");
            }
            return Err(e);
        }
        self.len += buf.len() as u64;
        for (pos, entry) in positions.into_iter().zip(entries) {
            self.entries.insert(entry.get_log_id().index, (pos, entry));
        }
        Ok(())
    }

    fn truncate(&mut self, from: u64) -> io::Result<()> {
        let Some((_, &(pos, _))) = self.entries.range(from..).next() else {
            return Ok(());
        };
        self.file.set_len(pos)?;
        self.file.sync_data()?;
        self.len = pos;
        self.entries.split_off(&from);
        Ok(())
    }

    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        // Record the purge point first: if the rewrite below is lost in a
        // crash, recovery still drops the purged entries.
        self.meta.last_purged = Some(upto);
        self.save_meta()?;
        self.entries = self.entries.split_off(&(upto.index + 1));
        let mut buf = Vec::new();
        for (pos, entry) in self.entries.values_mut() {
            *pos = (LOG_MAGIC.len() + buf.len()) as u64;
            fsio::encode_frame(&serde_json::to_vec(entry).map_err(io_err)?, &mut buf);
        }
        let path = self.dir.join("entries.log");
        write_log_file(&path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.len = (LOG_MAGIC.len() + buf.len()) as u64;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, (_, e))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.lock().meta.last_purged;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: self.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.until_written("vote", |inner| {
            let mut meta = inner.meta.clone();
            meta.vote = Some(vote);
            save_meta(&inner.dir, &meta)?;
            inner.meta = meta;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().meta.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.committed = committed;
        self.commit_index
            .store(committed.map_or(0, |c| c.index), Ordering::Relaxed);
        let mut buf = COMMITTED_MAGIC.to_vec();
        serde_json::to_writer(&mut buf, &committed).map_err(|e| StorageIOError::write(&e))?;
        // Deliberately neither fsync'ed nor atomic-renamed: see module docs.
        // For the same reason a failure (a full disk) is not worth
        // stopping the node for: the file only gives a restart a head start.
        if let Err(e) = std::fs::write(inner.dir.join("committed"), &buf) {
            tracing::debug!(error = %e, "cannot write the metadata commit point");
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self
            .until_written("entries", |inner| inner.append(entries.clone()))
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let reported = io::Error::new(e.kind(), e.to_string());
                callback.log_io_completed(Err(reported));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock()
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock()
            .purge(log_id)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
