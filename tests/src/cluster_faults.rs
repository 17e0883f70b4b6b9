//! Random faults for [`DevCluster`] tests that can be replayed.
//!
//! A run draws everything random (which broker, which fault, how long it
//! lasts, the pause before the next one) from one seed: [`fault_seed`] takes
//! it from `RIVULET_FAULT_SEED` or makes a fresh one, and the test prints it,
//! so a failure found with a random seed is repeated by setting the variable.
//! The generator is SplitMix64: a few lines, and its sequence for a seed never
//! changes with a dependency's version.
//!
//! A [`Fault`] takes one broker away and brings it back before it returns, so
//! faults applied one after another never have two brokers down at once.

use std::{
    fmt, thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use kafka_protocol::messages::BrokerId;

use crate::{cluster::DevCluster, kafka::KafkaConn};

/// The environment variable that fixes the seed of a randomized test.
pub const SEED_ENV: &str = "RIVULET_FAULT_SEED";

/// The seed from [`SEED_ENV`] (decimal, or hex with `0x`), else one made
/// from the clock and the process id. Panics on a value that is not a number,
/// rather than silently running a different schedule.
pub fn fault_seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => parse_seed(&text)
            .unwrap_or_else(|| panic!("{SEED_ENV}={text:?} is not a decimal or 0x-hex u64")),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            // One scrambling step, so runs started close together differ a lot.
            Rng::new(nanos ^ u64::from(std::process::id()).rotate_left(32)).next_u64()
        }
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// SplitMix64: a seeded, reproducible stream of numbers for test schedules.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`); the modulo bias is irrelevant for the
    /// small `n` of a test schedule.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        self.next_u64() % n
    }

    /// A duration in `lo..=hi`, in whole milliseconds.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
        assert!(lo <= hi, "empty duration range");
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One broker taken away for a while, then brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL (a crash), then a restart after `down`.
    Kill9 {
        /// The broker's node id.
        broker: i32,
        /// How long it stays dead.
        down: Duration,
    },
    /// SIGSTOP (a hung machine: sockets open, nothing answered), SIGCONT
    /// after `down`. Longer than the session timeout, the broker is fenced
    /// while stopped and wakes up believing it still leads.
    Pause {
        /// The broker's node id.
        broker: i32,
        /// How long it stays stopped.
        down: Duration,
    },
    /// SIGTERM (a clean shutdown), then a restart after `down`.
    Terminate {
        /// The broker's node id.
        broker: i32,
        /// How long it stays stopped.
        down: Duration,
    },
}

/// The ranges [`Fault::random`] draws durations from.
#[derive(Debug, Clone, Copy)]
pub struct FaultRanges {
    /// How long a killed or terminated broker stays down.
    pub down: (Duration, Duration),
    /// How long a paused broker stays stopped.
    pub pause: (Duration, Duration),
}

impl Fault {
    /// A fault of a random kind on a random one of `brokers`.
    pub fn random(rng: &mut Rng, brokers: &[i32], ranges: &FaultRanges) -> Fault {
        let broker = rng.pick(brokers);
        match rng.below(3) {
            0 => Fault::Kill9 {
                broker,
                down: rng.duration(ranges.down.0, ranges.down.1),
            },
            1 => Fault::Pause {
                broker,
                down: rng.duration(ranges.pause.0, ranges.pause.1),
            },
            _ => Fault::Terminate {
                broker,
                down: rng.duration(ranges.down.0, ranges.down.1),
            },
        }
    }

    /// The broker this fault hits.
    pub fn broker(&self) -> i32 {
        match *self {
            Fault::Kill9 { broker, .. }
            | Fault::Pause { broker, .. }
            | Fault::Terminate { broker, .. } => broker,
        }
    }

    /// How long the broker stays away.
    pub fn down(&self) -> Duration {
        match *self {
            Fault::Kill9 { down, .. }
            | Fault::Pause { down, .. }
            | Fault::Terminate { down, .. } => down,
        }
    }

    /// Takes the broker away: on return it is dead or stopped.
    pub fn inject(&self, cluster: &mut DevCluster) {
        match *self {
            Fault::Kill9 { broker, .. } => cluster.kill9(broker),
            Fault::Pause { broker, .. } => cluster.pause(broker),
            Fault::Terminate { broker, .. } => cluster.terminate(broker),
        }
    }

    /// Brings the broker back: on return it runs again (a restarted one
    /// accepts connections).
    pub fn recover(&self, cluster: &mut DevCluster) {
        match *self {
            Fault::Kill9 { broker, .. } | Fault::Terminate { broker, .. } => {
                cluster.restart(broker)
            }
            Fault::Pause { broker, .. } => cluster.resume(broker),
        }
    }

    /// [`Fault::inject`], wait [`Fault::down`], [`Fault::recover`].
    pub fn apply(&self, cluster: &mut DevCluster) {
        self.inject(cluster);
        thread::sleep(self.down());
        self.recover(cluster);
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill9 { broker, down } => {
                write!(f, "kill -9 broker {broker}, restart after {down:?}")
            }
            Fault::Pause { broker, down } => {
                write!(f, "SIGSTOP broker {broker}, SIGCONT after {down:?}")
            }
            Fault::Terminate { broker, down } => {
                write!(f, "SIGTERM broker {broker}, restart after {down:?}")
            }
        }
    }
}

/// What a [`FaultPlan`] does: a quiet gap, then a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// How long the cluster runs undisturbed before the fault.
    pub gap: Duration,
    /// The fault.
    pub fault: Fault,
}

/// A whole fault schedule, drawn up front so it can be printed before it
/// runs and is the same for the same seed however the run goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl FaultPlan {
    /// `count` random steps on `brokers`, each after a gap in `gap`.
    pub fn random(
        rng: &mut Rng,
        brokers: &[i32],
        count: usize,
        gap: (Duration, Duration),
        ranges: &FaultRanges,
    ) -> FaultPlan {
        let steps = (0..count)
            .map(|_| Step {
                gap: rng.duration(gap.0, gap.1),
                fault: Fault::random(rng, brokers, ranges),
            })
            .collect();
        FaultPlan { steps }
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {}. after {:?}: {}", n + 1, step.gap, step.fault)?;
        }
        Ok(())
    }
}

/// Waits until some running broker reports every partition of `topic` with a
/// leader and all its replicas in sync. After `timeout` returns what the
/// brokers last said instead; callers treat that as "recovering slowly", not
/// as a failure: the properties a fault test checks do not depend on how fast
/// it is. Asks only brokers that are not paused, so call it between faults.
pub fn wait_in_sync(
    cluster: &mut DevCluster,
    topic: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut last = String::new();
        for id in cluster.broker_ids() {
            if !cluster.is_running(id) {
                continue;
            }
            match lagging_partitions(&cluster.kafka_addr(id).to_string(), topic) {
                Ok(lagging) if lagging.is_empty() => return Ok(()),
                Ok(lagging) => last = format!("broker {id} reports {}", lagging.join(", ")),
                Err(e) => last = format!("broker {id}: {e}"),
            }
        }
        if Instant::now() >= deadline {
            return Err(last);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The partitions of `topic` that the broker at `addr` reports without a
/// leader or with replicas outside the ISR, described.
fn lagging_partitions(addr: &str, topic: &str) -> Result<Vec<String>, String> {
    let mut conn = KafkaConn::connect(addr).map_err(|e| format!("{e:#}"))?;
    let md = conn
        .metadata(Some(&[topic]))
        .map_err(|e| format!("Metadata: {e:#}"))?;
    let t = md
        .topics
        .first()
        .filter(|t| t.error_code == 0 && !t.partitions.is_empty())
        .ok_or_else(|| format!("no partitions of {topic}"))?;
    let ids = |nodes: &[BrokerId]| nodes.iter().map(|n| n.0).collect::<Vec<_>>();
    Ok(t.partitions
        .iter()
        .filter(|p| {
            p.error_code != 0 || p.leader_id.0 < 0 || p.isr_nodes.len() != p.replica_nodes.len()
        })
        .map(|p| {
            format!(
                "partition {} leader {} ISR {:?} of {:?} (error {})",
                p.partition_index,
                p.leader_id.0,
                ids(&p.isr_nodes),
                ids(&p.replica_nodes),
                p.error_code
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_plan() {
        let ranges = FaultRanges {
            down: (Duration::from_millis(100), Duration::from_secs(2)),
            pause: (Duration::from_millis(100), Duration::from_secs(5)),
        };
        let gap = (Duration::from_secs(1), Duration::from_secs(3));
        let plan = |seed| FaultPlan::random(&mut Rng::new(seed), &[0, 1, 2], 6, gap, &ranges);
        assert_eq!(plan(7), plan(7));
        assert_ne!(plan(7), plan(8));
        for step in plan(7).steps {
            assert!((gap.0..=gap.1).contains(&step.gap));
            assert!((0..3).contains(&step.fault.broker()));
        }
    }

    #[test]
    fn seeds_parse_in_decimal_and_hex() {
        assert_eq!(parse_seed("42"), Some(42));
        assert_eq!(parse_seed(" 0x2a "), Some(42));
        assert_eq!(parse_seed("forty-two"), None);
    }

    #[test]
    fn durations_stay_in_range() {
        let mut rng = Rng::new(1);
        let (lo, hi) = (Duration::from_millis(5), Duration::from_millis(9));
        for _ in 0..1000 {
            assert!((lo..=hi).contains(&rng.duration(lo, hi)));
        }
    }
}
