//! Monitoring end to end: a real Prometheus scrapes a 3-broker `rivulet dev`
//! cluster (through the prometheus.yml `dev` writes) under produce and
//! consumer-group load, with Rivulet's alert rules loaded (their `for:`
//! shortened). Every dashboard query and alert expression is evaluated
//! through Prometheus' HTTP API; the series Strimzi's and Kafka Exporter's
//! dashboards query must be there; a healthy cluster fires nothing. Then a
//! broker and the consumer are killed and the under-replicated, broker-down
//! and lag alerts must go pending and fire in Prometheus' /api/v1/alerts.
//!
//! Skipped with a message without `prometheus` (Debian package
//! `prometheus`); CI installs it.

use std::{
    collections::BTreeSet,
    thread,
    time::{Duration, Instant},
};

use rivulet_tests::{
    cluster::DevCluster,
    cluster_admin::create_assigned_topic,
    prometheus::{
        alert_rules, dashboard_queries, resolve_variables, rules_with_short_for, Prometheus,
    },
    py_command, require_py, require_tools,
    tools::workspace_root,
    Background,
};

const TOPIC: &str = "monitored";
const GROUP: &str = "monitoring-group";

/// Dashboards whose data comes from the operator, which this test does not run.
const NEEDS_OPERATOR: &str = "rivulet-operator";

/// Alerts a healthy cluster may show for reasons outside it: the disk
/// prediction follows every writer on the host's filesystem.
const HOST_DEPENDENT: &[&str] = &["RivuletLogDirFillsWithin24h"];

#[test]
fn dashboards_and_alerts_against_a_live_cluster() {
    require_tools!("prometheus");
    require_py!("confluent_kafka");
    let started = Instant::now();
    let mut cluster = DevCluster::builder(3)
        .config("replica.lag.time.max.ms", "4000")
        .config("broker.session.timeout.ms", "6000")
        .start();
    let mut conn = cluster.client(0);
    create_assigned_topic(
        &mut conn,
        TOPIC,
        &[&[0, 1, 2], &[1, 2, 0], &[2, 0, 1]],
        &[("min.insync.replicas", "2")],
    )
    .expect("create the topic");

    let dir = tempfile::tempdir().expect("temporary directory");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, rules_with_short_for("3s")).expect("write rules");
    let config = std::fs::read_to_string(cluster.data_dir().join("prometheus.yml"))
        .expect("rivulet dev writes prometheus.yml")
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace(
            "# rule_files:\n#   - /path/to/rivulet/manifests/monitoring/rivulet-rules.yaml",
            &format!("rule_files:\n  - {}", rules.display()),
        );
    assert!(config.contains("rule_files:\n  - "), "{config}");
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let prometheus = Prometheus::start(&config_path, dir.path());

    let bootstrap = cluster.bootstrap();
    let _producer = Background::spawn(
        &mut py_command("monitoring_load.py", &["produce", &bootstrap, TOPIC, "300"]),
        dir.path(),
        "producer",
    );
    let mut consumer = Some(Background::spawn(
        &mut py_command("monitoring_load.py", &["consume", &bootstrap, TOPIC, GROUP]),
        dir.path(),
        "consumer",
    ));
    wait_for(
        &prometheus,
        "kafka_consumergroup_lag_sum",
        Duration::from_secs(60),
    );
    // Enough samples for rates over the test's 20s windows.
    thread::sleep(Duration::from_secs(20));

    every_dashboard_query_returns_data(&prometheus);
    kafka_dashboards_series_are_present(&prometheus);
    let alerts = alert_rules();
    assert!(alerts.len() >= 15, "{alerts:?}");
    for (name, expr) in &alerts {
        let result = prometheus
            .query(expr)
            .unwrap_or_else(|e| panic!("alert {name}: {e:#}"));
        if !HOST_DEPENDENT.contains(&name.as_str()) {
            assert!(result.is_empty(), "healthy cluster, yet {name}: {result:?}");
        }
    }
    let firing: Vec<_> = prometheus.alerts().expect("alerts");
    assert!(
        firing
            .iter()
            .all(|(n, _)| HOST_DEPENDENT.contains(&n.as_str())),
        "{firing:?}"
    );
    eprintln!("healthy checks done at {:?}", started.elapsed());

    let victim = victim(&prometheus);
    eprintln!("killing broker {victim} and the consumer");
    cluster.kill9(victim);
    drop(consumer.take());
    let wanted = [
        "RivuletUnderReplicatedPartitions",
        "RivuletBrokerDown",
        "RivuletConsumerGroupLagGrowing",
    ];
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for (name, state) in prometheus.alerts().expect("alerts") {
            seen.insert((name, state));
        }
        let done = wanted.iter().all(|w| {
            ["pending", "firing"]
                .iter()
                .all(|s| seen.contains(&(w.to_string(), s.to_string())))
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alerts did not all go pending and fire; seen {seen:?}"
        );
        thread::sleep(Duration::from_millis(300));
    }
    eprintln!("alerts fired at {:?}: {seen:?}", started.elapsed());
}

fn wait_for(prometheus: &Prometheus, expr: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while prometheus.query(expr).map_or(true, |r| r.is_empty()) {
        assert!(Instant::now() < deadline, "no {expr} in Prometheus");
        thread::sleep(Duration::from_millis(500));
    }
}

fn every_dashboard_query_returns_data(prometheus: &Prometheus) {
    let queries = dashboard_queries();
    assert!(queries.len() >= 40, "{} queries", queries.len());
    let mut empty = Vec::new();
    for (uid, title, expr) in &queries {
        let resolved = resolve_variables(expr, "20s");
        let result = prometheus
            .query(&resolved)
            .unwrap_or_else(|e| panic!("{uid} / {title}: {e:#}"));
        if result.is_empty() && uid != NEEDS_OPERATOR {
            empty.push(format!("{uid} / {title}: {resolved}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
}

fn kafka_dashboards_series_are_present(prometheus: &Prometheus) {
    let list =
        std::fs::read_to_string(workspace_root().join("tests/data/kafka-dashboard-series.txt"))
            .expect("read the series list");
    let mut missing = Vec::new();
    for line in list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut words = line.split_whitespace();
        let metric = words.next().expect("metric name");
        let result = prometheus.query(metric).expect("query");
        if result.is_empty() {
            missing.push(metric.to_string());
            continue;
        }
        for label in words {
            if !result.iter().any(|s| s["metric"].get(label).is_some()) {
                missing.push(format!("{metric}{{{label}}}"));
            }
        }
    }
    assert!(missing.is_empty(), "missing series or labels: {missing:?}");
}

/// A broker that is neither the active controller nor the group's
/// coordinator, so the lag series keeps its reporter.
fn victim(prometheus: &Prometheus) -> i32 {
    let ids = |expr: &str| -> BTreeSet<i32> {
        prometheus
            .query(expr)
            .expect("query")
            .iter()
            .filter_map(|s| s["metric"]["node_id"].as_str()?.parse().ok())
            .collect()
    };
    let busy: BTreeSet<i32> = ids("kafka_controller_kafkacontroller_activecontrollercount == 1")
        .union(&ids("kafka_consumergroup_lag_sum"))
        .copied()
        .collect();
    (0..3)
        .find(|id| !busy.contains(id))
        .expect("three brokers, at most two busy")
}
