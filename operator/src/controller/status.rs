//! Pure status computation: what the conditions say, given what the
//! reconcile saw. Transition times only move when a condition's status
//! does, so a steady cluster's status never changes and never wakes the
//! controller again.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// Condition types of a KafkaCluster.
pub const READY: &str = "Ready";
/// The operator is changing something.
pub const PROGRESSING: &str = "Progressing";
/// Something needs a human.
pub const DEGRADED: &str = "Degraded";

/// The operator's summary of one reconcile, from which conditions follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The spec can never work; the message says why.
    InvalidSpec(String),
    /// A restarted broker did not come back; the roll is stopped.
    RollStopped(String),
    /// A scale-in would lose replicas; the StatefulSet keeps its size.
    ScaleInRefused(String),
    /// Something needs attention and holds back every step that could
    /// lose data: a restart or shrink that would lose data, brokers of
    /// another cluster or out of reach, partitions offline or under min ISR.
    Degraded {
        /// `RestartWouldLoseData`, `ClusterIdMismatch`, `BrokersUnreachable`,
        /// `PartitionsOffline` or `UnderMinIsr`.
        reason: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// Brokers are being created, scaled, drained or restarted.
    Progressing {
        /// `Creating`, `Scaling`, `BrokersStarting`, `Draining`,
        /// `RollingRestart`, `QuorumVoters` or `Rebalancing`.
        reason: &'static str,
        /// What is happening, for people.
        message: String,
    },
    /// Every broker ready, nothing pending.
    Ready(String),
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// The Ready, Progressing and Degraded conditions for `phase`, merged with
/// the `previous` ones: a condition whose status did not change keeps its
/// transition time.
pub fn conditions(
    phase: &Phase,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    let fresh = match phase {
        Phase::InvalidSpec(message) => vec![
            condition(READY, false, "InvalidSpec", message),
            condition(PROGRESSING, false, "InvalidSpec", message),
            condition(DEGRADED, true, "InvalidSpec", message),
        ],
        Phase::RollStopped(message) => vec![
            condition(READY, false, "BrokerNotReady", message),
            condition(PROGRESSING, false, "RollStopped", message),
            condition(DEGRADED, true, "BrokerNotReady", message),
        ],
        Phase::ScaleInRefused(message) => vec![
            condition(READY, false, "ScaleInRefused", message),
            condition(PROGRESSING, false, "ScaleInRefused", message),
            condition(DEGRADED, true, "ScaleInRefused", message),
        ],
        Phase::Degraded { reason, message } => vec![
            condition(READY, false, reason, message),
            condition(PROGRESSING, false, reason, message),
            condition(DEGRADED, true, reason, message),
        ],
        Phase::Progressing { reason, message } => vec![
            condition(READY, false, reason, message),
            condition(PROGRESSING, true, reason, message),
            condition(DEGRADED, false, "AsExpected", ""),
        ],
        Phase::Ready(message) => vec![
            condition(READY, true, "AllBrokersReady", message),
            condition(PROGRESSING, false, "Idle", ""),
            condition(DEGRADED, false, "AsExpected", ""),
        ],
    };
    stamp(fresh, generation, previous, now)
}

/// Sets generation and transition times on `fresh` conditions.
pub fn stamp(
    fresh: Vec<Condition>,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    fresh
        .into_iter()
        .map(|mut c| {
            c.observed_generation = generation;
            c.last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status)
                .map_or(Time(now), |p| p.last_transition_time.clone());
            c
        })
        .collect()
}

/// Whether conditions say Ready.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transitions_keep_their_time() {
        let progressing = Phase::Progressing {
            reason: "Creating",
            message: "0/3 brokers ready".into(),
        };
        let first = conditions(&progressing, Some(1), &[], at(100));
        assert!(first
            .iter()
            .all(|c| c.last_transition_time == Time(at(100))));
        assert!(first.iter().all(|c| c.observed_generation == Some(1)));
        assert!(is_true(&first, PROGRESSING));

        let ready = conditions(
            &Phase::Ready("3/3 brokers ready".into()),
            Some(1),
            &first,
            at(200),
        );
        let by_type =
            |cs: &[Condition], t: &str| cs.iter().find(|c| c.type_ == t).cloned().unwrap();
        assert_eq!(by_type(&ready, READY).last_transition_time, Time(at(200)));
        assert_eq!(
            by_type(&ready, DEGRADED).last_transition_time,
            Time(at(100)),
            "still False"
        );

        let again = conditions(
            &Phase::Ready("3/3 brokers ready".into()),
            Some(1),
            &ready,
            at(300),
        );
        assert_eq!(again, ready, "a steady cluster's status does not change");
    }

    #[test]
    fn invalid_stopped_and_refused_are_degraded() {
        for phase in [
            Phase::InvalidSpec("replicas must be at least 1".into()),
            Phase::RollStopped("broker 2 did not become ready".into()),
            Phase::ScaleInRefused("topic orders has 3 replicas".into()),
            Phase::Degraded {
                reason: "ClusterIdMismatch",
                message: "broker 0 reports cluster id b3RoZXItY2x1c3Rlci0xMg".into(),
            },
        ] {
            let cs = conditions(&phase, Some(4), &[], at(1));
            assert!(is_true(&cs, DEGRADED));
            assert!(!is_true(&cs, READY));
            assert!(!is_true(&cs, PROGRESSING));
        }
    }
}
