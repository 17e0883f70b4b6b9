//! JoinGroup: checks the request (group id, session timeout bounds) and
//! hands it to the coordinator, which may park it until the rebalance's
//! join phase completes.

use kafka_protocol::{
    messages::{join_group_response::JoinGroupResponseMember, JoinGroupRequest, JoinGroupResponse},
    protocol::StrBytes,
    ResponseError,
};

use super::Node;
use crate::group::state::{JoinRequest, JoinResult};

fn s(v: String) -> StrBytes {
    StrBytes::from_string(v)
}

/// Answers JoinGroup.
pub async fn handle(
    broker: &Node,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    let group_id = req.group_id.to_string();
    let member_id = req.member_id.to_string();
    let cfg = &broker.groups.config().group;
    let result = if group_id.is_empty() {
        JoinResult::error(&member_id, ResponseError::InvalidGroupId)
    } else if req.session_timeout_ms < cfg.min_session_timeout_ms
        || req.session_timeout_ms > cfg.max_session_timeout_ms
    {
        JoinResult::error(&member_id, ResponseError::InvalidSessionTimeout)
    } else {
        let join = JoinRequest {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id.map(|i| i.to_string()),
            client_id: client_id.to_string(),
            // The peer address is not passed to handlers yet.
            client_host: client_host.to_string(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: if version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: version >= 4,
            supports_skip_assignment: version >= 9,
            fresh_id: uuid::Uuid::new_v4().to_string(),
        };
        broker.groups.join(&group_id, join).await
    };
    response(result, version)
}

fn response(r: JoinResult, version: i16) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(s(m.member_id))
                .with_group_instance_id(if version >= 5 {
                    m.group_instance_id.map(s)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    // Before v7 the protocol name is not nullable.
    let protocol = match r.protocol {
        Some(p) => Some(s(p)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(super::code(r.error))
        .with_generation_id(r.generation)
        .with_protocol_type(if version >= 7 {
            r.protocol_type.map(s)
        } else {
            None
        })
        .with_protocol_name(protocol)
        .with_leader(s(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(s(r.member_id))
        .with_members(members)
}
