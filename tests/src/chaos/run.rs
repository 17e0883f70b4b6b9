//! One campaign run: a cluster in network namespaces, the workload of
//! `tests/py/chaos_clients.py` (two idempotent acks=all producers, two
//! members of a consumer group committing, a transactional writer read back
//! with read_committed), a seeded fault
//! schedule, then healing, convergence and the checker.
//!
//! A run never panics on what it finds: every broken promise is a
//! [`RunReport::violations`] entry, so a campaign of many runs can finish
//! and tabulate. Harness trouble (a tool missing, a client that cannot
//! start) is an `Err`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    cluster::NetCluster,
    faults::{Fault, Schedule},
    probe::{self, Availability, ControllerWatch, Isolation},
};
use crate::{
    cluster_faults::Rng,
    last_json,
    netns::Endpoint,
    process::{run_cmd, Background},
    tools::py_command,
};

const SCRIPT: &str = "chaos_clients.py";
const TOPIC: &str = "chaos";
/// The transactional writer's topic, read back with read_committed.
const TXN_TOPIC: &str = "chaos-txn";
const GROUP: &str = "chaos-group";
const WRITERS: [&str; 2] = ["a", "b"];
const MEMBERS: [&str; 2] = ["m1", "m2"];
/// Quick failure detection, so faults move leaders within seconds.
pub const SESSION_TIMEOUT_MS: u64 = 3000;
const BROKER_CONFIGS: [(&str, &str); 3] = [
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "4000"),
];
/// How long the cluster may take to heal completely after the last fault.
const CONVERGE: Duration = Duration::from_secs(90);
/// How long after each fault the run waits for full ISRs before going on.
const RECOVERY: Duration = Duration::from_secs(15);
/// How long after healing an isolation the controller is watched.
const REJOIN_WATCH: Duration = Duration::from_secs(6);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Brokers (all of the first three or five are voters).
    pub brokers: usize,
    /// Partitions of the workload topic.
    pub partitions: i32,
    /// How long faults are injected.
    pub duration: Duration,
    /// The seed of the schedule.
    pub seed: u64,
    /// Print progress on stderr.
    pub verbose: bool,
    /// A fixed schedule instead of one drawn from the seed (for scenario
    /// tests and regression seeds).
    pub schedule: Option<Schedule>,
    /// Broker settings over the harness's own (short session timeouts).
    pub broker_configs: Vec<(String, String)>,
}

/// What a run did and found.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// Records acknowledged to the producers.
    pub acked: u64,
    /// Deliveries that failed (never acknowledged; allowed).
    pub failed: u64,
    /// Records the group members read during the run.
    pub read: u64,
    /// The transactional writer's outcomes (`{"committed": n, ...}`).
    pub transactions: Value,
    /// Availability of the partitions an isolated broker led.
    pub availability: Vec<Availability>,
    /// The controller after each healed isolation.
    pub rejoins: Vec<ControllerWatch>,
    /// Leadership an isolated broker still claimed after two session
    /// timeouts without the quorum.
    pub stale_claims: Vec<String>,
    /// Time from the final heal to a converged cluster.
    pub converged_in: Option<Duration>,
    /// Disk faults whose effect the broker logged (the full disk refusing
    /// writes, the failed log dir stopping it), by kind.
    pub disk_effects: BTreeMap<&'static str, usize>,
    /// Every promise broken.
    pub violations: Vec<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The run's working directory, when kept.
    pub kept: Option<PathBuf>,
}

/// Runs one seed. Call it from a thread that may be moved into a private
/// network namespace (see [`crate::netns::PrivateNet::create`]).
pub fn run(opts: &RunOptions) -> Result<RunReport, String> {
    let started = Instant::now();
    let say = |msg: &str| {
        if opts.verbose {
            eprintln!("[{:6.1}s] {msg}", started.elapsed().as_secs_f64());
        }
    };
    let configs: Vec<(String, String)> = BROKER_CONFIGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(opts.broker_configs.iter().cloned())
        .collect();
    let voters = if opts.brokers >= 5 {
        5
    } else {
        opts.brokers.min(3)
    };
    let mut cluster = NetCluster::start(opts.brokers, voters, &configs)?;
    let bootstrap = cluster.bootstrap();
    say(&format!("cluster up: {bootstrap}"));
    let parts = opts.partitions.to_string();
    let out = run_cmd(
        &mut py_command(SCRIPT, &["create", &bootstrap, TOPIC, &parts]),
        None,
        Duration::from_secs(120),
    );
    if !out.status.success() {
        return Err(format!("create the topic: {}", out.stderr));
    }
    let out = run_cmd(
        &mut py_command(SCRIPT, &["create", &bootstrap, TXN_TOPIC, &parts]),
        None,
        Duration::from_secs(120),
    );
    if !out.status.success() {
        return Err(format!("create the transactional topic: {}", out.stderr));
    }

    let dir = cluster.dir().to_path_buf();
    let file = |name: &str| dir.join(name).to_str().expect("utf-8 path").to_string();
    let stop = file("stop");
    let mut producers: Vec<Background> = WRITERS
        .iter()
        .map(|w| {
            let acked = file(&format!("acked-{w}.jsonl"));
            let args = ["produce", &bootstrap, TOPIC, &parts, w, &acked, &stop];
            Background::spawn(
                &mut py_command(SCRIPT, &args),
                &dir,
                &format!("produce-{w}"),
            )
        })
        .collect();
    let mut members: Vec<Background> = MEMBERS
        .iter()
        .map(|m| {
            let (seen, commits) = (
                file(&format!("seen-{m}.jsonl")),
                file(&format!("commits-{m}.jsonl")),
            );
            let args = ["group", &bootstrap, TOPIC, GROUP, m, &seen, &commits, &stop];
            Background::spawn(&mut py_command(SCRIPT, &args), &dir, &format!("group-{m}"))
        })
        .collect();
    let txn_log = file("txns.jsonl");
    let mut txn_writer = Background::spawn(
        &mut py_command(
            SCRIPT,
            &[
                "txn-produce",
                &bootstrap,
                TXN_TOPIC,
                &parts,
                "t",
                &txn_log,
                &stop,
            ],
        ),
        &dir,
        "txn-produce",
    );
    wait_for_acks(&dir, &producers)?;

    let mut rng = Rng::new(opts.seed);
    let schedule = match &opts.schedule {
        Some(fixed) => fixed.clone(),
        None => Schedule::random(&mut rng, opts.brokers, opts.partitions, opts.duration),
    };
    say(&format!("seed {}: schedule\n{schedule}", opts.seed));
    let mut report = RunReport {
        seed: opts.seed,
        ..RunReport::default()
    };
    let mut isolations = Vec::new();
    let faults_started = Instant::now();
    for step in &schedule.steps {
        if faults_started.elapsed() >= opts.duration {
            break;
        }
        thread::sleep(step.gap);
        say(&format!("inject: {} for {:?}", step.fault, step.hold));
        let logged_before = disk_node(&step.fault).map(|n| cluster.log(n).len());
        let held = hold(&mut cluster, &step.fault, step.hold)?;
        if let (Some(node), Some(from)) = (disk_node(&step.fault), logged_before) {
            let log = cluster.log(node);
            if disk_effect_logged(&step.fault, log.get(from..).unwrap_or_default()) {
                say(&format!("broker {node} logged the disk fault"));
                *report.disk_effects.entry(step.fault.kind()).or_default() += 1;
            }
        }
        *report.faults.entry(step.fault.kind()).or_default() += 1;
        if let Some((iso, watch)) = held {
            say(&format!("healed; controller after rejoin: {watch:?}"));
            isolations.push(iso);
            report.rejoins.push(watch);
        } else {
            say("healed");
        }
        if let Err(e) =
            probe::wait_converged(&mut cluster, TOPIC, opts.partitions as usize, RECOVERY)
        {
            say(&format!("not yet converged, going on: {e}"));
        }
    }

    // Heal everything and let the cluster settle.
    cluster.net().heal()?;
    for id in cluster.ids() {
        if cluster.is_paused(id) {
            cluster.resume(id);
        }
        if !cluster.is_running(id) {
            cluster.restart(id)?;
        }
    }
    match probe::wait_converged(&mut cluster, TOPIC, opts.partitions as usize, CONVERGE) {
        Ok(took) => report.converged_in = Some(took),
        Err(e) => report.violations.push(format!(
            "the cluster did not converge within {CONVERGE:?} of healing: {e}"
        )),
    }
    say("healed and settled; stopping the clients");

    std::fs::write(&stop, "").map_err(|e| format!("write the stop file: {e}"))?;
    for p in &mut producers {
        let summary = finish(p, Duration::from_secs(150));
        report.acked += summary["acked"].as_u64().unwrap_or(0);
        report.failed += summary["failed"].as_u64().unwrap_or(0);
        match summary["fatal"].as_array() {
            Some(fatal) if !fatal.is_empty() => report.violations.push(format!(
                "an idempotent producer hit a fatal error: {fatal:?}"
            )),
            Some(_) => {}
            None => report.violations.push(format!(
                "a producer gave no summary: {}",
                p.stderr().lines().last().unwrap_or("")
            )),
        }
    }
    let txns = finish(&mut txn_writer, Duration::from_secs(150));
    report.transactions = txns["transactions"].clone();
    if txns.is_null() {
        report.violations.push(format!(
            "the transactional writer gave no summary: {}",
            txn_writer.stderr().lines().last().unwrap_or("")
        ));
    }
    for m in &mut members {
        report.read += finish(m, Duration::from_secs(60))["read"]
            .as_u64()
            .unwrap_or(0);
    }
    let list = |prefix: &str, names: &[&str]| {
        names
            .iter()
            .map(|n| file(&format!("{prefix}-{n}.jsonl")))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (acked, seen, commits) = (
        list("acked", &WRITERS),
        list("seen", &MEMBERS),
        list("commits", &MEMBERS),
    );
    let verify = run_cmd(
        &mut py_command(
            SCRIPT,
            &["verify", &bootstrap, TOPIC, &parts, &acked, &seen, &commits],
        ),
        None,
        Duration::from_secs(300),
    );
    say(&format!("checker: {}", last_json(&verify.stdout)));
    if !verify.status.success() {
        report.violations.push(verify.stderr.trim().to_string());
    }
    let txn_verify = run_cmd(
        &mut py_command(
            SCRIPT,
            &["txn-verify", &bootstrap, TXN_TOPIC, &parts, &txn_log],
        ),
        None,
        Duration::from_secs(300),
    );
    say(&format!("transactions: {}", last_json(&txn_verify.stdout)));
    if !txn_verify.status.success() {
        report.violations.push(txn_verify.stderr.trim().to_string());
    }
    let acked_paths: Vec<PathBuf> = WRITERS
        .iter()
        .map(|w| dir.join(format!("acked-{w}.jsonl")))
        .collect();
    let acked_refs: Vec<&Path> = acked_paths.iter().map(PathBuf::as_path).collect();
    report.availability = probe::availability(&isolations, &acked_refs);
    let lease = 2.0 * SESSION_TIMEOUT_MS as f64 / 1000.0;
    report.stale_claims = isolations
        .iter()
        .filter_map(|i| i.stale_claims(lease))
        .collect();
    report.elapsed = started.elapsed();
    if !report.violations.is_empty() || std::env::var_os("RIVULET_TEST_KEEP").is_some() {
        report.kept = Some(cluster.keep_dir());
    }
    Ok(report)
}

/// Injects `fault`, holds it for `hold`, heals it. For an isolation, returns
/// what to measure its availability by and how the controller behaved as the
/// broker rejoined.
fn hold(
    cluster: &mut NetCluster,
    fault: &Fault,
    hold: Duration,
) -> Result<Option<(Isolation, ControllerWatch)>, String> {
    let topic_view = |c: &mut NetCluster| {
        let ids = probe::answering(c);
        probe::first_answer(c, &ids, |c, id| probe::partitions(c, id, TOPIC))
    };
    let led_by = |view: &Result<BTreeMap<i32, crate::cluster_checks::PartitionInfo>, String>,
                  node: usize| {
        view.as_ref()
            .map(|parts| {
                parts
                    .iter()
                    .filter(|(_, i)| i.leader == node as i32)
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    match fault {
        Fault::IsolateLeader { .. }
        | Fault::IsolateController
        | Fault::IsolateBystander
        | Fault::Split { .. }
        | Fault::Flap { .. } => {
            let view = topic_view(cluster);
            let node = match fault {
                Fault::IsolateLeader { partition } => view
                    .as_ref()
                    .ok()
                    .and_then(|p| p.get(partition))
                    .map(|i| i.leader)
                    .filter(|&l| l >= 0)
                    .map_or(0, |l| l as usize),
                Fault::IsolateController | Fault::IsolateBystander => {
                    let ids = probe::answering(cluster);
                    let controller = probe::first_answer(cluster, &ids, probe::controller)
                        .ok()
                        .filter(|&c| c >= 0)
                        .map_or(0, |c| c as usize);
                    if matches!(fault, Fault::IsolateController) {
                        controller
                    } else {
                        (controller + 1) % cluster.ids().len()
                    }
                }
                Fault::Split { minority } => minority[0],
                Fault::Flap { node, .. } => *node,
                _ => unreachable!(),
            };
            let minority = match fault {
                Fault::Split { minority } => minority.clone(),
                _ => vec![node],
            };
            // Flapping links make no single cut to measure from.
            let led: Vec<i32> = match fault {
                Fault::Flap { .. } => Vec::new(),
                _ => minority.iter().flat_map(|&n| led_by(&view, n)).collect(),
            };
            // Whether the cut side holds the controller decides which
            // failover the availability figure measures.
            let ids = probe::answering(cluster);
            let controller = probe::first_answer(cluster, &ids, probe::controller).ok();
            let kind = match controller {
                Some(c) if c >= 0 && minority.contains(&(c as usize)) => "isolate-controller",
                _ => "isolate-leader",
            };
            let cut = probe::mono_now();
            match fault {
                Fault::Flap { period, .. } => {
                    let end = Instant::now() + hold;
                    while Instant::now() < end {
                        cluster.net().isolate_from_nodes(node)?;
                        thread::sleep(*period);
                        cluster.net().heal()?;
                        thread::sleep(*period);
                    }
                }
                _ => {
                    cluster.net().split(&minority)?;
                    thread::sleep(hold);
                }
            }
            let last_claims = match fault {
                Fault::Flap { .. } => Err("flapping".to_string()),
                _ => probe::claims(cluster, node, TOPIC),
            };
            let majority: Vec<usize> = cluster
                .ids()
                .into_iter()
                .filter(|i| !minority.contains(i))
                .collect();
            cluster.net().heal()?;
            let healed = probe::mono_now();
            let watch = probe::watch_controller(cluster, &majority, REJOIN_WATCH);
            let iso = Isolation {
                kind,
                node,
                led,
                cut,
                healed,
                last_claims,
            };
            Ok(Some((iso, watch)))
        }
        Fault::OneWay { from, to } => {
            cluster
                .net()
                .drop_one_way(Endpoint::Node(*from), Endpoint::Node(*to))?;
            thread::sleep(hold);
            cluster.net().heal().map(|()| None)
        }
        Fault::Lossy { a, b, percent } => {
            cluster
                .net()
                .lossy_one_way(Endpoint::Node(*a), Endpoint::Node(*b), *percent)?;
            cluster
                .net()
                .lossy_one_way(Endpoint::Node(*b), Endpoint::Node(*a), *percent)?;
            thread::sleep(hold);
            cluster.net().heal().map(|()| None)
        }
        Fault::Slow { node } => {
            cluster.net().slow(*node, 1000, 300)?;
            thread::sleep(hold);
            cluster.net().heal().map(|()| None)
        }
        Fault::ClientCut { node } => {
            cluster
                .net()
                .cut(Endpoint::Node(*node), Endpoint::Clients)?;
            thread::sleep(hold);
            cluster.net().heal().map(|()| None)
        }
        Fault::Kill { node } => {
            cluster.kill9(*node);
            thread::sleep(hold);
            cluster.restart(*node).map(|()| None)
        }
        Fault::Pause { node } => {
            cluster.pause(*node);
            thread::sleep(hold);
            cluster.resume(*node);
            Ok(None)
        }
        Fault::DiskFull { node } | Fault::SlowDisk { node } | Fault::DiskFailure { node } => {
            let rules = fault.disk_rules().unwrap_or_default();
            cluster.disk_faults(*node, rules)?;
            thread::sleep(hold);
            cluster.disk_faults(*node, "")?;
            // A failed log dir stops the broker; it comes back on a
            // healthy disk. A full or slow disk must not have stopped it.
            if !cluster.is_running(*node) {
                if !matches!(fault, Fault::DiskFailure { .. }) {
                    return Err(format!("broker {node} stopped under: {fault}"));
                }
                cluster.restart(*node)?;
            }
            Ok(None)
        }
    }
}

/// The broker a disk fault is injected on.
fn disk_node(fault: &Fault) -> Option<usize> {
    match fault {
        Fault::DiskFull { node } | Fault::SlowDisk { node } | Fault::DiskFailure { node } => {
            Some(*node)
        }
        _ => None,
    }
}

/// Whether `log` shows the broker meeting `fault`: a full disk refusing
/// writes, a failed log dir taking its partitions offline. A slow disk
/// logs nothing of its own.
fn disk_effect_logged(fault: &Fault, log: &str) -> bool {
    match fault {
        Fault::DiskFull { .. } => log.contains("disk full: refusing writes"),
        Fault::DiskFailure { .. } => log.contains("log directory failed"),
        _ => false,
    }
}

/// Waits until both producers have some acknowledgements: the cluster works
/// before the faults start.
fn wait_for_acks(dir: &Path, producers: &[Background]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts: Vec<usize> = WRITERS
            .iter()
            .map(|w| {
                std::fs::read_to_string(dir.join(format!("acked-{w}.jsonl")))
                    .map_or(0, |s| s.lines().count())
            })
            .collect();
        if counts.iter().all(|&n| n >= 100) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let errs: Vec<String> = producers.iter().map(Background::stderr).collect();
            return Err(format!(
                "the producers got only {counts:?} acknowledgements in 60 s before any fault: {errs:?}"
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The JSON summary of a finished client (`Null` if it printed none).
fn finish(client: &mut Background, timeout: Duration) -> Value {
    client.wait(timeout);
    last_json(&client.stdout())
}
