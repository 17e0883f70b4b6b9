//! Elections, started here instead of by openraft's timer (which the
//! config turns off), so that each is preceded by a PreVote round (see
//! `network::pre_vote`).
//!
//! Every tick (the heartbeat interval) the task reads openraft's vote and
//! when it was last refreshed. A voter that is admitted, not leading, and
//! has heard from no leader for the leader lease plus a random part of
//! the election timeout (just the random part when its vote is not a
//! leader's: an election under way) asks the other voters; only with a
//! majority of yes (in each half of a joint membership) does it call
//! `Raft::trigger().elect()`, which raises the term. A failed round is
//! retried after another random election timeout. The timing is
//! openraft's own, so failover takes as long as before.
//!
//! A node cut off from the others never gathers that majority, so its
//! term stays put and it cannot depose the leader when it comes back.
//! Nodes of a release without PreVote answer Unimplemented, which counts
//! as yes: they grant as openraft would, and a mixed quorum still elects.
//!
//! The task also notes when this node last heard from a leader, for
//! [`QuorumNode::vouched_leader`](super::QuorumNode::vouched_leader).

use std::{
    collections::{BTreeSet, HashMap},
    hash::BuildHasher,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use openraft::{Membership, Raft, ServerState};
use tokio::{sync::watch, task::JoinSet, time::Instant};

use crate::{
    config::QuorumConfig,
    log_store::LogStore,
    network::{
        pre_vote::{PreVoteReply, PreVoteRequest},
        Method, RpcClient, TransportError,
    },
    raft_types::{Node, NodeId, TypeConfig},
};

/// When this node last heard from a leader (for a leader: when a quorum
/// last acknowledged it), refreshed every tick; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaderContact(Arc<Mutex<Option<Instant>>>);

impl LeaderContact {
    fn set(&self, at: Option<Instant>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Whether a leader was heard within `within` of `now`.
    pub(crate) fn heard_within(&self, now: Instant, within: Duration) -> bool {
        let at = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        at.is_some_and(|at| now.saturating_duration_since(at) <= within)
    }
}

/// Whether a campaign is due at `now`: not before `not_before` (a failed
/// round's backoff), and only once the vote was left untouched for the
/// lease plus `jitter` when it is a leader's vote, or for `jitter` alone
/// when it is not (an election under way or failed).
pub(crate) fn campaign_due(
    now: Instant,
    vote_touched: Option<Instant>,
    vote_committed: bool,
    lease: Duration,
    jitter: Duration,
    not_before: Instant,
) -> bool {
    if now < not_before {
        return false;
    }
    let quiet = if vote_committed {
        lease + jitter
    } else {
        jitter
    };
    vote_touched.is_none_or(|t| now.saturating_duration_since(t) > quiet)
}

/// Whether `granted` holds a majority of every configuration of a
/// (possibly joint) membership.
pub(crate) fn quorum_granted(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.iter().filter(|v| granted.contains(v)).count() * 2 > c.len())
}

/// A random time in the election timeout range.
fn jitter((min, max): (Duration, Duration)) -> Duration {
    let random = std::collections::hash_map::RandomState::new().hash_one(0u8);
    let span = max.saturating_sub(min);
    min + span.mul_f64((random % 10_000) as f64 / 10_000.0)
}

/// The election task's state.
pub(super) struct Elections {
    pub(super) id: NodeId,
    pub(super) raft: Raft<TypeConfig>,
    pub(super) log: LogStore,
    pub(super) config: QuorumConfig,
    pub(super) admitted: Arc<AtomicBool>,
    pub(super) contact: LeaderContact,
    /// PreVote clients by address.
    pub(super) clients: HashMap<String, RpcClient>,
}

impl Elections {
    /// Runs until Raft stops or `stopped` turns true.
    pub(super) async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let lease = self.config.leader_lease();
        let mut draw = jitter(self.config.election_timeout);
        let mut not_before = Instant::now() + draw;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.config.heartbeat_interval) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            let metrics = self.raft.metrics().borrow().clone();
            let now = Instant::now();
            let vote = self
                .raft
                .with_raft_state(|s| (s.vote_ref().is_committed(), s.vote_last_modified()))
                .await;
            let Ok((committed, touched)) = vote else {
                return; // Raft stopped.
            };
            self.contact.set(match metrics.state {
                ServerState::Leader => metrics
                    .millis_since_quorum_ack
                    .map(|ms| now - Duration::from_millis(ms)),
                _ => touched.filter(|_| committed && metrics.current_leader.is_some()),
            });
            let membership = metrics.membership_config.membership().clone();
            let may_campaign = metrics.state != ServerState::Leader
                && metrics.state != ServerState::Shutdown
                && membership.voter_ids().any(|v| v == self.id)
                && self.admitted.load(Ordering::Acquire);
            if !may_campaign {
                continue;
            }
            if !campaign_due(now, touched, committed, lease, draw, not_before) {
                continue;
            }
            let granted = self.pre_vote_round(&membership).await;
            draw = jitter(self.config.election_timeout);
            not_before = Instant::now() + draw;
            if granted {
                tracing::info!(
                    node_id = self.id,
                    term = metrics.current_term,
                    "pre-vote won; campaigning"
                );
                if let Err(e) = self.raft.trigger().elect().await {
                    tracing::warn!(error = %e, "could not start an election");
                    return;
                }
            }
        }
    }

    /// Asks the other voters; true with a majority of yes (this node's
    /// own included).
    async fn pre_vote_round(&mut self, membership: &Membership<NodeId, Node>) -> bool {
        let request = PreVoteRequest {
            candidate: self.id,
            last_log_id: self.log.last_log_id(),
        };
        let timeout = self.config.rpc_timeout.min(self.config.election_timeout.0);
        let mut calls = JoinSet::new();
        let own = self.id;
        for voter in membership.voter_ids().filter(|&v| v != own) {
            let Some(node) = membership.get_node(&voter) else {
                continue;
            };
            let client = self.client(&node.addr);
            let request = request.clone();
            calls.spawn(async move { (voter, ask(&client, &request, timeout).await) });
        }
        let mut granted = BTreeSet::from([self.id]);
        let mut refusals = Vec::new();
        while let Some(answer) = calls.join_next().await {
            match answer {
                Ok((voter, Ok(()))) => {
                    granted.insert(voter);
                }
                Ok((voter, Err(why))) => refusals.push((voter, why)),
                Err(_) => {}
            }
        }
        let won = quorum_granted(membership.get_joint_config(), &granted);
        if !won {
            tracing::info!(
                node_id = self.id,
                ?granted,
                ?refusals,
                "pre-vote lost; not campaigning"
            );
        }
        won
    }

    fn client(&mut self, addr: &str) -> RpcClient {
        let config = &self.config;
        self.clients
            .entry(addr.to_owned())
            .or_insert_with(|| {
                RpcClient::new(
                    addr,
                    &config.cluster_id,
                    config.connect_timeout,
                    config.tls.as_ref(),
                    &config.isolation,
                )
            })
            .clone()
    }
}

/// One PreVote call: yes, or why not. A peer without the method (an older
/// release) answers Unimplemented, taken as yes.
async fn ask(
    client: &RpcClient,
    request: &PreVoteRequest,
    timeout: Duration,
) -> Result<(), String> {
    let reply: Result<PreVoteReply, _> = client
        .call(Method::PreVote, request, Vec::new(), timeout)
        .await;
    match reply {
        Ok(Ok(())) => Ok(()),
        Ok(Err(refused)) => Err(refused.to_string()),
        Err(TransportError::Status { status, .. })
            if status.code() == tonic::Code::Unimplemented =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        task::{Context, Poll},
    };

    use tonic::{
        body::Body,
        codegen::{http, Service},
    };

    use super::*;
    use crate::network::Isolation;

    /// A quorum service of a release without PreVote: every call is
    /// Unimplemented, as tonic answers an unknown method.
    #[derive(Clone)]
    struct OldRelease;

    impl Service<http::Request<Body>> for OldRelease {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            std::future::ready(Ok(
                tonic::Status::unimplemented("no such method").into_http()
            ))
        }
    }

    #[tokio::test]
    async fn a_peer_without_pre_vote_says_yes_and_an_unreachable_one_no() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(OldRelease, incoming));
        let request = PreVoteRequest {
            candidate: 1,
            last_log_id: None,
        };
        let timeout = Duration::from_secs(2);
        let connect = Duration::from_millis(500);
        let open = Isolation::default();
        let old = RpcClient::new(&addr, "", connect, None, &open);
        assert_eq!(ask(&old, &request, timeout).await, Ok(()));
        let cut = Isolation::default();
        cut.isolate();
        let cut_off = RpcClient::new(&addr, "", connect, None, &cut);
        assert!(ask(&cut_off, &request, timeout).await.is_err());
    }

    #[test]
    fn a_campaign_waits_out_the_lease_and_the_backoff() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let at = |n| t0 + ms(n);
        let (lease, jitter) = (ms(2000), ms(1300));
        // A leader's vote refreshed at t0: due only after lease + jitter.
        assert!(!campaign_due(at(3300), Some(t0), true, lease, jitter, t0));
        assert!(campaign_due(at(3301), Some(t0), true, lease, jitter, t0));
        // A vote that is not a leader's (a failed election): jitter alone.
        assert!(campaign_due(at(1301), Some(t0), false, lease, jitter, t0));
        // Never touched: due at once, but never before the backoff.
        assert!(campaign_due(t0, None, false, lease, jitter, t0));
        assert!(!campaign_due(at(5000), None, true, lease, jitter, at(5001)));
    }

    #[test]
    fn a_quorum_needs_a_majority_of_every_configuration() {
        let set = |ids: &[NodeId]| ids.iter().copied().collect::<BTreeSet<_>>();
        let one = [set(&[1, 2, 3])];
        assert!(quorum_granted(&one, &set(&[1, 3])));
        assert!(!quorum_granted(&one, &set(&[1])));
        assert!(!quorum_granted(&one, &set(&[1, 4, 5])));
        let joint = [set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!quorum_granted(&joint, &set(&[1, 2, 3])));
        assert!(quorum_granted(&joint, &set(&[1, 3, 4])));
        assert!(quorum_granted(&[set(&[7])], &set(&[7])));
        assert!(!quorum_granted(&[], &set(&[7])));
    }

    #[test]
    fn jitter_stays_in_the_election_timeout_range() {
        let range = (Duration::from_millis(1000), Duration::from_millis(2000));
        for _ in 0..100 {
            let j = jitter(range);
            assert!(j >= range.0 && j < range.1, "{j:?}");
        }
    }
}
