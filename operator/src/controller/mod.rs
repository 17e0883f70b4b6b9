//! The controllers and what they share: the [`Context`], server-side apply
//! with one field manager, and Kubernetes Events.

pub mod certs;
pub mod certs_leaves;
pub mod certs_probe;
pub mod cluster;
pub mod health;
pub mod identity;
pub mod kafka;
pub mod observe;
pub mod phase;
pub mod pods;
pub mod quorum;
pub mod reassign;
pub mod restart;
pub mod roll;
pub mod safety;
pub mod scale_in;
pub mod scale_out;
pub mod status;
pub mod storage;
pub mod target;
pub mod topic;
pub mod user;

use std::{
    collections::BTreeMap,
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{
    api::{Api, DeleteParams, DynamicObject, Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
    Client, Resource, ResourceExt,
};
use serde::{de::DeserializeOwned, Serialize};

use self::{
    kafka::{KafkaAdmin, WireAdmin},
    target::{admin_target, AdminTarget, TargetUnavailable},
    user::admin::UserAdmin,
};
use crate::{
    build::MonitorApis,
    error::Error,
    metrics::Metrics,
    validate::{OperatorConfig, ValidatedCluster},
};

/// The field manager of every server-side apply the operator makes; one
/// constant so the operator never fights itself over a field.
pub const FIELD_MANAGER: &str = "rivulet-operator";

/// What every reconcile needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Settings that shape the built objects.
    pub config: OperatorConfig,
    /// Reconcile counters and timings.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events about what the operator does.
    pub recorder: Recorder,
    /// Which Prometheus operator kinds exist (checked at start-up).
    pub monitor_apis: MonitorApis,
    /// Talks to the brokers over the Kafka protocol.
    pub kafka: Arc<dyn KafkaAdmin>,
    /// Manages Kafka users (credentials, ACLs, quotas) over the Kafka
    /// protocol, as the cluster's administrator.
    pub users: Arc<dyn UserAdmin>,
    /// Reads the certificate each broker presents, to know it has loaded
    /// its certificate Secret.
    pub probe: Arc<dyn certs_probe::CertProbe>,
    /// How long a restarted broker may take to become ready before the
    /// roll stops with a Degraded condition.
    pub roll_timeout: Duration,
    /// Each cluster's admin target (`namespace/name`), as its reconcile
    /// last resolved it: the steps of one reconcile all ask through it.
    targets: Mutex<BTreeMap<String, AdminTarget>>,
}

impl Context {
    /// A context with the given client and Kafka admin, default settings.
    pub fn new(client: Client, kafka: Arc<dyn KafkaAdmin>, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config: OperatorConfig::default(),
            metrics,
            monitor_apis: MonitorApis::default(),
            kafka,
            users: Arc::new(WireAdmin),
            probe: Arc::new(certs_probe::TlsProbe),
            roll_timeout: Duration::from_secs(600),
            targets: Mutex::new(BTreeMap::new()),
        }
    }

    /// Resolves `cluster`'s admin target (reading the operator's
    /// certificate on a secured cluster) for the steps of this reconcile;
    /// `Ok(Some(why))` when it cannot be resolved yet.
    pub async fn resolve_target(
        &self,
        cluster: &ValidatedCluster,
    ) -> Result<Option<TargetUnavailable>, Error> {
        let key = format!("{}/{}", cluster.namespace, cluster.name);
        let resolved = admin_target(self, cluster).await?;
        let mut targets = self.targets.lock().expect("targets lock");
        Ok(match resolved {
            Ok(target) => {
                targets.insert(key, target);
                None
            }
            Err(why) => {
                targets.remove(&key);
                Some(why)
            }
        })
    }

    /// The admin target [`Context::resolve_target`] found for `cluster`;
    /// without one, the admin address without credentials (whose
    /// connections a secured cluster refuses, which the reconcile reports
    /// as unreachable brokers).
    pub fn target(&self, cluster: &ValidatedCluster) -> AdminTarget {
        let key = format!("{}/{}", cluster.namespace, cluster.name);
        self.targets
            .lock()
            .expect("targets lock")
            .get(&key)
            .cloned()
            .unwrap_or_else(|| AdminTarget::plaintext(cluster.admin_bootstrap()))
    }

    /// Publishes an Event about `object`; a failure is logged, never fatal:
    /// Events are for people, the status is the record.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        self.event_related(object, None, type_, reason, note).await;
    }

    /// [`Context::event`] about `object` and a `related` one (the pod a
    /// broker restart concerns). The recorder folds repeated Events with the
    /// same reason and objects into one series whatever their notes say, so
    /// Events about different brokers must name their pods to stay apart.
    pub async fn event_related<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: related,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "publishing an event failed");
        }
    }
}

fn describe<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Server-side applies `object` in its namespace and returns what the API
/// server made of it. `force` takes over fields another manager (a user's
/// `kubectl edit`) set: the operator's spec is the source of truth.
pub async fn apply<K>(client: &Client, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    apply_with(&api, object, describe(object)).await
}

/// [`apply`] for a [`DynamicObject`] of a kind the operator knows only at run time.
pub async fn apply_dynamic(
    client: &Client,
    object: &DynamicObject,
    resource: &kube::api::ApiResource,
) -> Result<DynamicObject, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, resource);
    let what = format!("{} {namespace}/{}", resource.kind, object.name_any());
    apply_with(&api, object, what).await
}

async fn apply_with<K>(api: &Api<K>, object: &K, what: String) -> Result<K, Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    api.patch(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply { what, source })
}

/// Writes `status` to `object`'s status subresource with server-side apply.
pub async fn apply_status<K>(
    client: &Client,
    object: &K,
    status: &impl Serialize,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Status {
        what: describe(object),
        source,
    })?;
    Ok(())
}

/// Deletes `name` if it exists; a missing object is success.
pub async fn delete_if_exists<K>(api: &Api<K>, kind: &str, name: &str) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(source) => Err(Error::Delete {
            what: format!("{kind} {name}"),
            source,
        }),
    }
}

/// Whether a kube error is the API server's 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

#[cfg(test)]
mod tests;
