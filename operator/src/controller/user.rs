//! The KafkaUser controller: keeps a Kafka user as its `KafkaUser` says,
//! through the Kafka admin protocol (SCRAM credentials, ACLs, client
//! quotas), and writes the application's Secret.
//!
//! Each reconcile is a pipeline: validate (pure, [`plan::validate_user`])
//! -> find the cluster and the admin connection -> resolve the password
//! (given, kept from the Secret, or generated once) or, for a `tls` user,
//! the client certificate ([`tls`]) -> apply the Secret ->
//! read what Kafka holds for the user and apply the planned difference ->
//! status. Reading Kafka every time is what reverts drift: an ACL, quota
//! or credential changed behind the operator's back is planned back, an
//! extra ACL of the user's principal is deleted. A finalizer removes the
//! user's credentials, ACLs and quotas; the Secret goes with its owner.

pub mod admin;
pub mod plan;
pub mod secret;
pub mod tls;

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    api::Api,
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{finalizer, Event as Finalizer},
    },
    Resource, ResourceExt,
};
use rivulet_wire::error::ClientError;

use self::{
    admin::AdminTarget,
    plan::{
        plan_acls, plan_credentials, plan_quotas, validate_user, ValidatedUser, CLIENTS_CA_MISSING,
    },
    secret::{build_user_secret, generate_password, secret_value, PASSWORD_KEY},
};
use super::{
    apply, apply_status,
    status::{stamp, READY},
    target, Context,
};
use crate::{
    crd::{KafkaCluster, KafkaUser, KafkaUserStatus},
    error::Error,
    validate::validate,
};

/// The controller name in metrics and logs.
pub const CONTROLLER: &str = "kafkauser";
/// Finalizer that removes the user from Kafka with its `KafkaUser`.
pub const USER_FINALIZER: &str = "rivulet.dev/kafkauser";
const RETRY: Duration = Duration::from_secs(30);
/// How often Kafka is read again to put back what changed behind the
/// operator's back.
const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles one KafkaUser (behind its finalizer).
#[tracing::instrument(skip_all, fields(user = %user.name_any(), cluster = %user.spec.cluster))]
pub async fn reconcile(user: Arc<KafkaUser>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let api: Api<KafkaUser> =
        Api::namespaced(ctx.client.clone(), &user.namespace().unwrap_or_default());
    finalizer(&api, USER_FINALIZER, user, |event| async {
        match event {
            Finalizer::Apply(user) => apply_user(&user, &ctx).await,
            Finalizer::Cleanup(user) => cleanup_user(&user, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// How the operator reaches the user's cluster as its administrator (the
/// same [`AdminTarget`] as every controller), or the Ready reason and
/// message saying why it cannot.
async fn admin_target(
    user: &KafkaUser,
    ctx: &Context,
) -> Result<Result<AdminTarget, (&'static str, String)>, Error> {
    let namespace = user.namespace().unwrap_or_default();
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = &user.spec.cluster;
    let Some(cluster) = clusters.get_opt(name).await.map_err(|source| Error::Read {
        what: format!("KafkaCluster {namespace}/{name}"),
        source,
    })?
    else {
        let message = format!("KafkaCluster {name} does not exist in namespace {namespace}");
        return Ok(Err(("ClusterNotFound", message)));
    };
    let cluster = match validate(&cluster, &ctx.config) {
        Ok(v) => v,
        Err(e) => return Ok(Err(("ClusterInvalid", e.to_string()))),
    };
    Ok(target::admin_target(ctx, &cluster)
        .await?
        .map_err(|why| ("AdminUnavailable", why.to_string())))
}

/// The user's password: from the Secret the spec names, else the one its
/// own Secret keeps, else a new one. `Err` is the Ready message when the
/// named Secret or key is missing.
async fn password_of(
    user: &KafkaUser,
    valid: &ValidatedUser,
    ctx: &Context,
) -> Result<Result<String, String>, Error> {
    let namespace = user.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let (name, key) = match &valid.password_ref {
        Some(r) => (r.name.clone(), r.key.clone()),
        None => (user.name_any(), PASSWORD_KEY.to_string()),
    };
    let found = secrets.get_opt(&name).await.map_err(|source| Error::Read {
        what: format!("Secret {namespace}/{name}"),
        source,
    })?;
    let value = found
        .as_ref()
        .and_then(|s| secret_value(s, &key))
        .filter(|v| !v.is_empty());
    Ok(match (value, &valid.password_ref) {
        (Some(password), _) => Ok(password),
        (None, None) => Ok(generate_password()),
        (None, Some(_)) => Err(format!(
            "the password's Secret {name} has no key {key} (authentication.password.valueFrom.secretKeyRef)"
        )),
    })
}

fn user_admin_error(op: &'static str, user: &str) -> impl FnOnce(ClientError) -> Error {
    let user = user.to_string();
    move |source| Error::UserAdmin { op, user, source }
}

async fn apply_user(user: &KafkaUser, ctx: &Context) -> Result<Action, Error> {
    let valid = match validate_user(user) {
        Ok(valid) => valid,
        Err(invalid) => {
            write_status(ctx, user, false, invalid.reason, &invalid.message, None).await?;
            return Ok(Action::await_change());
        }
    };
    let target = match admin_target(user, ctx).await? {
        Ok(target) => target,
        Err((reason, message)) => {
            write_status(ctx, user, false, reason, &message, None).await?;
            return Ok(Action::requeue(RETRY));
        }
    };
    if valid.tls {
        if let Err(message) = tls::ensure_tls_secret(user, ctx).await? {
            write_status(ctx, user, false, CLIENTS_CA_MISSING, &message, None).await?;
            return Ok(Action::requeue(RETRY));
        }
    }
    let password = match valid.mechanism {
        None => None,
        Some(_) => match password_of(user, &valid, ctx).await? {
            Ok(password) => Some(password),
            Err(message) => {
                write_status(ctx, user, false, "PasswordSecretNotFound", &message, None).await?;
                return Ok(Action::requeue(RETRY));
            }
        },
    };
    if let Some(password) = &password {
        apply(
            &ctx.client,
            &build_user_secret(user, &valid.username, password),
        )
        .await?;
    }
    let secret = (password.is_some() || valid.tls).then(|| user.name_any());
    match sync(ctx, &target, &valid, password.as_deref()).await {
        Ok(changes) => {
            if !changes.is_empty() {
                let note = format!("{} of {}", changes.join(", "), valid.principal());
                ctx.event(user, EventType::Normal, "Synced", note).await;
            }
            let message = "the user's credential, ACLs and quotas match the spec";
            write_status(ctx, user, true, "Synced", message, secret).await?;
            Ok(Action::requeue(RESYNC))
        }
        Err(error) => {
            ctx.metrics.failure(CONTROLLER, &error);
            let message = format!(
                "{error}: {}",
                std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            write_status(ctx, user, false, "KafkaUnavailable", &message, secret).await?;
            Ok(Action::requeue(RETRY))
        }
    }
}

/// Brings Kafka's credential, ACLs and quotas of the user to `valid`;
/// returns what changed besides the credential (which is set every time).
pub async fn sync(
    ctx: &Context,
    target: &AdminTarget,
    valid: &ValidatedUser,
    password: Option<&str>,
) -> Result<Vec<String>, Error> {
    sync_with(ctx.users.as_ref(), target, valid, password).await
}

/// [`sync`] through any [`admin::UserAdmin`].
pub async fn sync_with(
    admin: &dyn admin::UserAdmin,
    target: &AdminTarget,
    valid: &ValidatedUser,
    password: Option<&str>,
) -> Result<Vec<String>, Error> {
    let name = valid.username.as_str();
    let mut changes = Vec::new();
    let current = admin
        .scram_mechanisms(target, name)
        .await
        .map_err(user_admin_error("DescribeUserScramCredentials", name))?;
    let credentials = plan_credentials(valid.mechanism, &current);
    if let (Some(mechanism), Some(password)) = (credentials.set, password) {
        admin
            .set_scram(target, name, mechanism, password)
            .await
            .map_err(user_admin_error("AlterUserScramCredentials", name))?;
    }
    if !credentials.delete.is_empty() {
        changes.push(format!(
            "removed {} SCRAM credentials",
            credentials.delete.len()
        ));
        admin
            .delete_scram(target, name, credentials.delete)
            .await
            .map_err(user_admin_error("AlterUserScramCredentials", name))?;
    }
    let principal = valid.principal();
    let acls = admin
        .acls_of(target, &principal)
        .await
        .map_err(user_admin_error("DescribeAcls", name))?;
    let acl_plan = plan_acls(&valid.acls, &acls);
    if !acl_plan.delete.is_empty() {
        changes.push(format!("deleted {} ACLs", acl_plan.delete.len()));
        admin
            .delete_acls(target, acl_plan.delete)
            .await
            .map_err(user_admin_error("DeleteAcls", name))?;
    }
    if !acl_plan.create.is_empty() {
        changes.push(format!("created {} ACLs", acl_plan.create.len()));
        admin
            .create_acls(target, acl_plan.create)
            .await
            .map_err(user_admin_error("CreateAcls", name))?;
    }
    let quotas = admin
        .user_quotas(target, name)
        .await
        .map_err(user_admin_error("DescribeClientQuotas", name))?;
    let quota_plan = plan_quotas(&valid.quotas, &quotas);
    if !quota_plan.is_empty() {
        changes.push("set quotas".into());
        admin
            .alter_user_quotas(target, name, quota_plan.set, quota_plan.remove)
            .await
            .map_err(user_admin_error("AlterClientQuotas", name))?;
    }
    Ok(changes)
}

/// Removes the user from Kafka: its credentials, every ACL of its
/// principal, its quotas.
pub async fn remove_with(
    admin: &dyn admin::UserAdmin,
    target: &AdminTarget,
    username: &str,
) -> Result<(), Error> {
    let nothing = ValidatedUser {
        username: username.to_string(),
        mechanism: None,
        password_ref: None,
        tls: false,
        acls: Default::default(),
        quotas: Default::default(),
    };
    sync_with(admin, target, &nothing, None).await.map(drop)
}

async fn cleanup_user(user: &KafkaUser, ctx: &Context) -> Result<Action, Error> {
    // With the cluster gone, so is the user.
    let Ok(target) = admin_target(user, ctx).await? else {
        return Ok(Action::await_change());
    };
    let name = user.name_any();
    remove_with(ctx.users.as_ref(), &target, &name).await?;
    ctx.event(
        user,
        EventType::Normal,
        "Deleted",
        format!("Removed the credentials, ACLs and quotas of {name}"),
    )
    .await;
    Ok(Action::await_change())
}

async fn write_status(
    ctx: &Context,
    user: &KafkaUser,
    ready: bool,
    reason: &str,
    message: &str,
    secret: Option<String>,
) -> Result<(), Error> {
    let previous = user.status.clone().unwrap_or_default();
    let condition = Condition {
        type_: READY.into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    };
    let status = KafkaUserStatus {
        observed_generation: user.meta().generation,
        conditions: stamp(
            vec![condition],
            user.meta().generation,
            &previous.conditions,
            Timestamp::now(),
        ),
        username: Some(user.name_any()),
        secret: secret.or(previous.secret),
    };
    if user.status.as_ref() == Some(&status) {
        return Ok(());
    }
    apply_status(&ctx.client, user, &status).await
}

/// Retries a failed reconcile after a pause, counting the failure.
pub fn error_policy(user: Arc<KafkaUser>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(user = %user.name_any(), error = %error, "kafkauser reconcile failed");
    ctx.metrics.failure(CONTROLLER, error);
    Action::requeue(RETRY)
}
