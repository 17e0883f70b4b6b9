//! ListGroups: every group this broker coordinates, optionally filtered by
//! state (v4+) and type (v5+; all groups here are `classic`).

use kafka_protocol::{
    messages::{list_groups_response::ListedGroup, GroupId, ListGroupsRequest, ListGroupsResponse},
    protocol::StrBytes,
    ResponseError,
};

use super::Node;
use crate::group::state::GroupState;

/// Answers ListGroups.
pub fn handle(broker: &Node, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let states: Vec<Option<GroupState>> = req
        .states_filter
        .iter()
        .map(|s| GroupState::parse(s))
        .collect();
    let classic = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case("classic"));
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| classic && (states.is_empty() || states.contains(&Some(*state))))
        .map(|(id, protocol_type, state)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(protocol_type));
            let g = if version >= 4 {
                g.with_group_state(StrBytes::from_static_str(state.name()))
            } else {
                g
            };
            if version >= 5 {
                g.with_group_type(StrBytes::from_static_str("classic"))
            } else {
                g
            }
        })
        .collect();
    let error = broker
        .groups
        .is_loading()
        .then_some(ResponseError::CoordinatorLoadInProgress);
    ListGroupsResponse::default()
        .with_error_code(super::code(error))
        .with_groups(groups)
}
