//! The brokers' StatefulSet.
//!
//! Choices that matter:
//! - `updateStrategy: OnDelete`: the operator restarts brokers itself, one
//!   at a time and only while no partition is under-replicated.
//! - `podManagementPolicy: Parallel`: quorum voters must all start to elect
//!   a controller; ordered start-up would wait forever for readiness.
//! - The node id is the pod ordinal, read from the `apps.kubernetes.io/pod-index`
//!   label through the downward API; the broker takes it from `RIVULET_NODE_ID`.
//! - The pod template carries a hash of the shared config and nothing that
//!   depends on the broker count, so scaling never restarts brokers.
//! - Identity: `RIVULET_CLUSTER_ID` is the cluster's id, so a broker formats
//!   an empty data directory as a member of this cluster, one that joins
//!   the existing quorum. `RIVULET_BOOTSTRAP_QUORUM` (permission to found
//!   the quorum instead) comes from the optional `<cluster>-bootstrap`
//!   ConfigMap, which exists only while the cluster is created: the
//!   template never changes for it, and a pod restarted on an empty disk
//!   later gets no such permission.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{
            StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
            StatefulSetUpdateStrategy,
        },
        core::v1::{
            Capabilities, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort,
            EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, LocalObjectReference,
            ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
            SecretVolumeSource, SecurityContext, TCPSocketAction, TopologySpreadConstraint, Volume,
            VolumeMount, VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::{
    configmap::{config_hash, BOOTSTRAP_KEY},
    listeners::CERTS_MOUNT,
    owned_meta,
};
use crate::{
    crd::StorageKind,
    validate::{ValidatedCluster, CONTROLLER_PORT, METRICS_PORT, REPLICATION_PORT},
};

/// Pod template annotation with the hash of the shared broker config.
pub const CONFIG_HASH_ANNOTATION: &str = "rivulet.dev/config-hash";
/// Environment variable the broker reads its node id from.
pub const NODE_ID_ENV: &str = "RIVULET_NODE_ID";
/// Environment variable the broker reads the cluster id from.
pub const CLUSTER_ID_ENV: &str = "RIVULET_CLUSTER_ID";
/// Environment variable that lets an empty data directory found the quorum.
pub const BOOTSTRAP_ENV: &str = "RIVULET_BOOTSTRAP_QUORUM";
/// Where the data volume is mounted; the broker's data dir is `data/` in it,
/// so a volume's `lost+found` never looks like a partition.
pub const DATA_MOUNT: &str = "/var/lib/rivulet";
const CONFIG_MOUNT: &str = "/etc/rivulet";
/// The image's non-root user and group.
const BROKER_UID: i64 = 10001;
/// Default seconds for a clean shutdown: flush and hand over leadership.
const DEFAULT_GRACE_SECONDS: i64 = 120;

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// `RIVULET_BOOTSTRAP_QUORUM` from the bootstrap ConfigMap, unset when it
/// does not exist.
fn bootstrap_env(cluster: &ValidatedCluster) -> EnvVar {
    EnvVar {
        name: BOOTSTRAP_ENV.into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: cluster.bootstrap_config_map_name(),
                key: BOOTSTRAP_KEY.into(),
                optional: Some(true),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn tcp_probe(port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port.into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

/// A GET of `path` on the metrics port.
fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

fn broker_container(cluster: &ValidatedCluster) -> Container {
    let spec = &cluster.spec;
    let kafka_port = cluster.kafka_port();
    let metrics_addr = if spec.metrics.enabled {
        format!("0.0.0.0:{METRICS_PORT}")
    } else {
        "none".into()
    };
    // Listeners and advertised addresses live in the per-broker file, not
    // here: flags win over the file, and the advertised addresses differ
    // per broker. $(VAR) is expanded by the kubelet from the container's env.
    let args = vec![
        "broker".to_string(),
        format!("--data-dir={DATA_MOUNT}/data"),
        format!("--metrics-addr={metrics_addr}"),
        format!("--config-file={CONFIG_MOUNT}/broker-$({NODE_ID_ENV}).properties"),
    ];
    let mut ports = vec![
        container_port("kafka", kafka_port),
        container_port("controller", CONTROLLER_PORT),
    ];
    if let Some(external) = &spec.listeners.external {
        ports.push(container_port("external", external.port));
    }
    if cluster.security.enabled() {
        ports.push(container_port("replication", REPLICATION_PORT));
    }
    if spec.metrics.enabled {
        ports.push(container_port("metrics", METRICS_PORT));
    }
    // Alive means "the process answers": HTTP on the metrics port when it is
    // served, else the Kafka port.
    let liveness = if spec.metrics.enabled {
        http_probe("/metrics", 10, 6)
    } else {
        tcp_probe("kafka", 10, 6)
    };
    // Ready means "serves clients as a registered member of its cluster":
    // the broker's /ready says so (and why not, e.g. while it cannot reach
    // its quorum). Without the HTTP endpoint, that it accepts Kafka
    // connections is all a probe can see.
    let readiness = if spec.metrics.enabled {
        http_probe("/ready", 5, 3)
    } else {
        tcp_probe("kafka", 5, 3)
    };
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env(
            NODE_ID_ENV,
            "metadata.labels['apps.kubernetes.io/pod-index']",
        ),
        field_env("HOST_IP", "status.hostIP"),
    ];
    // The reconcile never applies a template without the id; builders are
    // also used for clusters not created yet (the examples' checks).
    if let Some(id) = &cluster.cluster_id {
        env.push(EnvVar {
            name: CLUSTER_ID_ENV.into(),
            value: Some(id.clone()),
            ..EnvVar::default()
        });
    }
    env.push(bootstrap_env(cluster));
    env.push(EnvVar {
        name: "RUST_LOG".into(),
        value: Some("info".into()),
        ..EnvVar::default()
    });
    Container {
        name: "broker".into(),
        image: Some(cluster.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().into()),
        command: Some(vec!["rivulet".into()]),
        args: Some(args),
        env: Some(env),
        ports: Some(ports),
        resources: spec.resources.clone(),
        // Log recovery after an unclean stop can take minutes: the startup
        // probe allows 10 before liveness takes over.
        startup_probe: Some(tcp_probe("kafka", 5, 120)),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts(cluster)),
        ..Container::default()
    }
}

fn volume_mounts(cluster: &ValidatedCluster) -> Vec<VolumeMount> {
    let mut mounts = vec![
        VolumeMount {
            name: "data".into(),
            mount_path: DATA_MOUNT.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    // Inside the config mount: the kubelet makes mount points within
    // ConfigMap and Secret volumes. A whole-volume mount (no subPath) sees
    // a renewed certificate, which the broker loads without a restart.
    if cluster.security.enabled() {
        mounts.push(VolumeMount {
            name: CERTS_VOLUME.into(),
            mount_path: CERTS_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    mounts
}

/// The volume of the `<cluster>-broker-certs` Secret. The whole Secret, not
/// one broker's items: items would name every broker id and so change the
/// pod template, restarting everybody, on each scale-out; each broker's
/// file names its own keystore instead.
const CERTS_VOLUME: &str = "broker-certs";

fn certs_volume(cluster: &ValidatedCluster) -> Volume {
    Volume {
        name: CERTS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(cluster.broker_certs_secret_name()),
            // Keys: readable by the broker's group (fsGroup) only.
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The default spread: brokers on different nodes (preferred, or required
/// with `requireSeparateNodes`) and, with rack awareness, across racks.
fn spread_constraints(cluster: &ValidatedCluster) -> Vec<TopologySpreadConstraint> {
    let scheduling = &cluster.spec.scheduling;
    if !scheduling.topology_spread_constraints.is_empty() {
        return scheduling.topology_spread_constraints.clone();
    }
    let selector = LabelSelector {
        match_labels: Some(cluster.selector_labels()),
        ..LabelSelector::default()
    };
    let mut constraints = vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "kubernetes.io/hostname".into(),
        when_unsatisfiable: if scheduling.require_separate_nodes {
            "DoNotSchedule".into()
        } else {
            "ScheduleAnyway".into()
        },
        label_selector: Some(selector.clone()),
        ..TopologySpreadConstraint::default()
    }];
    if let Some(rack) = &cluster.spec.rack {
        constraints.push(TopologySpreadConstraint {
            max_skew: 1,
            topology_key: rack.topology_key.clone(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(selector),
            ..TopologySpreadConstraint::default()
        });
    }
    constraints
}

fn pod_template(cluster: &ValidatedCluster) -> PodTemplateSpec {
    let spec = &cluster.spec;
    let mut labels = spec.pod.labels.clone();
    labels.extend(cluster.labels());
    let mut annotations = spec.pod.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash(cluster));
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cluster.config_map_name(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if cluster.security.enabled() {
        volumes.push(certs_volume(cluster));
    }
    if spec.storage.kind == StorageKind::Ephemeral {
        volumes.push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(spec.storage.size.clone())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let pull_secrets: Vec<LocalObjectReference> = spec
        .image_pull_secrets
        .iter()
        .map(|name| LocalObjectReference { name: name.clone() })
        .collect();
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![broker_container(cluster)],
            volumes: Some(volumes),
            termination_grace_period_seconds: Some(
                spec.pod
                    .termination_grace_period_seconds
                    .unwrap_or(DEFAULT_GRACE_SECONDS),
            ),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(BROKER_UID),
                run_as_group: Some(BROKER_UID),
                fs_group: Some(BROKER_UID),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            // Brokers never call the Kubernetes API.
            automount_service_account_token: Some(false),
            service_account_name: spec.pod.service_account_name.clone(),
            priority_class_name: spec.pod.priority_class_name.clone(),
            affinity: spec.scheduling.affinity.clone(),
            tolerations: (!spec.scheduling.tolerations.is_empty())
                .then(|| spec.scheduling.tolerations.clone()),
            node_selector: (!spec.scheduling.node_selector.is_empty())
                .then(|| spec.scheduling.node_selector.clone()),
            topology_spread_constraints: Some(spread_constraints(cluster)),
            image_pull_secrets: (!pull_secrets.is_empty()).then_some(pull_secrets),
            ..PodSpec::default()
        }),
    }
}

fn claim_template(cluster: &ValidatedCluster) -> PersistentVolumeClaim {
    let storage = &cluster.spec.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(cluster.selector_labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Builds the StatefulSet of `cluster`'s brokers.
pub fn build_statefulset(cluster: &ValidatedCluster) -> StatefulSet {
    let storage = &cluster.spec.storage;
    let persistent = storage.kind == StorageKind::PersistentClaim;
    StatefulSet {
        metadata: owned_meta(cluster, cluster.statefulset_name()),
        spec: Some(StatefulSetSpec {
            replicas: Some(cluster.replicas),
            service_name: Some(cluster.headless_service_name()),
            selector: LabelSelector {
                match_labels: Some(cluster.selector_labels()),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            template: pod_template(cluster),
            volume_claim_templates: persistent.then(|| vec![claim_template(cluster)]),
            persistent_volume_claim_retention_policy: persistent.then(|| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(storage.when_deleted.as_str().into()),
                    when_scaled: Some(storage.when_scaled.as_str().into()),
                }
            }),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::validated;

    fn pod_spec(sts: &StatefulSet) -> &PodSpec {
        sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    #[test]
    fn a_secured_cluster_mounts_every_broker_certificate_without_a_per_broker_template() {
        let three = build_statefulset(&validated(
            "replicas: 3\nlisteners:\n  internal:\n    tls: true",
        ));
        let spec = pod_spec(&three);
        let volume = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "broker-certs")
            .expect("the certificates volume");
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("demo-broker-certs"));
        assert_eq!(
            secret.items, None,
            "the whole Secret, whatever the broker count"
        );
        assert_eq!(secret.default_mode, Some(0o440));
        let container = &spec.containers[0];
        let mount = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "broker-certs")
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/etc/rivulet/certs", Some(true))
        );
        assert!(container
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some("replication") && p.container_port == 9091));
        // Scaling a secured cluster changes no pod template either.
        let five = build_statefulset(&validated(
            "replicas: 5\nlisteners:\n  internal:\n    tls: true",
        ));
        assert_eq!(three.spec.unwrap().template, five.spec.unwrap().template);
        let plain = build_statefulset(&validated("replicas: 3"));
        assert!(pod_spec(&plain)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .all(|v| v.name != "broker-certs"));
    }

    #[test]
    fn production_like_statefulset() {
        let cluster = validated(
            "replicas: 3
image: registry.example/rivulet:1.2.3
imagePullPolicy: IfNotPresent
storage:
  size: 100Gi
  storageClassName: fast
  whenScaled: Delete
resources:
  requests:
    cpu: '1'
    memory: 2Gi
rack:
  topologyKey: topology.kubernetes.io/zone
scheduling:
  requireSeparateNodes: true
  tolerations:
    - key: dedicated
      operator: Equal
      value: kafka
      effect: NoSchedule
  nodeSelector:
    pool: kafka
pod:
  annotations:
    team: streaming
  labels:
    app.kubernetes.io/name: overridden",
        );
        let sts = build_statefulset(&cluster);
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(sts.metadata.name.as_deref(), Some("demo-broker"));
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("demo-brokers"));
        assert_eq!(
            spec.update_strategy.as_ref().unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let retention = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .unwrap();
        assert_eq!(retention.when_scaled.as_deref(), Some("Delete"));
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"],
            Quantity("100Gi".into())
        );

        let template_meta = spec.template.metadata.as_ref().unwrap();
        let labels = template_meta.labels.as_ref().unwrap();
        assert_eq!(
            labels["app.kubernetes.io/name"], "rivulet",
            "operator labels win"
        );
        assert_eq!(
            template_meta.annotations.as_ref().unwrap()["team"],
            "streaming"
        );
        assert!(template_meta
            .annotations
            .as_ref()
            .unwrap()
            .contains_key(CONFIG_HASH_ANNOTATION));

        let pod = pod_spec(&sts);
        assert_eq!(pod.termination_grace_period_seconds, Some(120));
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "kafka");
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
        let spread = pod.topology_spread_constraints.as_ref().unwrap();
        assert_eq!(spread.len(), 2);
        assert_eq!(spread[0].topology_key, "kubernetes.io/hostname");
        assert_eq!(spread[0].when_unsatisfiable, "DoNotSchedule");
        assert_eq!(spread[1].topology_key, "topology.kubernetes.io/zone");
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );

        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example/rivulet:1.2.3")
        );
        assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        let args = container.args.as_ref().unwrap();
        assert_eq!(
            args,
            &[
                "broker",
                "--data-dir=/var/lib/rivulet/data",
                "--metrics-addr=0.0.0.0:9404",
                "--config-file=/etc/rivulet/broker-$(RIVULET_NODE_ID).properties",
            ]
        );
        let node_id = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == NODE_ID_ENV)
            .unwrap();
        assert_eq!(
            node_id
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
        assert_eq!(
            container
                .readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/ready")
        );
        assert_eq!(
            container
                .liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/metrics")
        );
        assert_eq!(
            container
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["cpu"],
            Quantity("1".into())
        );
    }

    #[test]
    fn ephemeral_dev_cluster() {
        let cluster = validated(
            "replicas: 1\nstorage:\n  type: Ephemeral\n  size: 1Gi\nmetrics:\n  enabled: false",
        );
        let sts = build_statefulset(&cluster);
        let spec = sts.spec.as_ref().unwrap();
        assert!(spec.volume_claim_templates.is_none());
        assert!(spec.persistent_volume_claim_retention_policy.is_none());
        let pod = pod_spec(&sts);
        let data = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert!(data.empty_dir.is_some());
        let container = &pod.containers[0];
        assert!(container
            .args
            .as_ref()
            .unwrap()
            .contains(&"--metrics-addr=none".to_string()));
        assert!(container
            .liveness_probe
            .as_ref()
            .unwrap()
            .tcp_socket
            .is_some());
        let spread = pod.topology_spread_constraints.as_ref().unwrap();
        assert_eq!(spread.len(), 1);
        assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
    }

    #[test]
    fn brokers_get_the_cluster_id_and_bootstrap_only_from_the_config_map() {
        let mut cluster = validated("replicas: 3");
        cluster.cluster_id = Some("MkU3OEVBNTcwNTJENDM2Qk".into());
        let sts = build_statefulset(&cluster);
        let env = pod_spec(&sts).containers[0].env.clone().unwrap();
        let var = |name: &str| env.iter().find(|e| e.name == name).cloned().unwrap();
        assert_eq!(
            var(CLUSTER_ID_ENV).value.as_deref(),
            Some("MkU3OEVBNTcwNTJENDM2Qk")
        );
        let bootstrap = var(BOOTSTRAP_ENV);
        assert_eq!(bootstrap.value, None);
        let key = bootstrap.value_from.unwrap().config_map_key_ref.unwrap();
        assert_eq!(
            (key.name.as_str(), key.key.as_str(), key.optional),
            ("demo-bootstrap", "bootstrap", Some(true))
        );
        // Neither the id nor the bootstrap permission depends on time or size.
        let mut five = validated("replicas: 5");
        five.cluster_id = cluster.cluster_id.clone();
        assert_eq!(
            sts.spec.as_ref().unwrap().template,
            build_statefulset(&five).spec.unwrap().template
        );
    }

    #[test]
    fn scaling_leaves_the_pod_template_alone() {
        let three = build_statefulset(&validated("replicas: 3"));
        let five = build_statefulset(&validated("replicas: 5"));
        assert_eq!(
            three.spec.as_ref().unwrap().template,
            five.spec.as_ref().unwrap().template
        );
        let changed = build_statefulset(&validated("replicas: 3\nconfig:\n  num.partitions: '6'"));
        assert_ne!(
            three.spec.as_ref().unwrap().template,
            changed.spec.as_ref().unwrap().template
        );
    }
}
