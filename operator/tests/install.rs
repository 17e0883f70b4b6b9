//! `manifests/install.yaml` is the Helm chart rendered with default values,
//! and `manifests/monitoring/chart-monitoring.yaml` its monitoring objects
//! rendered with their values on (both by `charts/render.py`, through
//! helm-python-sdk: Helm's own renderer, no binary, no network). These
//! tests fail when a file is stale.
//!
//! It needs a Python with `helm_python` (RIVULET_TEST_PYTHON, else
//! `.venv/bin/python`, else `python3`); without one it says it was skipped,
//! unless RIVULET_REQUIRE_HELM=1 makes that a failure (CI should set it).

use std::{path::PathBuf, process::Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("RIVULET_TEST_PYTHON").map(PathBuf::from),
        Some(root().join(".venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", "import helm_python"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs `charts/render.py ARGS` and compares its output with the committed
/// `file`; `None` when no Python has helm_python (and that is allowed).
fn render_and_compare(test: &str, args: &[&str], file: &str) -> Option<String> {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("RIVULET_REQUIRE_HELM").is_none(),
            "RIVULET_REQUIRE_HELM is set but no Python has helm_python (pip install helm-python-sdk)"
        );
        eprintln!("SKIPPED {test}: no Python with helm_python (pip install helm-python-sdk)");
        return None;
    };
    let output = Command::new(&python)
        .arg(root().join("charts/render.py"))
        .args(args)
        .output()
        .expect("run charts/render.py");
    assert!(
        output.status.success(),
        "charts/render.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).expect("UTF-8 manifests");
    let committed = std::fs::read_to_string(root().join(file)).unwrap_or_default();
    assert!(
        rendered == committed,
        "{file} is stale; regenerate with `{} charts/render.py {}> {file}`",
        python.display(),
        args.iter().map(|a| format!("{a} ")).collect::<String>()
    );
    Some(rendered)
}

#[test]
fn install_yaml_is_the_rendered_chart() {
    let Some(rendered) = render_and_compare(
        "install_yaml_is_the_rendered_chart",
        &[],
        "manifests/install.yaml",
    ) else {
        return;
    };
    for kind in [
        "CustomResourceDefinition",
        "ClusterRole",
        "Deployment",
        "Namespace",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}")),
            "install.yaml lacks a {kind}"
        );
    }
    assert!(rendered.contains("helm.sh/resource-policy: keep"));
    // Monitoring objects are off by default.
    assert!(!rendered.contains("kind: PrometheusRule"));
}

/// The chart's monitoring objects, with their values turned on, are the
/// committed render; and that render carries every alert and dashboard of
/// manifests/monitoring/ (which generate.py keeps in step with the chart's
/// files), so neither the templates nor their inputs drift unnoticed.
#[test]
fn chart_monitoring_yaml_is_the_rendered_chart() {
    let file = "manifests/monitoring/chart-monitoring.yaml";
    let Some(rendered) = render_and_compare(
        "chart_monitoring_yaml_is_the_rendered_chart",
        &["--monitoring"],
        file,
    ) else {
        return;
    };
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert_eq!(
            rendered.matches(&format!("\nkind: {kind}\n")).count(),
            1,
            "{file}: one {kind}"
        );
    }
    let rules = std::fs::read_to_string(root().join("manifests/monitoring/rivulet-rules.yaml"))
        .expect("read rivulet-rules.yaml");
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            rendered.contains(&format!("- alert: {alert}\n")),
            "{file} lacks alert {alert}"
        );
    }
    let dashboards = std::fs::read_dir(root().join("manifests/monitoring/dashboards"))
        .expect("list dashboards")
        .map(|e| {
            e.expect("dashboard entry")
                .file_name()
                .into_string()
                .unwrap()
        })
        .collect::<Vec<_>>();
    assert!(dashboards.len() >= 6, "{dashboards:?}");
    for json in &dashboards {
        assert!(
            rendered.contains(&format!("\n  {json}: |-\n")),
            "{file} lacks a ConfigMap with {json}"
        );
    }
    assert_eq!(
        rendered.matches("\nkind: ConfigMap\n").count(),
        dashboards.len(),
        "{file}: one ConfigMap per dashboard"
    );
}
