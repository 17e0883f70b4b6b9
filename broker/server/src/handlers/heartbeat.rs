//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::{
    messages::{HeartbeatRequest, HeartbeatResponse},
    ResponseError,
};

use super::Node;

/// Answers Heartbeat.
pub fn handle(broker: &Node, req: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = req.group_id.to_string();
    let error = if group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        let instance = req.group_instance_id.map(|i| i.to_string());
        broker.groups.heartbeat(
            &group_id,
            &req.member_id,
            instance.as_deref(),
            req.generation_id,
        )
    };
    HeartbeatResponse::default().with_error_code(super::code(error))
}
