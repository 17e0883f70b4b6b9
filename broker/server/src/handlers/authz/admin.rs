//! Cluster-wide and configuration APIs: ALTER or DESCRIBE on the cluster,
//! DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic or the cluster, and the
//! producer-id and ACL APIs.

use kafka_protocol::{
    messages::{
        alter_client_quotas_response,
        alter_configs_response::AlterConfigsResourceResponse as AlterResult,
        alter_user_scram_credentials_response::AlterUserScramCredentialsResult,
        describe_configs_response::DescribeConfigsResult,
        describe_producers_response,
        elect_leaders_response::{PartitionResult, ReplicaElectionResult},
        incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult,
        AddRaftVoterResponse, AlterClientQuotasResponse, AlterPartitionReassignmentsResponse,
        AlterUserScramCredentialsResponse, CreateAclsResponse, DeleteAclsResponse,
        DescribeAclsResponse, DescribeClientQuotasResponse, DescribeQuorumResponse,
        DescribeUserScramCredentialsResponse, ElectLeadersResponse, InitProducerIdResponse,
        ListPartitionReassignmentsResponse, ProducerId, RemoveRaftVoterResponse, RequestKind,
        ResponseKind,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::metadata::acl::{Operation, ResourceType, CLUSTER_RESOURCE_NAME};

use super::{append, code, Access, Checked, Patch};

const CLUSTER_DENIED: ResponseError = ResponseError::ClusterAuthorizationFailed;

fn message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("Authorization failed."))
}

/// Kafka's config resource types and what guards them: a topic's configs
/// by the topic, a broker's (and its loggers') by the cluster.
fn config_resource(resource_type: i8, name: &str) -> Option<(ResourceType, String, ResponseError)> {
    match resource_type {
        2 => Some((
            ResourceType::Topic,
            name.to_string(),
            ResponseError::TopicAuthorizationFailed,
        )),
        4 | 8 => Some((
            ResourceType::Cluster,
            CLUSTER_RESOURCE_NAME.to_string(),
            CLUSTER_DENIED,
        )),
        _ => None,
    }
}

/// The error for a config resource, if `operation` on it is refused.
fn config_denied(
    access: &Access,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Option<ResponseError> {
    let (kind, resource, error) = config_resource(resource_type, name)?;
    (!access.allows(operation, kind, &resource)).then_some(error)
}

/// The check of a config API: each resource refused (see
/// [`config_denied`]) is taken out and answered with an error entry of
/// type `$result` in the response's `$field`.
macro_rules! config_check {
    ($access:expr, $r:ident, $api:ident, $operation:ident, $result:ident, $field:ident) => {{
        let mut r = $r;
        let denied = refuse_configs(
            $access,
            Operation::$operation,
            &mut r.resources,
            |res| (res.resource_type, &res.resource_name),
            |error, resource_type, name| {
                $result::default()
                    .with_error_code(error)
                    .with_error_message(message())
                    .with_resource_type(resource_type)
                    .with_resource_name(name)
            },
        );
        append(RequestKind::$api(r), denied, |response, list| {
            if let ResponseKind::$api(resp) = response {
                resp.$field.extend(list);
            }
        })
    }};
}

/// Everything not about topics or groups.
pub fn check(access: &Access, body: RequestKind, version: i16) -> Checked {
    match body {
        RequestKind::DescribeCluster(r) => {
            if !r.include_cluster_authorized_operations {
                return Checked::Run(RequestKind::DescribeCluster(r), None);
            }
            let ops = if access.may_cluster(Operation::Describe) {
                access.operations(ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
            } else {
                0
            };
            let patch: Patch = Box::new(move |response| {
                if let ResponseKind::DescribeCluster(resp) = response {
                    resp.cluster_authorized_operations = ops;
                }
            });
            Checked::Run(RequestKind::DescribeCluster(r), Some(patch))
        }
        RequestKind::DescribeConfigs(r) if access.enabled() => {
            config_check!(
                access,
                r,
                DescribeConfigs,
                DescribeConfigs,
                DescribeConfigsResult,
                results
            )
        }
        RequestKind::AlterConfigs(r) if access.enabled() => {
            config_check!(
                access,
                r,
                AlterConfigs,
                AlterConfigs,
                AlterResult,
                responses
            )
        }
        RequestKind::IncrementalAlterConfigs(r) if access.enabled() => {
            config_check!(
                access,
                r,
                IncrementalAlterConfigs,
                AlterConfigs,
                IncrementalResult,
                responses
            )
        }
        RequestKind::InitProducerId(r) if access.enabled() => {
            let refused = match &r.transactional_id {
                Some(id) => (!access.allows(Operation::Write, ResourceType::TransactionalId, id))
                    .then_some(ResponseError::TransactionalIdAuthorizationFailed),
                None => (!access.may_cluster(Operation::IdempotentWrite)
                    && !access.may_write_any_topic())
                .then(|| {
                    // Counted once, as the check Kafka reports.
                    access.count_denial(
                        Operation::IdempotentWrite,
                        ResourceType::Cluster,
                        CLUSTER_RESOURCE_NAME,
                    );
                    CLUSTER_DENIED
                }),
            };
            match refused {
                None => Checked::Run(RequestKind::InitProducerId(r), None),
                Some(error) => Checked::Answer(ResponseKind::InitProducerId(
                    InitProducerIdResponse::default()
                        .with_error_code(code(error))
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                )),
            }
        }
        RequestKind::ElectLeaders(r) if access.enabled() => {
            if access.allows_cluster(Operation::Alter) {
                return Checked::Run(RequestKind::ElectLeaders(r), None);
            }
            let results = r
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    ReplicaElectionResult::default()
                        .with_topic(t.topic)
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|&p| {
                                    PartitionResult::default()
                                        .with_partition_id(p)
                                        .with_error_code(code(CLUSTER_DENIED))
                                        .with_error_message(message())
                                })
                                .collect(),
                        )
                })
                .collect();
            let mut resp = ElectLeadersResponse::default().with_replica_election_results(results);
            if version >= 1 {
                resp.error_code = code(CLUSTER_DENIED);
            }
            Checked::Answer(ResponseKind::ElectLeaders(resp))
        }
        RequestKind::AlterPartitionReassignments(r) if access.enabled() => cluster_only(
            access,
            Operation::Alter,
            RequestKind::AlterPartitionReassignments(r),
            || {
                ResponseKind::AlterPartitionReassignments(
                    AlterPartitionReassignmentsResponse::default()
                        .with_error_code(code(CLUSTER_DENIED))
                        .with_error_message(message()),
                )
            },
        ),
        RequestKind::ListPartitionReassignments(r) if access.enabled() => cluster_only(
            access,
            Operation::Describe,
            RequestKind::ListPartitionReassignments(r),
            || {
                ResponseKind::ListPartitionReassignments(
                    ListPartitionReassignmentsResponse::default()
                        .with_error_code(code(CLUSTER_DENIED))
                        .with_error_message(message()),
                )
            },
        ),
        RequestKind::DescribeQuorum(r) if access.enabled() => cluster_only(
            access,
            Operation::Describe,
            RequestKind::DescribeQuorum(r),
            || {
                let mut resp =
                    DescribeQuorumResponse::default().with_error_code(code(CLUSTER_DENIED));
                if version >= 2 {
                    resp.error_message = message();
                }
                ResponseKind::DescribeQuorum(resp)
            },
        ),
        RequestKind::AddRaftVoter(r) if access.enabled() => cluster_only(
            access,
            Operation::Alter,
            RequestKind::AddRaftVoter(r),
            || {
                ResponseKind::AddRaftVoter(
                    AddRaftVoterResponse::default()
                        .with_error_code(code(CLUSTER_DENIED))
                        .with_error_message(message()),
                )
            },
        ),
        RequestKind::RemoveRaftVoter(r) if access.enabled() => cluster_only(
            access,
            Operation::Alter,
            RequestKind::RemoveRaftVoter(r),
            || {
                ResponseKind::RemoveRaftVoter(
                    RemoveRaftVoterResponse::default()
                        .with_error_code(code(CLUSTER_DENIED))
                        .with_error_message(message()),
                )
            },
        ),
        RequestKind::DescribeUserScramCredentials(r) if access.enabled() => cluster_only(
            access,
            Operation::Describe,
            RequestKind::DescribeUserScramCredentials(r),
            || {
                ResponseKind::DescribeUserScramCredentials(
                    DescribeUserScramCredentialsResponse::default()
                        .with_error_code(code(CLUSTER_DENIED))
                        .with_error_message(message()),
                )
            },
        ),
        RequestKind::AlterUserScramCredentials(r) if access.enabled() => {
            if access.allows_cluster(Operation::Alter) {
                return Checked::Run(RequestKind::AlterUserScramCredentials(r), None);
            }
            let mut users: Vec<StrBytes> = r
                .deletions
                .iter()
                .map(|d| d.name.clone())
                .chain(r.upsertions.iter().map(|u| u.name.clone()))
                .collect();
            users.sort();
            users.dedup();
            Checked::Answer(ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .into_iter()
                        .map(|user| {
                            AlterUserScramCredentialsResult::default()
                                .with_user(user)
                                .with_error_code(code(CLUSTER_DENIED))
                                .with_error_message(message())
                        })
                        .collect(),
                ),
            ))
        }
        RequestKind::CreateAcls(r) if access.enabled() => {
            if access.allows_cluster(Operation::Alter) {
                return Checked::Run(RequestKind::CreateAcls(r), None);
            }
            let results = r
                .creations
                .iter()
                .map(|_| {
                    kafka_protocol::messages::create_acls_response::AclCreationResult::default()
                        .with_error_code(code(CLUSTER_DENIED))
                        .with_error_message(message())
                })
                .collect();
            Checked::Answer(ResponseKind::CreateAcls(
                CreateAclsResponse::default().with_results(results),
            ))
        }
        RequestKind::DeleteAcls(r) if access.enabled() => {
            if access.allows_cluster(Operation::Alter) {
                return Checked::Run(RequestKind::DeleteAcls(r), None);
            }
            let results = r
                .filters
                .iter()
                .map(|_| {
                    kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult::default(
                    )
                    .with_error_code(code(CLUSTER_DENIED))
                    .with_error_message(message())
                })
                .collect();
            Checked::Answer(ResponseKind::DeleteAcls(
                DeleteAclsResponse::default().with_filter_results(results),
            ))
        }
        RequestKind::DescribeAcls(r) if access.enabled() => cluster_only(
            access,
            Operation::Describe,
            RequestKind::DescribeAcls(r),
            || {
                ResponseKind::DescribeAcls(
                    DescribeAclsResponse::default()
                        .with_error_code(code(CLUSTER_DENIED))
                        .with_error_message(message()),
                )
            },
        ),
        RequestKind::DescribeClientQuotas(r) if access.enabled() => cluster_only(
            access,
            Operation::DescribeConfigs,
            RequestKind::DescribeClientQuotas(r),
            || {
                ResponseKind::DescribeClientQuotas(
                    DescribeClientQuotasResponse::default()
                        .with_error_code(code(CLUSTER_DENIED))
                        .with_error_message(message())
                        .with_entries(None),
                )
            },
        ),
        RequestKind::AlterClientQuotas(r) if access.enabled() => {
            if access.allows_cluster(Operation::AlterConfigs) {
                return Checked::Run(RequestKind::AlterClientQuotas(r), None);
            }
            let entries = r
                .entries
                .into_iter()
                .map(|e| {
                    alter_client_quotas_response::EntryData::default()
                        .with_error_code(code(CLUSTER_DENIED))
                        .with_error_message(message())
                        .with_entity(
                            e.entity
                                .into_iter()
                                .map(|d| {
                                    alter_client_quotas_response::EntityData::default()
                                        .with_entity_type(d.entity_type)
                                        .with_entity_name(d.entity_name)
                                })
                                .collect(),
                        )
                })
                .collect();
            Checked::Answer(ResponseKind::AlterClientQuotas(
                AlterClientQuotasResponse::default().with_entries(entries),
            ))
        }
        RequestKind::DescribeProducers(mut r) if access.enabled() => {
            let (kept, denied): (Vec<_>, Vec<_>) = r
                .topics
                .into_iter()
                .partition(|t| access.allows(Operation::Read, ResourceType::Topic, &t.name));
            r.topics = kept;
            let denied = denied
                .into_iter()
                .map(|t| {
                    let partitions = t.partition_indexes.iter().map(|&i| {
                        describe_producers_response::PartitionResponse::default()
                            .with_partition_index(i)
                            .with_error_code(code(ResponseError::TopicAuthorizationFailed))
                    });
                    describe_producers_response::TopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(partitions.collect())
                })
                .collect();
            append(
                RequestKind::DescribeProducers(r),
                denied,
                |response, denied| {
                    if let ResponseKind::DescribeProducers(resp) = response {
                        resp.topics.extend(denied);
                    }
                },
            )
        }
        other => Checked::Run(other, None),
    }
}

/// Runs the request when `operation` on the cluster is allowed, otherwise
/// answers with `refusal`.
fn cluster_only(
    access: &Access,
    operation: Operation,
    request: RequestKind,
    refusal: impl FnOnce() -> ResponseKind,
) -> Checked {
    if access.allows_cluster(operation) {
        Checked::Run(request, None)
    } else {
        Checked::Answer(refusal())
    }
}

/// Takes the config resources on which `operation` is refused out of
/// `resources` and returns their error entries, made by `entry(error code,
/// resource type, name)`.
fn refuse_configs<R, E>(
    access: &Access,
    operation: Operation,
    resources: &mut Vec<R>,
    key: impl Fn(&R) -> (i8, &StrBytes),
    entry: impl Fn(i16, i8, StrBytes) -> E,
) -> Vec<E> {
    let mut denied = Vec::new();
    resources.retain(|res| {
        let (resource_type, name) = key(res);
        match config_denied(access, operation, resource_type, name) {
            Some(error) => {
                denied.push(entry(code(error), resource_type, name.clone()));
                false
            }
            None => true,
        }
    });
    denied
}
