//! One partition replica hosted by this broker: its log, its group-commit
//! state and its metric handles.
//!
//! The log sits behind a `RwLock`: fetches read under the shared lock with
//! positional reads, so many consumers never wait on each other; produce
//! takes the exclusive lock only for the append itself.
//!
//! In a cluster a partition is also a replica: [`ReplicaState`] says whether
//! this broker leads it (and how far each follower has fetched) or follows
//! another broker, and the high watermark is tracked separately from the log
//! end: consumers never read past it. A single broker is a cluster of one:
//! the same roles, with an ISR of itself.
//!
//! Transactions: the last stable offset (LSO) is the high watermark or the
//! first offset of the oldest open transaction, the lower; read_committed
//! consumers read up to it ([`Partition::read_committed`]). The
//! transaction coordinator ends transactions with
//! [`Partition::append_marker`].

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError,
    },
    time::Instant,
};

use rivulet_storage::{
    batch::BatchHeader,
    config::LogConfig,
    txn::{AbortedTxn, Marker},
    AppendInfo, Log, ReadResult, StorageError,
};
use tokio::sync::watch;

use crate::{log_dir::LogDirHealth, metrics::PartitionMetrics};

/// What this broker is for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leader in a cluster.
    Leader,
    /// Follower of the given broker (or of nobody, while it is offline).
    Follower(Option<i32>),
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, Copy)]
pub struct FollowerProgress {
    /// Its log end offset (the offset of its last fetch), -1 until known.
    pub log_end: i64,
    /// Last time it had fetched everything the leader had.
    pub last_caught_up: Instant,
}

/// Replica role and replication progress of one partition.
#[derive(Debug, Clone)]
pub struct ReplicaState {
    /// Leader or follower.
    pub role: Role,
    /// The current leader epoch (stamped on appended batches).
    pub leader_epoch: i32,
    /// The partition epoch of the metadata this state came from.
    pub partition_epoch: i32,
    /// All replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Followers' progress (leader only).
    pub followers: BTreeMap<i32, FollowerProgress>,
    /// An ISR change is being proposed; don't propose another.
    pub isr_change_pending: bool,
    /// After a refused ISR change: no new proposal before this instant,
    /// and how many were refused in a row (the backoff doubles).
    pub isr_retry: Option<(std::time::Instant, u32)>,
    /// The log end when this broker became leader in this epoch: until the
    /// high watermark reaches it, the high watermark is not known yet
    /// (followers have not reported), so the true end is not answered.
    pub epoch_start_offset: i64,
}

impl ReplicaState {
    /// The state of a replica just opened: it leads nothing until the
    /// metadata image gives it a role.
    fn opened() -> Self {
        ReplicaState {
            role: Role::Follower(None),
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: Vec::new(),
            isr: Vec::new(),
            followers: BTreeMap::new(),
            isr_change_pending: false,
            isr_retry: None,
            epoch_start_offset: 0,
        }
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// The high watermark a leader with log end `leader_end` may expose:
    /// the smallest log end among the in-sync replicas, so no in-sync
    /// follower lacks anything below it. A follower whose position is not
    /// known yet (-1) holds it back; alone in the ISR, the leader's end is it.
    pub fn high_watermark(&self, leader_end: i64) -> i64 {
        self.isr
            .iter()
            .filter_map(|id| self.followers.get(id))
            .map(|f| f.log_end)
            .fold(leader_end, i64::min)
    }
}

/// A hosted partition.
pub struct Partition {
    /// Partition index within its topic.
    pub index: i32,
    log: RwLock<Log>,
    /// Serializes fsyncs so concurrent acks=all producers share one (group commit).
    flush_lock: tokio::sync::Mutex<()>,
    /// Every offset below this is known to be fsynced.
    flushed_to: AtomicI64,
    /// Role and follower progress; a short-held lock, never across I/O.
    replica: Mutex<ReplicaState>,
    /// The high watermark, watched by acks=all producers waiting for their
    /// offsets to be replicated.
    hw: watch::Sender<i64>,
    /// The leader epoch while this broker leads in a cluster, else -1:
    /// read without the replica lock by waiters on `hw`, which are woken
    /// whenever it changes so a lost leadership ends their wait at once.
    leading_epoch: std::sync::atomic::AtomicI32,
    /// Bumped whenever a parked fetch of this partition may have something
    /// new to answer: an append (followers read to the log end), a high
    /// watermark move (consumers read to it), a role change or truncation.
    /// Per partition, so an append wakes only the fetches that asked for
    /// this partition, not every parked fetch of the broker.
    wake: watch::Sender<u64>,
    metrics: PartitionMetrics,
    /// This partition's share of the broker's open-transaction gauge.
    txn_count: TxnCount,
    /// The log directory's health: every storage error is reported to it,
    /// and once it is offline nothing here touches the disk.
    log_dir: Arc<LogDirHealth>,
}

/// What a partition added to the broker-wide open-transaction gauge, taken
/// back when the partition goes (closed, deleted or dropped).
struct TxnCount {
    gauge: prometheus::IntGauge,
    reported: AtomicI64,
}

impl TxnCount {
    fn report(&self, count: i64) {
        let before = self.reported.swap(count, Ordering::AcqRel);
        self.gauge.add(count - before);
    }
}

impl Drop for TxnCount {
    fn drop(&mut self) {
        self.gauge.sub(*self.reported.get_mut());
    }
}

impl Partition {
    /// Opens (recovering if needed) the log in `dir`, a partition of the
    /// log directory `log_dir`.
    pub fn open(
        index: i32,
        dir: &Path,
        config: LogConfig,
        metrics: PartitionMetrics,
        log_dir: Arc<LogDirHealth>,
    ) -> Result<Self, StorageError> {
        log_dir.check()?;
        let log = log_dir.observe(Log::open(dir, config))?;
        let partition = Partition {
            index,
            flushed_to: AtomicI64::new(log.log_end_offset()),
            replica: Mutex::new(ReplicaState::opened()),
            // Not persisted: a replica starts from its log start and learns
            // the real value from its leader or its followers.
            hw: watch::channel(log.log_start_offset()).0,
            leading_epoch: std::sync::atomic::AtomicI32::new(-1),
            wake: watch::channel(0).0,
            log: RwLock::new(log),
            flush_lock: tokio::sync::Mutex::new(()),
            txn_count: TxnCount {
                gauge: metrics.ongoing_transactions.clone(),
                reported: AtomicI64::new(0),
            },
            metrics,
            log_dir,
        };
        partition.update_gauges(&partition.read_log());
        Ok(partition)
    }

    /// Shared access to the log (reads). While a writer holds the lock
    /// (possibly waiting on the disk), the wait happens off the runtime's
    /// worker threads, see [`off_runtime`].
    pub fn read_log(&self) -> RwLockReadGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written in
        // memory (every mutation is a single call), so poisoning is ignored.
        match self.log.try_read() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                off_runtime(|| self.log.read().unwrap_or_else(|e| e.into_inner()))
            }
        }
    }

    /// Exclusive access to the log (appends, retention, config changes);
    /// waits like [`Self::read_log`].
    pub fn write_log(&self) -> RwLockWriteGuard<'_, Log> {
        match self.log.try_write() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                off_runtime(|| self.log.write().unwrap_or_else(|e| e.into_inner()))
            }
        }
    }

    /// The replica state (role, epochs, ISR, follower progress).
    pub fn replica(&self) -> MutexGuard<'_, ReplicaState> {
        self.replica.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends validated batches as leader, stamping the current leader
    /// epoch; `batches` is copied because offsets are rewritten in place and
    /// the request buffer is shared.
    pub fn append(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, StorageError> {
        self.append_owned(batches.to_vec(), now_ms)
    }

    /// [`Self::append`] of batches the caller already owns (recompressed).
    pub fn append_owned(
        &self,
        mut owned: Vec<u8>,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.log_dir.check()?;
        let epoch = self.replica().leader_epoch;
        let mut log = self.write_log();
        let appended = if log.append_may_block(owned.len(), now_ms) {
            off_runtime(|| log.append(&mut owned, epoch, now_ms))
        } else {
            log.append(&mut owned, epoch, now_ms)
        };
        let info = self.log_dir.observe(appended)?;
        self.update_gauges(&log);
        let end = log.log_end_offset();
        drop(log);
        self.advance_hw(end);
        self.wake_fetches();
        Ok(info)
    }

    /// Wakes the fetches parked on this partition.
    pub fn wake_fetches(&self) {
        self.wake.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that changes whenever [`Self::wake_fetches`] is called.
    pub fn subscribe_fetches(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// Appends batches fetched from the leader, offsets and epochs kept.
    pub fn append_replicated(&self, batches: &[u8], now_ms: i64) -> Result<(), StorageError> {
        self.log_dir.check()?;
        if batches.is_empty() {
            return Ok(());
        }
        let mut log = self.write_log();
        let appended = if log.append_may_block(batches.len(), now_ms) {
            off_runtime(|| log.append_replicated(batches, now_ms))
        } else {
            log.append_replicated(batches, now_ms)
        };
        self.log_dir.observe(appended)?;
        self.update_gauges(&log);
        drop(log);
        self.wake_fetches();
        Ok(())
    }

    /// Whole batches from `offset`, up to the high watermark (consumers).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError> {
        self.log_dir.check()?;
        let hw = self.high_watermark();
        let log = self.read_log();
        self.log_dir
            .observe(log.read(offset, max_bytes, hw.min(log.log_end_offset()), min_one))
    }

    /// Appends a transaction marker as leader (WriteTxnMarkers) and returns
    /// its offset: the producer's open transaction ends, committed or
    /// aborted. Like [`Self::append`], the caller waits for the high
    /// watermark to pass it before answering.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<i64, StorageError> {
        let epoch = self.replica().leader_epoch;
        let marker = Marker {
            commit,
            coordinator_epoch,
        };
        self.log_dir.check()?;
        let mut log = self.write_log();
        let append =
            |log: &mut Log| log.append_marker(producer_id, producer_epoch, marker, epoch, now_ms);
        let appended = if log.append_may_block(MARKER_BYTES, now_ms) {
            off_runtime(|| append(&mut log))
        } else {
            append(&mut log)
        };
        let offset = self.log_dir.observe(appended)?;
        self.update_gauges(&log);
        let end = log.log_end_offset();
        drop(log);
        self.advance_hw(end);
        self.wake_fetches();
        Ok(offset)
    }

    /// The last stable offset: read_committed consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        last_stable(&self.read_log(), hw)
    }

    /// Whole batches from `offset` up to the last stable offset
    /// (read_committed consumers), with the aborted transactions that
    /// overlap what was read, and the last stable offset used.
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<(ReadResult, Vec<AbortedTxn>, i64), StorageError> {
        self.log_dir.check()?;
        let hw = self.high_watermark();
        let log = self.read_log();
        let lso = last_stable(&log, hw);
        let read = self
            .log_dir
            .observe(log.read(offset, max_bytes, lso, min_one))?;
        let aborted = match last_offset_in(&read.bytes) {
            Some(last) => log.aborted_transactions(offset, last + 1),
            None => Vec::new(),
        };
        Ok((read, aborted, lso))
    }

    /// Whole batches from `offset`, up to the log end (followers).
    pub fn read_replica(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        self.log_dir.check()?;
        let log = self.read_log();
        let end = log.log_end_offset();
        self.log_dir.observe(log.read(offset, max_bytes, end, true))
    }

    /// The high watermark: what every in-sync replica has.
    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }

    /// Waits until the high watermark reaches `offset` (everything below
    /// it is on every in-sync replica); false on timeout or when this
    /// broker stops leading.
    pub async fn wait_for_hw(&self, offset: i64, timeout: std::time::Duration) -> bool {
        // Only writes made under one leader epoch can be vouched for: if
        // leadership moves (even away and back) the wait ends unanswered.
        let epoch = self.leading_epoch.load(Ordering::Acquire);
        if epoch < 0 {
            return false;
        }
        let same_term = || self.leading_epoch.load(Ordering::Acquire) == epoch;
        let mut rx = self.hw.subscribe();
        let ended = rx.wait_for(|hw| *hw >= offset || !same_term());
        let reached = tokio::time::timeout(timeout, ended).await;
        matches!(reached, Ok(Ok(ref hw)) if **hw >= offset) && same_term()
    }

    /// Records the leading epoch and wakes every replication waiter.
    fn set_leading_epoch(&self, epoch: i32) {
        if self.leading_epoch.swap(epoch, Ordering::AcqRel) != epoch {
            self.refresh_txn_gauges(&self.read_log());
            self.hw.send_modify(|_| {});
            self.wake_fetches();
        }
    }

    /// Gives up leadership locally (shutdown): waiting acks=all requests
    /// end at once instead of at their timeout.
    pub fn abandon_leadership(&self) {
        self.set_leading_epoch(-1);
    }

    /// A receiver of high watermark changes.
    pub fn watch_hw(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Sets the high watermark (a follower learning it from its leader,
    /// capped at its own log end). Never moves it backwards.
    pub fn set_hw(&self, hw: i64) {
        let moved = self.hw.send_if_modified(|cur| {
            if hw > *cur {
                *cur = hw;
                true
            } else {
                false
            }
        });
        if moved {
            self.refresh_txn_gauges(&self.read_log());
            self.wake_fetches();
        }
    }

    /// Restores a checkpointed high watermark at open, capped at the log
    /// end (a checkpoint is never ahead of what was committed, but the log
    /// may have lost an unflushed tail).
    pub fn restore_hw(&self, hw: i64) {
        let end = self.read_log().log_end_offset();
        self.set_hw(hw.min(end));
    }

    /// Lowers the high watermark to `end` after a truncation cut the log
    /// below it (the only way it ever moves back).
    pub fn cap_hw(&self, end: i64) {
        let moved = self.hw.send_if_modified(|cur| {
            if *cur > end {
                *cur = end;
                true
            } else {
                false
            }
        });
        if moved {
            self.wake_fetches();
        }
    }

    /// Recomputes the leader's high watermark from its log end and the ISR
    /// followers' positions; returns the new value if it moved.
    fn advance_hw(&self, leader_end: i64) -> Option<i64> {
        let replica = self.replica();
        if replica.role != Role::Leader {
            return None;
        }
        let hw = replica.high_watermark(leader_end);
        drop(replica);
        let before = *self.hw.borrow();
        self.set_hw(hw);
        (hw > before).then_some(hw)
    }

    /// Leader side of a follower's fetch at `fetch_offset`: records its
    /// progress and moves the high watermark. Returns (whether the follower
    /// may rejoin the ISR now, whether the high watermark moved).
    pub fn record_follower_fetch(
        &self,
        follower: i32,
        fetch_offset: i64,
        now: Instant,
    ) -> (bool, bool) {
        let end = self.read_log().log_end_offset();
        let eligible = {
            let mut replica = self.replica();
            if replica.role != Role::Leader || !replica.replicas.contains(&follower) {
                return (false, false);
            }
            let hw = *self.hw.borrow();
            let progress = replica
                .followers
                .entry(follower)
                .or_insert(FollowerProgress {
                    log_end: -1,
                    last_caught_up: now,
                });
            progress.log_end = fetch_offset;
            if fetch_offset >= end {
                progress.last_caught_up = now;
            }
            !replica.isr.contains(&follower) && fetch_offset >= hw && !replica.isr_change_pending
        };
        let moved = self.advance_hw(end).is_some();
        (eligible, moved)
    }

    /// Takes the leader role with `epoch` (this broker is `self_id`);
    /// follower progress restarts.
    pub fn become_leader(
        &self,
        self_id: i32,
        epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
    ) {
        let now = Instant::now();
        let end = self.read_log().log_end_offset();
        {
            let mut replica = self.replica();
            let new_term = replica.role != Role::Leader || replica.leader_epoch != epoch;
            if new_term {
                replica.epoch_start_offset = end;
                replica.followers = replicas
                    .iter()
                    .filter(|&&id| id != self_id)
                    .map(|&id| {
                        (
                            id,
                            FollowerProgress {
                                log_end: -1,
                                last_caught_up: now,
                            },
                        )
                    })
                    .collect();
            }
            replica.role = Role::Leader;
            replica.leader_epoch = epoch;
            replica.partition_epoch = partition_epoch;
            replica.replicas = replicas.to_vec();
            replica.isr = isr.to_vec();
            replica.isr_change_pending = false;
        }
        self.set_leading_epoch(epoch);
        let end = self.read_log().log_end_offset();
        self.advance_hw(end);
    }

    /// Takes the follower role under `leader` (None: no leader yet).
    pub fn become_follower(
        &self,
        leader: Option<i32>,
        epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
    ) {
        {
            let mut replica = self.replica();
            replica.role = Role::Follower(leader);
            replica.leader_epoch = epoch;
            replica.partition_epoch = partition_epoch;
            replica.replicas = replicas.to_vec();
            replica.isr = isr.to_vec();
            replica.followers.clear();
            replica.isr_change_pending = false;
        }
        self.set_leading_epoch(-1);
    }

    /// Waits until everything up to `offset` (exclusive) is fsynced. One
    /// caller does the fsync while the others wait on the lock; when they get
    /// it their data is usually already covered and they return at once.
    pub async fn flush_to(&self, offset: i64) -> Result<(), StorageError> {
        if self.flushed_to.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _guard = self.flush_lock.lock().await;
        if self.flushed_to.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        self.log_dir.check()?;
        // Only the handle is taken under the lock: appends continue during
        // the fsync, and the next waiter's fsync covers them all.
        let handle = self.log_dir.observe(self.read_log().sync_handle())?;
        let end = handle.end_offset();
        let timer = self.metrics.flush.start_timer();
        let synced = tokio::task::spawn_blocking(move || handle.sync())
            .await
            .expect("fsync does not panic");
        self.log_dir.observe(synced)?;
        timer.observe_duration();
        self.flushed_to.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Applies retention and time-based rolling; returns segments deleted.
    pub fn housekeeping(
        &self,
        now_ms: i64,
        producer_expiration_ms: i64,
    ) -> Result<usize, StorageError> {
        self.log_dir.check()?;
        let mut log = self.write_log();
        self.log_dir.observe(log.maybe_roll(now_ms))?;
        let deleted = self.log_dir.observe(log.apply_retention(now_ms))?;
        log.expire_producers(now_ms.saturating_sub(producer_expiration_ms));
        self.update_gauges(&log);
        Ok(deleted)
    }

    /// Compacts the log if its policy includes `compact` and enough of it is
    /// dirty. Only records below the high watermark decide what is removed.
    pub fn maybe_compact(
        &self,
        now_ms: i64,
    ) -> Result<Option<rivulet_storage::CompactionStats>, StorageError> {
        {
            let log = self.read_log();
            if !log.config().compact || !log.needs_compaction(now_ms) {
                return Ok(None);
            }
        }
        self.log_dir.check()?;
        let mut log = self.write_log();
        let hw = log.log_end_offset();
        let stats = self.log_dir.observe(log.compact_below(now_ms, hw))?;
        self.update_gauges(&log);
        Ok(Some(stats))
    }

    /// Refreshes the per-partition gauges from the log.
    pub fn update_gauges(&self, log: &Log) {
        self.metrics.size.set(log.size_bytes() as i64);
        self.metrics.start_offset.set(log.log_start_offset());
        self.metrics.end_offset.set(log.log_end_offset());
        self.metrics.segments.set(log.segment_count() as i64);
        self.refresh_txn_gauges(log);
    }

    /// Refreshes the LSO lag and, while leading, this partition's open
    /// transactions in the broker-wide count.
    fn refresh_txn_gauges(&self, log: &Log) {
        let hw = self.high_watermark();
        self.metrics.lso_lag.set(hw - last_stable(log, hw));
        let leading = self.leading_epoch.load(Ordering::Acquire) >= 0;
        let open = if leading {
            log.ongoing_transactions()
        } else {
            0
        };
        self.txn_count.report(open as i64);
    }

    /// Flushes and closes the log (clean shutdown).
    pub fn close(self) -> Result<(), StorageError> {
        self.log
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .close()
    }

    /// Removes the log from disk (topic deletion).
    pub fn delete(self) -> Result<(), StorageError> {
        self.log
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .delete()
    }
}

/// At least the size of a transaction marker batch (a batch header and
/// one control record), for [`Log::append_may_block`].
const MARKER_BYTES: usize = 128;

/// Runs `f`, which may block on the disk (an fsync, a roll, a lock held by
/// one), so that it does not hold up the tasks of one of the runtime's few
/// worker threads: on a multi-threaded runtime's worker, the worker's
/// other tasks move to another thread first (`block_in_place`); anywhere
/// else (a blocking-pool thread, a single-threaded runtime in tests) `f`
/// just runs.
pub(crate) fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The last stable offset of `log` under high watermark `hw`.
fn last_stable(log: &Log, hw: i64) -> i64 {
    let hw = hw.min(log.log_end_offset());
    log.first_unstable_offset()
        .map_or(hw, |first| first.min(hw))
}

/// Last offset of the last whole batch in `bytes`.
fn last_offset_in(bytes: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut last = None;
    while let Ok(header) = BatchHeader::parse(&bytes[at..]) {
        last = Some(header.last_offset());
        at += header.total_size().max(BatchHeader::SIZE);
        if at >= bytes.len() {
            break;
        }
    }
    last
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
#[cfg(test)]
pub(crate) use tests::{leader_state, test_batch};
