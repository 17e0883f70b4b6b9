//! What a request handler may use, built once by the composition root
//! after the cluster membership has started and shared by every
//! connection: the hosted state (topics and partitions, through `Deref`),
//! the cluster (metadata image, topic admin) and the group coordinator.
//! Handlers get these handles from here; none of them points back up.

use std::{ops::Deref, sync::Arc};

use crate::{broker::Broker, cluster::Cluster, group::Coordinator, txn::TxnCoordinator};

/// The handles of a running broker.
pub struct Node {
    /// Hosted topics and partitions.
    pub broker: Arc<Broker>,
    /// The metadata image and topic administration.
    pub cluster: Arc<Cluster>,
    /// Consumer groups and committed offsets.
    pub groups: Arc<Coordinator>,
    /// Transactional ids and their transactions.
    pub txns: Arc<TxnCoordinator>,
}

impl Deref for Node {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        &self.broker
    }
}
