//! Disk faults under real clients: a broker whose data directory is a
//! small tmpfs that fills up (writes refused with KAFKA_STORAGE_ERROR, reads
//! served, writes taken again once space is freed, no restart, nothing
//! torn or unacknowledged left in the log), and a partition leader whose
//! fsyncs fail with EIO (its log directory goes offline, its leaderships
//! move at once, it stops as Kafka stops a broker whose last log dir
//! failed, and an idempotent acks=all producer loses and duplicates
//! nothing). EIO is injected through the broker's
//! `storage.fault.injection.file`; the full disk is real.

// The failover tests' producer and leader-loss harness, shared; parts of
// them serve only those tests.
#[allow(dead_code)]
#[path = "cluster_failover/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "cluster_failover/leaders.rs"]
mod leaders;

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use clients::verify;
use leaders::{leaders, LeaderLoss, LONG_SESSION_TIMEOUT};
use rivulet_tests::{
    broker::BrokerProcess,
    cluster::DevCluster,
    cluster_checks::{poll_until, wait_fully_in_sync},
    require_py, run_py, unique_topic,
};
use serde_json::Value;

/// Bound on anything that takes a session timeout or two.
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

/// Partitions of the cluster test's topic.
const PARTITIONS: i32 = 6;

/// Configs of the cluster test's topic.
const TOPIC_CONFIGS: &[(&str, &str)] = &[("min.insync.replicas", "2")];

const SCRIPT: &str = "disk_faults.py";

/// A three-broker cluster with short timeouts, except where `overrides`
/// say otherwise (what `leaders.rs` starts its runs with).
fn start_cluster(overrides: &[(&str, &str)]) -> DevCluster {
    let base = [
        ("broker.session.timeout.ms", "3000"),
        ("broker.heartbeat.interval.ms", "500"),
        ("replica.lag.time.max.ms", "4000"),
        ("offsets.topic.num.partitions", "3"),
        ("auto.leader.rebalance.enable", "false"),
    ];
    let mut builder = DevCluster::builder(3);
    for (key, value) in base {
        if !overrides.iter().any(|(k, _)| *k == key) {
            builder = builder.config(key, value);
        }
    }
    for (key, value) in overrides {
        builder = builder.config(key, value);
    }
    builder.start()
}

/// The JSON summary a script printed last.
fn summary(stdout: &str) -> Value {
    clients::summary(stdout)
}

/// A tmpfs of a given size mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one, or says why it cannot (not root, no mount in this
    /// container).
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("rivulet-tmpfs-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a broker still being killed may hold files open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system of `path` with zeros until it is full, then
/// frees `leave` bytes of it again.
fn fill_up(path: &Path, leave: u64) {
    let mut f = File::create(path).expect("create the filler");
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    f.set_len(written.saturating_sub(leave))
        .expect("shrink the filler");
    f.sync_all().expect("sync the filler");
    eprintln!("filler holds {} KiB", written.saturating_sub(leave) >> 10);
}

/// Skips (printing why) when a tmpfs cannot be mounted (not root, or a
/// container without the capability); with `RIVULET_REQUIRE_TMPFS=1` (CI,
/// which runs as root) that is a failure instead.
fn tmpfs_or_skip(size: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(size) {
        Ok(t) => Some(t),
        Err(why) if std::env::var_os("RIVULET_REQUIRE_TMPFS").is_some() => {
            panic!("cannot mount a tmpfs for the full-disk test: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs for the full-disk test: {why}");
            None
        }
    }
}

#[test]
fn a_full_disk_refuses_writes_keeps_serving_and_takes_writes_again_once_space_is_freed() {
    require_py!("confluent_kafka");
    let Some(fs) = tmpfs_or_skip("24m") else {
        return;
    };
    let mut broker = BrokerProcess::builder()
        .data_dir(fs.path().join("data"))
        .config("log.segment.bytes", "262144")
        .config("offsets.topic.num.partitions", "1")
        .start();
    let topic = unique_topic("disk-full");
    broker.create_topic(&topic, 1, &[]);
    let bootstrap = broker.bootstrap();
    let scratch = broker.scratch_dir().to_path_buf();
    let acked = |name: &str| -> PathBuf { scratch.join(name) };
    let first_batch = acked("before.acked");
    let out = run_py(
        SCRIPT,
        &[
            "produce",
            &bootstrap,
            &topic,
            "0",
            "50",
            first_batch.to_str().unwrap(),
        ],
    );
    eprintln!("before: {}", summary(&out));

    // The group's offsets partition exists before the disk fills up.
    let group = format!("{topic}-group");
    let commit = |offset: &str, expect: &str| {
        summary(&run_py(
            SCRIPT,
            &["commit", &bootstrap, &topic, &group, offset, expect],
        ))
    };
    eprintln!("commit before: {}", commit("10", "ok"));

    let filler = fs.path().join("filler");
    fill_up(&filler, 1 << 20);
    let filled = acked("filled.acked");
    let started = Instant::now();
    let out = run_py(
        SCRIPT,
        &["fill", &bootstrap, &topic, filled.to_str().unwrap(), "60"],
    );
    let s = summary(&out);
    eprintln!("full disk after {:?}: {s}", started.elapsed());
    let errors = s["errors"].as_object().expect("errors by name");
    assert!(
        errors.contains_key("KAFKA_STORAGE_ERROR"),
        "the client never saw KAFKA_STORAGE_ERROR: {s}\n{}",
        broker.log()
    );
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["KAFKA_STORAGE_ERROR"],
        "only the broker's storage error, no timeouts: {s}"
    );
    assert_eq!(s["acked_after_refusal"], 0, "{s}");
    eprintln!("commit while full: {}", commit("20", "any"));
    // Metadata changes while full: the metadata log needs space too.
    // Whether a change gets in or is refused, the broker answers and
    // stays up (its own heartbeats are metadata writes as well).
    let mut client = broker.client();
    let mut created = 0;
    let mut refused = Vec::new();
    for i in 0..40 {
        // Long names make big metadata records.
        let name = format!("{topic}-while-full-{i:02}-{}", "n".repeat(200));
        match client.create_topic(&name, 1, &[]) {
            Ok(()) => created += 1,
            Err(e) => {
                // The metadata log is full: each further change would
                // wait out its timeout the same way.
                refused.push(e.to_string());
                break;
            }
        }
    }
    eprintln!("topics created while full: {created}, refused: {refused:?}");
    assert!(
        !refused.is_empty(),
        "40 topics fit in the full disk's metadata log; the test meant to fill it"
    );
    broker.assert_alive();
    // Reads go on while the disk is full.
    let out = run_py(
        SCRIPT,
        &[
            "verify",
            &bootstrap,
            &topic,
            first_batch.to_str().unwrap(),
            filled.to_str().unwrap(),
        ],
    );
    eprintln!("read while full: {}", summary(&out));

    fs::remove_file(&filler).expect("free the space");
    let after = acked("after.acked");
    let out = run_py(
        SCRIPT,
        &[
            "produce",
            &bootstrap,
            &topic,
            "100000",
            "50",
            after.to_str().unwrap(),
        ],
    );
    eprintln!("after freeing: {}", summary(&out));
    eprintln!("commit after freeing: {}", commit("30", "ok"));
    // Metadata recovers by itself too: a topic can be created and used.
    let later = format!("{topic}-after");
    let created = poll_until(
        FAILOVER_BOUND,
        "a topic created after freeing space",
        || broker.client().create_topic(&later, 1, &[]),
    );
    eprintln!("created {later} {:?} after freeing space", created.1);
    let later_acked = acked("later.acked");
    run_py(
        SCRIPT,
        &[
            "produce",
            &bootstrap,
            &later,
            "0",
            "5",
            later_acked.to_str().unwrap(),
        ],
    );
    let all = [&first_batch, &filled, &after].map(|p| p.to_str().unwrap().to_string());
    let mut args = vec!["verify", &bootstrap, &topic];
    args.extend(all.iter().map(String::as_str));
    eprintln!("verified: {}", summary(&run_py(SCRIPT, &args)));
    broker.assert_alive();
    let log = broker.log();
    assert!(
        !log.contains("panicked"),
        "the broker panicked on a full disk:\n{log}"
    );

    // And after a crash, recovery finds the same log.
    broker.kill9();
    broker.restart();
    eprintln!(
        "verified after a restart: {}",
        summary(&run_py(SCRIPT, &args))
    );
}

#[test]
fn an_fsync_error_on_a_leader_takes_its_log_dir_offline_and_loses_no_acknowledged_record() {
    require_py!("confluent_kafka");
    let control_dir = tempfile::tempdir().expect("scratch dir");
    let control = control_dir.path().join("storage-faults");
    fs::write(&control, "").expect("create the control file");
    // A long session timeout: leaderships that move sooner were handed
    // over by the failing broker, not taken by fencing.
    let session = LONG_SESSION_TIMEOUT.as_millis().to_string();
    let mut cluster = start_cluster(&[
        ("storage.fault.injection.file", control.to_str().unwrap()),
        ("broker.session.timeout.ms", &session),
    ]);
    let mut run = LeaderLoss::start(&cluster, "disk-eio");
    let victim = run.victim;
    let last_before = run.producer.last_offsets();

    // Every fsync of the victim's partition logs fails from now on.
    fs::write(&control, format!("fsync eio /broker-{victim}/data/\n")).expect("inject");
    let injected = Instant::now();
    let (after, moved) = run.wait_moved(&cluster, LONG_SESSION_TIMEOUT / 2);
    eprintln!(
        "broker {victim}'s fsyncs fail: leaderships moved {moved:?} later: {:?}",
        leaders(&after)
    );
    for p in &run.victim_parts {
        assert!(
            !after[p].isr.contains(&victim),
            "partition {p}: the failed replica stayed in the ISR: {:?}",
            after[p]
        );
    }
    let (_, exited) = poll_until(FAILOVER_BOUND, "the failed broker stops", || {
        if cluster.is_running(victim) {
            Err("still running")
        } else {
            Ok(())
        }
    });
    eprintln!(
        "broker {victim} stopped {:?} after the injection",
        injected.elapsed()
    );
    let log = cluster.log(victim);
    assert!(
        log.contains("log directory failed"),
        "no log dir failure in the broker's log ({exited:?}):\n{log}"
    );
    assert!(!log.contains("panicked"), "the broker panicked:\n{log}");

    run.producer
        .wait_beyond(&run.victim_parts, &last_before, 50);
    let summary = run.producer.finish();
    eprintln!("producer: {summary}");
    verify(
        &cluster.bootstrap(),
        &run.topic,
        PARTITIONS,
        &[&run.producer],
    );

    // With the disk healthy again the broker recovers its logs and rejoins.
    fs::write(&control, "").expect("clear the faults");
    std::thread::sleep(Duration::from_millis(200));
    cluster.restart(victim);
    let all = cluster.broker_ids();
    let (_, took) = wait_fully_in_sync(
        &cluster,
        &all,
        &run.topic,
        PARTITIONS as usize,
        FAILOVER_BOUND,
    );
    eprintln!("broker {victim} back in every ISR {took:?} after its restart");
}

#[test]
fn a_slow_fsync_on_one_partition_stalls_no_other() {
    require_py!("confluent_kafka");
    let control_dir = tempfile::tempdir().expect("scratch dir");
    let control = control_dir.path().join("storage-faults");
    fs::write(&control, "").expect("create the control file");
    let broker = BrokerProcess::builder()
        .config("storage.fault.injection.file", control.to_str().unwrap())
        .start();
    let slow = unique_topic("disk-slow");
    let fast = unique_topic("disk-fast");
    // flush.messages=1: every append to the slow topic fsyncs.
    broker.create_topic(&slow, SLOW_PARTITIONS, &[("flush.messages", "1")]);
    broker.create_topic(&fast, 1, &[]);
    fs::write(
        &control,
        format!("fsync delay={} /{slow}-\n", SLOW_FSYNC.as_millis()),
    )
    .expect("inject");
    let partitions = SLOW_PARTITIONS.to_string();
    let out = run_py(
        SCRIPT,
        &[
            "latency",
            &broker.bootstrap(),
            &slow,
            &partitions,
            &fast,
            "20",
        ],
    );
    let s = summary(&out);
    eprintln!("fsyncs of {slow} take {SLOW_FSYNC:?}; {fast}: {s}");
    assert!(
        s["slow_acked"].as_u64().unwrap_or(0) > 0,
        "the slow partitions took nothing: {s}"
    );
    let max = s["max_ms"].as_u64().expect("max_ms");
    assert!(
        max < SLOW_FSYNC.as_millis() as u64 / 2,
        "a slow fsync elsewhere held up the fast partition: {s}"
    );
}

/// Partitions of the slowed topic: more than the runtime has workers.
const SLOW_PARTITIONS: i32 = 4;

/// How long each fsync of the slowed topic takes.
const SLOW_FSYNC: Duration = Duration::from_millis(1500);
