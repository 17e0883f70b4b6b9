//! A broker's lifecycle in the metadata log, as KRaft brokers run it:
//! register (fenced) under a random incarnation id, wait until the local
//! image has caught up to the registration, then heartbeat with the broker
//! epoch; the first heartbeat unfences. A heartbeat refused because the
//! registration is gone or was replaced (unregistered, or another
//! incarnation took the id) makes it register again. Everything else
//! (timeouts, elections, an unreachable leader) is retried.
//!
//! Heartbeats the quorum accepted (and this node's image applied) renew
//! the broker's leader lease ([`BrokerLifecycle::lease`], see `lease.rs`).
//!
//! The task holds the node weakly: it ends with [`BrokerLifecycle`] (drop
//! or `stop`), with the node's shutdown, or when the node is dropped.

use std::{
    collections::BTreeMap,
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

use super::{
    lease::{AcceptedHeartbeats, BrokerLease},
    QuorumNode,
};
use crate::{
    error::QuorumError,
    metadata::{ApplyError, ApplyOutcome, BrokerId, ClusterMetadata, Endpoint, MetadataCommand},
};

/// Longest pause before retrying a failed registration or heartbeat (the
/// heartbeat interval when shorter).
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What a broker registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker's `node.id`.
    pub broker_id: BrokerId,
    /// Its `broker.rack`, if any.
    pub rack: Option<String>,
    /// Its advertised endpoints by listener name (what clients connect to).
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// A running registration-and-heartbeat task of one broker process; see
/// [`QuorumNode::spawn_broker_lifecycle`]. Dropping it stops the task.
pub struct BrokerLifecycle {
    broker_id: BrokerId,
    incarnation_id: Uuid,
    epoch: watch::Receiver<Option<u64>>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    node: Weak<QuorumNode>,
    /// Send times of accepted heartbeats, for the lease.
    accepted: AcceptedHeartbeats,
    task: JoinHandle<()>,
}

impl QuorumNode {
    /// Starts registering `registration` under a new random incarnation id
    /// and heartbeating every `heartbeat_interval` (Kafka's
    /// `broker.heartbeat.interval.ms`, default 2 s; keep it well below the
    /// controller's session timeout). Proposals go through this node, so a
    /// learner works as well as a voter.
    pub fn spawn_broker_lifecycle(
        self: &Arc<Self>,
        registration: BrokerInfo,
        heartbeat_interval: Duration,
    ) -> BrokerLifecycle {
        let broker_id = registration.broker_id;
        let incarnation_id = Uuid::new_v4();
        let (epoch_tx, epoch) = watch::channel(None);
        let accepted = AcceptedHeartbeats::default();
        let heartbeats = Heartbeats {
            broker_id,
            info: registration,
            incarnation_id,
            interval: heartbeat_interval,
            epoch: epoch_tx,
            accepted: accepted.clone(),
        };
        let task = tokio::spawn(heartbeats.run(Arc::downgrade(self), self.stopped.subscribe()));
        BrokerLifecycle {
            broker_id,
            incarnation_id,
            epoch,
            metadata: self.metadata(),
            node: Arc::downgrade(self),
            accepted,
            task,
        }
    }
}

impl BrokerLifecycle {
    /// The broker id.
    pub fn broker_id(&self) -> BrokerId {
        self.broker_id
    }

    /// This process's incarnation id.
    pub fn incarnation_id(&self) -> Uuid {
        self.incarnation_id
    }

    /// The current broker epoch: `None` until registered, and again while
    /// registering anew.
    pub fn broker_epoch(&self) -> Option<u64> {
        *self.epoch.borrow()
    }

    /// The broker's leader lease against `session_timeout` (the
    /// controller's `broker.session.timeout.ms`): held while a heartbeat
    /// the quorum accepted was sent less than that long ago.
    pub fn lease(&self, session_timeout: Duration) -> BrokerLease {
        BrokerLease::new(self.accepted.clone(), session_timeout)
    }

    /// Waits until this node's image shows the broker registered with the
    /// current epoch and unfenced; returns that epoch. Brokers should not
    /// lead partitions before.
    pub async fn wait_unfenced(&self, timeout: Duration) -> Result<u64, QuorumError> {
        let mut epoch = self.epoch.clone();
        let mut metadata = self.metadata.clone();
        let unfenced = async {
            loop {
                let current = *epoch.borrow_and_update();
                if let Some(e) = current {
                    let image = metadata.borrow_and_update().clone();
                    if image
                        .brokers
                        .get(&self.broker_id)
                        .is_some_and(|b| b.epoch == e && !b.fenced)
                    {
                        return Some(e);
                    }
                }
                tokio::select! {
                    changed = epoch.changed() => changed.ok()?,
                    changed = metadata.changed() => changed.ok()?,
                }
            }
        };
        match tokio::time::timeout(timeout, unfenced).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) | Err(_) => Err(QuorumError::UnfenceTimeout(timeout)),
        }
    }

    /// Stops heartbeating; the controller fences the broker after its
    /// session timeout. Same as dropping.
    pub fn stop(self) {}

    /// Stops heartbeating and fences the broker now, so that its partition
    /// leaderships move at once instead of after the session timeout
    /// (Kafka's controlled shutdown). Best effort: a heartbeat already in
    /// flight may still unfence it, leaving it to the session timeout.
    pub async fn controlled_shutdown(self) -> Result<(), QuorumError> {
        self.task.abort();
        let Some(node) = self.node.upgrade() else {
            return Ok(());
        };
        let fence = MetadataCommand::FenceBroker {
            broker_id: self.broker_id,
        };
        match node.propose(fence).await {
            Ok(_)
            | Err(QuorumError::Rejected {
                source: ApplyError::UnknownBroker(_),
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for BrokerLifecycle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task's state.
struct Heartbeats {
    broker_id: BrokerId,
    info: BrokerInfo,
    incarnation_id: Uuid,
    interval: Duration,
    /// The current broker epoch, published to [`BrokerLifecycle`].
    epoch: watch::Sender<Option<u64>>,
    /// Where accepted heartbeats are noted.
    accepted: AcceptedHeartbeats,
}

/// What to do after one registration or heartbeat.
enum Next {
    /// Go again after this pause.
    After(Duration),
    /// Raft stopped: nothing more can succeed.
    Stop,
}

impl Heartbeats {
    async fn run(self, node: Weak<QuorumNode>, mut stopped: watch::Receiver<bool>) {
        loop {
            let Some(node) = node.upgrade() else { return };
            let next = tokio::select! {
                next = self.step(&node) => next,
                _ = stopped.wait_for(|s| *s) => Next::Stop,
            };
            drop(node);
            let Next::After(pause) = next else { return };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    }

    async fn step(&self, node: &QuorumNode) -> Next {
        let current = *self.epoch.borrow();
        let Some(broker_epoch) = current else {
            return self.register(node).await;
        };
        let heartbeat = MetadataCommand::BrokerHeartbeat {
            broker_id: self.broker_id,
            broker_epoch,
        };
        let sent = tokio::time::Instant::now();
        match node.propose(heartbeat).await {
            Ok(offset) => {
                // Counted once this node's image shows it (and so what
                // preceded it, such as this broker's fencing).
                match node
                    .wait_for_offset(offset, node.config.propose_timeout)
                    .await
                {
                    Ok(_) => self.accepted.accepted(sent),
                    Err(e) => {
                        tracing::warn!(broker_id = self.broker_id, error = %e, "image lags an accepted heartbeat");
                    }
                }
                Next::After(self.interval)
            }
            Err(QuorumError::Rejected {
                source:
                    source @ (ApplyError::UnknownBroker(_) | ApplyError::StaleBrokerEpoch { .. }),
                ..
            }) => {
                tracing::warn!(broker_id = self.broker_id, reason = %source, "heartbeat refused; registering again");
                self.epoch.send_replace(None);
                Next::After(Duration::ZERO)
            }
            Err(e) => self.failed(&e),
        }
    }

    async fn register(&self, node: &QuorumNode) -> Next {
        let register = MetadataCommand::RegisterBroker {
            broker_id: self.broker_id,
            incarnation_id: self.incarnation_id,
            rack: self.info.rack.clone(),
            endpoints: self.info.endpoints.clone(),
            directory_id: Some(node.config.directory_id),
        };
        match node.propose_with_outcome(register).await {
            Ok((offset, ApplyOutcome::Registered { broker_epoch })) => {
                // Like a KRaft broker, ask to be unfenced only once this
                // node's image has caught up to the registration.
                let caught_up = node.wait_for_offset(offset, node.config.propose_timeout);
                if let Err(e) = caught_up.await {
                    tracing::warn!(broker_id = self.broker_id, error = %e, "image lags the registration");
                }
                tracing::info!(
                    broker_id = self.broker_id,
                    broker_epoch,
                    "broker registered"
                );
                self.epoch.send_replace(Some(broker_epoch));
                Next::After(Duration::ZERO)
            }
            Ok((offset, outcome)) => {
                tracing::warn!(offset, ?outcome, "registration answered without an epoch");
                Next::After(self.retry_pause())
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&self, error: &QuorumError) -> Next {
        if let QuorumError::Fatal(_) = error {
            return Next::Stop;
        }
        tracing::warn!(broker_id = self.broker_id, %error, "broker heartbeat failed; retrying");
        Next::After(self.retry_pause())
    }

    fn retry_pause(&self) -> Duration {
        self.interval.min(MAX_RETRY_PAUSE)
    }
}
