//! Rolling restarts, decided purely from what the reconcile observed.
//!
//! The StatefulSet uses `OnDelete`, so a new pod template (config or image
//! change) only records a new revision; the operator moves brokers to it by
//! deleting one stale pod at a time, and only when every broker is ready,
//! the cluster reports no under-replicated partitions and the quorum has
//! the voters it should (a restart never races a voter change). The active
//! controller goes last, so leadership moves once. Before a chosen broker
//! is restarted, the reconcile checks with fresh answers that the restart
//! loses nothing ([`super::safety`]). A broker whose per-broker
//! file changed after it started (its load balancer's address or its rack
//! became known) is stale too, and is restarted under the same rules. A restarted broker that
//! is not ready within the roll timeout stops the roll (Degraded) until it
//! recovers or a human steps in.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::crd::RollStatus;

/// One broker pod as the roll sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Broker id (the pod ordinal).
    pub id: i32,
    /// The StatefulSet revision the pod was created from.
    pub revision: Option<String>,
    /// Passes its readiness probe.
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
    /// Reports an advertised address or rack other than its per-broker
    /// file now says: it started before the file changed.
    pub config_stale: bool,
}

/// What the roll should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollDecision {
    /// Every broker runs the target revision.
    Idle,
    /// Stale brokers remain but one may not go yet; the message says why.
    Wait(String),
    /// Delete this broker's pod so the StatefulSet recreates it.
    Restart(i32),
    /// A restarted broker did not come back in time.
    Stuck(String),
}

/// What the roll decision is made from.
#[derive(Debug, Clone)]
pub struct RollInput<'a> {
    /// The StatefulSet's update revision.
    pub target: Option<&'a str>,
    /// Brokers the cluster should have.
    pub replicas: i32,
    /// The broker pods that exist.
    pub pods: &'a [PodView],
    /// Under-replicated partitions; `None` when the brokers could not be asked.
    pub under_replicated: Option<usize>,
    /// The active controller's id.
    pub controller: Option<i32>,
    /// A quorum voter change still to make, if any.
    pub quorum_pending: Option<&'a str>,
    /// The roll recorded in the status by the previous reconcile.
    pub previous: Option<&'a RollStatus>,
    /// The current time.
    pub now: Timestamp,
    /// How long a restarted broker may take to become ready.
    pub timeout: Duration,
}

/// Decides the next step of a roll towards the target revision.
pub fn decide(input: &RollInput<'_>) -> RollDecision {
    let RollInput {
        target,
        replicas,
        pods,
        under_replicated,
        controller,
        quorum_pending,
        previous,
        now,
        timeout,
    } = *input;
    let Some(target) = target else {
        return RollDecision::Idle;
    };
    let wanted: Vec<&PodView> = pods.iter().filter(|p| p.id < replicas).collect();
    let stale: Vec<&PodView> = wanted
        .iter()
        .copied()
        .filter(|p| p.revision.as_deref() != Some(target) || p.config_stale)
        .collect();
    if stale.is_empty() {
        return RollDecision::Idle;
    }
    // A broker that is missing, terminating or unready blocks the roll.
    let present: Vec<i32> = wanted.iter().map(|p| p.id).collect();
    let blocking = (0..replicas).find(|id| !present.contains(id)).or_else(|| {
        wanted
            .iter()
            .find(|p| p.terminating || !p.ready)
            .map(|p| p.id)
    });
    if let Some(id) = blocking {
        let restarted_by_us =
            previous.filter(|r| r.target_revision == target && r.broker == Some(id));
        if let Some(since) = restarted_by_us
            .and_then(|r| r.restarted_at.as_deref())
            .and_then(|t| t.parse::<Timestamp>().ok())
        {
            let waited = now.duration_since(since);
            if waited.as_secs() >= i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX) {
                return RollDecision::Stuck(format!(
                    "broker {id} was restarted {}s ago and is not ready; the rolling restart is stopped",
                    waited.as_secs()
                ));
            }
        }
        return RollDecision::Wait(format!("waiting for broker {id} to be ready"));
    }
    match under_replicated {
        None => {
            return RollDecision::Wait(
                "cannot reach the brokers to check for under-replicated partitions".into(),
            )
        }
        Some(n) if n > 0 => {
            return RollDecision::Wait(format!(
                "waiting for {n} under-replicated partitions to catch up"
            ))
        }
        Some(_) => {}
    }
    if let Some(pending) = quorum_pending {
        return RollDecision::Wait(format!("waiting for the quorum voters: {pending}"));
    }
    // Highest id first, the active controller last.
    let next = stale
        .iter()
        .map(|p| p.id)
        .max_by_key(|id| (Some(*id) != controller, *id))
        .expect("stale is not empty");
    RollDecision::Restart(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(600);

    fn pod(id: i32, revision: &str, ready: bool) -> PodView {
        PodView {
            id,
            revision: Some(revision.into()),
            ready,
            terminating: false,
            config_stale: false,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    /// Decides towards revision `v2` with `pods`, at time 0 unless `previous` says otherwise.
    fn roll(
        replicas: i32,
        pods: &[PodView],
        under_replicated: Option<usize>,
        controller: Option<i32>,
    ) -> RollDecision {
        decide(&RollInput {
            target: Some("v2"),
            replicas,
            pods,
            under_replicated,
            controller,
            quorum_pending: None,
            previous: None,
            now: at(0),
            timeout: TIMEOUT,
        })
    }

    #[test]
    fn idle_when_everyone_is_current() {
        let pods = [pod(0, "v2", true), pod(1, "v2", true)];
        assert_eq!(roll(2, &pods, Some(0), Some(0)), RollDecision::Idle);
        let no_revision = RollInput {
            target: None,
            replicas: 2,
            pods: &pods,
            under_replicated: None,
            controller: None,
            quorum_pending: None,
            previous: None,
            now: at(0),
            timeout: TIMEOUT,
        };
        assert_eq!(decide(&no_revision), RollDecision::Idle);
    }

    #[test]
    fn restarts_highest_non_controller_first() {
        let all_old = [pod(0, "v1", true), pod(1, "v1", true), pod(2, "v1", true)];
        assert_eq!(
            roll(3, &all_old, Some(0), Some(2)),
            RollDecision::Restart(1)
        );
        let one_done = [pod(0, "v1", true), pod(1, "v2", true), pod(2, "v1", true)];
        assert_eq!(
            roll(3, &one_done, Some(0), Some(2)),
            RollDecision::Restart(0)
        );
        let controller_left = [pod(0, "v2", true), pod(1, "v2", true), pod(2, "v1", true)];
        assert_eq!(
            roll(3, &controller_left, Some(0), Some(2)),
            RollDecision::Restart(2)
        );
    }

    #[test]
    fn waits_for_readiness_and_replication() {
        let unready = [pod(0, "v1", true), pod(1, "v2", false), pod(2, "v1", true)];
        assert_eq!(
            roll(3, &unready, Some(0), None),
            RollDecision::Wait("waiting for broker 1 to be ready".into())
        );
        let missing = [pod(0, "v1", true), pod(2, "v1", true)];
        assert!(matches!(
            roll(3, &missing, Some(0), None),
            RollDecision::Wait(_)
        ));
        let pods = [pod(0, "v1", true), pod(1, "v2", true)];
        assert_eq!(
            roll(2, &pods, Some(4), None),
            RollDecision::Wait("waiting for 4 under-replicated partitions to catch up".into())
        );
        assert!(matches!(roll(2, &pods, None, None), RollDecision::Wait(_)));
    }

    #[test]
    fn a_broker_that_does_not_come_back_stops_the_roll() {
        let previous = RollStatus {
            target_revision: "v2".into(),
            broker: Some(2),
            restarted_at: Some(at(1000).to_string()),
        };
        let pods = [pod(0, "v1", true), pod(1, "v1", true), pod(2, "v2", false)];
        let at_time = |now| RollInput {
            target: Some("v2"),
            replicas: 3,
            pods: &pods,
            under_replicated: Some(0),
            controller: None,
            quorum_pending: None,
            previous: Some(&previous),
            now: at(now),
            timeout: TIMEOUT,
        };
        assert!(matches!(decide(&at_time(1300)), RollDecision::Wait(_)));
        let stuck = decide(&at_time(1600));
        assert!(
            matches!(&stuck, RollDecision::Stuck(m) if m.contains("broker 2")),
            "{stuck:?}"
        );
    }

    #[test]
    fn a_broker_with_an_outdated_file_is_restarted_alone() {
        let mut pods = [pod(0, "v2", true), pod(1, "v2", true), pod(2, "v2", true)];
        pods[1].config_stale = true;
        assert_eq!(roll(3, &pods, Some(0), Some(0)), RollDecision::Restart(1));
        assert!(matches!(
            roll(3, &pods, Some(2), Some(0)),
            RollDecision::Wait(_)
        ));
    }

    #[test]
    fn a_voter_change_holds_the_roll_back() {
        let pods = [pod(0, "v1", true), pod(1, "v1", true), pod(2, "v1", true)];
        let input = RollInput {
            target: Some("v2"),
            replicas: 3,
            pods: &pods,
            under_replicated: Some(0),
            controller: Some(0),
            quorum_pending: Some("the quorum has 1 voters, 3 wanted: adding broker 1"),
            previous: None,
            now: at(0),
            timeout: TIMEOUT,
        };
        assert_eq!(
            decide(&input),
            RollDecision::Wait(
                "waiting for the quorum voters: the quorum has 1 voters, 3 wanted: adding broker 1"
                    .into()
            )
        );
        let settled = RollInput {
            quorum_pending: None,
            ..input
        };
        assert_eq!(decide(&settled), RollDecision::Restart(2));
    }

    #[test]
    fn pods_beyond_replicas_are_ignored() {
        let pods = [pod(0, "v2", true), pod(1, "v1", false)];
        assert_eq!(roll(1, &pods, Some(0), None), RollDecision::Idle);
    }
}
