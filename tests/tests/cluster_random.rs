//! Randomized faults against a replicated 3-broker cluster while an
//! idempotent acks=all producer writes: afterwards no acknowledged record is
//! lost, none is stored twice, each partition keeps the producer's order, and
//! nothing a consumer read during the faults disappeared.
//!
//! The faults (kill -9, SIGSTOP, SIGTERM of one broker at a time, each undone
//! before the next) come from a seeded plan. The seed is printed first; rerun
//! a failure with `RIVULET_FAULT_SEED=<seed>` to get the same plan (the
//! producer's timing relative to it still varies).

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use rivulet_tests::{
    cluster::DevCluster,
    cluster_faults::{fault_seed, wait_in_sync, FaultPlan, FaultRanges, Rng, SEED_ENV},
    last_json,
    process::Background,
    require_py, run_cmd, run_py,
    tools::py_command,
    unique_topic,
};
use serde_json::Value;

const SCRIPT: &str = "cluster_random_clients.py";
const PARTITIONS: i32 = 4;
/// Short failure detection, so a fault moves leaders within seconds.
const BROKER_CONFIGS: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "500"),
    ("replica.lag.time.max.ms", "4000"),
];
/// Durations of the faults: pauses reach past the 3 s session timeout, so
/// some stopped brokers are fenced and wake up as deposed leaders.
const RANGES: FaultRanges = FaultRanges {
    down: (Duration::from_millis(300), Duration::from_secs(4)),
    pause: (Duration::from_millis(500), Duration::from_secs(6)),
};
/// Quiet time before each fault.
const GAP: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(4));
/// No fault starts later than this after the first one, so a slow run
/// injects fewer faults instead of running long.
const FAULT_BUDGET: Duration = Duration::from_secs(40);
/// How long to wait for full ISRs after a fault before going on anyway.
const RECOVERY: Duration = Duration::from_secs(10);
/// Acknowledged records wanted before the first fault.
const WARM_UP: usize = 200;

#[test]
fn random_broker_faults_lose_nothing_acknowledged() {
    require_py!("confluent_kafka");
    let seed = fault_seed();
    eprintln!("fault seed {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = Rng::new(seed);
    let started = Instant::now();

    let mut cluster = BROKER_CONFIGS
        .iter()
        .fold(DevCluster::builder(3).voters(3), |b, (k, v)| b.config(k, v))
        .start();
    let bootstrap = cluster.bootstrap();
    let topic = unique_topic("random");
    let parts = PARTITIONS.to_string();
    run_py(SCRIPT, &["create", &bootstrap, &topic, &parts]);

    let work = tempfile::Builder::new()
        .prefix("rivulet-random-")
        .tempdir()
        .expect("create a temporary directory");
    // The acknowledgement and consumer logs, kept on request for a replay.
    let (_work, dir) = if std::env::var_os("RIVULET_TEST_KEEP").is_some() {
        let kept = work.keep();
        eprintln!("client files are kept in {}", kept.display());
        (None, kept)
    } else {
        let dir = work.path().to_path_buf();
        (Some(work), dir)
    };
    let dir = dir.as_path();
    let path = |name: &str| dir.join(name).to_str().expect("utf-8 path").to_string();
    let (acked, seen, stop) = (path("acked.jsonl"), path("seen.jsonl"), path("stop"));
    let client = |mode: &str, file: &str| {
        Background::spawn(
            &mut py_command(SCRIPT, &[mode, &bootstrap, &topic, &parts, file, &stop]),
            dir,
            mode,
        )
    };
    let mut producer = client("produce", &acked);
    let mut consumer = client("consume", &seen);
    wait_for_acks(&acked, WARM_UP, &producer);

    let count = 5 + rng.below(2) as usize;
    let plan = FaultPlan::random(&mut rng, &cluster.broker_ids(), count, GAP, &RANGES);
    eprintln!("fault plan:\n{plan}");
    let at = || format!("[{:6.1}s]", started.elapsed().as_secs_f64());
    let faults_started = Instant::now();
    let mut injected = 0;
    for step in &plan.steps {
        if faults_started.elapsed() + step.gap > FAULT_BUDGET {
            eprintln!("fault budget of {FAULT_BUDGET:?} used up, skipping the rest");
            break;
        }
        thread::sleep(step.gap);
        injected += 1;
        let fault = step.fault;
        eprintln!("{} fault {injected}: {fault}", at());
        fault.inject(&mut cluster);
        eprintln!("{} broker {} is down", at(), fault.broker());
        thread::sleep(fault.down());
        fault.recover(&mut cluster);
        eprintln!("{} broker {} is back", at(), fault.broker());
        match wait_in_sync(&mut cluster, &topic, RECOVERY) {
            Ok(()) => eprintln!("{} ISRs are full", at()),
            Err(state) => eprintln!("{} ISRs still not full, going on: {state}", at()),
        }
    }

    std::fs::write(&stop, "").expect("write the stop file");
    let produced = finish(&mut producer, "producer", Duration::from_secs(90));
    let watched = finish(&mut consumer, "consumer", Duration::from_secs(30));
    match wait_in_sync(&mut cluster, &topic, RECOVERY) {
        Ok(()) => eprintln!("{} ISRs are full; verifying", at()),
        Err(state) => eprintln!("{} ISRs still not full, verifying anyway: {state}", at()),
    }
    let verify = run_cmd(
        &mut py_command(
            SCRIPT,
            &["verify", &bootstrap, &topic, &parts, &acked, &seen],
        ),
        None,
        Duration::from_secs(150),
    );
    let verified = last_json(&verify.stdout);

    eprintln!(
        "seed {seed}: {injected} faults; produced {}, acknowledged {}, failed {} {}, \
         undelivered {}, client errors {}; consumer read {} during faults; \
         stored {}, duplicates {}, lost {}; {:.1}s",
        produced["produced"],
        produced["acked"],
        produced["failed"],
        produced["failures"],
        produced["undelivered"],
        produced["client_errors"],
        watched["seen"],
        verified["stored"],
        verified["duplicates"],
        verified["lost"],
        started.elapsed().as_secs_f64()
    );
    assert!(
        verify.status.success(),
        "seed {seed}: {}\nfault plan:\n{plan}\n--- producer ---\n{produced}",
        verify.stderr.trim()
    );
    let fatal = produced["fatal"].as_array().map_or(0, Vec::len);
    assert_eq!(
        fatal, 0,
        "seed {seed}: the idempotent producer hit a fatal error: {}\nfault plan:\n{plan}",
        produced["fatal"]
    );
}

/// Waits until `want` acknowledgements are in `acked`: the cluster works
/// before the faults start. A healthy cluster that acknowledges nothing for
/// 30 s is broken, not slow.
fn wait_for_acks(acked: &str, want: usize, producer: &Background) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = std::fs::read_to_string(Path::new(acked)).map_or(0, |s| s.lines().count());
        if n >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} records acknowledged in 30 s before any fault\n\
             --- producer stderr ---\n{}",
            producer.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a client script to exit 0 and returns its JSON summary.
fn finish(client: &mut Background, what: &str, timeout: Duration) -> Value {
    let status = client.wait(timeout);
    assert!(
        status.success(),
        "{what} failed ({status})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        client.stdout(),
        client.stderr()
    );
    last_json(&client.stdout())
}
