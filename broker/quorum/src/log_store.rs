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
};

use openraft::{
    storage::{LogFlushed, LogState, RaftLogStorage},
    OptionalSend, RaftLogId, RaftLogReader, StorageIOError,
};
use serde::{Deserialize, Serialize};

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
        })
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

/// Writes a complete log file with `frames` (already encoded), atomically.
fn write_log_file(path: &Path, frames: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(LOG_MAGIC.len() + frames.len());
    buf.extend_from_slice(LOG_MAGIC);
    buf.extend_from_slice(frames);
    fsio::write_atomic(path, &buf)
}

impl Inner {
    fn save_meta(&self) -> io::Result<()> {
        let mut buf = META_MAGIC.to_vec();
        serde_json::to_writer(&mut buf, &self.meta).map_err(io_err)?;
        fsio::write_atomic(&self.dir.join("meta"), &buf)
    }

    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for entry in &entries {
            positions.push(self.len + buf.len() as u64);
            let payload = serde_json::to_vec(entry).map_err(io_err)?;
            fsio::encode_frame(&payload, &mut buf);
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
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
        let mut inner = self.lock();
        inner.meta.vote = Some(*vote);
        inner
            .save_meta()
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
        std::fs::write(inner.dir.join("committed"), &buf).map_err(|e| StorageIOError::write(&e))?;
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
        let result = self.lock().append(entries.into_iter().collect());
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
