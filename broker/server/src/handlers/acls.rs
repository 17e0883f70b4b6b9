//! CreateAcls, DescribeAcls and DeleteAcls: ACLs in the metadata image,
//! so every broker enforces the same ones. Without an authorizer all three
//! answer SECURITY_DISABLED, as Kafka does. Who may call them (ALTER or
//! DESCRIBE on the cluster) is checked by the authorization layer.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::{
    messages::{
        create_acls_response::AclCreationResult,
        delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl},
        describe_acls_response::{AclDescription, DescribeAclsResource},
        CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
        DescribeAclsRequest, DescribeAclsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::metadata::{
    acl::{AclBinding, AclFilter},
    MetadataCommand,
};

use super::Node;

fn text(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// SECURITY_DISABLED and Kafka's message, when no authorizer is set.
fn disabled(node: &Node) -> Option<(i16, Option<StrBytes>)> {
    node.config.security.authorizer.is_none().then(|| {
        (
            ResponseError::SecurityDisabled.code(),
            text("No Authorizer is configured."),
        )
    })
}

/// Handles CreateAcls: every valid creation is added in one metadata
/// record; an invalid one gets INVALID_REQUEST and does not stop the rest.
pub async fn create(node: &Node, request: CreateAclsRequest) -> CreateAclsResponse {
    let mut results = vec![AclCreationResult::default(); request.creations.len()];
    if let Some((code, message)) = disabled(node) {
        for r in &mut results {
            r.error_code = code;
            r.error_message = message.clone();
        }
        return CreateAclsResponse::default().with_results(results);
    }
    let mut valid = Vec::new();
    for (i, c) in request.creations.into_iter().enumerate() {
        match AclBinding::from_codes(
            c.resource_type,
            c.resource_name.to_string(),
            c.resource_pattern_type,
            c.principal.to_string(),
            c.host.to_string(),
            c.operation,
            c.permission_type,
        ) {
            Ok(binding) => valid.push((i, binding)),
            Err(e) => {
                results[i].error_code = e.code();
                results[i].error_message = text(e.to_string());
            }
        }
    }
    if !valid.is_empty() {
        let bindings = valid.iter().map(|(_, b)| b.clone()).collect();
        if let Err(e) = node
            .cluster
            .propose(MetadataCommand::CreateAcls(bindings))
            .await
        {
            for (i, _) in &valid {
                results[*i].error_code = e.code.code();
                results[*i].error_message = text(e.message.clone());
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

/// The [`AclFilter`] of a DescribeAcls request or a DeleteAcls filter
/// (the same fields), or SECURITY_DISABLED / INVALID_REQUEST.
macro_rules! filter_of {
    ($node:expr, $f:expr) => {
        match disabled($node) {
            Some(e) => Err(e),
            None => AclFilter::from_codes(
                $f.resource_type_filter,
                $f.resource_name_filter.as_ref().map(|n| n.to_string()),
                $f.pattern_type_filter,
                $f.principal_filter.as_ref().map(|p| p.to_string()),
                $f.host_filter.as_ref().map(|h| h.to_string()),
                $f.operation,
                $f.permission_type,
            )
            .map_err(|e| (e.code(), text(e.to_string()))),
        }
    };
}

/// Handles DescribeAcls: the ACLs the filter selects, grouped by resource
/// pattern.
pub fn describe(node: &Node, r: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut response = DescribeAclsResponse::default();
    let filter = filter_of!(node, r);
    let filter = match filter {
        Ok(f) => f,
        Err((code, message)) => {
            response.error_code = code;
            response.error_message = message;
            return response;
        }
    };
    let image = node.cluster.image();
    let mut by_resource: BTreeMap<(i8, &str, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in image.acls.iter().filter(|a| filter.matches(a)) {
        by_resource
            .entry((
                acl.resource_type.code(),
                acl.resource_name.as_str(),
                acl.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(s(&acl.principal))
                    .with_host(s(&acl.host))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
    }
    response.resources = by_resource
        .into_iter()
        .map(|((resource_type, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_pattern_type(pattern)
                .with_acls(acls)
        })
        .collect();
    response
}

/// Handles DeleteAcls: each filter's matches, all removed in one metadata
/// record; each filter reports what it matched.
pub async fn delete(node: &Node, r: DeleteAclsRequest) -> DeleteAclsResponse {
    let image = node.cluster.image();
    let mut results = Vec::with_capacity(r.filters.len());
    let mut doomed = BTreeSet::new();
    for f in &r.filters {
        let filter = filter_of!(node, f);
        match filter {
            Ok(filter) => {
                let matched: Vec<AclBinding> = image
                    .acls
                    .iter()
                    .filter(|a| filter.matches(a))
                    .cloned()
                    .collect();
                doomed.extend(matched.iter().cloned());
                results.push(Ok(matched));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    let failure = if doomed.is_empty() {
        None
    } else {
        node.cluster
            .propose(MetadataCommand::DeleteAcls(doomed.into_iter().collect()))
            .await
            .err()
            .map(|e| (e.code.code(), text(e.message)))
    };
    let filter_results = results
        .into_iter()
        .map(
            |result| match result.and_then(|m| failure.clone().map_or(Ok(m), Err)) {
                Err((code, message)) => DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(message),
                Ok(matched) => DeleteAclsFilterResult::default().with_matching_acls(
                    matched
                        .iter()
                        .map(|acl| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(acl.resource_type.code())
                                .with_resource_name(s(&acl.resource_name))
                                .with_pattern_type(acl.pattern_type.code())
                                .with_principal(s(&acl.principal))
                                .with_host(s(&acl.host))
                                .with_operation(acl.operation.code())
                                .with_permission_type(acl.permission.code())
                        })
                        .collect(),
                ),
            },
        )
        .collect();
    DeleteAclsResponse::default().with_filter_results(filter_results)
}
