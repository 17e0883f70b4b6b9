//! A switch that cuts a node off from its peers, for fault tests of the
//! quorum in one process (where network namespaces are not at hand).
//!
//! While a node is isolated, its calls to peers fail as unreachable before
//! anything is sent, and calls from peers are refused as unavailable, as a
//! network partition between it and everyone else would. Clients of the
//! broker are not behind it: only quorum traffic is cut. Off unless a
//! test turns it on; checking it costs one atomic load per call.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// Whether a node's quorum traffic is cut; clones share the switch.
#[derive(Debug, Clone, Default)]
pub struct Isolation(Arc<AtomicBool>);

impl Isolation {
    /// Cuts the node off from its peers.
    pub fn isolate(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Restores its traffic.
    pub fn heal(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether its traffic is cut.
    pub fn is_isolated(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
