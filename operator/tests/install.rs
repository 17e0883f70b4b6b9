//! `manifests/install.yaml` is the Helm chart rendered with default values
//! (by `charts/render.py`, through helm-python-sdk: Helm's own renderer,
//! no binary, no network). This test fails when the file is stale.
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

#[test]
fn install_yaml_is_the_rendered_chart() {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("RIVULET_REQUIRE_HELM").is_none(),
            "RIVULET_REQUIRE_HELM is set but no Python has helm_python (pip install helm-python-sdk)"
        );
        eprintln!("SKIPPED install_yaml_is_the_rendered_chart: no Python with helm_python (pip install helm-python-sdk)");
        return;
    };
    let output = Command::new(&python)
        .arg(root().join("charts/render.py"))
        .output()
        .expect("run charts/render.py");
    assert!(
        output.status.success(),
        "charts/render.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).expect("UTF-8 manifests");
    let committed =
        std::fs::read_to_string(root().join("manifests/install.yaml")).unwrap_or_default();
    assert!(
        rendered == committed,
        "manifests/install.yaml is stale; regenerate with `{} charts/render.py > manifests/install.yaml`",
        python.display()
    );
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
}
