//! Partition health, decided purely from a verified snapshot: a cluster
//! whose brokers are all ready is not Ready while some partition is
//! offline (no leader: nobody can read or write it) or under its
//! `min.insync.replicas` (producers with `acks=all` are refused).

use super::kafka::ClusterSnapshot;

/// Partitions named in a message before the rest are counted.
const NAMED: usize = 5;

/// How the partitions of a cluster are doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionHealth {
    /// Partitions in the cluster.
    pub total: usize,
    /// Partitions without a leader.
    pub offline: Vec<(String, i32)>,
    /// Partitions with a leader but fewer in-sync replicas than the
    /// topic's `min.insync.replicas`.
    pub under_min_isr: Vec<(String, i32)>,
}

/// The min ISR a partition of `topic` with `replication_factor` replicas
/// needs: the topic's `min.insync.replicas` when it could be read, else
/// min(2, replication factor), the common production setting.
pub fn min_isr(snapshot: &ClusterSnapshot, topic: &str, replication_factor: usize) -> usize {
    snapshot
        .min_insync
        .get(topic)
        .and_then(|n| usize::try_from(*n).ok())
        .unwrap_or_else(|| replication_factor.min(2))
}

/// The health of every partition in `snapshot`.
pub fn assess(snapshot: &ClusterSnapshot) -> PartitionHealth {
    let mut health = PartitionHealth {
        total: snapshot.partitions.len(),
        ..PartitionHealth::default()
    };
    for ((topic, partition), state) in &snapshot.partitions {
        let key = (topic.clone(), *partition);
        if state.leader < 0 {
            health.offline.push(key);
        } else if state.isr.len() < min_isr(snapshot, topic, state.replicas.len()) {
            health.under_min_isr.push(key);
        }
    }
    health
}

fn named(list: &[(String, i32)]) -> String {
    let mut names: Vec<String> = list
        .iter()
        .take(NAMED)
        .map(|(t, p)| format!("{t}-{p}"))
        .collect();
    if list.len() > NAMED {
        names.push(format!("and {} more", list.len() - NAMED));
    }
    names.join(", ")
}

impl PartitionHealth {
    /// Whether every partition has a leader and its min ISR.
    pub fn is_healthy(&self) -> bool {
        self.offline.is_empty() && self.under_min_isr.is_empty()
    }

    /// The Degraded reason: `PartitionsOffline` before `UnderMinIsr`.
    pub fn reason(&self) -> &'static str {
        if self.offline.is_empty() {
            "UnderMinIsr"
        } else {
            "PartitionsOffline"
        }
    }

    /// How many partitions are in which state, for the condition message.
    pub fn summary(&self) -> String {
        if self.is_healthy() {
            return format!("{} partitions, none offline or under min ISR", self.total);
        }
        let mut parts = Vec::new();
        if !self.offline.is_empty() {
            parts.push(format!(
                "{} of {} partitions offline, without a leader ({})",
                self.offline.len(),
                self.total,
                named(&self.offline)
            ));
        }
        if !self.under_min_isr.is_empty() {
            parts.push(format!(
                "{} of {} partitions under min ISR ({})",
                self.under_min_isr.len(),
                self.total,
                named(&self.under_min_isr)
            ));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::kafka::PartitionState;

    fn snapshot(partitions: &[(&str, i32, i32, usize, usize)]) -> ClusterSnapshot {
        ClusterSnapshot {
            partitions: partitions
                .iter()
                .map(|(t, p, leader, rf, isr)| {
                    let replicas: Vec<i32> = (0..i32::try_from(*rf).unwrap()).collect();
                    let state = PartitionState {
                        leader: *leader,
                        isr: replicas[..*isr].to_vec(),
                        replicas,
                    };
                    ((t.to_string(), *p), state)
                })
                .collect(),
            ..ClusterSnapshot::default()
        }
    }

    #[test]
    fn healthy_partitions_are_counted() {
        let h = assess(&snapshot(&[
            ("a", 0, 0, 3, 3),
            ("a", 1, 1, 3, 2),
            ("b", 0, 0, 1, 1),
        ]));
        assert!(h.is_healthy(), "{h:?}");
        assert_eq!(h.summary(), "3 partitions, none offline or under min ISR");
        assert_eq!(assess(&ClusterSnapshot::default()).total, 0);
    }

    #[test]
    fn offline_and_under_min_isr_are_named() {
        // a-0: no leader; a-1: 1 of RF 3 in sync (fallback min ISR 2);
        // b-0: RF 2, 1 in sync, but the topic asks 1.
        let mut s = snapshot(&[("a", 0, -1, 3, 0), ("a", 1, 1, 3, 1), ("b", 0, 0, 2, 1)]);
        s.min_insync.insert("b".into(), 1);
        let h = assess(&s);
        assert_eq!(h.offline, [("a".to_string(), 0)]);
        assert_eq!(h.under_min_isr, [("a".to_string(), 1)]);
        assert_eq!(h.reason(), "PartitionsOffline");
        assert_eq!(
            h.summary(),
            "1 of 3 partitions offline, without a leader (a-0); 1 of 3 partitions under min ISR (a-1)"
        );
        // The topic's own setting wins over the fallback, both ways.
        s.min_insync.insert("b".into(), 2);
        assert_eq!(assess(&s).under_min_isr.len(), 2);
        s.min_insync.insert("a".into(), 1);
        let h = assess(&s);
        assert_eq!(h.under_min_isr, [("b".to_string(), 0)]);
        assert_eq!(min_isr(&s, "c", 5), 2);
        assert_eq!(min_isr(&s, "c", 1), 1);
    }

    #[test]
    fn under_min_isr_alone_has_its_own_reason_and_long_lists_are_counted() {
        let partitions: Vec<(&str, i32, i32, usize, usize)> =
            (0..7).map(|p| ("t", p, 0, 3, 1)).collect();
        let h = assess(&snapshot(&partitions));
        assert_eq!(h.reason(), "UnderMinIsr");
        assert!(
            h.summary()
                .ends_with("(t-0, t-1, t-2, t-3, t-4, and 2 more)"),
            "{}",
            h.summary()
        );
    }
}
