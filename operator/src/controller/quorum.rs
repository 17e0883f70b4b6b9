//! Controller quorum voters that follow the cluster: 1 voter below 3
//! brokers, 3 from 3, 5 from 5 when `spec.quorumVoters` asks for 5
//! ([`desired_voters`](crate::validate::desired_voters)).
//!
//! Each reconcile with a verified view of the cluster plans at most one
//! voter change ([`plan`], pure) and makes it (AddRaftVoter or
//! RemoveRaftVoter, carrying the cluster id). Growing adds the lowest-id
//! broker that stays, follows the metadata log (an observer) and is caught
//! up; a scale-in first adds replacements among the brokers that stay,
//! then removes the voters of leaving brokers, so the StatefulSet never
//! shrinks under a voter; voters beyond the count wanted go last, never
//! the leader while another can go. One change at a time keeps every
//! intermediate voter set one step from the previous, as Raft's
//! single-server membership changes require. A voter whose disk was lost
//! rejoins by itself with a new directory id; that is the brokers' doing,
//! not the operator's.

use kube::runtime::events::EventType;
use rivulet_wire::client::{QuorumDescription, QuorumReplica};
use uuid::Uuid;

use super::{identity::View, Context};
use crate::{
    crd::{KafkaCluster, QuorumStatus, QuorumVoterStatus},
    validate::ValidatedCluster,
};

/// How far behind the high watermark a replica of the metadata log may be
/// and still count as caught up: it is fetching, and a voter made of it
/// would not hold back commits.
pub const CAUGHT_UP_LAG: i64 = 100;

/// Whether `replica` has (nearly) everything the quorum committed.
pub fn caught_up(replica: &QuorumReplica, high_watermark: i64) -> bool {
    replica.log_end_offset >= 0 && replica.log_end_offset >= high_watermark - CAUGHT_UP_LAG
}

/// One voter change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoterChange {
    /// Make this observer a voter.
    Add {
        /// Node id.
        id: i32,
        /// Its metadata directory.
        directory: Uuid,
    },
    /// Remove this voter.
    Remove {
        /// Node id.
        id: i32,
        /// Its metadata directory.
        directory: Uuid,
    },
}

/// What the voter set needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumPlan {
    /// The voters are the ones wanted.
    Steady,
    /// Make this change now; why, for people.
    Change(VoterChange, String),
    /// A change is needed but cannot be made yet; why.
    Wait(String),
}

fn ids(replicas: &[&QuorumReplica]) -> String {
    replicas
        .iter()
        .map(|r| r.node_id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The next voter change for a quorum that should have `desired` voters,
/// all among brokers `0..keep` (the brokers that stay).
pub fn plan(quorum: &QuorumDescription, desired: usize, keep: i32) -> QuorumPlan {
    if quorum.leader_id < 0 {
        return QuorumPlan::Wait("the controller quorum has no leader".into());
    }
    let voters = &quorum.voters;
    let staying: Vec<&QuorumReplica> = voters.iter().filter(|v| v.node_id < keep).collect();
    let leaving: Vec<&QuorumReplica> = voters.iter().filter(|v| v.node_id >= keep).collect();
    let have = format!("the quorum has {} voters, {desired} wanted", voters.len());
    if staying.len() < desired {
        // Observers sharing a voter's id are that voter after a disk loss,
        // rejoining: the brokers replace it themselves.
        let eligible: Vec<&QuorumReplica> = quorum
            .observers
            .iter()
            .filter(|o| o.node_id >= 0 && o.node_id < keep)
            .filter(|o| !voters.iter().any(|v| v.node_id == o.node_id))
            .collect();
        let ready = eligible
            .iter()
            .filter(|o| caught_up(o, quorum.high_watermark))
            .min_by_key(|o| o.node_id);
        return match ready {
            Some(o) => QuorumPlan::Change(
                VoterChange::Add {
                    id: o.node_id,
                    directory: o.directory_id,
                },
                format!("{have}: adding broker {}", o.node_id),
            ),
            None if eligible.is_empty() => QuorumPlan::Wait(format!(
                "{have}: waiting for a broker below {keep} to follow the metadata log"
            )),
            None => QuorumPlan::Wait(format!(
                "{have}: waiting for brokers {} to catch up with the metadata log",
                ids(&eligible)
            )),
        };
    }
    // The leader last: removing it forces an election.
    if let Some(v) = leaving
        .iter()
        .max_by_key(|v| (v.node_id != quorum.leader_id, v.node_id))
    {
        return QuorumPlan::Change(
            VoterChange::Remove {
                id: v.node_id,
                directory: v.directory_id,
            },
            format!("{have}: moving the voter off leaving broker {}", v.node_id),
        );
    }
    if voters.len() > desired {
        let extra = voters
            .iter()
            .max_by_key(|v| (v.node_id != quorum.leader_id, v.node_id))
            .expect("more voters than wanted, so at least one");
        return QuorumPlan::Change(
            VoterChange::Remove {
                id: extra.node_id,
                directory: extra.directory_id,
            },
            format!("{have}: removing broker {}", extra.node_id),
        );
    }
    QuorumPlan::Steady
}

/// `status.quorum` for `quorum`.
pub fn status_of(quorum: &QuorumDescription) -> QuorumStatus {
    QuorumStatus {
        leader_id: (quorum.leader_id >= 0).then_some(quorum.leader_id),
        voters: quorum
            .voters
            .iter()
            .map(|v| QuorumVoterStatus {
                id: v.node_id,
                directory_id: v.directory_id.to_string(),
            })
            .collect(),
        observers: quorum.observers.iter().map(|o| o.node_id).collect(),
    }
}

/// Plans and makes the next voter change of `cluster`, whose brokers
/// `0..keep` stay. Returns what is pending (`None`: the voters are the
/// ones wanted), which holds back rolling restarts.
pub async fn step(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    view: &View,
    keep: i32,
    cluster_id: &str,
) -> Option<String> {
    let desired = usize::try_from(cluster.voters).unwrap_or(1);
    let (change, why) = match plan(&view.quorum, desired, keep) {
        QuorumPlan::Steady => return None,
        QuorumPlan::Wait(why) => return Some(why),
        QuorumPlan::Change(change, why) => (change, why),
    };
    let target = ctx.target(cluster);
    let count = view.quorum.voters.len();
    let (result, reason, note) = match change {
        VoterChange::Add { id, directory } => (
            ctx.kafka
                .add_voter(&target, cluster_id, id, directory)
                .await,
            "VoterAdded",
            format!(
                "Added broker {id} (directory {directory}) to the controller quorum: {count} -> {} voters",
                count + 1
            ),
        ),
        VoterChange::Remove { id, directory } => (
            ctx.kafka
                .remove_voter(&target, cluster_id, id, directory)
                .await,
            "VoterRemoved",
            format!(
                "Removed broker {id} (directory {directory}) from the controller quorum: {count} -> {} voters",
                count - 1
            ),
        ),
    };
    match result {
        Ok(()) => {
            ctx.event(object, EventType::Normal, reason, note).await;
            Some(why)
        }
        Err(error) => {
            // Not caught up after all, or the leader moved: next time.
            tracing::info!(cluster = %cluster.name, %error, "changing the quorum voters failed");
            Some(format!("{why} (failed: {error})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: i32, dir: u8, leo: i64) -> QuorumReplica {
        QuorumReplica {
            node_id: id,
            directory_id: Uuid::from_bytes([dir; 16]),
            log_end_offset: leo,
            last_fetch_timestamp: -1,
            last_caught_up_timestamp: -1,
        }
    }

    /// A quorum led by `leader` at high watermark 1000; every replica at
    /// 1000 unless listed in `lagging`.
    fn quorum(
        leader: i32,
        voters: &[i32],
        observers: &[i32],
        lagging: &[i32],
    ) -> QuorumDescription {
        let r = |id: &i32| {
            let leo = if lagging.contains(id) { 10 } else { 1000 };
            replica(*id, u8::try_from(*id).unwrap(), leo)
        };
        QuorumDescription {
            leader_id: leader,
            leader_epoch: 3,
            high_watermark: 1000,
            voters: voters.iter().map(r).collect(),
            observers: observers.iter().map(r).collect(),
            nodes: vec![],
        }
    }

    fn add(id: i32) -> VoterChange {
        VoterChange::Add {
            id,
            directory: Uuid::from_bytes([u8::try_from(id).unwrap(); 16]),
        }
    }

    fn remove(id: i32) -> VoterChange {
        VoterChange::Remove {
            id,
            directory: Uuid::from_bytes([u8::try_from(id).unwrap(); 16]),
        }
    }

    fn change(p: QuorumPlan) -> VoterChange {
        match p {
            QuorumPlan::Change(c, _) => c,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn a_grown_cluster_adds_the_lowest_caught_up_broker_one_at_a_time() {
        // Created with one broker, scaled to three.
        let q = quorum(0, &[0], &[1, 2], &[]);
        assert_eq!(change(plan(&q, 3, 3)), add(1));
        let q = quorum(0, &[0, 1], &[2], &[]);
        assert_eq!(change(plan(&q, 3, 3)), add(2));
        assert_eq!(
            plan(&quorum(0, &[0, 1, 2], &[], &[]), 3, 3),
            QuorumPlan::Steady
        );
        // A lagging broker is skipped for a caught-up one, and if none is
        // caught up the plan waits and says for whom.
        assert_eq!(change(plan(&quorum(0, &[0], &[1, 2], &[1]), 3, 3)), add(2));
        let QuorumPlan::Wait(why) = plan(&quorum(0, &[0], &[1, 2], &[1, 2]), 3, 3) else {
            panic!()
        };
        assert!(why.contains("brokers 1, 2 to catch up"), "{why}");
        // Brokers that have not joined yet: wait too.
        assert!(matches!(
            plan(&quorum(0, &[0], &[], &[]), 3, 3),
            QuorumPlan::Wait(_)
        ));
        // Five wanted, five brokers.
        let q = quorum(0, &[0, 1, 2], &[3, 4], &[]);
        assert_eq!(change(plan(&q, 5, 5)), add(3));
    }

    #[test]
    fn observers_that_leave_or_share_a_voters_id_are_not_added() {
        // Broker 3 is leaving (keep 3): it must not become a voter.
        let q = quorum(0, &[0], &[3], &[]);
        assert!(matches!(plan(&q, 3, 3), QuorumPlan::Wait(_)));
        // Broker 1 lost its disk and rejoined with a new directory while
        // its old identity is still a voter: the brokers sort that out.
        let mut q = quorum(0, &[0, 1], &[2], &[]);
        q.observers.push(replica(1, 99, 1000));
        assert_eq!(change(plan(&q, 3, 3)), add(2));
    }

    #[test]
    fn a_scale_in_moves_voters_off_the_leaving_brokers_first() {
        // 4 -> 3 brokers with voters 0, 1, 3: add 2 first, then remove 3.
        let q = quorum(0, &[0, 1, 3], &[2], &[]);
        assert_eq!(change(plan(&q, 3, 3)), add(2));
        let q = quorum(0, &[0, 1, 2, 3], &[], &[]);
        assert_eq!(change(plan(&q, 3, 3)), remove(3));
        // 5 -> 3 with five voters: the highest leaving ones go.
        let q = quorum(1, &[0, 1, 2, 3, 4], &[], &[]);
        assert_eq!(change(plan(&q, 3, 3)), remove(4));
        // 3 -> 1: one voter wanted; the leaving ones go, the leader last,
        // but it goes too.
        let q = quorum(2, &[0, 1, 2], &[], &[]);
        let QuorumPlan::Change(c, why) = plan(&q, 1, 1) else {
            panic!()
        };
        assert_eq!(c, remove(1));
        assert!(why.contains("leaving broker 1"), "{why}");
        let q = quorum(2, &[0, 2], &[1], &[]);
        assert_eq!(change(plan(&q, 1, 1)), remove(2));
    }

    #[test]
    fn extra_voters_go_highest_first_but_not_the_leader() {
        let q = quorum(2, &[0, 1, 2], &[], &[]);
        assert_eq!(change(plan(&q, 1, 3)), remove(1));
        let q = quorum(0, &[0, 1, 2, 3, 4], &[], &[]);
        assert_eq!(change(plan(&q, 3, 5)), remove(4));
    }

    #[test]
    fn no_leader_no_change() {
        assert!(matches!(
            plan(&quorum(-1, &[0], &[1, 2], &[]), 3, 3),
            QuorumPlan::Wait(_)
        ));
    }

    #[test]
    fn status_lists_voters_and_observers() {
        let s = status_of(&quorum(1, &[0, 1], &[2], &[]));
        assert_eq!(s.leader_id, Some(1));
        assert_eq!(s.voters.iter().map(|v| v.id).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(
            s.voters[1].directory_id,
            Uuid::from_bytes([1; 16]).to_string()
        );
        assert_eq!(s.observers, [2]);
        assert_eq!(status_of(&quorum(-1, &[0], &[], &[])).leader_id, None);
    }
}
