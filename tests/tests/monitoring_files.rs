//! The monitoring files are consistent: generated dashboards, ConfigMaps,
//! PrometheusRule and chart copies are current (manifests/monitoring/
//! generate.py --check), the rules pass `promtool check rules`, and every
//! alert passes its unit tests (`promtool test rules`) and has a runbook
//! section in docs/monitoring.md.

use std::{process::Command, time::Duration};

use rivulet_tests::{
    prometheus::{alert_rules, monitoring_dir},
    require_tools, run_cmd,
    tools::workspace_root,
};

#[test]
fn generated_monitoring_files_are_current() {
    let out = run_cmd(
        Command::new("python3")
            .arg(monitoring_dir().join("generate.py"))
            .arg("--check"),
        None,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
}

#[test]
fn rules_pass_promtool_and_their_unit_tests() {
    require_tools!("promtool");
    for args in [
        vec!["check", "rules", "rivulet-rules.yaml"],
        vec!["test", "rules", "rivulet-rules-test.yaml"],
    ] {
        let out = run_cmd(
            Command::new("promtool")
                .args(&args)
                .current_dir(monitoring_dir()),
            None,
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn every_alert_has_a_unit_test_and_a_runbook() {
    let tests = std::fs::read_to_string(monitoring_dir().join("rivulet-rules-test.yaml"))
        .expect("read the rule tests");
    let docs = std::fs::read_to_string(workspace_root().join("docs/monitoring.md"))
        .expect("read docs/monitoring.md");
    for (alert, _) in alert_rules() {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "no promtool unit test for {alert}"
        );
        assert!(
            docs.contains(&format!("### {alert}")),
            "no runbook section for {alert}"
        );
    }
}
