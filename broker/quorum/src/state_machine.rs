//! The Raft state machine (openraft's `RaftStateMachine`): committed
//! entries applied to [`ClusterMetadata`], with snapshots on disk.
//!
//! The image itself is not persisted per entry: after a restart it is the
//! last snapshot plus the committed log entries openraft replays, which is
//! why the log store keeps everything after the snapshot. A snapshot file
//! is a magic/version header and two CRC frames (meta JSON, image JSON),
//! replaced atomically.
//!
//! Every applied batch is published on a `watch` channel: that is how the
//! broker follows the metadata log. Applied registrations and heartbeats
//! are also noted, with the local time, in a [`BrokerLiveness`] record.

use std::{
    io::{self, Cursor},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use openraft::{
    storage::{RaftStateMachine, Snapshot},
    EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError,
};
use tokio::{sync::watch, time::Instant};

use crate::{
    fsio,
    liveness::BrokerLiveness,
    metadata::{ApplyOutcome, ClusterMetadata},
    raft_types::{
        CommandResponse, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    },
};

const SNAPSHOT_MAGIC: &[u8] = b"RVQSNAP1";

/// A snapshot as kept in memory and on disk.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.clone())),
        }
    }

    fn encode(&self) -> io::Result<Vec<u8>> {
        let mut buf = SNAPSHOT_MAGIC.to_vec();
        fsio::encode_frame(
            &serde_json::to_vec(&self.meta).map_err(io::Error::other)?,
            &mut buf,
        );
        fsio::encode_frame(&self.data, &mut buf);
        Ok(buf)
    }

    fn load(path: &Path) -> io::Result<Option<Self>> {
        let Some(body) = fsio::read_with_magic(path, SNAPSHOT_MAGIC)? else {
            return Ok(None);
        };
        let (frames, _) = fsio::decode_frames(&body);
        // Written atomically, so anything but two good frames is corruption.
        let [(_, meta), (_, data)] = frames.as_slice() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt snapshot {}", path.display()),
            ));
        };
        let meta = serde_json::from_slice(meta).map_err(io::Error::other)?;
        Ok(Some(Self {
            meta,
            data: data.to_vec(),
        }))
    }
}

/// Snapshot state shared by the state machine and its snapshot builders,
/// which run concurrently with applying.
struct SnapshotSlot {
    path: PathBuf,
    current: Mutex<Option<StoredSnapshot>>,
    /// Makes snapshot ids unique even for the same last log id.
    seq: AtomicU64,
}

impl SnapshotSlot {
    /// Persists `snapshot` and makes it current, unless a newer one is
    /// current already (a slow build racing an installed snapshot).
    fn store(&self, snapshot: StoredSnapshot) -> io::Result<()> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id > snapshot.meta.last_log_id)
        {
            return Ok(());
        }
        fsio::write_atomic(&self.path, &snapshot.encode()?)?;
        *current = Some(snapshot);
        Ok(())
    }
}

/// The state machine store.
pub struct StateMachineStore {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    metadata: Arc<ClusterMetadata>,
    snapshots: Arc<SnapshotSlot>,
    published: watch::Sender<Arc<ClusterMetadata>>,
    /// When brokers' registrations and heartbeats were applied here, for
    /// the active controller's session timeouts.
    liveness: BrokerLiveness,
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, starting from the snapshot there.
    /// Returns it with a receiver of every applied image.
    pub fn open(dir: &Path) -> io::Result<(Self, watch::Receiver<Arc<ClusterMetadata>>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("snapshot");
        let current = StoredSnapshot::load(&path)?;
        let (last_applied, membership, metadata) = match &current {
            Some(s) => {
                let image: ClusterMetadata =
                    serde_json::from_slice(&s.data).map_err(io::Error::other)?;
                (s.meta.last_log_id, s.meta.last_membership.clone(), image)
            }
            None => (
                None,
                StoredMembership::default(),
                ClusterMetadata::default(),
            ),
        };
        let metadata = Arc::new(metadata);
        let (published, rx) = watch::channel(metadata.clone());
        let snapshots = Arc::new(SnapshotSlot {
            path,
            current: Mutex::new(current),
            seq: AtomicU64::new(0),
        });
        Ok((
            Self {
                last_applied,
                membership,
                metadata,
                snapshots,
                published,
                liveness: BrokerLiveness::default(),
            },
            rx,
        ))
    }

    /// The record of brokers' last applied registrations and heartbeats
    /// (shared: it stays current after the store moves into Raft).
    pub fn liveness(&self) -> BrokerLiveness {
        self.liveness.clone()
    }
}

/// Builds a snapshot from a frozen copy of the image.
pub struct SnapshotBuilder {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    metadata: Arc<ClusterMetadata>,
    snapshots: Arc<SnapshotSlot>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = serde_json::to_vec(&*self.metadata)
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let seq = self.snapshots.seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot { meta, data };
        let snapshot = stored.to_snapshot();
        self.snapshots
            .store(stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(snapshot.meta.signature()), &e))?;
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let metadata = Arc::make_mut(&mut self.metadata);
        let now = Instant::now();
        for entry in entries {
            let offset = entry.log_id.index;
            self.last_applied = Some(entry.log_id);
            let result = match &entry.payload {
                EntryPayload::Normal(command) => {
                    let result = metadata.apply(offset, command);
                    if result.is_ok() {
                        self.liveness.record(command, now);
                    }
                    result
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    metadata.advance_offset(offset);
                    Ok(ApplyOutcome::Unchanged)
                }
                EntryPayload::Blank => {
                    metadata.advance_offset(offset);
                    Ok(ApplyOutcome::Unchanged)
                }
            };
            responses.push(CommandResponse { offset, result });
        }
        // Publish before answering, so a proposer that sees its response
        // finds its change in this node's image.
        self.published.send_replace(self.metadata.clone());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            metadata: self.metadata.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: ClusterMetadata = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.snapshots
            .store(stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.metadata = Arc::new(image);
        self.published.send_replace(self.metadata.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self
            .snapshots
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(current.as_ref().map(StoredSnapshot::to_snapshot))
    }
}
