//! The active controller's loop. It runs on every node and acts only while
//! that node leads the quorum, writing only as leader (never forwarding):
//! its decisions rest on what this node has seen, such as heartbeat times.
//!
//! On gaining leadership it first applies everything earlier leaders
//! committed and gives every broker a full session, since it cannot know
//! when they last heartbeated elsewhere. The broker of the controller it
//! replaces gets no such grace: that controller lost its quorum, so no
//! heartbeat of its broker was accepted after the last one applied here,
//! and its leader lease has run out once a session has passed since then
//! (an isolated controller's partitions move as soon as it stopped
//! serving them, not a whole session after the election). Then, every
//! `check_interval`:
//! - brokers whose session expired (no registration or heartbeat applied
//!   here for `session_timeout`) are fenced; the state machine moves their
//!   leaderships and shrinks ISRs as part of the fence;
//! - every `leader_imbalance_check_interval`, when enabled, leadership
//!   moves back to preferred replicas in one atomic batch whose changes
//!   carry partition epochs, so a plan overtaken by other changes is
//!   refused (and planned again at the next check).
//!
//! Reassignments need no step here: the state machine completes them
//! when the last target replica joins the ISR, on whatever path that is.

use std::{
    collections::BTreeMap,
    sync::{Arc, Weak},
    time::Duration,
};

use openraft::ServerState;
use tokio::{
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};

use super::QuorumNode;
use crate::{
    config::ControllerConfig,
    elect_leaders::{election_batch, preferred_elections},
    error::QuorumError,
    metadata::{BrokerId, ClusterMetadata, MetadataCommand},
};

/// This node's current term as the active controller.
struct Leadership {
    term: u64,
    /// Start of every broker's grace period.
    since: Instant,
    /// Whether the image has applied what was committed before this term.
    caught_up: bool,
    next_rebalance: Instant,
    /// When the previous check ran: a long gap means this process was
    /// starved, not that the brokers died.
    last_check: Instant,
    /// The broker of the controller before this one, as this node last saw
    /// it (no grace for it).
    previous: Option<BrokerId>,
}

/// What a fencing check did.
enum Fencing {
    /// Fenced the brokers whose session expired (if any).
    Done,
    /// Fenced nobody: this node's own broker looked expired, so liveness
    /// is not being recorded in time.
    Starved,
}

impl QuorumNode {
    /// Starts the active controller loop (see the module docs); it runs
    /// until [`shutdown`](Self::shutdown) or until the node is dropped.
    /// Start it once per node, on voters (learners never lead, so on them
    /// it only idles).
    pub fn spawn_controller(self: &Arc<Self>, config: ControllerConfig) -> JoinHandle<()> {
        let node: Weak<QuorumNode> = Arc::downgrade(self);
        let mut stopped = self.stopped.subscribe();
        tokio::spawn(async move {
            let mut leading = None;
            let mut seen_leader = None;
            let mut tick = tokio::time::interval(config.check_interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let Some(node) = node.upgrade() else { return };
                tokio::select! {
                    () = node.control(&config, &mut leading, &mut seen_leader) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
            }
        })
    }

    /// One check of the loop. `seen_leader` is the last other leader this
    /// node followed.
    async fn control(
        &self,
        config: &ControllerConfig,
        leading: &mut Option<Leadership>,
        seen_leader: &mut Option<u64>,
    ) {
        let (state, term, current_leader) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (m.state, m.current_term, m.current_leader)
        };
        if let Some(other) = current_leader.filter(|&l| l != self.id) {
            *seen_leader = Some(other);
        }
        if state != ServerState::Leader {
            if leading.take().is_some() {
                tracing::info!(node_id = self.id, "no longer the active controller");
            }
            return;
        }
        let now = Instant::now();
        let lead = match leading {
            Some(lead) if lead.term == term => lead,
            _ => {
                tracing::info!(node_id = self.id, term, "active controller");
                leading.insert(Leadership {
                    term,
                    since: now,
                    caught_up: false,
                    next_rebalance: now + config.leader_imbalance_check_interval,
                    last_check: now,
                    previous: seen_leader.and_then(|l| BrokerId::try_from(l).ok()),
                })
            }
        };
        if checks_stalled(lead.last_check, now, config.session_timeout) {
            tracing::warn!("controller checks were delayed; every broker gets a new session");
            lead.since = now;
        }
        lead.last_check = now;
        if !lead.caught_up {
            let applied = self.raft.ensure_linearizable();
            match tokio::time::timeout(self.config.propose_timeout, applied).await {
                Ok(Ok(_)) => lead.caught_up = true,
                _ => return,
            }
        }
        match self
            .fence_expired(config, lead.since, lead.previous, now)
            .await
        {
            Ok(Fencing::Done) => {}
            Ok(Fencing::Starved) => {
                // Even this node's own heartbeats were not applied in time:
                // the quorum is slow, not every broker dead.
                tracing::warn!(
                    "this controller's own broker session expired; every broker gets a new session"
                );
                lead.since = now;
            }
            Err(e) => {
                if !matches!(e, QuorumError::NotLeader) {
                    tracing::warn!(error = %e, "fencing expired brokers failed");
                }
                return;
            }
        }
        if config.auto_leader_rebalance && now >= lead.next_rebalance {
            lead.next_rebalance = match self.rebalance().await {
                Ok(()) => now + config.leader_imbalance_check_interval,
                // A stale plan or a hiccup: plan again at the next check.
                Err(_) => now,
            };
        }
    }

    async fn fence_expired(
        &self,
        config: &ControllerConfig,
        grace_from: Instant,
        previous: Option<BrokerId>,
        now: Instant,
    ) -> Result<Fencing, QuorumError> {
        let image = self.metadata.borrow().clone();
        let last_seen = self.liveness.snapshot();
        let grace = Grace {
            from: grace_from,
            except: previous,
        };
        let expired = expired_sessions(&image, &last_seen, grace, now, config.session_timeout);
        let Some(expired) = to_fence(expired, i32::try_from(self.id).ok()) else {
            return Ok(Fencing::Starved);
        };
        for broker_id in expired {
            tracing::warn!(broker_id, "broker session expired; fencing it");
            let fence = MetadataCommand::FenceBroker { broker_id };
            match self.propose_as_leader(&fence).await {
                // Unregistered meanwhile: nothing to fence.
                Ok(_) | Err(QuorumError::Rejected { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Fencing::Done)
    }

    async fn rebalance(&self) -> Result<(), QuorumError> {
        let image = self.metadata.borrow().clone();
        let plan = preferred_elections(&image, None);
        let Some(batch) = election_batch(&plan) else {
            return Ok(());
        };
        let moves = plan.values().filter(|r| r.is_ok()).count();
        match self.propose_as_leader(&batch).await {
            Ok(_) => {
                tracing::info!(partitions = moves, "leadership moved to preferred replicas");
                Ok(())
            }
            Err(e) => {
                if !matches!(e, QuorumError::NotLeader) {
                    tracing::info!(error = %e, "preferred leader rebalance not applied");
                }
                Err(e)
            }
        }
    }
}

/// Whether the gap since the previous check means this process itself was
/// starved (more than half a session without a check).
fn checks_stalled(last_check: Instant, now: Instant, session_timeout: Duration) -> bool {
    now.saturating_duration_since(last_check) > session_timeout / 2
}

/// The brokers to fence, or `None` when this controller's own broker is
/// among them: its heartbeats go through this very node, so their lateness
/// means liveness is not being recorded in time, not that everyone died.
fn to_fence(expired: Vec<BrokerId>, own: Option<BrokerId>) -> Option<Vec<BrokerId>> {
    if own.is_some_and(|own| expired.contains(&own)) {
        None
    } else {
        Some(expired)
    }
}

/// The sign of life a new controller counts for every broker when it
/// takes over, except for the broker of the controller it replaces.
#[derive(Debug, Clone, Copy)]
struct Grace {
    from: Instant,
    except: Option<BrokerId>,
}

/// The unfenced brokers whose session expired at `now`: no sign of life
/// within `session_timeout`, counting the takeover's grace as one.
fn expired_sessions(
    image: &ClusterMetadata,
    last_seen: &BTreeMap<BrokerId, Instant>,
    grace: Grace,
    now: Instant,
    session_timeout: Duration,
) -> Vec<BrokerId> {
    image
        .live_brokers()
        .filter(|b| {
            let applied = last_seen.get(&b.id).copied();
            let seen = match applied {
                // Its heartbeats were applied here no earlier than they
                // were sent: once a session passed, its lease is gone.
                Some(t) if grace.except == Some(b.id) => t,
                Some(t) => t.max(grace.from),
                None => grace.from,
            };
            now.saturating_duration_since(seen) > session_timeout
        })
        .map(|b| b.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starved_controller_fences_nobody() {
        assert_eq!(to_fence(vec![1, 2], Some(0)), Some(vec![1, 2]));
        assert_eq!(to_fence(vec![0, 1, 2], Some(0)), None);
        assert_eq!(to_fence(vec![3], None), Some(vec![3]));
        let t0 = Instant::now();
        let session = Duration::from_secs(9);
        assert!(!checks_stalled(t0, t0 + Duration::from_secs(1), session));
        assert!(checks_stalled(t0, t0 + Duration::from_secs(5), session));
    }

    #[test]
    fn sessions_expire_after_the_timeout_and_a_new_controller_grants_grace() {
        let brokers = [(1, false), (2, false), (3, true), (4, false)].map(|(id, f)| (id, None, f));
        let image = ClusterMetadata::with_brokers(&brokers);
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let timeout = Duration::from_secs(9);
        // 1 heartbeated recently, 2 long ago, 3 is fenced already, 4 was
        // never seen by this node.
        let last_seen = BTreeMap::from([(1, s(15)), (2, s(1)), (3, s(0))]);
        let grace = |secs, except| Grace {
            from: s(secs),
            except,
        };
        assert_eq!(
            expired_sessions(&image, &last_seen, grace(0, None), s(20), timeout),
            vec![2, 4]
        );
        // Leading since 12 s: everyone has until 21 s at least.
        assert!(expired_sessions(&image, &last_seen, grace(12, None), s(20), timeout).is_empty());
        assert_eq!(
            expired_sessions(&image, &last_seen, grace(12, None), s(22), timeout),
            vec![2, 4]
        );
        // Broker 2 was the previous controller's: last applied at 1 s, its
        // lease ran out at 10 s, so it is fenced at the first check after
        // the takeover; the others keep their grace.
        assert_eq!(
            expired_sessions(&image, &last_seen, grace(12, Some(2)), s(13), timeout),
            vec![2]
        );
        // Broker 1 was, and heartbeated at 15 s (applied here): a session
        // from then.
        assert!(
            expired_sessions(&image, &last_seen, grace(16, Some(1)), s(23), timeout).is_empty()
        );
        assert_eq!(
            expired_sessions(&image, &last_seen, grace(16, Some(1)), s(25), timeout),
            vec![1]
        );
    }
}
