//! The one-line summary of a KafkaCluster reconcile ([`Phase`]), decided
//! purely from what the reconcile saw and did. The order of the checks is
//! the order of urgency: what needs a human (a refused scale-in, brokers of
//! another cluster, a restart that would lose data) before what will pass
//! by itself, and Ready only when brokers, quorum and partitions all are.

use super::{
    health::PartitionHealth, identity::Doubt, roll::RollDecision, scale_in::ScaleIn, status::Phase,
    storage,
};

/// What the phase is decided from.
#[derive(Debug, Clone)]
pub struct PhaseInput<'a> {
    /// Brokers the StatefulSet should run now.
    pub replicas: i32,
    /// The StatefulSet's size before this reconcile, `None` at creation.
    pub old_replicas: Option<i32>,
    /// Brokers that pass their readiness probe.
    pub ready: i32,
    /// The roll's decision.
    pub roll: &'a RollDecision,
    /// A restart the roll chose but that would lose data; what.
    pub restart_blocked: Option<&'a str>,
    /// The scale-in's state, when one is under way.
    pub scale_in: Option<&'a ScaleIn>,
    /// Why the brokers' answers could not be acted on, if so.
    pub doubt: Option<&'a Doubt>,
    /// A quorum voter change still to make.
    pub quorum_pending: Option<&'a str>,
    /// The rebalance after a scale-out, while it runs.
    pub rebalancing: Option<&'a str>,
    /// Partition health, when the brokers could be asked.
    pub health: Option<&'a PartitionHealth>,
    /// The quorum is still being founded (the bootstrap ConfigMap exists).
    pub bootstrapping: bool,
    /// Why the volumes cannot take the spec's size, if so.
    pub storage_refused: Option<&'a str>,
    /// The volumes growing to the spec's size, while they do.
    pub storage_growing: Option<&'a str>,
}

/// The phase of one reconcile.
pub fn phase(input: &PhaseInput<'_>) -> Phase {
    let counts = format!("{}/{} brokers ready", input.ready, input.replicas);
    let all_ready = input.ready >= input.replicas;
    let degraded = |reason, message: String| Phase::Degraded { reason, message };
    let progressing = |reason, message: String| Phase::Progressing { reason, message };
    if let Some(ScaleIn::Refused(message)) = input.scale_in {
        return Phase::ScaleInRefused(message.clone());
    }
    if let Some(doubt @ Doubt::Mismatch(message)) = input.doubt {
        return degraded(doubt.reason(), message.clone());
    }
    if let Some(ScaleIn::WouldLoseData(message)) = input.scale_in {
        return degraded("RestartWouldLoseData", message.clone());
    }
    if let Some(message) = input.restart_blocked {
        return degraded("RestartWouldLoseData", message.to_string());
    }
    if let RollDecision::Stuck(message) = input.roll {
        return Phase::RollStopped(message.clone());
    }
    if let Some(message) = input.storage_refused {
        return degraded(storage::REFUSED, message.to_string());
    }
    // Every pod says it is up, yet the brokers cannot (all) be asked.
    let established = input.old_replicas.is_some() && !input.bootstrapping;
    if let Some(doubt @ Doubt::Unreachable(message)) = input.doubt {
        if all_ready && established {
            return degraded(doubt.reason(), format!("{counts}; {message}"));
        }
    }
    // Reassignments leave partitions under-replicated, which holds back
    // any roll: the drain is what is happening.
    if let Some(ScaleIn::Draining(message)) = input.scale_in {
        return progressing("Draining", format!("{counts}; {message}"));
    }
    match input.roll {
        RollDecision::Wait(why) => {
            return progressing(
                "RollingRestart",
                format!("{counts}; rolling restart: {why}"),
            )
        }
        RollDecision::Restart(_) => {
            return progressing(
                "RollingRestart",
                format!("{counts}; rolling restart in progress"),
            )
        }
        RollDecision::Idle | RollDecision::Stuck(_) => {}
    }
    if !all_ready {
        let reason = match input.old_replicas {
            None => "Creating",
            Some(old) if old != input.replicas => "Scaling",
            Some(_) if input.ready == 0 => "Creating",
            Some(_) => "BrokersStarting",
        };
        return progressing(reason, counts);
    }
    if let Some(message) = input.storage_growing {
        return progressing(storage::GROWING, format!("{counts}; {message}"));
    }
    if let Some(pending) = input.quorum_pending {
        return progressing("QuorumVoters", format!("{counts}; {pending}"));
    }
    if let Some(message) = input.rebalancing {
        return progressing("Rebalancing", format!("{counts}; {message}"));
    }
    match input.health {
        None => progressing(
            if established {
                "BrokersStarting"
            } else {
                "Creating"
            },
            format!("{counts}; waiting for the brokers to answer and the quorum to form"),
        ),
        Some(health) if !health.is_healthy() => {
            degraded(health.reason(), format!("{counts}; {}", health.summary()))
        }
        Some(health) => Phase::Ready(format!("{counts}; {}", health.summary())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(roll: &'a RollDecision, health: Option<&'a PartitionHealth>) -> PhaseInput<'a> {
        PhaseInput {
            replicas: 3,
            old_replicas: Some(3),
            ready: 3,
            roll,
            restart_blocked: None,
            scale_in: None,
            doubt: None,
            quorum_pending: None,
            rebalancing: None,
            health,
            bootstrapping: false,
            storage_refused: None,
            storage_growing: None,
        }
    }

    fn reason(phase: &Phase) -> &str {
        match phase {
            Phase::Degraded { reason, .. } | Phase::Progressing { reason, .. } => reason,
            Phase::Ready(_) => "Ready",
            Phase::ScaleInRefused(_) => "ScaleInRefused",
            Phase::RollStopped(_) => "RollStopped",
            Phase::InvalidSpec(_) => "InvalidSpec",
        }
    }

    #[test]
    fn ready_needs_brokers_quorum_and_partitions() {
        let healthy = PartitionHealth {
            total: 4,
            ..PartitionHealth::default()
        };
        let idle = RollDecision::Idle;
        assert_eq!(
            phase(&input(&idle, Some(&healthy))),
            Phase::Ready("3/3 brokers ready; 4 partitions, none offline or under min ISR".into())
        );
        let offline = PartitionHealth {
            total: 4,
            offline: vec![("orders".into(), 1)],
            ..PartitionHealth::default()
        };
        let p = phase(&input(&idle, Some(&offline)));
        assert_eq!(reason(&p), "PartitionsOffline");
        assert!(
            matches!(&p, Phase::Degraded { message, .. } if message.contains("1 of 4 partitions offline"))
        );
        let pending = PhaseInput {
            quorum_pending: Some("the quorum has 1 voters, 3 wanted: adding broker 1"),
            ..input(&idle, Some(&healthy))
        };
        assert_eq!(reason(&phase(&pending)), "QuorumVoters");
        // Brokers not asked yet: not Ready.
        assert_eq!(reason(&phase(&input(&idle, None))), "BrokersStarting");
    }

    #[test]
    fn doubts_and_data_loss_outrank_progress() {
        let wait = RollDecision::Wait("cannot reach the brokers".into());
        let mismatch = Doubt::Mismatch("broker 0 reports cluster id x".into());
        let draining = ScaleIn::Draining("draining broker 2".into());
        let p = phase(&PhaseInput {
            doubt: Some(&mismatch),
            scale_in: Some(&draining),
            ..input(&wait, None)
        });
        assert_eq!(reason(&p), "ClusterIdMismatch");

        let unreachable = Doubt::Unreachable("broker 1 cannot be asked".into());
        let p = phase(&PhaseInput {
            doubt: Some(&unreachable),
            scale_in: Some(&draining),
            ..input(&wait, None)
        });
        assert_eq!(reason(&p), "BrokersUnreachable");
        // ... but not while brokers are still starting or the quorum forms.
        let starting = PhaseInput {
            doubt: Some(&unreachable),
            ready: 2,
            ..input(&RollDecision::Idle, None)
        };
        assert_eq!(reason(&phase(&starting)), "BrokersStarting");
        let creating = PhaseInput {
            doubt: Some(&unreachable),
            bootstrapping: true,
            old_replicas: Some(3),
            ..input(&RollDecision::Idle, None)
        };
        assert_eq!(reason(&phase(&creating)), "Creating");

        let p = phase(&PhaseInput {
            restart_blocked: Some("restarting broker 0 would lose data: ..."),
            ..input(&wait, None)
        });
        assert_eq!(reason(&p), "RestartWouldLoseData");
        let loss = ScaleIn::WouldLoseData("removing broker 2 would lose data: ...".into());
        let p = phase(&PhaseInput {
            scale_in: Some(&loss),
            ..input(&RollDecision::Idle, None)
        });
        assert_eq!(reason(&p), "RestartWouldLoseData");
        // A refused scale-in says so first.
        let refused = ScaleIn::Refused("orders (3)".into());
        let p = phase(&PhaseInput {
            scale_in: Some(&refused),
            doubt: Some(&mismatch),
            ..input(&wait, None)
        });
        assert_eq!(reason(&p), "ScaleInRefused");
    }

    #[test]
    fn creation_and_scaling_are_progress() {
        let idle = RollDecision::Idle;
        let creating = PhaseInput {
            old_replicas: None,
            ready: 0,
            ..input(&idle, None)
        };
        assert_eq!(reason(&phase(&creating)), "Creating");
        let scaling = PhaseInput {
            old_replicas: Some(1),
            ready: 1,
            ..input(&idle, None)
        };
        assert_eq!(reason(&phase(&scaling)), "Scaling");
        let draining = ScaleIn::Draining("moving".into());
        let p = phase(&PhaseInput {
            scale_in: Some(&draining),
            ..input(&idle, None)
        });
        assert_eq!(reason(&p), "Draining");
    }
}
