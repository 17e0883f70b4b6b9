//! Growing broker storage: `spec.storage.size` may grow, and each broker's
//! PersistentVolumeClaim is asked for the new size, as `kubectl patch pvc`
//! would.
//!
//! The claims are the StatefulSet's (`data-<statefulset>-<ordinal>`). Each
//! step reads them and plans from what they ask for and have ([`survey`],
//! pure): bound claims asking for less are patched once their StorageClass
//! allows expansion; a smaller size is refused (no volume shrinks); a
//! claim whose volume grew but whose filesystem waits for a remount
//! (`FileSystemResizePending`) names its broker for a restart, which the
//! roll makes one broker at a time under its usual checks. Drivers that
//! grow mounted filesystems clear that condition by themselves, so a
//! broker is restarted only when its pod predates the resize and the
//! condition outlived [`FS_RESIZE_GRACE`].
//!
//! The StatefulSet's `volumeClaimTemplates` cannot change in place (the API
//! server refuses the whole StatefulSet): the caller keeps the existing
//! template ([`keep_claim_templates`]) or replaces the StatefulSet with an
//! orphaning delete. Claims made from an old template later (a scale-out)
//! are grown by the next step, and so are claims kept from a scale-in
//! once their brokers come back.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{PersistentVolumeClaim, Pod},
        storage::v1::StorageClass,
    },
    apimachinery::pkg::apis::meta::v1::Condition,
    jiff::Timestamp,
};
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    runtime::events::EventType,
    ResourceExt,
};

use super::{Context, FIELD_MANAGER};
use crate::{
    crd::{KafkaCluster, StorageKind},
    validate::ValidatedCluster,
};

/// Name of the StatefulSet's claim template: claims are
/// `data-<statefulset>-<ordinal>`.
pub const CLAIM_TEMPLATE: &str = "data";
/// Reason for a Progressing condition while volumes grow.
pub const GROWING: &str = "GrowingStorage";
/// Reason for a Degraded condition when the size cannot be had; a refusal
/// already reported under it publishes no second Event.
pub const REFUSED: &str = "StorageResizeRefused";
/// How long a filesystem may wait to grow on a mounted volume before its
/// broker is restarted to remount it.
pub const FS_RESIZE_GRACE: Duration = Duration::from_secs(120);

/// What growing the brokers' storage needs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageStep {
    /// Nothing to do: ephemeral storage (its size limit is part of the pod
    /// template), or every claim asks for and has `size`.
    Steady {
        /// The claims' size.
        size: String,
        /// Each broker's volume capacity, as its claim reports it.
        capacity: BTreeMap<i32, String>,
    },
    /// Volumes are growing to `size`.
    Growing {
        /// The size asked for.
        size: String,
        /// What is happening, for a Progressing condition (reason [`GROWING`]).
        message: String,
        /// Each broker's volume capacity, as its claim reports it.
        capacity: BTreeMap<i32, String>,
        /// Brokers whose filesystem grows only when their pod restarts.
        restart: BTreeSet<i32>,
    },
    /// The spec's size cannot be had; nothing was changed. The message is
    /// for a Degraded condition (reason [`REFUSED`]).
    Refused {
        /// Why, and what to do.
        message: String,
        /// Each broker's volume capacity, as its claim reports it.
        capacity: BTreeMap<i32, String>,
    },
    /// The claims or their StorageClass could not be read; tried again by
    /// the next reconcile.
    Unknown(String),
}

impl StorageStep {
    /// Brokers to restart, one at a time, for their filesystem to grow.
    pub fn restart(&self) -> BTreeSet<i32> {
        match self {
            StorageStep::Growing { restart, .. } => restart.clone(),
            _ => BTreeSet::new(),
        }
    }
}

/// One broker's claim, as the plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// The broker (the claim's ordinal).
    pub broker: i32,
    /// The claim's name.
    pub name: String,
    /// Bound to a volume: only a bound claim's request may change.
    pub bound: bool,
    /// `spec.resources.requests.storage`.
    pub request: String,
    /// `status.capacity.storage`.
    pub capacity: Option<String>,
    /// `spec.storageClassName`.
    pub storage_class: Option<String>,
    /// Since when its filesystem waits to grow (`FileSystemResizePending`).
    pub fs_resize_pending: Option<Timestamp>,
    /// When the broker's pod was created, if it has one.
    pub pod_created: Option<Timestamp>,
    /// Resize failures the claim reports.
    pub errors: Vec<String>,
}

/// Where the claims stand against the wanted size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// Bound claims asking for less: to patch.
    pub grow: Vec<Claim>,
    /// Brokers whose claim asks for less but is not bound yet.
    pub unbound: Vec<i32>,
    /// Brokers whose claim asks for the size, while its volume is smaller.
    pub expanding: Vec<i32>,
    /// Brokers whose filesystem waits to grow.
    pub fs_pending: Vec<i32>,
    /// Of those, brokers to restart for it.
    pub restart: BTreeSet<i32>,
    /// Resize failures the claims report.
    pub errors: Vec<String>,
    /// Each broker's capacity.
    pub capacity: BTreeMap<i32, String>,
}

impl Survey {
    /// Nothing to grow and nothing growing.
    pub fn is_steady(&self) -> bool {
        self.grow.is_empty()
            && self.unbound.is_empty()
            && self.expanding.is_empty()
            && self.fs_pending.is_empty()
    }
}

/// Compares every claim with `wanted` (pure); `Err` is a refusal.
/// `replicas` bounds the brokers that can be restarted.
pub fn survey(
    wanted: &str,
    claims: &[Claim],
    replicas: i32,
    now: Timestamp,
) -> Result<Survey, String> {
    let want = parse_quantity(wanted)
        .ok_or_else(|| format!("spec.storage.size `{wanted}` is not a Kubernetes quantity"))?;
    let mut survey = Survey {
        capacity: capacity(claims),
        ..Survey::default()
    };
    let mut larger = Vec::new();
    for claim in claims {
        let request = parse_quantity(&claim.request).ok_or_else(|| {
            format!(
                "claim {} asks for `{}`, which is not a Kubernetes quantity",
                claim.name, claim.request
            )
        })?;
        survey.errors.extend(claim.errors.iter().cloned());
        let has = claim.capacity.as_deref().and_then(parse_quantity);
        if request > want {
            larger.push((claim.broker, claim.request.clone()));
        } else if request < want && claim.bound {
            survey.grow.push(claim.clone());
        } else if request < want {
            survey.unbound.push(claim.broker);
        } else if let Some(since) = claim.fs_resize_pending {
            survey.fs_pending.push(claim.broker);
            let waited = now.duration_since(since).as_secs();
            let grace = i64::try_from(FS_RESIZE_GRACE.as_secs()).unwrap_or(i64::MAX);
            let mounted_before = claim.pod_created.is_some_and(|created| created <= since);
            if claim.broker < replicas && mounted_before && waited >= grace {
                survey.restart.insert(claim.broker);
            }
        } else if claim.bound && has.is_none_or(|has| has < want) {
            survey.expanding.push(claim.broker);
        }
    }
    if !larger.is_empty() {
        let ids: Vec<i32> = larger.iter().map(|(id, _)| *id).collect();
        let most = larger
            .iter()
            .max_by_key(|(_, size)| parse_quantity(size))
            .map(|(_, size)| size.clone())
            .unwrap_or_default();
        return Err(format!(
            "shrinking storage is not supported: the volumes of {} ask for up to {most}, more than spec.storage.size {wanted}; set it back to at least {most}",
            brokers(&ids)
        ));
    }
    Ok(survey)
}

/// Each broker's capacity, as its claim reports it.
fn capacity(claims: &[Claim]) -> BTreeMap<i32, String> {
    claims
        .iter()
        .filter_map(|c| Some((c.broker, c.capacity.clone()?)))
        .collect()
}

/// Why the claims to grow cannot (pure): `classes` holds each class's
/// `allowVolumeExpansion`, `None` for a class that does not exist.
pub fn class_refusal(
    wanted: &str,
    grow: &[Claim],
    classes: &BTreeMap<String, Option<bool>>,
) -> Option<String> {
    let mut problems = Vec::new();
    let classless: Vec<i32> = grow
        .iter()
        .filter(|c| c.storage_class.as_deref().unwrap_or("").is_empty())
        .map(|c| c.broker)
        .collect();
    if !classless.is_empty() {
        problems.push(format!(
            "the claims of {} have no StorageClass (statically provisioned volumes), which the operator cannot grow",
            brokers(&classless)
        ));
    }
    for (class, allows) in classes {
        let ids: Vec<i32> = grow
            .iter()
            .filter(|c| c.storage_class.as_deref() == Some(class))
            .map(|c| c.broker)
            .collect();
        match allows {
            None => problems.push(format!(
                "StorageClass {class} of {} does not exist",
                brokers(&ids)
            )),
            Some(false) => problems.push(format!(
                "StorageClass {class} does not allow volume expansion (allowVolumeExpansion is not true), so the volumes of {} cannot grow",
                brokers(&ids)
            )),
            Some(true) => {}
        }
    }
    if problems.is_empty() {
        return None;
    }
    let was = grow.first().map_or("", |c| c.request.as_str());
    Some(format!(
        "cannot grow storage to {wanted}: {}; allow expansion on the class, or set spec.storage.size back to {was}",
        problems.join("; ")
    ))
}

/// What is happening while volumes grow, for a condition (pure).
pub fn growing_message(wanted: &str, survey: &Survey, failed: &[String]) -> String {
    let expanding: Vec<i32> = survey
        .grow
        .iter()
        .map(|c| c.broker)
        .chain(survey.expanding.iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut notes = Vec::new();
    if !expanding.is_empty() {
        notes.push(format!(
            "the storage driver is expanding the volumes of {}",
            brokers(&expanding)
        ));
    }
    let waiting: Vec<i32> = survey
        .fs_pending
        .iter()
        .copied()
        .filter(|id| !survey.restart.contains(id))
        .collect();
    if !waiting.is_empty() {
        notes.push(format!(
            "the filesystems of {} wait to grow",
            brokers(&waiting)
        ));
    }
    if !survey.restart.is_empty() {
        let ids: Vec<i32> = survey.restart.iter().copied().collect();
        notes.push(format!(
            "{} restart, one at a time, to grow their filesystems",
            brokers(&ids)
        ));
    }
    if !survey.unbound.is_empty() {
        notes.push(format!(
            "the claims of {} grow once bound",
            brokers(&survey.unbound)
        ));
    }
    notes.extend(survey.errors.iter().cloned());
    notes.extend(failed.iter().cloned());
    format!(
        "growing the brokers' volumes to {wanted}: {}",
        notes.join("; ")
    )
}

/// `broker 2` or `brokers 0, 1, 2`.
fn brokers(ids: &[i32]) -> String {
    match ids {
        [one] => format!("broker {one}"),
        _ => format!(
            "brokers {}",
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Bytes in a Kubernetes quantity (`10Gi`, `500M`, `1.5Ti`, `1e9`,
/// `2048`), rounded up as Kubernetes rounds storage; `None` if it is not
/// one or does not fit.
pub fn parse_quantity(s: &str) -> Option<u128> {
    const SUFFIXES: [(&str, u128, u128); 13] = [
        ("Ki", 1 << 10, 1),
        ("Mi", 1 << 20, 1),
        ("Gi", 1 << 30, 1),
        ("Ti", 1 << 40, 1),
        ("Pi", 1 << 50, 1),
        ("Ei", 1 << 60, 1),
        ("k", 1_000, 1),
        ("M", 1_000_000, 1),
        ("G", 1_000_000_000, 1),
        ("T", 1_000_000_000_000, 1),
        ("P", 1_000_000_000_000_000, 1),
        ("E", 1_000_000_000_000_000_000, 1),
        ("m", 1, 1_000),
    ];
    let s = s.trim();
    let (number, multiply, divide) = SUFFIXES
        .iter()
        .find_map(|(suffix, m, d)| s.strip_suffix(suffix).map(|n| (n, *m, *d)))
        .unwrap_or((s, 1, 1));
    let (mantissa, exponent) = match number.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (number, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || mantissa.ends_with('.') {
        return None;
    }
    let value: u128 = format!("{whole}{fraction}").parse().ok()?;
    let scale = exponent.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    let ten = |power: i32| 10u128.checked_pow(power.unsigned_abs());
    let (numerator, denominator) = if scale >= 0 {
        (
            value.checked_mul(multiply)?.checked_mul(ten(scale)?)?,
            divide,
        )
    } else {
        (
            value.checked_mul(multiply)?,
            divide.checked_mul(ten(scale)?)?,
        )
    };
    Some(numerator.div_ceil(denominator))
}

/// Puts the claim templates of the `existing` StatefulSet into the `built`
/// one when both have some: the API server refuses any change to them, so
/// a grown `spec.storage.size` must not reach the StatefulSet in place.
pub fn keep_claim_templates(built: &mut StatefulSet, existing: Option<&StatefulSet>) {
    let Some(kept) = existing
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.clone())
    else {
        return;
    };
    if let Some(spec) = built.spec.as_mut() {
        if spec.volume_claim_templates.is_some() {
            spec.volume_claim_templates = Some(kept);
        }
    }
}

/// Takes one step of growing the volumes of `cluster`'s brokers to
/// `spec.storage.size`. `pods` are the broker pods the reconcile listed
/// (their age tells whether a restart would remount a grown volume).
///
/// Never fails the reconcile: what cannot be read is [`StorageStep::Unknown`].
/// The caller keeps the StatefulSet's claim templates as they are (see the
/// module doc) and restarts [`StorageStep::restart`]'s brokers through the roll.
pub async fn step(
    ctx: &Context,
    object: &KafkaCluster,
    cluster: &ValidatedCluster,
    pods: &[Pod],
) -> StorageStep {
    let wanted = cluster.spec.storage.size.clone();
    if cluster.spec.storage.kind == StorageKind::Ephemeral {
        return StorageStep::Steady {
            size: wanted,
            capacity: BTreeMap::new(),
        };
    }
    let claims_api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let listed = match claims_api
        .list(&ListParams::default().labels(&cluster.selector_string()))
        .await
    {
        Ok(list) => list.items,
        Err(error) => {
            tracing::info!(cluster = %cluster.name, %error, "cannot list the broker claims");
            return StorageStep::Unknown(format!("cannot list the brokers' claims ({error})"));
        }
    };
    let claims = claims_of(cluster, &listed, pods);
    let survey = match survey(&wanted, &claims, cluster.replicas, Timestamp::now()) {
        Ok(survey) => survey,
        Err(message) => return refuse(ctx, object, message, capacity(&claims)).await,
    };
    if survey.is_steady() {
        return StorageStep::Steady {
            size: wanted,
            capacity: survey.capacity,
        };
    }
    let failed = if survey.grow.is_empty() {
        Vec::new()
    } else {
        let classes = match classes_of(ctx, &survey.grow).await {
            Ok(classes) => classes,
            Err(message) => return StorageStep::Unknown(message),
        };
        if let Some(message) = class_refusal(&wanted, &survey.grow, &classes) {
            return refuse(ctx, object, message, survey.capacity).await;
        }
        grow(ctx, object, &claims_api, &wanted, &survey.grow).await
    };
    StorageStep::Growing {
        message: growing_message(&wanted, &survey, &failed),
        size: wanted,
        capacity: survey.capacity,
        restart: survey.restart,
    }
}

/// The StatefulSet's claims among `listed`, with their brokers' pods.
fn claims_of(
    cluster: &ValidatedCluster,
    listed: &[PersistentVolumeClaim],
    pods: &[Pod],
) -> Vec<Claim> {
    let prefix = format!("{CLAIM_TEMPLATE}-{}-", cluster.statefulset_name());
    let created: BTreeMap<String, Timestamp> = pods
        .iter()
        .filter_map(|p| Some((p.name_any(), p.metadata.creation_timestamp.clone()?.0)))
        .collect();
    let mut claims: Vec<Claim> = listed
        .iter()
        .filter_map(|pvc| {
            let name = pvc.name_any();
            let broker: i32 = name.strip_prefix(&prefix)?.parse().ok()?;
            // A claim kept from a scale-in has no pod to grow its
            // filesystem; it is grown when its broker comes back.
            if broker >= cluster.replicas {
                return None;
            }
            let spec = pvc.spec.clone().unwrap_or_default();
            let status = pvc.status.clone().unwrap_or_default();
            let conditions = status.conditions.unwrap_or_default();
            let mut errors: Vec<String> = conditions
                .iter()
                .filter(|c| c.status == "True" && c.type_.ends_with("ResizeError"))
                .map(|c| {
                    format!(
                        "{name}: {}",
                        c.message.as_deref().unwrap_or(c.type_.as_str())
                    )
                })
                .collect();
            if let Some(state) = status
                .allocated_resource_statuses
                .as_ref()
                .and_then(|s| s.get("storage"))
                .filter(|s| s.ends_with("Infeasible"))
            {
                errors.push(format!("the storage driver cannot grow {name} ({state})"));
            }
            Some(Claim {
                broker,
                bound: status.phase.as_deref() == Some("Bound"),
                request: spec
                    .resources
                    .and_then(|r| r.requests)
                    .and_then(|r| r.get("storage").map(|q| q.0.clone()))
                    .unwrap_or_default(),
                capacity: status
                    .capacity
                    .and_then(|c| c.get("storage").map(|q| q.0.clone())),
                storage_class: spec.storage_class_name,
                fs_resize_pending: conditions
                    .iter()
                    .find(|c| c.type_ == "FileSystemResizePending" && c.status == "True")
                    .map(|c| {
                        c.last_transition_time
                            .as_ref()
                            .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
                    }),
                pod_created: created.get(&cluster.pod_name(broker)).copied(),
                errors,
                name,
            })
        })
        .collect();
    claims.sort_by_key(|c| c.broker);
    claims
}

/// `allowVolumeExpansion` of the classes of `grow`'s claims.
async fn classes_of(
    ctx: &Context,
    grow: &[Claim],
) -> Result<BTreeMap<String, Option<bool>>, String> {
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    let names: BTreeSet<&str> = grow
        .iter()
        .filter_map(|c| c.storage_class.as_deref())
        .filter(|c| !c.is_empty())
        .collect();
    let mut classes = BTreeMap::new();
    for name in names {
        let class = api
            .get_opt(name)
            .await
            .map_err(|error| format!("cannot read StorageClass {name} ({error})"))?;
        classes.insert(
            name.to_string(),
            class.map(|c| c.allow_volume_expansion == Some(true)),
        );
    }
    Ok(classes)
}

/// Asks each claim of `grow` for `wanted`; returns what failed.
async fn grow(
    ctx: &Context,
    object: &KafkaCluster,
    api: &Api<PersistentVolumeClaim>,
    wanted: &str,
    grow: &[Claim],
) -> Vec<String> {
    // A JSON patch of the one field: the claims belong to the StatefulSet
    // controller, the operator only raises their request.
    let patch = serde_json::json!([
        {"op": "replace", "path": "/spec/resources/requests/storage", "value": wanted}
    ]);
    let Ok(patch) = serde_json::from_value(patch).map(Patch::<()>::Json) else {
        return vec!["cannot build the claim patch".into()];
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut asked = Vec::new();
    let mut failed = Vec::new();
    for claim in grow {
        match api.patch(&claim.name, &params, &patch).await {
            Ok(_) => asked.push(claim.broker),
            Err(error) => {
                tracing::warn!(claim = %claim.name, %error, "growing a claim failed");
                failed.push(format!(
                    "asking {} for {wanted} failed ({error})",
                    claim.name
                ));
            }
        }
    }
    if !asked.is_empty() {
        let was = grow.first().map_or("", |c| c.request.as_str());
        ctx.event(
            object,
            EventType::Normal,
            "GrowingVolumes",
            format!(
                "Asked for {wanted} (was {was}) on the volumes of {}",
                brokers(&asked)
            ),
        )
        .await;
    }
    failed
}

/// A refusal, with a Warning Event unless the status already reports it.
async fn refuse(
    ctx: &Context,
    object: &KafkaCluster,
    message: String,
    capacity: BTreeMap<i32, String>,
) -> StorageStep {
    let reported = object
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
        .iter()
        .any(|c: &Condition| c.status == "True" && c.reason == REFUSED);
    if !reported {
        ctx.event(object, EventType::Warning, REFUSED, message.clone())
            .await;
    }
    StorageStep::Refused { message, capacity }
}

#[cfg(test)]
mod tests;
