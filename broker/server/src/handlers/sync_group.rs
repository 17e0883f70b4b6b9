//! SyncGroup: the leader hands in the assignment; followers wait for it.

use kafka_protocol::{
    messages::{SyncGroupRequest, SyncGroupResponse},
    protocol::StrBytes,
    ResponseError,
};

use super::Node;
use crate::group::state::SyncResult;

/// Answers SyncGroup.
pub async fn handle(broker: &Node, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let group_id = req.group_id.to_string();
    let result = if group_id.is_empty() {
        SyncResult::error(ResponseError::InvalidGroupId)
    } else {
        let instance = req.group_instance_id.map(|i| i.to_string());
        let protocol_type = req.protocol_type.map(|p| p.to_string());
        let protocol = req.protocol_name.map(|p| p.to_string());
        let assignments = req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect();
        broker
            .groups
            .sync(
                &group_id,
                &req.member_id,
                instance.as_deref(),
                req.generation_id,
                protocol_type.as_deref(),
                protocol.as_deref(),
                assignments,
            )
            .await
    };
    let v5 = version >= 5;
    SyncGroupResponse::default()
        .with_error_code(super::code(result.error))
        .with_protocol_type(if v5 {
            result.protocol_type.map(StrBytes::from_string)
        } else {
            None
        })
        .with_protocol_name(if v5 {
            result.protocol.map(StrBytes::from_string)
        } else {
            None
        })
        .with_assignment(result.assignment)
}
