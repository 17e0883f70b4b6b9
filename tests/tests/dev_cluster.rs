//! `rivulet dev`: a local cluster of broker processes that finds itself,
//! stops cleanly on SIGTERM, refuses impossible quorums, and comes back on the
//! same ports; plus the harness operations fault tests build on.

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use rivulet_tests::{
    cluster::{pid_alive, DevCluster},
    rivulet_bin, run_cmd,
};

/// `dev` gives brokers 30 s after SIGTERM; a healthy cluster needs far less.
const STOP_BOUND: Duration = Duration::from_secs(45);

/// Broker ids in the Metadata answer of broker `id`.
fn listed_brokers(cluster: &DevCluster, id: i32) -> BTreeSet<i32> {
    let md = cluster
        .client(id)
        .metadata(Some(&[]))
        .unwrap_or_else(|e| panic!("Metadata from broker {id}: {e:#}"));
    md.brokers.iter().map(|b| b.node_id.0).collect()
}

/// Ports in a bootstrap string.
fn ports(bootstrap: &str) -> Vec<u16> {
    bootstrap
        .split(',')
        .map(|hp| {
            let (_, port) = hp.rsplit_once(':').expect("host:port");
            port.parse().expect("a port")
        })
        .collect()
}

#[test]
fn three_brokers_see_each_other_and_stop_on_sigterm() {
    let mut cluster = DevCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let ports = ports(&bootstrap);
    assert_eq!(ports.len(), 3, "{bootstrap}");
    assert_eq!(
        ports.iter().collect::<BTreeSet<_>>().len(),
        3,
        "{bootstrap}"
    );
    assert_eq!(cluster.broker_ids(), vec![0, 1, 2]);

    for id in cluster.broker_ids() {
        assert_eq!(
            listed_brokers(&cluster, id),
            BTreeSet::from([0, 1, 2]),
            "broker {id}'s Metadata"
        );
    }

    let pids: Vec<u32> = cluster
        .broker_ids()
        .iter()
        .map(|&id| cluster.pid(id))
        .collect();
    let started = Instant::now();
    let status = cluster.stop();
    assert!(status.success(), "rivulet dev exited with {status}");
    assert!(
        started.elapsed() < STOP_BOUND,
        "stopping took {:?}",
        started.elapsed()
    );
    for pid in pids {
        assert!(!pid_alive(pid), "broker pid {pid} outlived rivulet dev");
    }
}

#[test]
fn impossible_quorums_are_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("cluster");
    for (args, expected) in [
        (["--brokers", "2", "--voters", "2"], "1, 3 or 5"),
        (["--voters", "5", "--brokers", "3"], "--brokers is 3"),
    ] {
        let out = run_cmd(
            Command::new(rivulet_bin())
                .arg("dev")
                .args(args)
                .arg("--data-dir")
                .arg(&dir),
            None,
            Duration::from_secs(30),
        );
        assert!(!out.status.success(), "dev {args:?} succeeded");
        assert!(
            out.stderr.contains(expected),
            "dev {args:?}:\n{}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "dev {args:?} printed {}", out.stdout);
    }
    // Refused before anything was written, so before any broker started.
    assert!(!dir.exists(), "dev created {}", dir.display());
}

#[test]
fn a_restarted_dev_keeps_its_ports() {
    let mut cluster = DevCluster::start(3, &[]);
    let before = cluster.bootstrap();
    let metrics_before = cluster.metrics_url(2);
    cluster.restart_dev();
    assert_eq!(cluster.bootstrap(), before);
    assert_eq!(cluster.metrics_url(2), metrics_before);
    assert_eq!(listed_brokers(&cluster, 2), BTreeSet::from([0, 1, 2]));

    cluster.stop();
    let out = run_cmd(
        Command::new(rivulet_bin())
            .args(["dev", "--brokers", "2", "--data-dir"])
            .arg(cluster.data_dir()),
        None,
        Duration::from_secs(30),
    );
    assert!(
        !out.status.success(),
        "a 2-broker dev ran on a 3-broker directory"
    );
    assert!(out.stderr.contains("3-broker cluster"), "{}", out.stderr);
}

/// One broker lists itself, so this runs whatever the cluster metadata can
/// do: files `dev` writes, and every per-broker operation of the harness.
#[test]
fn single_broker_lifecycle() {
    let mut cluster = DevCluster::builder(1).config("num.partitions", "2").start();
    assert_eq!(cluster.broker_ids(), vec![0]);
    assert_eq!(listed_brokers(&cluster, 0), BTreeSet::from([0]));

    let props = std::fs::read_to_string(cluster.data_dir().join("broker-0/server.properties"))
        .expect("server.properties");
    for line in [
        "node.id=0",
        "process.roles=broker,controller",
        "controller.listener.names=CONTROLLER",
        "default.replication.factor=1",
        "num.partitions=2",
    ] {
        assert!(props.lines().any(|l| l == line), "no `{line}` in\n{props}");
    }

    cluster.pause(0);
    assert!(cluster.is_running(0));
    cluster.resume(0);
    assert_eq!(listed_brokers(&cluster, 0), BTreeSet::from([0]));

    let first = cluster.pid(0);
    cluster.kill9(0);
    assert!(!cluster.is_running(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cluster.dev_stderr().contains("broker 0 exited") {
        assert!(
            Instant::now() < deadline,
            "dev did not report the exit:\n{}",
            cluster.dev_stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.restart(0);
    assert_ne!(cluster.pid(0), first);
    assert!(cluster.is_running(0));
    assert_eq!(listed_brokers(&cluster, 0), BTreeSet::from([0]));
    assert!(cluster.log(0).contains("restarted by the test"));

    cluster.terminate(0);
    assert!(!cluster.is_running(0));
    cluster.restart(0);

    let before = cluster.bootstrap();
    cluster.restart_dev();
    assert_eq!(cluster.bootstrap(), before);
    let status = cluster.stop();
    assert!(status.success(), "rivulet dev exited with {status}");
    assert!(!pid_alive(cluster.pid(0)));
}
