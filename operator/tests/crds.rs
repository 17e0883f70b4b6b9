//! The committed CRDs under `crds/` are exactly what `crdgen` writes from
//! the Rust types, and they carry what users rely on (subresources,
//! printer columns, validation rules).

use std::path::PathBuf;

use rivulet_operator::crd::{all_crds, crd_yaml};

/// Every committed copy: the plain one and the Helm chart's.
fn crd_dirs() -> [PathBuf; 2] {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    [root.join("crds"), root.join("charts/rivulet/files/crds")]
}

#[test]
fn committed_crds_are_current() {
    let mut stale = Vec::new();
    for dir in crd_dirs() {
        for (plural, crd) in all_crds() {
            let path = dir.join(format!("{plural}.yaml"));
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != crd_yaml(&crd) {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale CRDs: {stale:?}\nregenerate with `cargo run -p rivulet-operator --bin crdgen -- crds charts/rivulet/files/crds`"
    );
}

#[test]
fn kafkacluster_crd_has_scale_status_and_columns() {
    let (_, crd) = all_crds()
        .into_iter()
        .find(|(p, _)| *p == "kafkaclusters")
        .unwrap();
    assert_eq!(crd.spec.group, "rivulet.dev");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let subresources = version.subresources.as_ref().unwrap();
    assert!(subresources.status.is_some());
    let scale = subresources.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.labelSelector")
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Brokers", "Ready", "Status", "Bootstrap", "Age"]);
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["kc".to_string()][..])
    );
    let yaml = crd_yaml(&crd);
    for rule in ["self >= 1", "self in [1, 3, 5]"] {
        assert!(yaml.contains(rule), "missing CEL rule {rule}");
    }
    // The voters follow the brokers: a scale below quorumVoters, or a
    // change of it, is the operator's to carry out, not the schema's to refuse.
    for gone in [
        "self.quorumVoters <= self.replicas",
        "self.quorumVoters == oldSelf.quorumVoters",
    ] {
        assert!(!yaml.contains(gone), "stale CEL rule {gone}");
    }
    for field in [
        "clusterId",
        "quorumVoters",
        "leaderId",
        "directoryId",
        "observers",
    ] {
        assert!(yaml.contains(field), "status lacks {field}");
    }
}

#[test]
fn every_field_is_documented() {
    // Every property of our own schema types has a description, which is
    // what `kubectl explain` shows. Embedded Kubernetes types bring theirs.
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, property) in properties {
                let here = format!("{path}.{name}");
                if property.get("description").is_none()
                    && !["apiVersion", "kind", "metadata"].contains(&name.as_str())
                {
                    missing.push(here.clone());
                }
                walk(&here, property, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for (plural, crd) in all_crds() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        walk(plural, &schema["openAPIV3Schema"], &mut missing);
    }
    assert!(missing.is_empty(), "undocumented fields: {missing:#?}");
}

#[test]
fn kafkauser_crd_has_short_name_columns_and_rules() {
    let (_, crd) = all_crds()
        .into_iter()
        .find(|(p, _)| *p == "kafkausers")
        .unwrap();
    assert_eq!(crd.spec.names.kind, "KafkaUser");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["ku".to_string()][..])
    );
    let version = &crd.spec.versions[0];
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<&str> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["Cluster", "Authentication", "Authorization", "Ready", "Age"]
    );
    let yaml = crd_yaml(&crd);
    for text in [
        "scram-sha-512",
        "scram-sha-256",
        "transactionalId",
        "IdempotentWrite",
        "secretKeyRef",
        "controllerMutationRate",
        "self == oldSelf",
    ] {
        assert!(yaml.contains(text), "missing {text}");
    }
}
