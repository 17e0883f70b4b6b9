//! LeaveGroup: one member (v0-v2) or a batch of members by id or instance id (v3+).

use kafka_protocol::{
    messages::{leave_group_response::MemberResponse, LeaveGroupRequest, LeaveGroupResponse},
    ResponseError,
};

use super::Node;

/// Answers LeaveGroup.
pub async fn handle(broker: &Node, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group_id = req.group_id.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let result = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        broker.groups.leave(&group_id, &leaving).await
    };
    match result {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(errors) if version < 3 => LeaveGroupResponse::default()
            .with_error_code(super::code(errors.first().copied().flatten())),
        Ok(errors) => {
            let members = req
                .members
                .into_iter()
                .zip(errors)
                .map(|(m, e)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(super::code(e))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        }
    }
}
