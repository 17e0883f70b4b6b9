//! The operator's `/metrics` exposition, its own series and the `process_*`
//! ones, passes `promtool check metrics` (naming and help conventions).
//! Skipped, with a message, without promtool.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use rivulet_operator::{
    error::Error,
    metrics::{ClusterState, Metrics},
};

#[test]
fn metrics_pass_promtool() {
    let metrics = Metrics::new();
    drop(metrics.reconcile("kafkacluster"));
    drop(metrics.reconcile("topic"));
    metrics.failure(
        "kafkacluster",
        &Error::Read {
            what: "StatefulSet kafka/demo-broker".into(),
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        },
    );
    metrics.set_cluster_state("kafka/demo", ClusterState::Progressing);
    metrics.set_leader(true);
    metrics.set_certificate_expiry("kafka", "demo", "cluster-ca", 1_900_000_000);
    let text = metrics.render();
    assert!(text.contains(
        "rivulet_operator_reconcile_failures_total{controller=\"kafkacluster\",error=\"read\"} 1"
    ));
    // The process series are part of what promtool checks.
    assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED metrics_pass_promtool: promtool is not installed");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
