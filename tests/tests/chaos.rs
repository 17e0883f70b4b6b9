//! The fault campaign's CI share: brokers in their own network namespaces,
//! links cut, made one-way, lossy, slow or flapping, brokers killed and
//! paused, with librdkafka producers (acks=all and idempotence, the
//! defaults) and a committing consumer group; afterwards the checker finds
//! nothing acknowledged lost, nothing duplicated or reordered, no read
//! record gone, no committed offset moving back, and a converged cluster.
//!
//! Long campaigns (100 runs of a minute on 3 and 5 brokers) run with the
//! `rivulet-chaos` binary; docs/reliability.md has the command and results.
//! Needs root for the namespaces: elsewhere each test prints SKIPPED (and
//! fails on CI, where root is expected).

use std::time::Duration;

use rivulet_tests::{
    chaos::{faults::Step, run, Fault, RunOptions, RunReport, Schedule},
    cluster_faults::{fault_seed, SEED_ENV},
    netns::PrivateNet,
    require_py,
};

/// One campaign cluster at a time: three brokers, two producers and a
/// group each, on two cores, are already timing-sensitive enough.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether this machine can build private networks (prints why not), and
/// this test's turn.
fn netns_or_skip() -> Option<std::sync::MutexGuard<'static, ()>> {
    match PrivateNet::available() {
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI needs network namespaces: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
        Ok(()) => Some(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())),
    }
}

fn options(seed: u64, duration: Duration, schedule: Option<Schedule>) -> RunOptions {
    RunOptions {
        brokers: 3,
        partitions: 4,
        duration,
        seed,
        verbose: true,
        schedule,
        broker_configs: Vec::new(),
    }
}

fn assert_clean(report: &RunReport) {
    eprintln!(
        "seed {}: faults {:?}; acknowledged {}, failed {}, read {}; transactions {}; \
         converged in {:?}; {:.0} s",
        report.seed,
        report.faults,
        report.acked,
        report.failed,
        report.read,
        report.transactions,
        report.converged_in,
        report.elapsed.as_secs_f64()
    );
    for a in &report.availability {
        eprintln!("  {a}");
    }
    for claim in &report.stale_claims {
        eprintln!("  stale: {claim}");
    }
    assert!(
        report.violations.is_empty(),
        "seed {} (replay with {SEED_ENV}={}): {}\nfiles kept in {:?}",
        report.seed,
        report.seed,
        report.violations.join("\n"),
        report.kept
    );
    assert!(report.acked > 0, "nothing was acknowledged");
}

/// One fault held for `hold` after a short quiet start.
fn single(fault: Fault, hold: Duration) -> Schedule {
    Schedule {
        steps: vec![Step {
            gap: Duration::from_secs(2),
            fault,
            hold,
        }],
    }
}

#[test]
fn short_random_runs_keep_every_promise() {
    require_py!("confluent_kafka");
    let Some(_turn) = netns_or_skip() else {
        return;
    };
    let seed = fault_seed();
    eprintln!("fault seed {seed} (replay with {SEED_ENV}={seed})");
    let report = run(&options(seed, Duration::from_secs(25), None)).expect("run the campaign");
    assert_clean(&report);
}

/// A leader cut off from the other brokers but not from its clients must
/// stop claiming leadership, so producers move to the new leader while the
/// split lasts rather than after it heals.
#[test]
fn an_isolated_leader_lets_clients_move_to_the_majority() {
    require_py!("confluent_kafka");
    let Some(_turn) = netns_or_skip() else {
        return;
    };
    let hold = Duration::from_secs(20);
    let schedule = single(Fault::IsolateLeader { partition: 0 }, hold);
    let report = run(&options(1, hold * 2, Some(schedule))).expect("run the scenario");
    assert_clean(&report);
    assert!(
        !report.availability.is_empty(),
        "the isolated broker led nothing"
    );
    assert!(
        report.stale_claims.is_empty(),
        "an isolated broker kept claiming leadership: {:?}",
        report.stale_claims
    );
    for a in &report.availability {
        assert!(
            a.before_heal,
            "writes to a partition of the isolated leader resumed only after the network \
             healed: {a}"
        );
    }
}

/// A broker that comes back from an isolation (with a Raft term inflated by
/// its lonely elections) must not depose the healthy controller.
#[test]
fn a_healed_broker_rejoins_without_a_controller_gap() {
    require_py!("confluent_kafka");
    let Some(_turn) = netns_or_skip() else {
        return;
    };
    let hold = Duration::from_secs(15);
    let schedule = single(Fault::IsolateBystander, hold);
    let report = run(&options(2, hold * 2, Some(schedule))).expect("run the scenario");
    assert_clean(&report);
    let watch = &report.rejoins[0];
    assert!(
        watch.without == 0 && watch.seen.len() == 1,
        "the controller changed or went missing as the healed broker rejoined: {watch:?}"
    );
}

/// Disk faults under the same workload and checker: one broker's disk
/// fills up (it stays up and takes writes again when space returns),
/// another's turns slow, then a third's log writes fail with EIO (its log
/// directory fails, it stops and comes back on a healthy disk). Nothing
/// acknowledged may be lost or duplicated through any of it.
#[test]
fn full_slow_and_failing_disks_lose_nothing() {
    require_py!("confluent_kafka");
    let Some(_turn) = netns_or_skip() else {
        return;
    };
    let step = |fault, secs| Step {
        gap: Duration::from_secs(2),
        fault,
        hold: Duration::from_secs(secs),
    };
    let schedule = Schedule {
        steps: vec![
            step(Fault::DiskFull { node: 0 }, 6),
            step(Fault::SlowDisk { node: 1 }, 5),
            step(Fault::DiskFailure { node: 2 }, 5),
        ],
    };
    let report = run(&options(3, Duration::from_secs(30), Some(schedule))).expect("run it");
    assert_clean(&report);
    for kind in ["disk-full", "slow-disk", "disk-eio"] {
        assert_eq!(report.faults.get(kind), Some(&1), "{:?}", report.faults);
    }
    // The faults reached the brokers: the full disk refused writes and the
    // failed log dir stopped its broker (restarted by the harness).
    for kind in ["disk-full", "disk-eio"] {
        assert_eq!(
            report.disk_effects.get(kind),
            Some(&1),
            "{kind} left no trace in the broker's log: {:?}",
            report.disk_effects
        );
    }
}
