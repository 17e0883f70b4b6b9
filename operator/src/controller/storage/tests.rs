//! Storage growth: the pure plan, and the step against a fake API server
//! (what is patched, with which body, and what is refused untouched).

use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::{
    build::build_statefulset,
    fixtures::{cluster_from_yaml, validated, FakeApi, FakeKafka},
    metrics::Metrics,
};

const GI: u128 = 1 << 30;
const PVCS: &str = "/api/v1/namespaces/kafka/persistentvolumeclaims";
const CLASSES: &str = "/apis/storage.k8s.io/v1/storageclasses";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/kafka/events";
const LONG_AGO: &str = "2020-01-01T00:00:00Z";

#[test]
fn quantities_parse_to_bytes() {
    for (text, bytes) in [
        ("10Gi", 10 * GI),
        ("10G", 10_000_000_000),
        ("512Mi", 512 << 20),
        ("1Ti", 1 << 40),
        ("1.5Gi", 3 * GI / 2),
        ("2048", 2048),
        ("1e9", 1_000_000_000),
        ("0.5k", 500),
        ("1E", 1_000_000_000_000_000_000),
        ("4Ki", 4096),
        ("100m", 1),
        (" 20Gi ", 20 * GI),
    ] {
        assert_eq!(parse_quantity(text), Some(bytes), "{text}");
    }
    for bad in [
        "", "Gi", "ten", "-1Gi", "1..5Gi", "10 Gi", "5.Gi", ".5Gi", "1e999",
    ] {
        assert_eq!(parse_quantity(bad), None, "{bad:?}");
    }
    assert!(parse_quantity("20Gi") > parse_quantity("20G"));
    assert_eq!(parse_quantity("20480Mi"), parse_quantity("20Gi"));
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn claim(broker: i32, request: &str, capacity: &str) -> Claim {
    Claim {
        broker,
        name: format!("data-demo-broker-{broker}"),
        bound: true,
        request: request.into(),
        capacity: Some(capacity.into()),
        storage_class: Some("fast".into()),
        ..Claim::default()
    }
}

#[test]
fn survey_sorts_claims_by_what_they_need() {
    let now = at("2030-01-01T00:10:00Z");
    let mut unbound = claim(4, "10Gi", "10Gi");
    unbound.bound = false;
    unbound.capacity = None;
    let mut fresh_pending = claim(2, "20Gi", "20Gi");
    fresh_pending.fs_resize_pending = Some(at("2030-01-01T00:09:00Z"));
    fresh_pending.pod_created = Some(at(LONG_AGO));
    let mut old_pending = claim(3, "20Gi", "20Gi");
    old_pending.fs_resize_pending = Some(at("2030-01-01T00:00:00Z"));
    old_pending.pod_created = Some(at(LONG_AGO));
    let mut remounted = claim(5, "20Gi", "20Gi");
    remounted.fs_resize_pending = Some(at("2030-01-01T00:00:00Z"));
    remounted.pod_created = Some(at("2030-01-01T00:05:00Z"));
    let claims = [
        claim(0, "10Gi", "10Gi"),
        claim(1, "20480Mi", "10Gi"),
        fresh_pending,
        old_pending,
        unbound,
        remounted,
    ];
    let s = survey("20Gi", &claims, 6, now).unwrap();
    assert_eq!(s.grow.iter().map(|c| c.broker).collect::<Vec<_>>(), [0]);
    assert_eq!(s.expanding, [1], "asks for the size, has less");
    assert_eq!(s.unbound, [4]);
    assert_eq!(s.fs_pending, [2, 3, 5]);
    assert_eq!(
        s.restart,
        BTreeSet::from([3]),
        "2 is within the grace, 5's pod started after the resize"
    );
    assert_eq!(s.capacity.len(), 5);
    assert_eq!(s.capacity[&1], "10Gi");
    // A broker being scaled away is not restarted.
    assert!(survey("20Gi", &claims, 3, now).unwrap().restart.is_empty());
    let message = growing_message("20Gi", &s, &[]);
    assert_eq!(
        message,
        "growing the brokers' volumes to 20Gi: the storage driver is expanding the volumes of brokers 0, 1; \
         the filesystems of brokers 2, 5 wait to grow; broker 3 restart, one at a time, to grow their filesystems; \
         the claims of broker 4 grow once bound"
    );

    let steady = survey(
        "20Gi",
        &[claim(0, "20Gi", "20Gi"), claim(1, "20Gi", "21Gi")],
        2,
        now,
    );
    assert!(steady.unwrap().is_steady());
}

#[test]
fn a_smaller_size_is_refused() {
    let claims = [claim(0, "20Gi", "20Gi"), claim(1, "30Gi", "30Gi")];
    let refused = survey("10Gi", &claims, 2, Timestamp::UNIX_EPOCH).unwrap_err();
    assert_eq!(
        refused,
        "shrinking storage is not supported: the volumes of brokers 0, 1 ask for up to 30Gi, \
         more than spec.storage.size 10Gi; set it back to at least 30Gi"
    );
    assert!(survey("ten", &claims, 2, Timestamp::UNIX_EPOCH).is_err());
}

#[test]
fn only_an_expandable_class_is_grown() {
    let grow = [claim(0, "10Gi", "10Gi"), claim(1, "10Gi", "10Gi")];
    let allows = |v: Option<bool>| BTreeMap::from([("fast".to_string(), v)]);
    assert_eq!(class_refusal("20Gi", &grow, &allows(Some(true))), None);
    let refused = class_refusal("20Gi", &grow, &allows(Some(false))).unwrap();
    assert!(
        refused.contains("StorageClass fast does not allow volume expansion")
            && refused.contains("brokers 0, 1")
            && refused.ends_with("set spec.storage.size back to 10Gi"),
        "{refused}"
    );
    assert!(class_refusal("20Gi", &grow, &allows(None))
        .unwrap()
        .contains("StorageClass fast of brokers 0, 1 does not exist"));
    let mut classless = claim(0, "10Gi", "10Gi");
    classless.storage_class = None;
    assert!(class_refusal("20Gi", &[classless], &BTreeMap::new())
        .unwrap()
        .contains("no StorageClass"));
}

#[test]
fn claim_templates_stay_as_the_statefulset_has_them() {
    let old = build_statefulset(&validated("replicas: 3\nstorage:\n  size: 10Gi"));
    let template = &old
        .spec
        .as_ref()
        .unwrap()
        .volume_claim_templates
        .as_ref()
        .unwrap()[0];
    assert_eq!(template.metadata.name.as_deref(), Some(CLAIM_TEMPLATE));
    let mut new = build_statefulset(&validated("replicas: 3\nstorage:\n  size: 20Gi"));
    assert_ne!(new, old);
    keep_claim_templates(&mut new, Some(&old));
    assert_eq!(new, old, "only the templates differed");
    let mut ephemeral = build_statefulset(&validated("replicas: 1\nstorage:\n  type: Ephemeral"));
    let before = ephemeral.clone();
    keep_claim_templates(&mut ephemeral, Some(&old));
    assert_eq!(ephemeral, before, "no templates are added");
}

struct Harness {
    api: FakeApi,
    ctx: Context,
    object: KafkaCluster,
    cluster: ValidatedCluster,
}

impl Harness {
    /// A cluster of `spec` whose brokers have claims of `requests`.
    fn new(spec: &str, requests: &[&str]) -> Harness {
        let (client, api) = FakeApi::start();
        let ctx = Context::new(
            client,
            Arc::new(FakeKafka::default()),
            Arc::new(Metrics::new()),
        );
        let object = cluster_from_yaml(spec);
        let cluster = validated(spec);
        let h = Harness {
            api,
            ctx,
            object,
            cluster,
        };
        for (id, request) in (0..).zip(requests) {
            h.put_claim(id, request, request, &[]);
        }
        h
    }

    fn put_claim(&self, id: i32, request: &str, capacity: &str, conditions: &[Value]) {
        let name = format!("data-demo-broker-{id}");
        self.api.insert(
            &format!("{PVCS}/{name}"),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": "kafka",
                             "labels": self.cluster.selector_labels()},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                         "resources": {"requests": {"storage": request}}},
                "status": {"phase": "Bound", "capacity": {"storage": capacity},
                           "conditions": conditions}
            }),
        );
    }

    fn put_class(&self, expandable: bool) {
        self.api.insert(
            &format!("{CLASSES}/fast"),
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                   "metadata": {"name": "fast"}, "provisioner": "csi.example.test",
                   "allowVolumeExpansion": expandable}),
        );
    }

    async fn step(&self, pods: &[Pod]) -> (StorageStep, Vec<String>) {
        let step = step(&self.ctx, &self.object, &self.cluster, pods).await;
        let calls = self.api.take_calls().iter().map(|c| c.line()).collect();
        (step, calls)
    }

    fn request(&self, id: i32) -> Value {
        self.api
            .object(&format!("{PVCS}/data-demo-broker-{id}"))
            .unwrap()["spec"]["resources"]["requests"]["storage"]
            .clone()
    }
}

const GROWN: &str = "replicas: 3\nstorage:\n  size: 20Gi\n  storageClassName: fast";

#[tokio::test]
async fn a_bigger_size_patches_every_claim_of_an_expandable_class() {
    let h = Harness::new(GROWN, &["10Gi", "10Gi", "20Gi"]);
    h.put_class(true);
    let step = step(&h.ctx, &h.object, &h.cluster, &[]).await;
    let StorageStep::Growing {
        size,
        message,
        restart,
        capacity,
    } = step
    else {
        panic!("{step:?}")
    };
    assert_eq!(size, "20Gi");
    assert!(restart.is_empty());
    assert_eq!(capacity[&0], "10Gi");
    assert_eq!(
        message,
        "growing the brokers' volumes to 20Gi: the storage driver is expanding the volumes of brokers 0, 1"
    );
    assert_eq!(h.request(0), "20Gi");
    assert_eq!(h.request(1), "20Gi");

    let calls = h.api.take_calls();
    let lines: Vec<String> = calls.iter().map(|c| c.line()).collect();
    assert_eq!(
        lines,
        [
            format!("GET {PVCS}"),
            format!("GET {CLASSES}/fast"),
            format!("PATCH {PVCS}/data-demo-broker-0"),
            format!("PATCH {PVCS}/data-demo-broker-1"),
            format!("POST {EVENTS}"),
        ]
    );
    assert_eq!(
        calls[0].query["labelSelector"],
        h.cluster.selector_string(),
        "only the cluster's claims"
    );
    for patch in &calls[2..4] {
        assert_eq!(
            patch.body,
            json!([{"op": "replace", "path": "/spec/resources/requests/storage", "value": "20Gi"}])
        );
        assert_eq!(patch.query["fieldManager"], FIELD_MANAGER);
    }
    assert_eq!(calls[4].body["type"], "Normal");
    assert_eq!(
        calls[4].body["note"],
        "Asked for 20Gi (was 10Gi) on the volumes of brokers 0, 1"
    );
}

#[tokio::test]
async fn a_class_without_expansion_is_refused_untouched() {
    let h = Harness::new(GROWN, &["10Gi", "10Gi", "10Gi"]);
    h.put_class(false);
    let (step, calls) = h.step(&[]).await;
    let StorageStep::Refused { message, capacity } = &step else {
        panic!("{step:?}")
    };
    assert!(
        message.contains("StorageClass fast does not allow volume expansion"),
        "{message}"
    );
    assert_eq!(capacity.len(), 3);
    assert!(!calls.iter().any(|c| c.starts_with("PATCH")), "{calls:#?}");
    assert!(calls.contains(&format!("POST {EVENTS}")), "a Warning Event");
    assert_eq!(h.request(0), "10Gi");

    // Reported once: a status that says so already gets no second Event.
    let mut object = h.object.clone();
    object.status = Some(crate::crd::KafkaClusterStatus {
        conditions: vec![Condition {
            type_: "Degraded".into(),
            status: "True".into(),
            reason: REFUSED.into(),
            message: message.clone(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::UNIX_EPOCH,
            ),
        }],
        ..Default::default()
    });
    let again = super::step(&h.ctx, &object, &h.cluster, &[]).await;
    assert_eq!(again, step);
    let calls = h.api.take_calls();
    assert!(!calls.iter().any(|c| c.method == "POST"), "{calls:#?}");
}

#[tokio::test]
async fn a_smaller_size_is_refused_untouched() {
    let h = Harness::new("replicas: 2\nstorage:\n  size: 10Gi", &["20Gi", "20Gi"]);
    h.put_class(true);
    let (step, calls) = h.step(&[]).await;
    let StorageStep::Refused { message, .. } = &step else {
        panic!("{step:?}")
    };
    assert!(
        message.starts_with("shrinking storage is not supported"),
        "{message}"
    );
    assert_eq!(calls, [format!("GET {PVCS}"), format!("POST {EVENTS}")]);
    assert_eq!(h.request(1), "20Gi");
}

#[tokio::test]
async fn a_filesystem_waiting_for_a_remount_restarts_its_broker() {
    let h = Harness::new(GROWN, &["20Gi", "20Gi", "20Gi"]);
    h.put_claim(
        1,
        "20Gi",
        "20Gi",
        &[json!({"type": "FileSystemResizePending", "status": "True",
                 "lastTransitionTime": LONG_AGO,
                 "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node."})],
    );
    let pod = |id: i32, created: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {
            "name": format!("demo-broker-{id}"), "creationTimestamp": created}}))
        .unwrap()
    };
    let pods = [
        pod(0, "2019-12-01T00:00:00Z"),
        pod(1, "2019-12-01T00:00:00Z"),
    ];
    let (step, calls) = h.step(&pods).await;
    assert_eq!(calls, [format!("GET {PVCS}")], "nothing to patch");
    assert_eq!(step.restart(), BTreeSet::from([1]));
    assert!(matches!(&step, StorageStep::Growing { message, .. }
        if message.ends_with("broker 1 restart, one at a time, to grow their filesystems")));

    // Restarted: the new pod mounts the grown volume; no second restart.
    let (step, _) = h.step(&[pod(1, "2030-01-01T00:00:00Z")]).await;
    assert!(step.restart().is_empty(), "{step:?}");
    // The kubelet grew the filesystem: steady.
    h.put_claim(1, "20Gi", "20Gi", &[]);
    let (step, _) = h.step(&pods).await;
    assert!(matches!(step, StorageStep::Steady { .. }), "{step:?}");
}

#[tokio::test]
async fn steady_and_ephemeral_storage_change_nothing() {
    // Broker 3's claim was kept from a scale-in: grown when it is back.
    let h = Harness::new(GROWN, &["20Gi", "20Gi", "20Gi", "10Gi"]);
    let (step, calls) = h.step(&[]).await;
    assert_eq!(calls, [format!("GET {PVCS}")]);
    assert_eq!(
        step,
        StorageStep::Steady {
            size: "20Gi".into(),
            capacity: (0..3).map(|id| (id, "20Gi".to_string())).collect(),
        }
    );

    let h = Harness::new("replicas: 1\nstorage:\n  type: Ephemeral\n  size: 1Gi", &[]);
    let (step, calls) = h.step(&[]).await;
    assert!(calls.is_empty(), "{calls:#?}");
    assert!(matches!(step, StorageStep::Steady { .. }));
}
