//! The broker's leader lease as the request path sees it: whether this
//! broker may act as a partition leader or coordinator now, and a way for
//! waiting requests (acks=all) to end as soon as the lease runs out. The
//! cluster membership installs the quorum's lease; until then, and on a
//! single broker, it is always held.

use std::sync::Arc;

use tokio::sync::watch;

/// Whether this broker may act as a partition leader now: its leader
/// lease (see [`rivulet_quorum::BrokerLease`]) once the cluster membership
/// installed one, always before and without one (a single-broker
/// cluster, unit tests). Clones share it.
#[derive(Clone)]
pub struct LeaderLease(Arc<LeaseState>);

struct LeaseState {
    /// Reads the lease; none installed means always held.
    check: std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
    /// The lease as last published by the membership's watch, for
    /// requests that wait (acks=all) to end when it runs out.
    published: watch::Sender<bool>,
}

impl Default for LeaderLease {
    fn default() -> Self {
        LeaderLease(Arc::new(LeaseState {
            check: std::sync::OnceLock::new(),
            published: watch::Sender::new(true),
        }))
    }
}

impl LeaderLease {
    /// Whether leadership may be exercised now.
    pub fn held(&self) -> bool {
        self.0.check.get().is_none_or(|held| held())
    }

    /// Puts a lease in force, read through `held`; only the first one
    /// installed counts.
    pub fn install(&self, held: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.0.check.set(Box::new(held));
    }

    /// Publishes what [`held`](Self::held) says now, waking
    /// [`lost`](Self::lost) waiters when it ran out.
    pub fn publish(&self) -> bool {
        let held = self.held();
        self.0
            .published
            .send_if_modified(|was| std::mem::replace(was, held) != held);
        held
    }

    /// Completes once the lease is published as run out (and has not
    /// been regained since).
    pub async fn lost(&self) {
        let mut rx = self.0.published.subscribe();
        loop {
            // The sender lives as long as `self`: these cannot fail.
            let _ = rx.wait_for(|held| !*held).await;
            if !self.held() {
                return;
            }
            // Regained since it was published: wait for the next news.
            let _ = rx.changed().await;
        }
    }
}
