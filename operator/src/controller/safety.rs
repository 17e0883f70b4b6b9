//! Whether taking brokers away loses the only copy of anything, decided
//! purely from a verified view of the cluster.
//!
//! Asked before the roll restarts a broker and before a scale-in shrinks
//! the StatefulSet. What a broker takes with it depends on its disk: a
//! scale-in removes the brokers for good, and with `Ephemeral` storage
//! every restart starts on an empty disk, so their data is gone; a
//! restart on a persistent volume keeps it. Where data goes:
//!
//! - a partition loses data when none of its in-sync replicas survives
//!   (an out-of-sync replica may lack committed records);
//! - the controller quorum loses its metadata log when the voters that
//!   survive with a caught-up log are not a majority of the voter set: a
//!   voter on an empty disk has nothing to vote with, and if it rejoined
//!   with the others gone it could found a history of its own.

use std::collections::BTreeSet;

use rivulet_wire::client::QuorumDescription;

use super::{kafka::ClusterSnapshot, quorum::caught_up};

/// Partitions named in a message before the rest are counted.
const NAMED: usize = 10;

/// What taking brokers away would lose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// Partitions without another in-sync replica, by `(topic, partition)`.
    pub partitions: Vec<(String, i32)>,
    /// Why the quorum would lose its log, if it would.
    pub quorum: Option<String>,
}

impl Loss {
    /// `what would lose data: ...`, the status message.
    pub fn describe(&self, what: &str) -> String {
        let mut parts = Vec::new();
        if !self.partitions.is_empty() {
            let mut names: Vec<String> = self
                .partitions
                .iter()
                .take(NAMED)
                .map(|(t, p)| format!("{t}-{p}"))
                .collect();
            if self.partitions.len() > NAMED {
                names.push(format!("and {} more", self.partitions.len() - NAMED));
            }
            parts.push(format!(
                "{} partitions have no other in-sync replica ({})",
                self.partitions.len(),
                names.join(", ")
            ));
        }
        parts.extend(self.quorum.clone());
        format!("{what} would lose data: {}", parts.join("; "))
    }
}

/// Checks that losing the data of brokers `lost` (their disks, unless
/// `disk_survives`) leaves every partition an in-sync replica and the
/// quorum a caught-up majority.
pub fn check(
    lost: &[i32],
    disk_survives: bool,
    snapshot: &ClusterSnapshot,
    quorum: &QuorumDescription,
) -> Result<(), Loss> {
    if disk_survives {
        // A restart on a persistent volume: the broker comes back with
        // its replicas and its log; it is unavailable, nothing is lost.
        return Ok(());
    }
    let lost: BTreeSet<i32> = lost.iter().copied().collect();
    let partitions: Vec<(String, i32)> = snapshot
        .partitions
        .iter()
        .filter(|(_, p)| p.replicas.iter().any(|id| lost.contains(id)))
        .filter(|(_, p)| p.isr.iter().all(|id| lost.contains(id)))
        .map(|(key, _)| key.clone())
        .collect();
    let quorum_loss = if quorum.voters.iter().any(|v| lost.contains(&v.node_id)) {
        let total = quorum.voters.len();
        let kept = quorum
            .voters
            .iter()
            .filter(|v| !lost.contains(&v.node_id) && caught_up(v, quorum.high_watermark))
            .count();
        let majority = total / 2 + 1;
        (kept < majority).then(|| {
            format!(
                "the controller quorum would keep {kept} of its {total} voters with their metadata log, and needs {majority}"
            )
        })
    } else {
        None
    };
    if partitions.is_empty() && quorum_loss.is_none() {
        Ok(())
    } else {
        Err(Loss {
            partitions,
            quorum: quorum_loss,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rivulet_wire::client::QuorumReplica;

    use super::*;
    use crate::controller::kafka::PartitionState;

    fn snapshot(partitions: &[(&str, i32, &[i32], &[i32])]) -> ClusterSnapshot {
        ClusterSnapshot {
            cluster_id: Some("id".into()),
            controller: Some(0),
            brokers: vec![0, 1, 2],
            partitions: partitions
                .iter()
                .map(|(t, p, replicas, isr)| {
                    let state = PartitionState {
                        leader: isr.first().copied().unwrap_or(-1),
                        replicas: replicas.to_vec(),
                        isr: isr.to_vec(),
                    };
                    ((t.to_string(), *p), state)
                })
                .collect(),
            min_insync: BTreeMap::new(),
        }
    }

    fn quorum(voters: &[(i32, i64)]) -> QuorumDescription {
        QuorumDescription {
            leader_id: voters[0].0,
            leader_epoch: 1,
            high_watermark: 1000,
            voters: voters
                .iter()
                .map(|(id, leo)| QuorumReplica {
                    node_id: *id,
                    directory_id: uuid::Uuid::nil(),
                    log_end_offset: *leo,
                    last_fetch_timestamp: -1,
                    last_caught_up_timestamp: -1,
                })
                .collect(),
            observers: vec![],
            nodes: vec![],
        }
    }

    #[test]
    fn the_bug_one_voter_and_partitions_only_on_the_restarted_broker() {
        // 1 broker scaled to 3, RF raised to 3 but the new replicas not in
        // sync yet, and the quorum still the single voter it formed with.
        let s = snapshot(&[("orders", 0, &[0, 1, 2], &[0]), ("orders", 1, &[0], &[0])]);
        let q = quorum(&[(0, 1000)]);
        let loss = check(&[0], false, &s, &q).unwrap_err();
        assert_eq!(
            loss.partitions,
            [("orders".to_string(), 0), ("orders".to_string(), 1)]
        );
        let message = loss.describe("restarting broker 0");
        assert_eq!(
            message,
            "restarting broker 0 would lose data: 2 partitions have no other in-sync replica (orders-0, orders-1); \
             the controller quorum would keep 0 of its 1 voters with their metadata log, and needs 1"
        );
        // On a persistent volume the same restart loses nothing.
        assert_eq!(check(&[0], true, &s, &q), Ok(()));
    }

    #[test]
    fn another_in_sync_replica_and_a_caught_up_majority_make_it_safe() {
        let s = snapshot(&[
            ("orders", 0, &[0, 1, 2], &[0, 1, 2]),
            ("audit", 0, &[1], &[1]),
        ]);
        let q = quorum(&[(0, 1000), (1, 1000), (2, 990)]);
        assert_eq!(check(&[0], false, &s, &q), Ok(()));
        // Broker 2 holds nothing of audit-0: only partitions with a
        // replica on the lost broker count.
        assert_eq!(check(&[2], false, &s, &q), Ok(()));
    }

    #[test]
    fn a_lagging_voter_does_not_count_towards_the_majority() {
        let s = snapshot(&[]);
        let q = quorum(&[(0, 1000), (1, 1000), (2, 10)]);
        let loss = check(&[1], false, &s, &q).unwrap_err();
        assert!(loss.partitions.is_empty());
        assert_eq!(
            loss.quorum.as_deref(),
            Some("the controller quorum would keep 1 of its 3 voters with their metadata log, and needs 2")
        );
        // Two voters (a quorum being grown): either one is needed.
        assert!(check(&[1], false, &s, &quorum(&[(0, 1000), (1, 1000)])).is_err());
        // Not a voter: the quorum does not care.
        assert_eq!(check(&[3], false, &s, &q), Ok(()));
    }

    #[test]
    fn an_out_of_sync_survivor_is_no_copy() {
        // Broker 1 is a replica but not in sync: losing 0 loses data.
        let s = snapshot(&[("orders", 0, &[0, 1], &[0])]);
        let q = quorum(&[(1, 1000), (2, 1000), (0, 1000)]);
        assert!(check(&[0], false, &s, &q).is_err());
        // Two brokers at once (a scale-in): every in-sync replica among them.
        let s = snapshot(&[("orders", 0, &[0, 1, 2], &[1, 2])]);
        assert_eq!(
            check(&[1, 2], false, &s, &q).unwrap_err().partitions,
            [("orders".to_string(), 0)]
        );
    }

    #[test]
    fn long_lists_are_counted_not_spelled_out() {
        let partitions: Vec<(String, i32)> = (0..12).map(|p| ("t".to_string(), p)).collect();
        let loss = Loss {
            partitions,
            quorum: None,
        };
        let message = loss.describe("restarting broker 2");
        assert!(message.contains("12 partitions"), "{message}");
        assert!(message.contains("t-9, and 2 more)"), "{message}");
    }
}
