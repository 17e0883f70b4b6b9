//! Where the cluster's metadata image comes from, behind a small trait: the
//! controller quorum in every running broker ([`QuorumNode`]), or
//! [`InMemoryMetadata`], a log in memory for unit tests of handlers, the
//! registry, replication and the group coordinator (no sockets, no quorum).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use rivulet_quorum::{
    metadata::{ApplyOutcome, ClusterMetadata, MetadataCommand},
    QuorumError, QuorumNode,
};
use tokio::sync::watch;

/// A proposal under way: its offset and what applying it answered.
pub type Proposal<'a> =
    Pin<Box<dyn Future<Output = Result<(u64, ApplyOutcome), QuorumError>> + Send + 'a>>;

/// The metadata log as the rest of the broker sees it.
pub trait MetadataSource: Send + Sync {
    /// The applied image, as it changes.
    fn watch(&self) -> watch::Receiver<Arc<ClusterMetadata>>;
    /// Appends `command` to the log (refused commands are errors).
    fn propose(&self, command: MetadataCommand) -> Proposal<'_>;
    /// The active controller's id, if known.
    fn controller_id(&self) -> Option<i32>;
}

impl MetadataSource for QuorumNode {
    fn watch(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.metadata()
    }

    fn propose(&self, command: MetadataCommand) -> Proposal<'_> {
        Box::pin(self.propose_with_outcome(command))
    }

    fn controller_id(&self) -> Option<i32> {
        self.leader_id().map(|id| id as i32)
    }
}

/// A metadata log in memory: every proposal is applied at once, in order,
/// with the same rules as the quorum's state machine.
pub struct InMemoryMetadata {
    image: watch::Sender<Arc<ClusterMetadata>>,
    controller: i32,
    /// One proposal at a time, as the log orders them.
    write: Mutex<()>,
}

impl InMemoryMetadata {
    /// An empty log whose active controller is `controller`.
    pub fn new(controller: i32) -> Self {
        InMemoryMetadata {
            image: watch::channel(Arc::new(ClusterMetadata::default())).0,
            controller,
            write: Mutex::new(()),
        }
    }

    /// Applies `command` now.
    pub fn apply(&self, command: &MetadataCommand) -> Result<(u64, ApplyOutcome), QuorumError> {
        let _one = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = (**self.image.borrow()).clone();
        let offset = next.offset + 1;
        match next.apply(offset, command) {
            Ok(outcome) => {
                self.image.send_replace(Arc::new(next));
                Ok((offset, outcome))
            }
            Err(source) => Err(QuorumError::Rejected { offset, source }),
        }
    }

    /// The current image.
    pub fn image(&self) -> Arc<ClusterMetadata> {
        self.image.borrow().clone()
    }
}

impl MetadataSource for InMemoryMetadata {
    fn watch(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.image.subscribe()
    }

    fn propose(&self, command: MetadataCommand) -> Proposal<'_> {
        Box::pin(async move { self.apply(&command) })
    }

    fn controller_id(&self) -> Option<i32> {
        Some(self.controller)
    }
}
