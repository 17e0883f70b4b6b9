//! A broker's leader lease: how long it may go on acting as a partition
//! leader without proof that the quorum still counts it alive.
//!
//! The active controller fences a broker whose last heartbeat it applied
//! more than `broker.session.timeout.ms` ago, and then elects other leaders
//! for its partitions. A broker cut off from the quorum (but not from its
//! clients) cannot learn that, so it keeps its own count: the lease is
//! held while the last heartbeat the quorum accepted was *sent* less than
//! a session timeout ago. The controller applied that heartbeat after it
//! was sent, so the lease always runs out before the controller's session
//! for the broker does, and the old leader has stopped serving before a
//! new one is elected.
//!
//! A heartbeat counts only once this node's own image has applied it, so
//! a broker coming back from a partition regains the lease with an image
//! that already shows what happened meanwhile (its fencing, the leaders
//! that replaced it). Times are `tokio::time::Instant`s: monotonic, so a
//! wall-clock jump neither extends nor cuts a lease.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::time::Instant;

/// Whether a lease whose last accepted heartbeat was sent at
/// `last_accepted` is held at `now`.
pub(crate) fn lease_held(
    last_accepted: Option<Instant>,
    now: Instant,
    session_timeout: Duration,
) -> bool {
    last_accepted.is_some_and(|sent| now.saturating_duration_since(sent) < session_timeout)
}

/// When the last accepted heartbeat was sent; shared by the heartbeat task
/// (the writer) and every [`BrokerLease`]. Kept as nanoseconds after a
/// base instant in an atomic (0: none yet), since every request a leader
/// serves reads it.
#[derive(Debug, Clone)]
pub(crate) struct AcceptedHeartbeats(Arc<(Instant, AtomicU64)>);

impl Default for AcceptedHeartbeats {
    fn default() -> Self {
        Self(Arc::new((Instant::now(), AtomicU64::new(0))))
    }
}

impl AcceptedHeartbeats {
    /// Notes a heartbeat sent at `sent` as accepted (a slower, older one
    /// finishing late does not move the mark back).
    pub(crate) fn accepted(&self, sent: Instant) {
        let (base, last) = &*self.0;
        let nanos = sent.saturating_duration_since(*base).as_nanos();
        // +1 keeps 0 for "none", even for a send at the base instant.
        let mark = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        last.fetch_max(mark, Ordering::AcqRel);
    }

    fn last(&self) -> Option<Instant> {
        let (base, last) = &*self.0;
        match last.load(Ordering::Acquire) {
            0 => None,
            mark => Some(*base + Duration::from_nanos(mark - 1)),
        }
    }
}

/// A broker's leader lease (see the module docs); clones share it.
#[derive(Debug, Clone)]
pub struct BrokerLease {
    heartbeats: AcceptedHeartbeats,
    session_timeout: Duration,
}

impl BrokerLease {
    pub(crate) fn new(heartbeats: AcceptedHeartbeats, session_timeout: Duration) -> Self {
        Self {
            heartbeats,
            session_timeout,
        }
    }

    /// Whether the broker may act as a leader now.
    pub fn held(&self) -> bool {
        lease_held(self.heartbeats.last(), Instant::now(), self.session_timeout)
    }

    /// When the last heartbeat the quorum accepted was sent, if any.
    pub fn last_accepted(&self) -> Option<Instant> {
        self.heartbeats.last()
    }

    /// The session timeout the lease is measured against.
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_runs_a_session_timeout_from_the_last_accepted_send() {
        let t0 = Instant::now();
        let session = Duration::from_secs(9);
        assert!(!lease_held(None, t0, session), "nothing accepted yet");
        assert!(lease_held(Some(t0), t0, session));
        assert!(lease_held(
            Some(t0),
            t0 + Duration::from_millis(8999),
            session
        ));
        assert!(!lease_held(Some(t0), t0 + session, session));
        // A send time after `now` (clock read before the send was noted).
        assert!(lease_held(Some(t0 + Duration::from_secs(1)), t0, session));
    }

    #[test]
    fn a_late_older_heartbeat_does_not_shorten_the_lease() {
        let t0 = Instant::now();
        let heartbeats = AcceptedHeartbeats::default();
        let lease = BrokerLease::new(heartbeats.clone(), Duration::from_secs(9));
        assert!(!lease.held());
        heartbeats.accepted(t0 + Duration::from_secs(2));
        heartbeats.accepted(t0);
        assert_eq!(lease.last_accepted(), Some(t0 + Duration::from_secs(2)));
        assert!(lease.held());
    }
}
