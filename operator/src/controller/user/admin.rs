//! What the KafkaUser controller asks of a cluster, behind a trait so the
//! reconcile tests can stand in a fake: SCRAM credentials
//! (Describe/AlterUserScramCredentials), ACLs (Describe/Create/DeleteAcls)
//! and the `user` quota entity (Describe/AlterClientQuotas). The real one
//! is [`WireAdmin`] over `rivulet-wire`, on the connection every
//! controller uses ([`AdminTarget`]: mutual TLS as `User:rivulet-operator`
//! on a secured cluster), so it works with any Kafka-compatible cluster
//! that lets the operator's principal administer it.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use rivulet_wire::{
    client::QuotaMatch,
    error::ClientError,
    kafka_protocol::{
        messages::{
            alter_user_scram_credentials_request::ScramCredentialDeletion,
            create_acls_request::AclCreation, delete_acls_request::DeleteAclsFilter,
            describe_user_scram_credentials_request::UserName, AlterUserScramCredentialsRequest,
            CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
            DescribeUserScramCredentialsRequest,
        },
        protocol::StrBytes,
    },
    scram::{ScramMechanism, MIN_ITERATIONS},
};

use super::plan::AclBinding;
use crate::controller::kafka::{connect, deadline, WireAdmin};
pub use crate::controller::target::AdminTarget;

/// RESOURCE_NOT_FOUND: DescribeUserScramCredentials of a user without any.
const RESOURCE_NOT_FOUND: i16 = 91;
/// The filters' ANY (resource type, pattern type, operation, permission).
const ANY: i8 = 1;

/// The Kafka admin operations of the KafkaUser controller.
pub trait UserAdmin: Send + Sync {
    /// The SCRAM mechanisms `user` has a credential for.
    fn scram_mechanisms<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ScramMechanism>, ClientError>>;
    /// Sets `user`'s credential of `mechanism` to `password` (a new salt,
    /// Kafka's minimum iterations); only the salted password is sent.
    fn set_scram<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
        mechanism: ScramMechanism,
        password: &'a str,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Deletes `user`'s credentials of `mechanisms`.
    fn delete_scram<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
        mechanisms: Vec<ScramMechanism>,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Every ACL of `principal`, on any resource and pattern.
    fn acls_of<'a>(
        &'a self,
        target: &'a AdminTarget,
        principal: &'a str,
    ) -> BoxFuture<'a, Result<BTreeSet<AclBinding>, ClientError>>;
    /// Creates ACLs.
    fn create_acls<'a>(
        &'a self,
        target: &'a AdminTarget,
        acls: Vec<AclBinding>,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Deletes exactly these ACLs.
    fn delete_acls<'a>(
        &'a self,
        target: &'a AdminTarget,
        acls: Vec<AclBinding>,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// The quota values of the `user` entity `user` (not defaults).
    fn user_quotas<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, f64>, ClientError>>;
    /// Sets `set` and removes `remove` on the `user` entity `user`.
    fn alter_user_quotas<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
        set: BTreeMap<String, f64>,
        remove: Vec<String>,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn user_entity(user: &str) -> Vec<(String, Option<String>)> {
    vec![("user".to_string(), Some(user.to_string()))]
}

impl UserAdmin for WireAdmin {
    fn scram_mechanisms<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ScramMechanism>, ClientError>> {
        Box::pin(deadline(async move {
            let request = DescribeUserScramCredentialsRequest::default()
                .with_users(Some(vec![UserName::default().with_name(s(user))]));
            let response = connect(target).await?.send_any(request).await?;
            ClientError::check(response.error_code, response.error_message.as_deref())?;
            let mut mechanisms = Vec::new();
            for result in response.results {
                if result.error_code == RESOURCE_NOT_FOUND {
                    continue;
                }
                ClientError::check(result.error_code, result.error_message.as_deref())?;
                mechanisms.extend(
                    result
                        .credential_infos
                        .iter()
                        .filter_map(|i| ScramMechanism::from_kafka_type(i.mechanism)),
                );
            }
            Ok(mechanisms)
        }))
    }

    fn set_scram<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
        mechanism: ScramMechanism,
        password: &'a str,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            let upsertion =
                rivulet_wire::client::scram_upsertion(user, mechanism, password, MIN_ITERATIONS)
                    .expect("the operating system has a random source");
            let request =
                AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]);
            let response = connect(target).await?.send_any(request).await?;
            for result in response.results {
                ClientError::check(result.error_code, result.error_message.as_deref())?;
            }
            Ok(())
        }))
    }

    fn delete_scram<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
        mechanisms: Vec<ScramMechanism>,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            let deletions = mechanisms
                .iter()
                .map(|m| {
                    ScramCredentialDeletion::default()
                        .with_name(s(user))
                        .with_mechanism(m.kafka_type())
                })
                .collect();
            let request = AlterUserScramCredentialsRequest::default().with_deletions(deletions);
            let response = connect(target).await?.send_any(request).await?;
            for result in response.results {
                if result.error_code == RESOURCE_NOT_FOUND {
                    continue;
                }
                ClientError::check(result.error_code, result.error_message.as_deref())?;
            }
            Ok(())
        }))
    }

    fn acls_of<'a>(
        &'a self,
        target: &'a AdminTarget,
        principal: &'a str,
    ) -> BoxFuture<'a, Result<BTreeSet<AclBinding>, ClientError>> {
        Box::pin(deadline(async move {
            let request = DescribeAclsRequest::default()
                .with_resource_type_filter(ANY)
                .with_resource_name_filter(None)
                .with_pattern_type_filter(ANY)
                .with_principal_filter(Some(s(principal)))
                .with_host_filter(None)
                .with_operation(ANY)
                .with_permission_type(ANY);
            let response = connect(target).await?.send_any(request).await?;
            ClientError::check(response.error_code, response.error_message.as_deref())?;
            let mut acls = BTreeSet::new();
            for resource in response.resources {
                for acl in resource.acls {
                    acls.insert(AclBinding {
                        resource_type: resource.resource_type,
                        resource_name: resource.resource_name.to_string(),
                        pattern_type: resource.pattern_type,
                        principal: acl.principal.to_string(),
                        host: acl.host.to_string(),
                        operation: acl.operation,
                        permission: acl.permission_type,
                    });
                }
            }
            Ok(acls)
        }))
    }

    fn create_acls<'a>(
        &'a self,
        target: &'a AdminTarget,
        acls: Vec<AclBinding>,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            let creations = acls
                .iter()
                .map(|a| {
                    AclCreation::default()
                        .with_resource_type(a.resource_type)
                        .with_resource_name(s(&a.resource_name))
                        .with_resource_pattern_type(a.pattern_type)
                        .with_principal(s(&a.principal))
                        .with_host(s(&a.host))
                        .with_operation(a.operation)
                        .with_permission_type(a.permission)
                })
                .collect();
            let request = CreateAclsRequest::default().with_creations(creations);
            let response = connect(target).await?.send_any(request).await?;
            for result in response.results {
                ClientError::check(result.error_code, result.error_message.as_deref())?;
            }
            Ok(())
        }))
    }

    fn delete_acls<'a>(
        &'a self,
        target: &'a AdminTarget,
        acls: Vec<AclBinding>,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            let filters = acls
                .iter()
                .map(|a| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(a.resource_type)
                        .with_resource_name_filter(Some(s(&a.resource_name)))
                        .with_pattern_type_filter(a.pattern_type)
                        .with_principal_filter(Some(s(&a.principal)))
                        .with_host_filter(Some(s(&a.host)))
                        .with_operation(a.operation)
                        .with_permission_type(a.permission)
                })
                .collect();
            let request = DeleteAclsRequest::default().with_filters(filters);
            let response = connect(target).await?.send_any(request).await?;
            for result in response.filter_results {
                ClientError::check(result.error_code, result.error_message.as_deref())?;
            }
            Ok(())
        }))
    }

    fn user_quotas<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, f64>, ClientError>> {
        Box::pin(deadline(async move {
            let filter = [("user".to_string(), QuotaMatch::Exact(user.to_string()))];
            let entries = connect(target)
                .await?
                .describe_client_quotas(&filter, true)
                .await?;
            let entity = user_entity(user);
            Ok(entries
                .into_iter()
                .find(|e| e.entity == entity)
                .map(|e| e.values)
                .unwrap_or_default())
        }))
    }

    fn alter_user_quotas<'a>(
        &'a self,
        target: &'a AdminTarget,
        user: &'a str,
        set: BTreeMap<String, f64>,
        remove: Vec<String>,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(deadline(async move {
            connect(target)
                .await?
                .alter_client_quotas(&user_entity(user), &set, &remove, false)
                .await
        }))
    }
}
