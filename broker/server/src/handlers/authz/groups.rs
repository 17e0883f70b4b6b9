//! Group APIs: READ on the group to take part in it, DESCRIBE to see it,
//! DELETE to remove it or its offsets, and READ or DESCRIBE on the topics
//! whose offsets are committed or read.

use std::collections::BTreeSet;

use kafka_protocol::{
    messages::{
        delete_groups_response::DeletableGroupResult,
        find_coordinator_response::Coordinator,
        leave_group_response::MemberResponse,
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic},
        BrokerId, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
        FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
        JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
        OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
        OffsetFetchRequest, RequestKind, ResponseKind, SyncGroupRequest, SyncGroupResponse,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::metadata::acl::{Operation, ResourceType};

use super::{append, code, Access, Checked, Patch};

const GROUP_DENIED: ResponseError = ResponseError::GroupAuthorizationFailed;
const TOPIC_DENIED: ResponseError = ResponseError::TopicAuthorizationFailed;

fn group_allows(access: &Access, operation: Operation, group: &str) -> bool {
    access.allows(operation, ResourceType::Group, group)
}

/// FindCoordinator: DESCRIBE on the group, or on the transactional id.
pub fn find_coordinator(access: &Access, mut r: FindCoordinatorRequest, version: i16) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::FindCoordinator(r), None);
    }
    let (resource, error) = match r.key_type {
        1 => (
            ResourceType::TransactionalId,
            ResponseError::TransactionalIdAuthorizationFailed,
        ),
        _ => (ResourceType::Group, GROUP_DENIED),
    };
    let allowed = |key: &str| access.allows(Operation::Describe, resource, key);
    if version < 4 {
        if allowed(&r.key) {
            return Checked::Run(RequestKind::FindCoordinator(r), None);
        }
        return Checked::Answer(ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default()
                .with_error_code(code(error))
                .with_error_message(
                    (version >= 1).then(|| StrBytes::from_static_str("Authorization failed.")),
                )
                .with_node_id(BrokerId(-1))
                .with_port(-1),
        ));
    }
    let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.coordinator_keys)
        .into_iter()
        .partition(|k| allowed(k));
    r.coordinator_keys = kept;
    let entries: Vec<_> = denied
        .into_iter()
        .map(|key| {
            Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(code(error))
                .with_error_message(Some(StrBytes::from_static_str("Authorization failed.")))
        })
        .collect();
    if r.coordinator_keys.is_empty() {
        return Checked::Answer(ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default().with_coordinators(entries),
        ));
    }
    append(
        RequestKind::FindCoordinator(r),
        entries,
        |response, list| {
            if let ResponseKind::FindCoordinator(resp) = response {
                resp.coordinators.extend(list);
            }
        },
    )
}

/// JoinGroup: READ on the group.
pub fn join_group(access: &Access, r: JoinGroupRequest) -> Checked {
    if group_allows(access, Operation::Read, &r.group_id) {
        return Checked::Run(RequestKind::JoinGroup(r), None);
    }
    Checked::Answer(ResponseKind::JoinGroup(
        JoinGroupResponse::default()
            .with_error_code(code(GROUP_DENIED))
            .with_generation_id(-1)
            // Not nullable before v7; an empty name reads the same later.
            .with_protocol_name(Some(StrBytes::default()))
            .with_member_id(r.member_id),
    ))
}

/// SyncGroup: READ on the group.
pub fn sync_group(access: &Access, r: SyncGroupRequest) -> Checked {
    if group_allows(access, Operation::Read, &r.group_id) {
        return Checked::Run(RequestKind::SyncGroup(r), None);
    }
    Checked::Answer(ResponseKind::SyncGroup(
        SyncGroupResponse::default().with_error_code(code(GROUP_DENIED)),
    ))
}

/// Heartbeat: READ on the group.
pub fn heartbeat(access: &Access, r: HeartbeatRequest) -> Checked {
    if group_allows(access, Operation::Read, &r.group_id) {
        return Checked::Run(RequestKind::Heartbeat(r), None);
    }
    Checked::Answer(ResponseKind::Heartbeat(
        HeartbeatResponse::default().with_error_code(code(GROUP_DENIED)),
    ))
}

/// LeaveGroup: READ on the group.
pub fn leave_group(access: &Access, r: LeaveGroupRequest, version: i16) -> Checked {
    if group_allows(access, Operation::Read, &r.group_id) {
        return Checked::Run(RequestKind::LeaveGroup(r), None);
    }
    let members = if version >= 3 {
        r.members
            .into_iter()
            .map(|m| {
                MemberResponse::default()
                    .with_member_id(m.member_id)
                    .with_group_instance_id(m.group_instance_id)
                    .with_error_code(code(GROUP_DENIED))
            })
            .collect()
    } else {
        Vec::new()
    };
    Checked::Answer(ResponseKind::LeaveGroup(
        LeaveGroupResponse::default()
            .with_error_code(code(GROUP_DENIED))
            .with_members(members),
    ))
}

/// OffsetCommit: READ on the group (else every partition is
/// GROUP_AUTHORIZATION_FAILED), READ on each topic.
pub fn offset_commit(access: &Access, mut r: OffsetCommitRequest) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::OffsetCommit(r), None);
    }
    let topic_error =
        |t: &kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic,
         error: ResponseError| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(error))
                        })
                        .collect(),
                )
        };
    if !group_allows(access, Operation::Read, &r.group_id) {
        return Checked::Answer(ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| topic_error(t, GROUP_DENIED))
                    .collect(),
            ),
        ));
    }
    let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| access.allows(Operation::Read, ResourceType::Topic, &t.name));
    r.topics = kept;
    let entries: Vec<_> = denied
        .iter()
        .map(|t| topic_error(t, TOPIC_DENIED))
        .collect();
    append(RequestKind::OffsetCommit(r), entries, |response, list| {
        if let ResponseKind::OffsetCommit(resp) = response {
            resp.topics.extend(list);
        }
    })
}

/// OffsetFetch: DESCRIBE on each group; offsets of topics the principal
/// may not DESCRIBE are TOPIC_AUTHORIZATION_FAILED when named and left out
/// when all are asked for.
pub fn offset_fetch(access: &Access, r: OffsetFetchRequest, version: i16) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::OffsetFetch(r), None);
    }
    // The groups asked about and the topics named per group (None: all).
    let asked: Vec<(String, Option<BTreeSet<String>>)> = if version >= 8 {
        r.groups
            .iter()
            .map(|g| {
                let topics = g
                    .topics
                    .as_ref()
                    .map(|ts| ts.iter().map(|t| t.name.to_string()).collect());
                (g.group_id.to_string(), topics)
            })
            .collect()
    } else {
        let topics = r
            .topics
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.name.to_string()).collect());
        vec![(r.group_id.to_string(), topics)]
    };
    let denied_groups: BTreeSet<String> = asked
        .iter()
        .filter(|(g, _)| !group_allows(access, Operation::Describe, g))
        .map(|(g, _)| g.clone())
        .collect();
    let access = access.clone();
    let named: Vec<(String, bool)> = asked
        .iter()
        .map(|(g, topics)| (g.clone(), topics.is_some()))
        .collect();
    let patch: Patch = Box::new(move |response| {
        let ResponseKind::OffsetFetch(resp) = response else {
            return;
        };
        let topic_ok = |name: &str| access.allows(Operation::Describe, ResourceType::Topic, name);
        if version >= 8 {
            for g in &mut resp.groups {
                if denied_groups.contains(g.group_id.as_str()) {
                    g.error_code = code(GROUP_DENIED);
                    g.topics.clear();
                    continue;
                }
                let explicit = named
                    .iter()
                    .any(|(name, explicit)| *explicit && name == g.group_id.as_str());
                if explicit {
                    for t in g.topics.iter_mut().filter(|t| !topic_ok(&t.name)) {
                        for p in &mut t.partitions {
                            p.error_code = code(TOPIC_DENIED);
                            p.committed_offset = -1;
                            p.metadata = None;
                        }
                    }
                } else {
                    g.topics.retain(|t| topic_ok(&t.name));
                }
            }
            return;
        }
        if !denied_groups.is_empty() {
            resp.topics.clear();
            resp.error_code = code(GROUP_DENIED);
            return;
        }
        if named.first().is_some_and(|(_, explicit)| *explicit) {
            for t in resp.topics.iter_mut().filter(|t| !topic_ok(&t.name)) {
                for p in &mut t.partitions {
                    p.error_code = code(TOPIC_DENIED);
                    p.committed_offset = -1;
                    p.metadata = None;
                }
            }
        } else {
            resp.topics.retain(|t| topic_ok(&t.name));
        }
    });
    Checked::Run(RequestKind::OffsetFetch(r), Some(patch))
}

/// ListGroups: every group with DESCRIBE on the cluster, otherwise only
/// the groups the principal may DESCRIBE.
pub fn list_groups(access: &Access, r: ListGroupsRequest) -> Checked {
    if !access.enabled() || access.may_cluster(Operation::Describe) {
        return Checked::Run(RequestKind::ListGroups(r), None);
    }
    let access = access.clone();
    let patch: Patch = Box::new(move |response| {
        if let ResponseKind::ListGroups(resp) = response {
            resp.groups
                .retain(|g| access.may(Operation::Describe, ResourceType::Group, &g.group_id));
        }
    });
    Checked::Run(RequestKind::ListGroups(r), Some(patch))
}

/// DescribeGroups: DESCRIBE on each group; authorized operations when
/// asked (v3+).
pub fn describe_groups(access: &Access, r: DescribeGroupsRequest) -> Checked {
    let ops = r.include_authorized_operations;
    if !access.enabled() && !ops {
        return Checked::Run(RequestKind::DescribeGroups(r), None);
    }
    let denied: BTreeSet<String> = r
        .groups
        .iter()
        .filter(|g| !group_allows(access, Operation::Describe, g))
        .map(|g| g.to_string())
        .collect();
    let access = access.clone();
    let patch: Patch = Box::new(move |response| {
        let ResponseKind::DescribeGroups(resp) = response else {
            return;
        };
        for g in &mut resp.groups {
            if denied.contains(g.group_id.as_str()) {
                let id = g.group_id.clone();
                let authorized_operations = g.authorized_operations;
                *g = Default::default();
                g.group_id = id;
                g.error_code = code(GROUP_DENIED);
                g.authorized_operations = authorized_operations;
            } else if ops {
                g.authorized_operations = access.operations(ResourceType::Group, &g.group_id);
            }
        }
    });
    Checked::Run(RequestKind::DescribeGroups(r), Some(patch))
}

/// DeleteGroups: DELETE on each group.
pub fn delete_groups(access: &Access, mut r: DeleteGroupsRequest) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::DeleteGroups(r), None);
    }
    let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.groups_names)
        .into_iter()
        .partition(|g| group_allows(access, Operation::Delete, g));
    r.groups_names = kept;
    let entries: Vec<_> = denied
        .into_iter()
        .map(|g| {
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code(GROUP_DENIED))
        })
        .collect();
    append(RequestKind::DeleteGroups(r), entries, |response, list| {
        if let ResponseKind::DeleteGroups(resp) = response {
            resp.results.extend(list);
        }
    })
}

/// OffsetDelete: DELETE on the group, READ on each topic.
pub fn offset_delete(access: &Access, mut r: OffsetDeleteRequest) -> Checked {
    if !access.enabled() {
        return Checked::Run(RequestKind::OffsetDelete(r), None);
    }
    if !group_allows(access, Operation::Delete, &r.group_id) {
        return Checked::Answer(ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default().with_error_code(code(GROUP_DENIED)),
        ));
    }
    let (kept, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| access.allows(Operation::Read, ResourceType::Topic, &t.name));
    r.topics = kept;
    let entries: Vec<_> = denied
        .into_iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(TOPIC_DENIED))
                        })
                        .collect(),
                )
        })
        .collect();
    append(RequestKind::OffsetDelete(r), entries, |response, list| {
        if let ResponseKind::OffsetDelete(resp) = response {
            resp.topics.extend(list);
        }
    })
}
