//! The faults of the campaign, drawn from a seed.
//!
//! A [`Fault`] names its target by role where the role is what matters
//! ("the leader of partition 0", "the active controller"), resolved when it
//! is injected; otherwise by node. [`Schedule::random`] draws the kinds,
//! targets, durations and gaps up front from one seed, so a run's plan is
//! printed before it starts and is the same for the same seed.

use std::{fmt, time::Duration};

use crate::cluster_faults::Rng;

/// One fault, held for a while and then healed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The leader of a partition loses every other broker; clients still
    /// reach it (the Jepsen classic: a stale leader clients keep asking).
    IsolateLeader {
        /// The partition whose leader is cut off.
        partition: i32,
    },
    /// The active controller loses every other broker; clients reach it.
    IsolateController,
    /// A broker that is not the controller loses every other broker
    /// (clients reach it), and comes back later: its rejoin must not
    /// disturb the quorum.
    IsolateBystander,
    /// The brokers split into two sides (clients reach both).
    Split {
        /// The smaller side.
        minority: Vec<usize>,
    },
    /// Packets from one broker to another are lost; the other way works.
    OneWay {
        /// The sender whose packets are lost.
        from: usize,
        /// The receiver.
        to: usize,
    },
    /// A link between two brokers loses a share of its packets both ways.
    Lossy {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
        /// Percent of packets lost.
        percent: u8,
    },
    /// A broker is cut off from the others and reconnected over and over.
    Flap {
        /// The broker.
        node: usize,
        /// How long each cut and each reconnection lasts.
        period: Duration,
    },
    /// A broker's outgoing traffic is rate limited into a queue.
    Slow {
        /// The broker.
        node: usize,
    },
    /// Clients cannot reach a broker; the brokers can.
    ClientCut {
        /// The broker.
        node: usize,
    },
    /// SIGKILL, restarted when the fault ends.
    Kill {
        /// The broker.
        node: usize,
    },
    /// SIGSTOP, SIGCONT when the fault ends (longer than a session
    /// timeout when the fault lasts long enough).
    Pause {
        /// The broker.
        node: usize,
    },
    /// The broker's disk is full: writes, segment rolls, index growth and
    /// snapshots fail with ENOSPC until the fault ends. The broker must
    /// stay up and take writes again by itself.
    DiskFull {
        /// The broker.
        node: usize,
    },
    /// The broker's disk is slow: every fsync and write waits.
    SlowDisk {
        /// The broker.
        node: usize,
    },
    /// Writes to the workload's partition logs fail with EIO: the log
    /// directory fails and the broker stops (its only log dir); it is
    /// restarted on a healthy disk when the fault ends.
    DiskFailure {
        /// The broker.
        node: usize,
    },
}

impl Fault {
    /// The storage fault rules (the broker's fault-injection file format)
    /// of a disk fault; `None` for the other kinds.
    pub fn disk_rules(&self) -> Option<&'static str> {
        match self {
            Fault::DiskFull { .. } => {
                Some("write enospc\nroll enospc\nindex enospc\ncheckpoint enospc\n")
            }
            Fault::SlowDisk { .. } => Some("fsync delay=400\nwrite delay=30\n"),
            // `/chaos` matches the workload topics' partition directories
            // (`chaos-N`, `chaos-txn-N`), not the metadata log.
            Fault::DiskFailure { .. } => Some("write eio /chaos\n"),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::IsolateLeader { partition } => {
                write!(
                    f,
                    "isolate the leader of partition {partition} from the brokers"
                )
            }
            Fault::IsolateController => f.write_str("isolate the controller from the brokers"),
            Fault::IsolateBystander => {
                f.write_str("isolate a broker that is not the controller from the brokers")
            }
            Fault::Split { minority } => write!(f, "split brokers {minority:?} from the rest"),
            Fault::OneWay { from, to } => write!(f, "drop packets from broker {from} to {to}"),
            Fault::Lossy { a, b, percent } => {
                write!(f, "lose {percent}% of packets between brokers {a} and {b}")
            }
            Fault::Flap { node, period } => {
                write!(f, "flap broker {node}'s links every {period:?}")
            }
            Fault::Slow { node } => write!(f, "slow broker {node}'s link"),
            Fault::ClientCut { node } => write!(f, "cut clients off from broker {node}"),
            Fault::Kill { node } => write!(f, "kill -9 broker {node}"),
            Fault::Pause { node } => write!(f, "SIGSTOP broker {node}"),
            Fault::DiskFull { node } => write!(f, "fill broker {node}'s disk"),
            Fault::SlowDisk { node } => write!(f, "slow broker {node}'s disk"),
            Fault::DiskFailure { node } => write!(f, "fail broker {node}'s log writes with EIO"),
        }
    }
}

impl Fault {
    /// The kind, for the results table.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::IsolateLeader { .. } => "isolate-leader",
            Fault::IsolateController => "isolate-controller",
            Fault::IsolateBystander => "isolate-bystander",
            Fault::Split { .. } => "split",
            Fault::OneWay { .. } => "one-way",
            Fault::Lossy { .. } => "lossy",
            Fault::Flap { .. } => "flap",
            Fault::Slow { .. } => "slow",
            Fault::ClientCut { .. } => "client-cut",
            Fault::Kill { .. } => "kill-9",
            Fault::Pause { .. } => "pause",
            Fault::DiskFull { .. } => "disk-full",
            Fault::SlowDisk { .. } => "slow-disk",
            Fault::DiskFailure { .. } => "disk-eio",
        }
    }

    /// Every kind, in table order.
    pub const KINDS: [&'static str; 14] = [
        "isolate-leader",
        "isolate-controller",
        "isolate-bystander",
        "split",
        "one-way",
        "lossy",
        "flap",
        "slow",
        "client-cut",
        "kill-9",
        "pause",
        "disk-full",
        "slow-disk",
        "disk-eio",
    ];

    /// A random fault on a cluster of `brokers` brokers with `partitions`
    /// partitions in the workload topic.
    pub fn random(rng: &mut Rng, brokers: usize, partitions: i32) -> Fault {
        let node = |rng: &mut Rng| rng.below(brokers as u64) as usize;
        let other = |rng: &mut Rng, not: usize| {
            let pick = rng.below(brokers as u64 - 1) as usize;
            if pick >= not {
                pick + 1
            } else {
                pick
            }
        };
        match rng.below(11) {
            0 | 1 => Fault::IsolateLeader {
                partition: rng.below(partitions as u64) as i32,
            },
            2 => match rng.below(2) {
                0 => Fault::IsolateController,
                _ => Fault::IsolateBystander,
            },
            3 => {
                // A minority of one or, with five brokers, sometimes two.
                let size = 1 + rng.below((brokers as u64 - 1) / 2) as usize;
                let mut minority: Vec<usize> = Vec::new();
                while minority.len() < size {
                    let n = node(rng);
                    if !minority.contains(&n) {
                        minority.push(n);
                    }
                }
                minority.sort_unstable();
                Fault::Split { minority }
            }
            4 => {
                let from = node(rng);
                Fault::OneWay {
                    from,
                    to: other(rng, from),
                }
            }
            5 => {
                let a = node(rng);
                Fault::Lossy {
                    a,
                    b: other(rng, a),
                    percent: 20 + rng.below(40) as u8,
                }
            }
            6 => Fault::Flap {
                node: node(rng),
                period: rng.duration(Duration::from_millis(300), Duration::from_secs(2)),
            },
            7 => match rng.below(2) {
                0 => Fault::Slow { node: node(rng) },
                _ => Fault::ClientCut { node: node(rng) },
            },
            8 => Fault::Kill { node: node(rng) },
            9 => Fault::Pause { node: node(rng) },
            _ => match rng.below(3) {
                0 => Fault::DiskFull { node: node(rng) },
                1 => Fault::SlowDisk { node: node(rng) },
                _ => Fault::DiskFailure { node: node(rng) },
            },
        }
    }
}

/// A quiet gap, then a fault held for `hold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Undisturbed time before the fault.
    pub gap: Duration,
    /// The fault.
    pub fault: Fault,
    /// How long the fault lasts.
    pub hold: Duration,
}

/// A run's faults, drawn up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Steps until their gaps and holds fill `duration`.
    pub fn random(rng: &mut Rng, brokers: usize, partitions: i32, duration: Duration) -> Schedule {
        let mut steps = Vec::new();
        let mut planned = Duration::ZERO;
        while planned < duration {
            let gap = rng.duration(Duration::from_secs(1), Duration::from_secs(4));
            let hold = rng.duration(Duration::from_secs(2), Duration::from_secs(12));
            planned += gap + hold;
            steps.push(Step {
                gap,
                fault: Fault::random(rng, brokers, partitions),
                hold,
            });
        }
        Schedule { steps }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, s) in self.steps.iter().enumerate() {
            writeln!(
                f,
                "  {}. after {:?}: {} for {:?}",
                n + 1,
                s.gap,
                s.fault,
                s.hold
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_schedule_and_targets_exist() {
        let plan = |seed| Schedule::random(&mut Rng::new(seed), 5, 6, Duration::from_secs(60));
        assert_eq!(plan(3), plan(3));
        assert_ne!(plan(3), plan(4));
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..200 {
            for step in plan(seed).steps {
                kinds.insert(step.fault.kind());
                match step.fault {
                    Fault::OneWay { from: a, to: b } | Fault::Lossy { a, b, .. } => {
                        assert!(a != b && a < 5 && b < 5, "{}", step.fault)
                    }
                    Fault::Split { minority } => {
                        assert!(!minority.is_empty() && minority.len() <= 2)
                    }
                    Fault::IsolateLeader { partition } => assert!((0..6).contains(&partition)),
                    _ => {}
                }
            }
        }
        assert_eq!(
            kinds.len(),
            Fault::KINDS.len(),
            "every kind is drawn: {kinds:?}"
        );
    }
}
